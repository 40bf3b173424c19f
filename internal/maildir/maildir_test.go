package maildir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var received = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func key(id string, idx int) Key { return Key{MsgID: id, Idx: idx, Received: received} }

func files(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestDeliverLandsInNew(t *testing.T) {
	root := t.TempDir()
	body := []byte("Return-Path: <a@example.com>\r\nSubject: hi\r\n\r\nbody\r\n")
	res, err := Deliver(root, "example.com/bob", key("0123abcd", 2), body)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "example.com/bob")
	wantName := fmt.Sprintf("%d.0123abcd_2.%s", received.Unix(), host())
	if res.Duplicate || res.Path != filepath.Join(dir, "new", wantName) {
		t.Errorf("result = %+v, want new/%s", res, wantName)
	}
	got, err := os.ReadFile(res.Path)
	if err != nil || !bytes.Equal(got, body) {
		t.Errorf("file holds %q, %v; want the exact body", got, err)
	}
	fi, _ := os.Stat(res.Path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want a 0700 directory", sub, fi, err)
		}
	}
	if n := files(t, filepath.Join(dir, "tmp")); len(n) != 0 {
		t.Errorf("tmp/ holds %v", n)
	}
}

func TestRedeliverySkipped(t *testing.T) {
	for _, c := range []struct {
		name  string
		move  func(t *testing.T, dir, name string) // what a reader did meanwhile
		fresh bool
		dup   bool
	}{
		{"skip/still-in-new", func(*testing.T, string, string) {}, false, true},
		// Fresh promises no earlier attempt: nothing is looked for, and
		// the rename replaces the copy in new/ (still one file there).
		{"replace/still-in-new-but-fresh", func(*testing.T, string, string) {}, true, false},
		{"skip/moved-to-cur-with-flags", func(t *testing.T, dir, name string) {
			rename(t, filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+":2,RS"))
		}, false, true},
		{"skip/moved-to-cur-without-info", func(t *testing.T, dir, name string) {
			rename(t, filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name))
		}, false, true},
		{"deliver/deleted-by-the-reader", func(t *testing.T, dir, name string) {
			os.Remove(filepath.Join(dir, "new", name))
		}, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			k := key("feed0001", 0)
			if _, err := Deliver(root, "bob", k, []byte("first\n")); err != nil {
				t.Fatal(err)
			}
			// Other messages in cur/, including a name that shares a prefix.
			dir := filepath.Join(root, "bob")
			for _, other := range []Key{key("feed0001", 1), key("feed0001", 10), key("feed00010", 0)} {
				if _, err := Deliver(root, "bob", other, []byte("other\n")); err != nil {
					t.Fatal(err)
				}
				rename(t, filepath.Join(dir, "new", Name(other)), filepath.Join(dir, "cur", Name(other)+":2,S"))
			}
			c.move(t, dir, Name(k))
			k.Fresh = c.fresh
			res, err := Deliver(root, "bob", k, []byte("second\n"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Duplicate != c.dup {
				t.Fatalf("Duplicate = %v, want %v (%+v)", res.Duplicate, c.dup, res)
			}
			if c.dup {
				if got, _ := os.ReadFile(res.Path); string(got) != "first\n" {
					t.Errorf("%s holds %q", res.Path, got)
				}
			}
			if n := files(t, filepath.Join(dir, "new")); len(n) > 1 {
				t.Errorf("new/ holds %v", n)
			}
		})
	}
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentDeliveriesDoNotCollide(t *testing.T) {
	root := t.TempDir()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := []byte(fmt.Sprintf("message %d\n", i))
			if _, err := Deliver(root, "shared/box", key(fmt.Sprintf("%016x", i/4), i%4), body); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	names := files(t, filepath.Join(root, "shared/box/new"))
	if len(names) != n {
		t.Fatalf("new/ holds %d files, want %d", len(names), n)
	}
	seen := map[string]bool{}
	for _, name := range names {
		b, _ := os.ReadFile(filepath.Join(root, "shared/box/new", name))
		seen[string(b)] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct bodies, want %d", len(seen), n)
	}
}

func TestDeliverRejectsBadInput(t *testing.T) {
	root := t.TempDir()
	for name, c := range map[string]struct {
		mailbox string
		k       Key
	}{
		"fail/absolute-mailbox": {"/etc/bob", key("aa", 0)},
		"fail/escaping-mailbox": {"../bob", key("aa", 0)},
		"fail/id-with-slash":    {"bob", key("a/b", 0)},
		"fail/id-with-colon":    {"bob", key("a:b", 0)},
		"fail/empty-id":         {"bob", key("", 0)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Deliver(root, c.mailbox, c.k, []byte("x")); err == nil {
				t.Error("Deliver succeeded")
			}
		})
	}
}

func TestStaleTmpFileReplaced(t *testing.T) {
	root := t.TempDir()
	k := key("cafe", 0)
	if err := makeMaildir(filepath.Join(root, "bob")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bob", "tmp", Name(k)), []byte("half a mess"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Deliver(root, "bob", k, []byte("whole\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(res.Path); string(b) != "whole\n" {
		t.Errorf("delivered %q", b)
	}
}

// TestPrefixAndBodyInOneFile checks the single writev of the prefix and
// the body (writeAll): the file holds exactly the prefix then the body,
// for an empty body, an empty prefix, and a body larger than a pipe's or
// a page cache's single copy.
func TestPrefixAndBodyInOneFile(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef\r\n"), 1<<16) // 1.1 MiB
	for i, c := range []struct{ prefix, body []byte }{
		{[]byte("Return-Path: <a@example.com>\r\n"), []byte("Subject: hi\r\n\r\nbody\r\n")},
		{[]byte("Return-Path: <>\r\nDelivered-To: b@example.com\r\n"), nil},
		{nil, []byte("no prefix\r\n")},
		{[]byte("Return-Path: <a@example.com>\r\n"), big},
	} {
		root := t.TempDir()
		res, err := DeliverWithPrefix(root, "example.com/bob", key(fmt.Sprintf("0123abc%d", i), 0), c.prefix, c.body)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		got, err := os.ReadFile(res.Path)
		want := append(append([]byte{}, c.prefix...), c.body...)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("case %d: file holds %d bytes (%v), want the %d of prefix and body", i, len(got), err, len(want))
		}
	}
}
