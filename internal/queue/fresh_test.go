package queue

import (
	"bytes"
	"context"
	"testing"
)

// TestFreshCacheHoldsWhatWasCommitted: a committed message is in the
// cache as Get reads it back from the database (what a first delivery
// would otherwise read), once; Remove forgets it.
func TestFreshCacheHoldsWhatWasCommitted(t *testing.T) {
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	m := testMsg("a@example.test", "u@local.test")
	id := enqueueT(t, q, m)
	stored, err := q.get(context.Background(), id, true)
	if err != nil {
		t.Fatal(err)
	}
	got, rcpts := q.fresh.take(id)
	if got == nil {
		t.Fatal("a committed message is not in the cache")
	}
	if got.ID != stored.ID || !got.ReceivedAt.Equal(stored.ReceivedAt) || got.Sender != stored.Sender || got.Meta != stored.Meta || !bytes.Equal(got.Body, stored.Body) || len(got.Recipients) != 0 || rcpts != 1 {
		t.Errorf("cached %+v with %d recipients, stored %+v", got, rcpts, stored)
	}
	if m, _ := q.fresh.take(id); m != nil {
		t.Error("taken twice")
	}
	id2 := enqueueT(t, q, testMsg("a@example.test", "v@local.test"))
	if err := q.Remove(context.Background(), id2); err != nil {
		t.Fatal(err)
	}
	if m, _ := q.fresh.take(id2); m != nil {
		t.Error("a removed message is still in the cache")
	}
}

// TestFreshCacheBounded: when the bodies reach freshMaxBytes, the newest
// messages are left out and the oldest kept (delivered next); taking one
// makes room again.
func TestFreshCacheBounded(t *testing.T) {
	var c freshCache
	body := make([]byte, 1<<20)
	var ids []string
	for i := range 3 * freshMaxBytes / len(body) {
		id := string(rune('a'+i%26)) + string(rune('A'+i/26))
		ids = append(ids, id)
		c.put([]*enqReq{{id: id, msg: &Message{Body: body}}})
		if c.bytes > freshMaxBytes {
			t.Fatalf("after %d puts the cache holds %d bytes, more than %d", i+1, c.bytes, freshMaxBytes)
		}
	}
	if takeMsg(&c, ids[len(ids)-1]) != nil {
		t.Error("the newest entry was kept in a full cache")
	}
	if takeMsg(&c, ids[0]) == nil {
		t.Error("the oldest entry was not kept")
	}
	c.put([]*enqReq{{id: "later", msg: &Message{Body: body}}})
	if takeMsg(&c, "later") == nil {
		t.Error("no room after a take")
	}

	// Entries no delivery takes do not keep a full cache full.
	for id, e := range c.m {
		e.at = e.at.Add(-2 * freshMaxAge)
		c.m[id] = e
	}
	c.put([]*enqReq{{id: "after-expiry", msg: &Message{Body: body}}, {id: "and-another", msg: &Message{Body: body}}})
	if takeMsg(&c, "after-expiry") == nil || takeMsg(&c, "and-another") == nil {
		t.Error("entries older than freshMaxAge kept a full cache full")
	}
	if takeMsg(&c, ids[1]) != nil {
		t.Error("an entry older than freshMaxAge survived a put into a full cache")
	}
}

// takeMsg is c.take without the count of recipients.
func takeMsg(c *freshCache, id string) *Message {
	m, _ := c.take(id)
	return m
}
