package queue

import "sync"

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
// When the bodies reach freshMaxBytes (delivery behind ingest), new
// messages are left out: the oldest, kept, are delivered next. Remove drops its
// message; a message removed by another process between the scan and the
// delivery may still be delivered, as one removed during its delivery
// always could.
type freshCache struct {
	mu    sync.Mutex
	m     map[string]*Message
	bytes int
}

// put remembers the committed messages of a batch.
func (c *freshCache) put(batch []*enqReq) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*Message{}
	}
	for _, r := range batch {
		body := r.msg.Body
		if body == nil {
			body = []byte{}
		}
		if c.bytes+len(body) > freshMaxBytes {
			// Full: delivery is behind ingest. The oldest entries are the
			// next to be delivered, so the newest are left out (read
			// from the database when their turn comes).
			break
		}
		c.m[r.id] = &Message{ID: r.id, ReceivedAt: fromMs(r.recv), Sender: r.msg.Sender, Meta: r.msg.Meta, Body: body}
		c.bytes += len(body)
	}
}

// take returns and forgets message id, or nil.
func (c *freshCache) take(id string) *Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.m[id]
	if m != nil {
		c.dropLocked(id)
	}
	return m
}

// drop forgets message id.
func (c *freshCache) drop(id string) {
	c.mu.Lock()
	c.dropLocked(id)
	c.mu.Unlock()
}

func (c *freshCache) dropLocked(id string) {
	if m, ok := c.m[id]; ok {
		c.bytes -= len(m.Body)
		delete(c.m, id)
	}
}
