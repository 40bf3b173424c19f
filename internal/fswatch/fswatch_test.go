package fswatch

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// next waits for an event on name with op.
func next(t *testing.T, w *Watcher, name string, op Op) Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				t.Fatal("events closed")
			}
			if ev.Name == name && ev.Op&op != 0 {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v event for %s", op, name)
		}
	}
}

// TestEvents: writes, closes after writing (also by a process that
// ends), mode changes, renames and removals are reported with the file's
// name; Close ends the stream.
func TestEvents(t *testing.T) {
	dir := t.TempDir()
	w, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "db-wal")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	next(t, w, "db-wal", Create)
	f.Write([]byte("frame"))
	if ev := next(t, w, "db-wal", Write); ev.Dir != dir {
		t.Errorf("event dir %q", ev.Dir)
	}
	f.Close()
	next(t, w, "db-wal", Closed)
	// Another process that appends and is killed: its file is closed.
	cmd := exec.Command("sh", "-c", "printf x >> db-wal; kill -9 $$")
	cmd.Dir = dir
	_ = cmd.Run()
	next(t, w, "db-wal", Closed)
	os.Chmod(p, 0o600)
	next(t, w, "db-wal", Attrib)
	os.Rename(p, filepath.Join(dir, "k.key"))
	next(t, w, "k.key", MoveTo)
	os.Remove(filepath.Join(dir, "k.key"))
	next(t, w, "k.key", Remove)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for range w.Events {
	}
	if _, err := New(filepath.Join(dir, "missing")); err == nil {
		t.Error("watching a missing directory succeeded")
	}
}
