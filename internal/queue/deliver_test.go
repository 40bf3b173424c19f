package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Deliverer that records its calls and answers with fn.
type recorder struct {
	mu    sync.Mutex
	calls []Delivery
	fn    func(ctx context.Context, r Recipient, attempt int) error
}

func (rec *recorder) Deliver(ctx context.Context, d Delivery) []Outcome {
	rec.mu.Lock()
	rec.calls = append(rec.calls, d)
	rec.mu.Unlock()
	var out []Outcome
	for _, r := range d.Recipients {
		var err error
		if rec.fn != nil {
			err = rec.fn(ctx, r, d.Attempt)
		}
		out = append(out, Outcome{Idx: r.Idx, Err: err})
	}
	return out
}

func (rec *recorder) Calls() []Delivery {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]Delivery(nil), rec.calls...)
}

type bounce struct {
	msg    *Message
	failed []RecipientState
}

type bouncer struct {
	mu      sync.Mutex
	bounces []bounce
}

func (b *bouncer) Bounce(_ context.Context, msg *Message, failed []RecipientState) error {
	b.mu.Lock()
	b.bounces = append(b.bounces, bounce{msg, failed})
	b.mu.Unlock()
	return nil
}

func (b *bouncer) Bounces() []bounce {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]bounce(nil), b.bounces...)
}

// runT starts Run and stops it at the end of the test.
func runT(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func gone(t *testing.T, q *Queue, id string) func() bool {
	return func() bool { return len(listT(t, q, Filter{ID: id})) == 0 }
}

func recipientState(t *testing.T, q *Queue, id string, idx int) RecipientState {
	t.Helper()
	items := listT(t, q, Filter{ID: id})
	if len(items) != 1 {
		t.Fatalf("message %s: listed %d items", id, len(items))
	}
	return items[0].Recipients[idx]
}

func TestDeliveryLocal(t *testing.T) {
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	rec := &recorder{}
	q.Handle(Local, rec)
	runT(t, q)
	m := testMsg("alice@example.com", "bob@local.test", "carol@local.test")
	id := enqueueT(t, q, m)
	waitFor(t, "message removed after delivery", gone(t, q, id))
	calls := rec.Calls()
	if len(calls) != 1 {
		t.Fatalf("deliverer called %d times, want 1", len(calls))
	}
	d := calls[0]
	if d.MsgID != id || d.Sender != m.Sender || d.Destination != Local || !bytes.Equal(d.Body, m.Body) ||
		d.Attempt != 1 || d.MaybeDelivered || d.Meta != m.Meta || !d.ReceivedAt.Equal(clk.Now()) || len(d.Recipients) != 2 {
		t.Errorf("delivery = %+v", d)
	}
	if s := q.Stats(); s.Delivered != 2 || s.Failed != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestDeliveryRoutesByDestination(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	local, remote, exact := &recorder{}, &recorder{}, &recorder{}
	q.Handle(Local, local)
	q.Handle(AnyRemote, remote)
	q.Handle("special.example", exact)
	runT(t, q)
	id := enqueueT(t, q, testMsg("a@example.com", "b@local.test", "c@example.net", "d@example.net", "e@special.example"))
	waitFor(t, "delivery", gone(t, q, id))
	for name, c := range map[string]struct {
		rec   *recorder
		dest  string
		rcpts int
	}{"local": {local, Local, 1}, "any-remote": {remote, "example.net", 2}, "exact": {exact, "special.example", 1}} {
		calls := c.rec.Calls()
		if len(calls) != 1 || calls[0].Destination != c.dest || len(calls[0].Recipients) != c.rcpts {
			t.Errorf("%s: calls = %+v", name, calls)
		}
	}
}

func TestTemporaryFailureDefers(t *testing.T) {
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	q.Handle(Local, &recorder{fn: func(context.Context, Recipient, int) error {
		return errors.New("451 4.3.0 try again later")
	}})
	runT(t, q)
	id := enqueueT(t, q, testMsg("a@example.com", "b@local.test"))
	for attempt := 1; attempt <= 3; attempt++ {
		waitFor(t, "attempt recorded", func() bool { return recipientState(t, q, id, 0).Attempts == attempt })
		rs := recipientState(t, q, id, 0)
		now := clk.Now()
		base := Backoff(attempt)
		if rs.Status != Pending || !strings.Contains(rs.LastError, "451 4.3.0") {
			t.Errorf("attempt %d: state %+v", attempt, rs)
		}
		if lo, hi := now.Add(base), now.Add(base+base/10); rs.NextAttempt.Before(lo) || rs.NextAttempt.After(hi) {
			t.Errorf("attempt %d: next attempt %v, want in [%v, %v]", attempt, rs.NextAttempt, lo, hi)
		}
		clk.Advance(base + base/10 + time.Second)
		q.wake()
	}
}

func TestPermanentFailureBouncesOnce(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	q.Handle(Local, &recorder{fn: func(_ context.Context, r Recipient, _ int) error {
		if strings.HasPrefix(r.Address, "bad") {
			return Permanent(errors.New("550 5.1.1 no such user"))
		}
		return nil
	}})
	b := &bouncer{}
	q.SetBouncer(b)
	runT(t, q)
	id := enqueueT(t, q, testMsg("alice@example.com", "good@local.test", "bad@local.test"))
	waitFor(t, "message removed", gone(t, q, id))
	time.Sleep(50 * time.Millisecond)
	bs := b.Bounces()
	if len(bs) != 1 {
		t.Fatalf("%d bounces, want 1", len(bs))
	}
	f := bs[0].failed
	if bs[0].msg.ID != id || len(bs[0].msg.Body) == 0 || len(f) != 1 || f[0].Address != "bad@local.test" ||
		f[0].Status != Failed || !strings.Contains(f[0].LastError, "5.1.1") || f[0].Attempts != 1 {
		t.Errorf("bounce = %+v", bs[0])
	}
	if s := q.Stats(); s.Delivered != 1 || s.Failed != 1 {
		t.Errorf("stats = %+v", s)
	}
}

func TestNullSenderNeverBounces(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	q.Handle(Local, &recorder{fn: func(context.Context, Recipient, int) error {
		return Permanent(errors.New("550 5.1.1 no such user"))
	}})
	b := &bouncer{}
	q.SetBouncer(b)
	runT(t, q)
	id := enqueueT(t, q, testMsg("", "bad@local.test"))
	waitFor(t, "message removed", gone(t, q, id))
	time.Sleep(50 * time.Millisecond)
	if n := len(b.Bounces()); n != 0 {
		t.Errorf("%d bounces for the null sender, want 0", n)
	}
}

func TestExpiryFails(t *testing.T) {
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now, Expiry: 2 * time.Hour})
	q.Handle(Local, &recorder{fn: func(context.Context, Recipient, int) error {
		return errors.New("451 mailbox busy")
	}})
	b := &bouncer{}
	q.SetBouncer(b)
	runT(t, q)
	id := enqueueT(t, q, testMsg("alice@example.com", "b@local.test"))
	waitFor(t, "first attempt", func() bool { return recipientState(t, q, id, 0).Attempts == 1 })

	// Close to the expiry, the next attempt is due at the expiry, not later.
	clk.Advance(119 * time.Minute)
	if _, err := q.Retry(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second attempt", func() bool { return recipientState(t, q, id, 0).Attempts == 2 })
	deadline := newClock().Now().Add(2 * time.Hour)
	if rs := recipientState(t, q, id, 0); !rs.NextAttempt.Equal(deadline) {
		t.Errorf("next attempt %v, want the expiry %v", rs.NextAttempt, deadline)
	}

	clk.Advance(time.Minute)
	q.wake()
	waitFor(t, "message removed after expiry", gone(t, q, id))
	bs := b.Bounces()
	if len(bs) != 1 || !strings.Contains(bs[0].failed[0].LastError, "expired after 2h0m0s: 451 mailbox busy") {
		t.Errorf("bounces = %+v", bs)
	}
}

func TestNoRouteStaysPending(t *testing.T) {
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	runT(t, q)
	id := enqueueT(t, q, testMsg("a@example.com", "b@example.org"))
	waitFor(t, "no-route note", func() bool {
		return strings.Contains(recipientState(t, q, id, 0).LastError, "no route yet for destination example.org")
	})
	rs := recipientState(t, q, id, 0)
	if rs.Status != Pending || rs.Attempts != 0 || !rs.NextAttempt.Equal(clk.Now().Add(NoRouteRetry)) {
		t.Errorf("state %+v", rs)
	}
	if m, _ := q.fresh.take(id); m != nil {
		t.Error("a message with no route stays in the cache of committed messages")
	}
	rec := &recorder{}
	q.Handle(AnyRemote, rec)
	if n, err := q.Retry(context.Background(), id); err != nil || n != 1 {
		t.Fatalf("Retry = %d, %v", n, err)
	}
	waitFor(t, "delivery once routed", gone(t, q, id))
}

func TestRecoveryRedeliversWithHint(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := enqueueT(t, q, testMsg("a@example.com", "b@local.test"))
	q.Close()

	q2 := openT(t, dir, Options{})
	rec := &recorder{}
	q2.Handle(Local, rec)
	runT(t, q2)
	waitFor(t, "delivery after restart", gone(t, q2, id))
	if c := rec.Calls(); len(c) != 1 || !c[0].MaybeDelivered || c[0].Attempt != 1 {
		t.Errorf("calls = %+v, want one with MaybeDelivered", c)
	}
}

func TestShutdownDoesNotCountAttempt(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	q.Handle(Local, &recorder{fn: func(ctx context.Context, _ Recipient, _ int) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}})
	go q.Run(context.Background())
	id := enqueueT(t, q, testMsg("a@example.com", "b@local.test"))
	<-started
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openT(t, dir, Options{})
	if rs := recipientState(t, q2, id, 0); rs.Status != Pending || rs.Attempts != 0 {
		t.Errorf("after an interrupted delivery: %+v", rs)
	}
}

func TestPanickingDelivererDefers(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	q.Handle(Local, DelivererFunc(func(context.Context, Delivery) []Outcome { panic("boom") }))
	runT(t, q)
	id := enqueueT(t, q, testMsg("a@example.com", "b@local.test"))
	waitFor(t, "deferred", func() bool { return recipientState(t, q, id, 0).Attempts == 1 })
	if rs := recipientState(t, q, id, 0); rs.Status != Pending || !strings.Contains(rs.LastError, "no outcome") {
		t.Errorf("state %+v", rs)
	}
}

func TestBackoffSchedule(t *testing.T) {
	for _, c := range []struct {
		attempts int
		want     time.Duration
	}{{0, time.Minute}, {1, time.Minute}, {2, 5 * time.Minute}, {3, 15 * time.Minute}, {4, 30 * time.Minute}, {5, time.Hour}, {50, time.Hour}} {
		if got := Backoff(c.attempts); got != c.want {
			t.Errorf("Backoff(%d) = %v, want %v", c.attempts, got, c.want)
		}
		for range 100 {
			if j := jitter(c.want); j < c.want || j > c.want+c.want/10 {
				t.Fatalf("jitter(%v) = %v", c.want, j)
			}
		}
	}
}

// TestDefaultWorkersDeliverAtOnce checks that a queue opened with the
// default Options runs DefaultWorkers deliveries at the same time, and
// that there are at least 32 of them: local deliveries wait for their
// Maildir round, which is shared by the deliveries in progress, so the
// default sets how many messages one syncfs(2) makes durable (with 16,
// the plain ingest with Maildir delivery cost about 12% more server CPU
// per message).
func TestDefaultWorkersDeliverAtOnce(t *testing.T) {
	if DefaultWorkers < 32 {
		t.Fatalf("DefaultWorkers = %d, want at least 32", DefaultWorkers)
	}
	q := openT(t, t.TempDir(), Options{})
	var mu sync.Mutex
	cur, most := 0, 0
	all := make(chan struct{})
	q.Handle(Local, DelivererFunc(func(ctx context.Context, d Delivery) []Outcome {
		mu.Lock()
		cur++
		most = max(most, cur)
		if most == DefaultWorkers {
			select {
			case <-all:
			default:
				close(all)
			}
		}
		mu.Unlock()
		select {
		case <-all:
		case <-ctx.Done():
		}
		mu.Lock()
		cur--
		mu.Unlock()
		return []Outcome{{Idx: d.Recipients[0].Idx}}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for i := range DefaultWorkers + 8 {
		if _, err := q.Enqueue(ctx, testMsg("a@example.test", fmt.Sprintf("u%d@local.test", i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("at most %d deliveries at once in 10 s, want %d", most, DefaultWorkers)
	}
	mu.Lock()
	defer mu.Unlock()
	if most > DefaultWorkers {
		t.Errorf("%d deliveries at once, want at most %d", most, DefaultWorkers)
	}
}

// TestFirstAttemptRemovesOnlyWhenAllDelivered: a first attempt that
// delivers every recipient of a message removes it (and its recipients)
// without writing their rows first (op.removeAll); one that delivers
// only some writes each recipient's result and keeps the message; a
// message whose recipients are split between two deliveries goes after
// the second.
func TestFirstAttemptRemovesOnlyWhenAllDelivered(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	local := &recorder{fn: func(_ context.Context, r Recipient, _ int) error {
		if strings.HasPrefix(r.Address, "later@") {
			return errors.New("451 try again later")
		}
		return nil
	}}
	q.Handle(Local, local)
	remote := &recorder{}
	q.Handle(AnyRemote, remote)
	runT(t, q)
	all := enqueueT(t, q, testMsg("a@example.com", "b@local.test", "c@local.test"))
	some := enqueueT(t, q, testMsg("a@example.com", "d@local.test", "later@local.test"))
	split := enqueueT(t, q, testMsg("a@example.com", "e@local.test", "f@example.net"))
	waitFor(t, "the delivered message removed", gone(t, q, all))
	waitFor(t, "the split message removed", gone(t, q, split))
	waitFor(t, "the first recipient's result", func() bool { return recipientState(t, q, some, 0).Status == Delivered })
	if s := recipientState(t, q, some, 1); s.Status != Pending || s.Attempts != 1 || !strings.Contains(s.LastError, "451") {
		t.Errorf("the deferred recipient: %+v", s)
	}
	if n, err := q.Count(context.Background()); err != nil || n.Messages != 1 {
		t.Errorf("count %+v, %v; want the one message with a deferred recipient", n, err)
	}
	if s := q.Stats(); s.Delivered != 5 {
		t.Errorf("stats %+v; want 5 delivered", s)
	}
}
