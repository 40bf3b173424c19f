package imapd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSelectAfterRestoreWithOlderTimes: SELECT's trust in directory
// times survives times that go backwards. A folder read (and trusted)
// with one more message than a backup taken earlier is replaced by that
// backup with cp -a, which puts back the backup's older times; the next
// SELECT must see the backup's messages, not the ones it read before.
func TestSelectAfterRestoreWithOlderTimes(t *testing.T) {
	cp, err := exec.LookPath("cp")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	box := filepath.Join(root, "box")
	deliver(t, root, "m1", "Subject: first\r\n\r\nhello\r\n")
	setAll := func(at time.Time) {
		t.Helper()
		for _, d := range []string{box, filepath.Join(box, "cur"), filepath.Join(box, "new")} {
			if err := os.Chtimes(d, at, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	cs := serveConns(t, root)
	keeper := rawDial(t, cs, false) // keeps the folder open (its SELECT moved m1 to cur/)
	keeper.cmd("k NOOP")
	setAll(time.Now().Add(-2 * time.Hour))
	backup := filepath.Join(t.TempDir(), "backup")
	if out, err := exec.Command(cp, "-a", box, backup).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	// Another program delivers m2; the times are an hour old when the
	// folder is read again (so the read is trusted).
	name := fmt.Sprintf("%d.other.example.test", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(box, "new", name), []byte("Subject: other\r\n\r\nhi\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setAll(time.Now().Add(-time.Hour))
	r := rawDial(t, cs, false)
	exists := func() string { t.Helper(); return selectExists(t, r) }
	if got := exists(); got != "* 2 EXISTS" {
		t.Fatalf("SELECT after another program's delivery: %q", got)
	}
	setAll(time.Now().Add(-time.Hour)) // SELECT moved m2 to cur/
	exists()                           // read with times an hour old: trusted
	m := cs.backend.reg.lookup(box)
	m.mu.Lock()
	before := m.reads
	m.mu.Unlock()
	exists()
	m.mu.Lock()
	trusted := m.reads == before
	m.mu.Unlock()
	if !trusted {
		t.Fatal("SELECT of the unchanged folder read it again: the times were not trusted, so the restore below proves nothing")
	}
	// Restore the backup: its directories are two hours old.
	if err := os.RemoveAll(box); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cp, "-a", backup, box).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	if got := exists(); got != "* 1 EXISTS" {
		t.Fatalf("SELECT after the folder was restored from an older copy: %q, want * 1 EXISTS", got)
	}
}
