package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hookSync replaces the sync hook for one test.
func hookSync(t *testing.T, fs func(dir string) error) {
	t.Helper()
	old := syncFS
	syncFS = fs
	t.Cleanup(func() { syncFS = old })
}

func namesIn(t *testing.T, dir string) map[string]bool {
	t.Helper()
	m := map[string]bool{}
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range es {
		m[e.Name()] = true
	}
	return m
}

func body(i int) []byte { return []byte(fmt.Sprintf("Subject: %d\n\nmessage %d\n", i, i)) }

// TestBatchSharesSyncs: 64 concurrent deliveries into one Maildir share a
// few syncs of the file system, none is in new/ before a sync of the file
// system that started after it was written, and none returns before a
// sync that started after its rename.
func TestBatchSharesSyncs(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "bob")
	if err := makeMaildir(dir); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	dataSynced := map[string]bool{}   // in tmp/ when a syncfs started
	renameSynced := map[string]bool{} // in new/ when a syncfs started
	fsSyncs := 0
	var violations []string
	hookSync(t, func(d string) error {
		mu.Lock()
		defer mu.Unlock()
		fsSyncs++
		for n := range namesIn(t, filepath.Join(dir, "new")) {
			if !dataSynced[n] {
				violations = append(violations, n+" in new/ before a sync of its data")
			}
		}
		inTmp := namesIn(t, filepath.Join(dir, "tmp"))
		inNew := namesIn(t, filepath.Join(dir, "new"))
		time.Sleep(20 * time.Millisecond) // the others gather into the next round
		err := syncfs(d)
		for n := range inTmp {
			dataSynced[n] = true
		}
		for n := range inNew {
			renameSynced[n] = true
		}
		return err
	})

	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			k := Key{MsgID: fmt.Sprintf("m%03d", i), Received: received, Fresh: true}
			res, err := Deliver(root, "bob", k, body(i))
			if err == nil {
				mu.Lock()
				if !renameSynced[Name(k)] {
					err = fmt.Errorf("%s returned before a sync after its rename", Name(k))
				}
				mu.Unlock()
				if b, rerr := os.ReadFile(res.Path); rerr != nil || string(b) != string(body(i)) {
					err = fmt.Errorf("%s holds %q, %v", res.Path, b, rerr)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(violations) > 0 {
		t.Errorf("%d violations, first: %s", len(violations), violations[0])
	}
	if got := len(namesIn(t, filepath.Join(dir, "new"))); got != n {
		t.Errorf("new/ holds %d files, want %d", got, n)
	}
	if left := namesIn(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %v", left)
	}
	// Unbatched, it would be two per delivery.
	if fsSyncs > n/4 {
		t.Errorf("%d deliveries took %d syncs of the file system; want at most %d (batched)", n, fsSyncs, n/4)
	}
	t.Logf("%d deliveries: %d syncfs", n, fsSyncs)
}

func safeSyncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// TestBatchSyncFailureDeliversNothing: when the file system's sync fails,
// every delivery of the batch fails, nothing is in new/ or left in tmp/,
// and the queue's next attempt delivers each message once.
func TestBatchSyncFailureDeliversNothing(t *testing.T) {
	root := t.TempDir()
	fail := true
	var mu sync.Mutex
	hookSync(t, func(d string) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return fmt.Errorf("syncfs: %w", syscall.EIO)
		}
		return syncfs(d)
	})
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Deliver(root, "bob", Key{MsgID: fmt.Sprintf("m%d", i), Received: received, Fresh: true}, body(i))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("delivery %d: %v, want the sync's EIO", i, err)
		}
	}
	dir := filepath.Join(root, "bob")
	if got := namesIn(t, filepath.Join(dir, "new")); len(got) != 0 {
		t.Errorf("new/ holds %v after a failed sync", got)
	}
	if got := namesIn(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %v after a failed sync", got)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	for i := range n {
		res, err := Deliver(root, "bob", Key{MsgID: fmt.Sprintf("m%d", i), Received: received}, body(i))
		if err != nil || res.Duplicate {
			t.Fatalf("retry %d: %+v, %v", i, res, err)
		}
	}
	if got := namesIn(t, filepath.Join(dir, "new")); len(got) != n {
		t.Errorf("new/ holds %d after the retries, want %d", len(got), n)
	}
}

// TestRecoveryAfterKillAtEachStep copies the Maildir at each step of a
// batch's commit — what a kill -9 there would leave on disk — and
// recovers each copy as the queue does after a restart (every delivery
// again, MaybeDelivered): each message ends up in the Maildir exactly once
// and whole, and tmp/ empty. A reader moving messages to cur/ before the
// recovery is covered too.
func TestRecoveryAfterKillAtEachStep(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "bob")
	snaps := t.TempDir()
	var mu sync.Mutex
	var steps []string
	snap := func(step string) {
		to := filepath.Join(snaps, fmt.Sprintf("%02d-%s", len(steps), step))
		if err := os.CopyFS(to, os.DirFS(dir)); err != nil {
			t.Error(err)
		}
		steps = append(steps, to)
	}
	hookSync(t, func(d string) error {
		mu.Lock()
		defer mu.Unlock()
		snap("before-syncfs")
		err := syncfs(d)
		snap("after-syncfs")
		return err
	})
	const n = 6
	keys := make([]Key, n)
	var wg sync.WaitGroup
	for i := range n {
		keys[i] = Key{MsgID: fmt.Sprintf("k%d", i), Received: received, Fresh: true}
		wg.Go(func() {
			if _, err := Deliver(root, "bob", keys[i], body(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	hookSync(t, syncfs)
	if len(steps) < 4 {
		t.Fatalf("%d snapshots, want those of two rounds at least (written, then renamed)", len(steps))
	}
	for _, readerMoved := range []bool{false, true} {
		for _, s := range steps {
			name := filepath.Base(s)
			if readerMoved {
				name += "+reader"
			}
			t.Run(name, func(t *testing.T) {
				r := t.TempDir()
				mbox := filepath.Join(r, "bob")
				if err := os.CopyFS(mbox, os.DirFS(s)); err != nil {
					t.Fatal(err)
				}
				if readerMoved { // a reader saw new/ and moved it all to cur/ with flags
					for n := range namesIn(t, filepath.Join(mbox, "new")) {
						rename(t, filepath.Join(mbox, "new", n), filepath.Join(mbox, "cur", n+":2,S"))
					}
				}
				for i, k := range keys {
					k.Fresh = false // MaybeDelivered: the queue's recovery
					if _, err := Deliver(r, "bob", k, body(i)); err != nil {
						t.Fatal(err)
					}
				}
				count := map[string]int{}
				for _, sub := range []string{"new", "cur"} {
					for f := range namesIn(t, filepath.Join(mbox, sub)) {
						key, _, _ := strings.Cut(f, ":")
						count[key]++
						b, _ := os.ReadFile(filepath.Join(mbox, sub, f))
						var i int
						fmt.Sscanf(strings.SplitN(key, ".", 3)[1], "k%d_0", &i)
						if string(b) != string(body(i)) {
							t.Errorf("%s/%s holds %q", sub, f, b)
						}
					}
				}
				for _, k := range keys {
					if c := count[Name(k)]; c != 1 {
						t.Errorf("%s delivered %d times", Name(k), c)
					}
				}
				if left := namesIn(t, filepath.Join(mbox, "tmp")); len(left) != 0 {
					t.Errorf("tmp/ holds %v", left)
				}
			})
		}
	}
}

// hookRounds sets roundFull and roundInterval for one test.
func hookRounds(t *testing.T, full int, interval time.Duration) {
	t.Helper()
	oldFull, oldInterval := roundFull, roundInterval
	roundFull, roundInterval = full, interval
	t.Cleanup(func() { roundFull, roundInterval = oldFull, oldInterval })
}

// TestRoundsGatherUnderStream: deliveries arriving one at a time, a
// millisecond apart, are made durable by rounds that start at least
// roundInterval apart, each carrying several (run back to back, each
// round carried one or two files and paid a syncfs of its own), and
// every delivery is in new/ once, tmp/ empty.
func TestRoundsGatherUnderStream(t *testing.T) {
	const interval = 20 * time.Millisecond
	hookRounds(t, 1000, interval)
	root := t.TempDir()
	var mu sync.Mutex
	var syncs []time.Time // when each sync's round began
	hookSync(t, func(d string) error {
		durable.mu.Lock()
		began := durable.began
		durable.mu.Unlock()
		mu.Lock()
		syncs = append(syncs, began)
		mu.Unlock()
		return syncfs(d)
	})
	const n = 60
	var wg sync.WaitGroup
	errs := make([]error, n)
	began := time.Now()
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Deliver(root, "bob", Key{MsgID: fmt.Sprintf("s%03d", i), Received: received, Fresh: true}, body(i))
		})
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	elapsed := time.Since(began)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "bob")
	if got := len(namesIn(t, filepath.Join(dir, "new"))); got != n {
		t.Errorf("new/ holds %d files, want %d", got, n)
	}
	if left := namesIn(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %v", left)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(syncs); i++ {
		if gap := syncs[i].Sub(syncs[i-1]); gap < interval {
			t.Errorf("round %d began %v after the previous one; want rounds %v apart", i, gap, interval)
		}
	}
	if max := int(elapsed/interval) + 2; len(syncs) > max {
		t.Errorf("%d deliveries in %v took %d syncs; want at most %d", n, elapsed, len(syncs), max)
	}
	t.Logf("%d deliveries over %v: %d syncs", n, elapsed.Round(time.Millisecond), len(syncs))
}

// TestRoundStartsWhenFull: with an hour's interval, a round starts as
// soon as roundFull deliveries wait for it, so a wave of roundFull
// concurrent deliveries returns at once, both rounds of it.
func TestRoundStartsWhenFull(t *testing.T) {
	const full = 4
	hookRounds(t, full, time.Hour)
	root := t.TempDir()
	syncs := 0
	var mu sync.Mutex
	hookSync(t, func(d string) error {
		mu.Lock()
		syncs++
		mu.Unlock()
		return syncfs(d)
	})
	for wave := range 3 {
		done := make(chan error, full)
		for i := range full {
			go func() {
				_, err := Deliver(root, "bob", Key{MsgID: fmt.Sprintf("w%d-%d", wave, i), Received: received, Fresh: true}, body(i))
				done <- err
			}()
		}
		timeout := time.After(30 * time.Second)
		for range full {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-timeout:
				// Let the held round go, so the other tests can run.
				durable.mu.Lock()
				if durable.enough != nil {
					close(durable.enough)
					durable.enough = nil
				}
				durable.mu.Unlock()
				t.Fatalf("wave %d: %d deliveries still held after 30 s: a full round waited for the interval", wave, full)
			}
		}
	}
	if got := len(namesIn(t, filepath.Join(root, "bob", "new"))); got != 3*full {
		t.Errorf("new/ holds %d files, want %d", got, 3*full)
	}
	mu.Lock()
	defer mu.Unlock()
	if syncs > 3*2+1 {
		t.Errorf("3 waves of %d took %d syncs; want about 2 a wave", full, syncs)
	}
}
