package maildir

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reopen forgets the process's shared folder, as a restart does.
func reopen(t *testing.T, dir string) *Folder {
	t.Helper()
	folders.Delete(filepath.Clean(dir))
	f, err := OpenFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func uidsOf(st State) []uint32 {
	var out []uint32
	for _, m := range st.Messages {
		out = append(out, m.UID)
	}
	return out
}

func TestFolderUIDsSurviveRestart(t *testing.T) {
	root := t.TempDir()
	for i, id := range []string{"aaaa", "bbbb"} {
		if _, err := Deliver(root, "box", Key{MsgID: id, Idx: i, Received: received.Add(time.Duration(i) * time.Second)}, []byte("Subject: x\r\n\r\nhi\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(root, "box")
	f := reopen(t, dir)
	st, err := f.Sync()
	if err != nil {
		t.Fatal(err)
	}
	if got := uidsOf(st); len(got) != 2 || got[0] != 1 || got[1] != 2 || st.UIDNext != 3 {
		t.Fatalf("first sync: UIDs %v next %d", got, st.UIDNext)
	}
	if names, _ := readNames(filepath.Join(dir, "new")); len(names) != 0 {
		t.Errorf("new/ still holds %v", names)
	}
	if _, err := f.SetFlags(2, "SF"); err != nil {
		t.Fatal(err)
	}
	m3, err := f.Add(strings.NewReader("Subject: appended\r\n\r\nx\r\n"), "S", time.Time{})
	if err != nil || m3.UID != 3 {
		t.Fatalf("Add: %+v %v", m3, err)
	}
	if err := f.Remove([]uint32{1}); err != nil {
		t.Fatal(err)
	}

	f = reopen(t, dir)
	st2, err := f.Sync()
	if err != nil {
		t.Fatal(err)
	}
	if st2.UIDValidity != st.UIDValidity {
		t.Errorf("UIDVALIDITY changed across a restart: %d → %d", st.UIDValidity, st2.UIDValidity)
	}
	if got := uidsOf(st2); len(got) != 2 || got[0] != 2 || got[1] != 3 || st2.UIDNext != 4 {
		t.Fatalf("after restart: UIDs %v next %d, want [2 3] next 4", got, st2.UIDNext)
	}
	if st2.Messages[0].Flags != "FS" {
		t.Errorf("flags of UID 2 = %q, want FS (kept in the file name)", st2.Messages[0].Flags)
	}
	r, m, err := f.Open(3)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Contains(body, []byte("appended")) || m.Size != int64(len(body)) {
		t.Errorf("UID 3: %q size %d", body, m.Size)
	}
	// A new delivery gets the next UID, never a removed one.
	if _, err := Deliver(root, "box", Key{MsgID: "cccc", Idx: 0, Received: received}, []byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	st3, _ := f.Sync()
	if got := uidsOf(st3); len(got) != 3 || got[2] != 4 {
		t.Errorf("after a delivery: UIDs %v, want …4", got)
	}
}

func TestFolderDamagedUIDListStartsANewValidity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "box")
	f := reopen(t, dir)
	if _, err := f.Add(strings.NewReader("x\r\n"), "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Sync()
	if err := os.WriteFile(filepath.Join(dir, UIDListFile), []byte("certrelay-uidlist 1 5 3\n9 x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f = reopen(t, dir)
	st2, err := f.Sync()
	if err != nil {
		t.Fatal(err)
	}
	if st2.UIDValidity == 5 || len(st2.Messages) != 1 || st2.Messages[0].UID != 1 {
		t.Errorf("damaged list: validity %d (old %d), messages %+v", st2.UIDValidity, st.UIDValidity, st2.Messages)
	}
}

func TestFolderWatchHearsDeliveries(t *testing.T) {
	root := t.TempDir()
	heard := make(chan string, 4)
	cancel := Watch(func(dir string) { heard <- dir })
	defer cancel()
	if _, err := Deliver(root, "box", key("dddd", 0), []byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-heard:
		if d != filepath.Join(root, "box") {
			t.Errorf("announced %s", d)
		}
	case <-time.After(time.Second):
		t.Fatal("a delivery was not announced")
	}
}

func TestFolderNames(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"Sent", "Archive.2026"} {
		if err := CreateFolder(root, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"", "a/b", ".x", "x.", "a..b", "INBOX.x"} {
		if err := CreateFolder(root, bad); err == nil {
			t.Errorf("CreateFolder(%q) accepted", bad)
		}
	}
	names, err := FolderNames(root)
	if err != nil || strings.Join(names, ",") != "INBOX,Archive.2026,Sent" {
		t.Errorf("FolderNames = %v, %v", names, err)
	}
	if err := RenameFolder(root, "Sent", "Sent Items"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteFolder(root, "Archive.2026"); err != nil {
		t.Fatal(err)
	}
	names, _ = FolderNames(root)
	if strings.Join(names, ",") != "INBOX,Sent Items" {
		t.Errorf("after rename and delete: %v", names)
	}
}

func FuzzParseUIDList(f *testing.F) {
	f.Add([]byte("certrelay-uidlist 1 1700000000 3\n1 a\n2 b\n"))
	f.Add([]byte("certrelay-uidlist 1 0 0\n"))
	f.Add([]byte("1 a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, n, uids, err := ParseUIDList(data)
		if err != nil {
			return
		}
		seen := map[uint32]bool{}
		for _, u := range uids {
			if u == 0 || u >= n || seen[u] {
				t.Fatalf("accepted UID %d with next %d (validity %d)", u, n, v)
			}
			seen[u] = true
		}
	})
}
