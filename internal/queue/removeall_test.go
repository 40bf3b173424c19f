package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Adversarial tests of op.removeAll (issue 19): a first attempt that
// delivered every recipient removes its message without writing rows.

// gate is a Deliverer that blocks every delivery until opened, and
// records which recipients it delivered.
type gate struct {
	started chan string // a message ID per delivery begun
	open    chan struct{}
	mu      sync.Mutex
	got     map[string]int // "msg/idx" → deliveries
}

func newGate() *gate {
	return &gate{started: make(chan string, 64), open: make(chan struct{}), got: map[string]int{}}
}

func (g *gate) Deliver(_ context.Context, d Delivery) []Outcome {
	g.started <- d.MsgID
	<-g.open
	var out []Outcome
	g.mu.Lock()
	for _, r := range d.Recipients {
		g.got[fmt.Sprintf("%s/%d", d.MsgID, r.Idx)]++
		out = append(out, Outcome{Idx: r.Idx})
	}
	g.mu.Unlock()
	return out
}

func (g *gate) count() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := make(map[string]int, len(g.got))
	for k, v := range g.got {
		m[k] = v
	}
	return m
}

// logBuf collects the queue's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFirstDeliveryRacesOperator: an operator removes a message, or
// retries it, from another process (OpenAdmin, as the CLI does) or
// through the server's own handle, while its first delivery — one that
// delivers every recipient, so its commit takes the removeAll path — is
// in flight. The removed message must not come back (no row written for
// it, nothing listed, not delivered again), the retried one must go once
// delivered, each recipient delivered exactly once, and no queue write
// may fail.
func TestFirstDeliveryRacesOperator(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action func(t *testing.T, q, admin *Queue, id string)
	}{
		{"ok/remove-from-another-process", func(t *testing.T, _, admin *Queue, id string) {
			if err := admin.Remove(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}},
		{"ok/remove-through-the-server", func(t *testing.T, q, _ *Queue, id string) {
			if err := q.Remove(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}},
		{"ok/retry-from-another-process", func(t *testing.T, _, admin *Queue, id string) {
			if _, err := admin.Retry(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			logs := &logBuf{}
			q := openT(t, dir, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			g := newGate()
			q.Handle(Local, g)
			b := &bouncer{}
			q.SetBouncer(b)
			runT(t, q)
			admin, err := OpenAdmin(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			id := enqueueT(t, q, testMsg("a@example.com", "x@local.test", "y@local.test", "z@local.test"))
			select {
			case got := <-g.started:
				if got != id {
					t.Fatalf("delivery of %s, want %s", got, id)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no delivery began")
			}
			tc.action(t, q, admin, id)
			close(g.open)
			waitFor(t, "the message gone", gone(t, q, id))
			// Past a scan or two: nothing comes back.
			other := enqueueT(t, q, testMsg("a@example.com", "w@local.test"))
			waitFor(t, "a later message delivered and gone", gone(t, q, other))
			time.Sleep(300 * time.Millisecond)
			if n, err := admin.Count(context.Background()); err != nil || n.Messages != 0 {
				t.Errorf("count %+v, %v: want an empty queue", n, err)
			}
			if _, err := admin.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after the race: %v, want ErrNotFound", err)
			}
			for k, n := range g.count() {
				if n != 1 {
					t.Errorf("recipient %s delivered %d times", k, n)
				}
			}
			if got := len(g.count()); got != 4 {
				t.Errorf("%d recipients delivered, want 4", got)
			}
			if s := q.Stats(); s.Delivered != 4 || s.Failed != 0 {
				t.Errorf("stats %+v, want 4 delivered", s)
			}
			if len(b.Bounces()) != 0 {
				t.Errorf("bounces %+v", b.Bounces())
			}
			if l := logs.String(); strings.Contains(l, "level=ERROR") {
				t.Errorf("queue errors logged:\n%s", l)
			}
		})
	}
}

// TestFirstDeliveryManyAndDuplicateRecipients: a message with many
// recipients, the same address several times among them, delivered at
// once: each recipient (by index) is delivered exactly once and the
// message goes, whether the scan handed them out in one job (removeAll)
// or several.
func TestFirstDeliveryManyAndDuplicateRecipients(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	var mu sync.Mutex
	got := map[int]int{}
	q.Handle(Local, &recorder{fn: func(_ context.Context, r Recipient, _ int) error {
		mu.Lock()
		got[r.Idx]++
		mu.Unlock()
		return nil
	}})
	runT(t, q)
	var rcpts []string
	for i := range 300 {
		rcpts = append(rcpts, fmt.Sprintf("u%d@local.test", i%7))
	}
	id := enqueueT(t, q, testMsg("a@example.com", rcpts...))
	waitFor(t, "the message removed", gone(t, q, id))
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 300 {
		t.Errorf("%d recipients delivered, want 300", len(got))
	}
	for idx, n := range got {
		if n != 1 {
			t.Errorf("recipient %d delivered %d times", idx, n)
		}
	}
	if s := q.Stats(); s.Delivered != 300 {
		t.Errorf("stats %+v, want 300 delivered", s)
	}
}

// TestFirstDeliveryOneFailsOthersDelivered: in a first attempt, one
// recipient fails for good and the others are delivered: not the
// removeAll path; the failed one is bounced alone, once, and the message
// then goes.
func TestFirstDeliveryOneFailsOthersDelivered(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	q.Handle(Local, &recorder{fn: func(_ context.Context, r Recipient, _ int) error {
		if r.Address == "bad@local.test" {
			return Permanent(errors.New("550 5.1.1 no such user"))
		}
		return nil
	}})
	b := &bouncer{}
	q.SetBouncer(b)
	runT(t, q)
	id := enqueueT(t, q, testMsg("a@example.com", "g1@local.test", "bad@local.test", "g2@local.test"))
	waitFor(t, "the message removed", gone(t, q, id))
	waitFor(t, "the bounce", func() bool { return len(b.Bounces()) > 0 })
	time.Sleep(100 * time.Millisecond)
	bs := b.Bounces()
	if len(bs) != 1 || len(bs[0].failed) != 1 || bs[0].failed[0].Address != "bad@local.test" {
		t.Errorf("bounces %+v, want one for bad@local.test alone", bs)
	}
	if s := q.Stats(); s.Delivered != 2 || s.Failed != 1 {
		t.Errorf("stats %+v, want 2 delivered and 1 failed", s)
	}
}

// TestDeliveryWithoutFreshEntryMatchesRemoveAll: a message whose fresh
// copy is gone (dropped as when the cache is full or the entry expired)
// is read from the database and goes through the per-row path; a fresh
// one through removeAll. Both end the same way: gone, counted delivered,
// not bounced, each recipient delivered once.
func TestDeliveryWithoutFreshEntryMatchesRemoveAll(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	rec := &recorder{}
	q.Handle(Local, rec)
	b := &bouncer{}
	q.SetBouncer(b)
	stale := enqueueT(t, q, testMsg("a@example.com", "p@local.test", "q@local.test"))
	q.fresh.drop(stale)
	fresh := enqueueT(t, q, testMsg("a@example.com", "r@local.test", "s@local.test"))
	runT(t, q)
	waitFor(t, "the stale message removed", gone(t, q, stale))
	waitFor(t, "the fresh message removed", gone(t, q, fresh))
	time.Sleep(100 * time.Millisecond)
	calls := rec.Calls()
	seen := map[string]int{}
	for _, c := range calls {
		// (MaybeDelivered may be set: a message received in the
		// millisecond the queue was opened counts as received before.)
		if c.Attempt != 1 {
			t.Errorf("delivery %+v: want a first attempt", c)
		}
		for _, r := range c.Recipients {
			seen[fmt.Sprintf("%s/%d", c.MsgID, r.Idx)]++
		}
	}
	if len(seen) != 4 {
		t.Errorf("recipients delivered: %v, want 4", seen)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	if s := q.Stats(); s.Delivered != 4 {
		t.Errorf("stats %+v, want 4 delivered", s)
	}
	if len(b.Bounces()) != 0 {
		t.Errorf("bounces %+v", b.Bounces())
	}
}
