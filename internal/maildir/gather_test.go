package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Adversarial tests of the gathering rounds (issue 19), with the real
// roundFull and roundInterval.

// deliverWave runs n concurrent deliveries, each into its own mailbox
// (mailbox(i)), and returns their errors; it fails the test if any is
// still held after 30 s (a round that never starts).
func deliverWave(t *testing.T, root, tag string, n int, mailbox func(i int) string) []error {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Deliver(root, mailbox(i), Key{MsgID: fmt.Sprintf("%s%03d", tag, i), Received: received, Fresh: true}, body(i))
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: deliveries still held after 30 s", tag)
	}
	return errs
}

// TestWavesAroundRoundFull: waves of roundFull-1, roundFull, roundFull+1
// and 2·roundFull+1 concurrent deliveries, and the same after a pause of
// several intervals (a burst on an idle batcher): every delivery returns,
// each message is in its new/ exactly once with its content, and tmp/ is
// empty.
func TestWavesAroundRoundFull(t *testing.T) {
	root := t.TempDir()
	for pass := range 2 {
		for _, n := range []int{roundFull - 1, roundFull, roundFull + 1, 2*roundFull + 1} {
			tag := fmt.Sprintf("p%dn%d-", pass, n)
			errs := deliverWave(t, root, tag, n, func(i int) string { return fmt.Sprintf("u%02d", i) })
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("%s: %v", tag, err)
			}
			for i := range n {
				dir := filepath.Join(root, fmt.Sprintf("u%02d", i))
				name := Name(Key{MsgID: fmt.Sprintf("%s%03d", tag, i), Received: received})
				b, err := os.ReadFile(filepath.Join(dir, "new", name))
				if err != nil || string(b) != string(body(i)) {
					t.Errorf("%s: %s holds %q, %v", tag, name, b, err)
				}
				if left := namesIn(t, filepath.Join(dir, "tmp")); len(left) != 0 {
					t.Errorf("%s: %s/tmp holds %v", tag, dir, left)
				}
			}
			if pass == 1 {
				time.Sleep(4 * roundInterval) // the next wave finds the batcher idle
			}
		}
	}
}

// TestRenameFailureFailsOnlyItsDelivery: in one round with the others, a
// delivery whose rename fails — a directory where its file would go —
// fails alone, with an error naming its mailbox; its file is removed
// from tmp/, the directory is left as it was, and every other delivery
// of the round is in new/, that of a mailbox whose new/ was removed
// included (new/ made again).
func TestRenameFailureFailsOnlyItsDelivery(t *testing.T) {
	root := t.TempDir()
	n := roundFull + 2
	mailbox := func(i int) string { return fmt.Sprintf("r%02d", i) }
	for i := range n {
		if err := makeMaildir(filepath.Join(root, mailbox(i))); err != nil {
			t.Fatal(err)
		}
	}
	const noNew, dirThere = 3, 7
	if err := os.Remove(filepath.Join(root, mailbox(noNew), "new")); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(root, mailbox(dirThere), "new", Name(Key{MsgID: fmt.Sprintf("rn%03d", dirThere), Received: received}))
	if err := os.Mkdir(blocker, 0o700); err != nil {
		t.Fatal(err)
	}
	errs := deliverWave(t, root, "rn", n, mailbox)
	for i, err := range errs {
		dir := filepath.Join(root, mailbox(i))
		switch i {
		case dirThere:
			if err == nil || !strings.Contains(err.Error(), dir) {
				t.Errorf("delivery %d: %v; want an error naming %s", i, err, dir)
			}
		default:
			if err != nil {
				t.Errorf("delivery %d: %v", i, err)
			} else if got := len(namesIn(t, filepath.Join(dir, "new"))); got != 1 {
				t.Errorf("delivery %d: new/ holds %d files, want 1", i, got)
			}
		}
		if left := namesIn(t, filepath.Join(dir, "tmp")); len(left) != 0 {
			t.Errorf("delivery %d: tmp/ holds %v", i, left)
		}
	}
	if fi, err := os.Stat(blocker); err != nil || !fi.IsDir() {
		t.Errorf("the directory in new/: %v, %v; want it left alone", fi, err)
	}
}

// TestSlowSyncDoesNotLoseGatheredDeliveries: while one round's sync is
// slow (a loaded disk), many more deliveries than roundFull arrive one at
// a time; each returns only after a sync that began after its rename,
// and each is in new/ once.
func TestSlowSyncDoesNotLoseGatheredDeliveries(t *testing.T) {
	root := t.TempDir()
	var mu sync.Mutex
	syncSeq := 0
	renameSeen := map[string]int{} // name → the first sync that found it in new/
	hookSync(t, func(d string) error {
		mu.Lock()
		syncSeq++
		seq := syncSeq
		for n := range namesIn(t, filepath.Join(root, "slow", "new")) {
			if _, ok := renameSeen[n]; !ok {
				renameSeen[n] = seq
			}
		}
		mu.Unlock()
		if seq%3 == 1 {
			time.Sleep(30 * time.Millisecond)
		}
		return syncfs(d)
	})
	const n = 3*16 + 5
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k := Key{MsgID: fmt.Sprintf("sl%03d", i), Received: received, Fresh: true}
			_, err := Deliver(root, "slow", k, body(i))
			if err == nil {
				mu.Lock()
				if _, ok := renameSeen[Name(k)]; !ok {
					err = fmt.Errorf("%s returned before a sync after its rename", Name(k))
				}
				mu.Unlock()
			}
			errs[i] = err
		})
		time.Sleep(500 * time.Microsecond)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := len(namesIn(t, filepath.Join(root, "slow", "new"))); got != n {
		t.Errorf("new/ holds %d files, want %d", got, n)
	}
	if left := namesIn(t, filepath.Join(root, "slow", "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %v", left)
	}
}

// TestMissingSubdirectoryIsRecreated: a Maildir whose new/ or cur/ was
// removed (by hand, or a cleanup gone wrong) gets it back at the next
// delivery, which succeeds — first attempt or repeated — rather than
// failing at every retry until the message expires and bounces.
func TestMissingSubdirectoryIsRecreated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sub   string
		fresh bool
	}{
		{"ok/new-first-attempt", "new", true},
		{"ok/new-repeated-attempt", "new", false},
		{"ok/cur-repeated-attempt", "cur", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "gone")
			if err := makeMaildir(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, tc.sub)); err != nil {
				t.Fatal(err)
			}
			k := Key{MsgID: "gone1", Received: received, Fresh: tc.fresh}
			res, err := Deliver(root, "gone", k, body(1))
			if err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if b, err := os.ReadFile(res.Path); err != nil || string(b) != string(body(1)) || res.Duplicate {
				t.Errorf("%+v holds %q, %v", res, b, err)
			}
			for _, sub := range []string{"tmp", "new"} {
				if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
					t.Errorf("%s/: %v", sub, err)
				}
			}
		})
	}
}
