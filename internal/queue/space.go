package queue

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// MinFreeSpace is the room the queue keeps free on its file system: below
// it (plus twice the size a client declares) CheckSpace refuses a new
// message, so the queue keeps the space SQLite needs to record deliveries
// and deletions.
const MinFreeSpace = 256 << 10

// spaceCheckInterval is how long a reading of the free space is reused: a
// busy server makes one statfs(2) per interval, not one per message.
const spaceCheckInterval = 100 * time.Millisecond

// freeSpace remembers the queue file system's free space.
type freeSpace struct {
	mu   sync.Mutex
	at   time.Time
	free int64
	ok   bool
}

func (c *freeSpace) get(dir string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < spaceCheckInterval {
		return c.free, c.ok
	}
	var fs syscall.Statfs_t
	c.at, c.ok = time.Now(), syscall.Statfs(dir, &fs) == nil
	c.free = int64(fs.Bavail) * int64(fs.Bsize)
	return c.free, c.ok
}

// CheckSpace reports whether the queue has room for a message of size
// bytes, keeping MinFreeSpace free. It answers from a reading at most
// 100 ms old, and nil when the free space cannot be read (the write then
// decides). Safe for concurrent use.
func (q *Queue) CheckSpace(size int64) error {
	free, ok := q.space.get(q.dir)
	if !ok {
		return nil
	}
	if need := MinFreeSpace + 2*size; free < need {
		return fmt.Errorf("%w: the queue's file system has %d bytes free, under the %d bytes it keeps", ErrStorage, free, need)
	}
	return nil
}
