package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"certrelay/internal/safeio"
)

// Durability in batches. A delivery writes its file under tmp/ without an
// fsync of its own and waits for the next batch; one goroutine at a time
// commits a batch:
//
//  1. syncfs(2) of each file system the batch's mailboxes are on: every
//     file of the batch is on disk, still under tmp/;
//  2. each file renamed into new/;
//  3. an fsync of each new/ directory of the batch: the renames are on disk.
//
// Only then do the batch's Deliver calls return (and the queue records the
// deliveries). Deliveries that arrive while a batch is committed form the
// next one, so under load a batch holds about as many messages as there
// are delivery workers, and costs two syncs instead of two per message.
//
// What a kill leaves, at each point: before 1 or 2, files under tmp/ only
// — the queue still holds every message as undelivered, and the repeated
// delivery replaces the leftover (create) and goes through a batch again;
// between 2 and 3 or after 3, files in new/ that the queue has not marked
// delivered — the repeated delivery is marked MaybeDelivered, finds its
// file in new/ (or in cur/ if a reader moved it) and writes nothing. A
// file reaches new/ only after its bytes are on disk, so even a power cut
// cannot leave a truncated message there for the repeated delivery to
// take for a complete one; syncfs(2) also reports a write-back error of
// any file of the batch (Linux 5.8 and later), which then fails the whole
// batch, nothing renamed.

// pending is one delivery waiting for its batch.
type pending struct {
	dir  string // the Maildir
	name string
	err  error
}

// batcher commits batches one at a time (group commit).
type batcher struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*pending
	running bool
	started uint64 // batches started
	done    uint64 // the last batch committed
}

var durable = func() *batcher {
	b := &batcher{}
	b.cond = sync.NewCond(&b.mu)
	return b
}()

// Hooks for tests: the sync of a file system (given a directory on it)
// and of a directory.
var (
	syncFS  = syncfs
	syncDir = safeio.SyncDir
)

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
// successful fsync of new/: the queue tries again and finds it).
func (b *batcher) commit(p *pending) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queue = append(b.queue, p)
	need := b.started + 1 // the first batch to start after p joined the queue
	for b.done < need {
		if b.running {
			b.cond.Wait()
			continue
		}
		b.running = true
		b.started++
		gen, batch := b.started, b.queue
		b.queue = nil
		b.mu.Unlock()
		commitBatch(batch)
		b.mu.Lock()
		b.running, b.done = false, gen
		b.cond.Broadcast()
	}
	return p.err
}

// commitBatch makes a batch durable (steps 1–3 above) and sets each
// pending's err.
func commitBatch(batch []*pending) {
	// 1. Every file system once.
	type fsOf struct {
		dev uint64
		err error
	}
	synced := map[uint64]error{}
	devs := map[string]fsOf{}
	for _, p := range batch {
		d, ok := devs[p.dir]
		if !ok {
			d.dev, d.err = device(p.dir)
			devs[p.dir] = d
		}
		dev, err := d.dev, d.err
		if err == nil {
			var done bool
			if err, done = synced[dev]; !done {
				err = syncFS(filepath.Join(p.dir, "tmp"))
				synced[dev] = err
			}
		}
		if err != nil {
			p.err = fmt.Errorf("maildir deliver to %s: %w", p.dir, err)
		}
	}
	// 2. Into new/.
	dirs := map[string][]*pending{}
	for _, p := range batch {
		tmp := filepath.Join(p.dir, "tmp", p.name)
		if p.err == nil {
			if err := os.Rename(tmp, filepath.Join(p.dir, "new", p.name)); err != nil {
				p.err = fmt.Errorf("maildir deliver to %s: %w", p.dir, err)
			} else {
				dirs[p.dir] = append(dirs[p.dir], p)
				continue
			}
		}
		os.Remove(tmp)
	}
	// 3. The renames.
	for dir, ps := range dirs {
		if err := syncDir(filepath.Join(dir, "new")); err != nil {
			for _, p := range ps {
				p.err = fmt.Errorf("maildir deliver to %s: %w", dir, err)
			}
			continue
		}
		announce(filepath.Clean(dir)) // readers in IDLE (folder.go)
	}
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
