package queue

import (
	"sync"
	"time"
)

// freshMaxBytes bounds the bodies the fresh cache holds.
const freshMaxBytes = MaxBatchBytes

// freshCache holds the messages this process committed that no delivery
// has loaded yet, so that a message's first delivery does not read back
// from SQLite what the writer has just written there (that read was 10% of
// the server's CPU with Maildir delivery running). A message is immutable
// once committed — only its recipients' rows change — so the copy is the
// stored one; the recipients still come from the dispatcher's scan, and
// results are committed as before, so crash safety is untouched (the
// cache is memory only; after a restart every delivery reads the
// database). Take removes the entry: a message with recipients at several
// destinations, or delivered again after a deferral, is read as before.
// When the bodies reach freshMaxBytes (delivery behind ingest), entries
// older than freshMaxAge are dropped and, if that is not enough, new
// messages are left out: the oldest, kept, are delivered next. The scan
// drops a message it finds no route for. Remove drops its
// message; a message removed by another process between the scan and the
// delivery may still be delivered, as one removed during its delivery
// always could.
type freshCache struct {
	mu    sync.Mutex
	m     map[string]freshEntry
	bytes int
}

type freshEntry struct {
	msg   *Message
	rcpts int       // how many recipients the message has
	at    time.Time // when it was put
}

// freshMaxAge is how long an entry may wait for its delivery once the
// cache is full: a message no delivery takes (no route for its
// destination, removed by another process, a delivery far behind) must
// not keep the cache full for good.
const freshMaxAge = 30 * time.Second

// put remembers the committed messages of a batch.
func (c *freshCache) put(batch []*enqReq) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]freshEntry{}
	}
	now := time.Now()
	for _, r := range batch {
		body := r.msg.Body
		if body == nil {
			body = []byte{}
		}
		if c.bytes+len(body) > freshMaxBytes {
			c.expireLocked(now)
		}
		if c.bytes+len(body) > freshMaxBytes {
			// Full: delivery is behind ingest. The oldest entries are the
			// next to be delivered, so the newest are left out (read
			// from the database when their turn comes).
			break
		}
		c.m[r.id] = freshEntry{&Message{ID: r.id, ReceivedAt: fromMs(r.recv), Sender: r.msg.Sender, Meta: r.msg.Meta, Body: body}, len(r.msg.Recipients), now}
		c.bytes += len(body)
	}
}

// take returns and forgets message id (without its recipients), or
// nil, and how many recipients it has (which tells a first delivery
// whether it covers all of them: op.removeAll).
func (c *freshCache) take(id string) (*Message, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok {
		return nil, 0
	}
	c.dropLocked(id)
	return e.msg, e.rcpts
}

// expireLocked drops the entries older than freshMaxAge.
func (c *freshCache) expireLocked(now time.Time) {
	for id, e := range c.m {
		if now.Sub(e.at) > freshMaxAge {
			c.dropLocked(id)
		}
	}
}

// drop forgets message id.
func (c *freshCache) drop(id string) {
	c.mu.Lock()
	c.dropLocked(id)
	c.mu.Unlock()
}

func (c *freshCache) dropLocked(id string) {
	if e, ok := c.m[id]; ok {
		c.bytes -= len(e.msg.Body)
		delete(c.m, id)
	}
}
