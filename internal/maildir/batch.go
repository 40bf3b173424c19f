package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Durability in batches. A delivery writes its file under tmp/ without an
// fsync of its own and joins the next round; one goroutine at a time
// runs a round:
//
//  1. syncfs(2) of each file system the round's mailboxes are on. The
//     files written since the last round are then on disk, still under
//     tmp/; and the renames into new/ of the last round are on disk, so
//     those deliveries are done and their Deliver calls return (and the
//     queue records them delivered).
//  2. Each file written since the last round is renamed into new/; it
//     waits for the next round's sync, which the goroutine runs at once
//     if no other delivery starts one.
//
// Deliveries that arrive while a round runs form the next one, so under
// load a round holds about half the delivery workers' messages and costs
// one sync of the file system, in place of an fsync of each file and of
// new/ per message.
//
// Under a steady stream below the full rate, rounds run back to back
// would each carry one or two files: a syncfs(2) costs 100–150 µs of
// CPU whatever it carries, which then made the largest part of a
// delivery's cost at the STARTTLS ingest rate (about 1,200 messages/s;
// docs/performance/ingest-19-third.md). So a round starts at
// once only when roundFull deliveries wait for it (written, or renamed
// and waiting for the sync) or roundInterval has passed since the
// previous round began; otherwise it gathers for whichever comes first.
// A delivery spans two rounds: the first starts at once after a pause
// (no round in the last roundInterval), and each is held at most
// roundInterval.
//
// What a kill leaves, at each point: files under tmp/ not yet renamed —
// the queue still holds those messages as undelivered, and the repeated
// delivery replaces the leftover (create) and goes through a round again;
// files in new/ that the queue has not recorded as delivered (renamed,
// before or after the sync that made the rename durable) — the repeated
// delivery is MaybeDelivered, finds its file in new/ (or in cur/ if a
// reader moved it) and writes nothing. A file reaches new/ only after a
// sync that started after it was written, so even a power cut cannot
// leave a truncated message in new/ for the repeated delivery to take for
// a complete one. syncfs(2) also reports a write-back error of any file
// on the file system (Linux 5.8 and later): the round's deliveries then
// fail (files not yet renamed are removed; renamed ones are found by the
// queue's next attempt).
//
// syncfs(2) writes back everything dirty on the file system, not only
// the mailboxes: other writers to the data directory's file system share
// its cost (the queue's SQLite fsyncs its own writes anyway).

// pending is one delivery waiting for its rounds.
type pending struct {
	dir  string // the Maildir
	name string
	done bool // durable in new/, or failed (err)
	err  error
}

// batcher runs rounds one at a time (group commit).
type batcher struct {
	mu      sync.Mutex
	cond    *sync.Cond
	written []*pending // in tmp/, waiting for a round
	renamed []*pending // in new/, waiting for the next round's sync
	running bool
	// began is when the last round started; enough, while a round
	// gathers, is closed once roundFull deliveries wait for it.
	began  time.Time
	enough chan struct{}
}

// A round starts at once when roundFull deliveries wait for it (half
// the queue's 32 delivery workers: about what a round holds at the full
// rate, so the full rate is not held back), or roundInterval after the
// previous round began. 5 ms bounds the syncs to 200 a second under a
// stream, so at 1,250 messages a second a sync is shared by about 7
// new files and 7 renames instead of one or two, and it adds at most
// 10 ms to a delivery: no reader can tell, and at that rate the queue's
// 32 workers are far from all taken. Variables for tests.
var (
	roundFull     = 16
	roundInterval = 5 * time.Millisecond
)

var durable = func() *batcher {
	b := &batcher{}
	b.cond = sync.NewCond(&b.mu)
	return b
}()

// syncFS makes everything written on the file system of dir durable; a
// variable for tests.
var syncFS = syncfs

func syncfs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	defer d.Close()
	for {
		err = unix.Syncfs(int(d.Fd()))
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("syncfs of the file system of %s: %w", dir, err)
	}
	return nil
}

// commit returns once p's file is durable in new/ (nil) or its delivery
// failed (the file is then removed from tmp/, or is in new/ without a
// completed sync: the queue tries again and finds it).
func (b *batcher) commit(p *pending) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.written = append(b.written, p)
	if b.enough != nil && len(b.written)+len(b.renamed) >= roundFull {
		close(b.enough)
		b.enough = nil
	}
	for !p.done {
		if b.running {
			b.cond.Wait()
			continue
		}
		b.running = true
		b.gather()
		b.began = time.Now()
		written, renamed := b.written, b.renamed
		b.written, b.renamed = nil, nil
		b.mu.Unlock()
		next, finished := round(written, renamed)
		b.mu.Lock()
		// done is set under b.mu, where the waiting deliveries read it
		// (round runs unlocked; its writes of err happen before this).
		for _, f := range finished {
			f.done = true
		}
		b.renamed = append(b.renamed, next...)
		b.running = false
		b.cond.Broadcast()
	}
	return p.err
}

// gather waits, with b.mu held on entry and on return, until roundFull
// deliveries wait for the round or roundInterval has passed since the
// last round began (see above).
func (b *batcher) gather() {
	wait := roundInterval - time.Since(b.began)
	if wait <= 0 || len(b.written)+len(b.renamed) >= roundFull {
		return
	}
	enough := make(chan struct{})
	b.enough = enough
	b.mu.Unlock()
	t := time.NewTimer(wait)
	select {
	case <-t.C:
	case <-enough:
	}
	t.Stop()
	b.mu.Lock()
	b.enough = nil
}

// round runs steps 1 and 2 above: it returns those of written now in
// new/, and the deliveries it finished — renamed (with the sync's error)
// and those of written that failed — for the caller to mark done under
// the batcher's lock.
func round(written, renamed []*pending) (next, finished []*pending) {
	type fsOf struct {
		dev uint64
		err error
	}
	synced := map[uint64]error{}
	devs := map[string]fsOf{}
	syncOf := func(p *pending) {
		d, ok := devs[p.dir]
		if !ok {
			d.dev, d.err = device(p.dir)
			devs[p.dir] = d
		}
		err := d.err
		if err == nil {
			var ok bool
			if err, ok = synced[d.dev]; !ok {
				err = syncFS(filepath.Join(p.dir, "tmp"))
				synced[d.dev] = err
			}
		}
		if err != nil {
			p.err = fmt.Errorf("maildir deliver to %s: %w", p.dir, err)
		}
	}
	// 1. Every file system once.
	for _, p := range written {
		syncOf(p)
	}
	announced := map[string]bool{}
	for _, p := range renamed {
		syncOf(p)
		finished = append(finished, p)
		if p.err == nil && !announced[p.dir] {
			announced[p.dir] = true
			announce(filepath.Clean(p.dir)) // readers in IDLE (folder.go)
		}
	}
	// 2. Into new/.
	for _, p := range written {
		tmp := filepath.Join(p.dir, "tmp", p.name)
		if p.err == nil {
			err := renameNoStat(tmp, filepath.Join(p.dir, "new", p.name))
			if errors.Is(err, fs.ErrNotExist) {
				// new/ removed (by hand) since the Maildir was
				// made: made again, or every retry would fail
				// until the message expires. Its next round's
				// sync makes the rename durable as any other.
				if makeMaildir(p.dir) == nil {
					err = renameNoStat(tmp, filepath.Join(p.dir, "new", p.name))
				}
			}
			if err == nil {
				next = append(next, p)
				continue
			}
			p.err = fmt.Errorf("maildir deliver to %s: %w", p.dir, err)
		}
		os.Remove(tmp)
		finished = append(finished, p)
	}
	return next, finished
}

// renameNoStat is rename(2) itself: os.Rename first stats the new name (to
// refuse a directory there, which rename(2) refuses anyway), a lookup in
// new/ that was a third of the rename's cost.
func renameNoStat(from, to string) error {
	if err := unix.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// device returns the file system (st_dev) of the Maildir dir.
func device(dir string) (uint64, error) {
	fi, err := os.Stat(filepath.Join(dir, "tmp"))
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("no device number for " + dir)
	}
	return uint64(st.Dev), nil
}
