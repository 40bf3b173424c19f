package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestPeerBackRetriesItsDeferredMail: when a delivery to a destination
// succeeds after deliveries found it unreachable, the recipients deferred
// for that destination are made due at once instead of each waiting out
// its own back-off (the clock is frozen here, so without that nothing but
// the retried message would ever leave); the other destinations' deferred
// mail keeps its schedule; and it happens at most once per
// PromoteInterval per destination.
func TestPeerBackRetriesItsDeferredMail(t *testing.T) {
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	var down, greylist atomic.Bool
	down.Store(true)
	greylist.Store(true)
	var delivered atomic.Int32
	q.Handle(AnyRemote, &recorder{fn: func(_ context.Context, r Recipient, _ int) error {
		if r.Destination == "other.example" || (r.Destination == "grey.example" && greylist.Load()) {
			return errors.New("451 4.7.1 greylisted, try again later") // reached, but deferred
		}
		if down.Load() {
			return Unreachable(errors.New("4.4.1 cannot connect to 127.0.0.1:25: connection refused"))
		}
		delivered.Add(1)
		return nil
	}})
	runT(t, q)
	var peer []string
	for range 4 {
		peer = append(peer, enqueueT(t, q, testMsg("a@local.test", "b@example.org")))
	}
	other := enqueueT(t, q, testMsg("a@local.test", "c@other.example"))
	// Looked at: tried and deferred, or held with the unreachable
	// destination.
	tried := func(ids ...string) func() bool {
		return func() bool {
			for _, id := range ids {
				if recipientState(t, q, id, 0).LastError == "" {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "every message tried or held", tried(append(peer, other)...))

	t.Run("ok/peer-back", func(t *testing.T) {
		down.Store(false)
		if _, err := q.Retry(context.Background(), peer[0]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the peer's deferred mail delivered", func() bool { return len(listT(t, q, Filter{Destination: "example.org"})) == 0 })
		if n := delivered.Load(); n != 4 {
			t.Errorf("%d deliveries, want 4 (each message once)", n)
		}
		if rs := recipientState(t, q, other, 0); rs.Attempts != 1 || !rs.NextAttempt.After(clk.Now()) {
			t.Errorf("another destination's deferred recipient was retried: %+v", rs)
		}
	})

	t.Run("ok/answering-peer-keeps-its-schedule", func(t *testing.T) {
		// A peer that answered and deferred (greylisting, a DANE
		// mismatch) was reachable all along: a success to it makes
		// nothing else due.
		grey := []string{enqueueT(t, q, testMsg("a@local.test", "b@grey.example")), enqueueT(t, q, testMsg("a@local.test", "c@grey.example"))}
		waitFor(t, "both greylisted", tried(grey...))
		greylist.Store(false)
		if _, err := q.Retry(context.Background(), grey[0]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the retried one delivered", func() bool { return len(listT(t, q, Filter{ID: grey[0]})) == 0 })
		if rs := recipientState(t, q, grey[1], 0); rs.Attempts != 1 || !rs.NextAttempt.After(clk.Now()) {
			t.Errorf("a greylisted recipient was made due by another's success: %+v", rs)
		}
		if err := q.Remove(context.Background(), grey[1]); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ok/at-most-once-per-interval", func(t *testing.T) {
		down.Store(true)
		var again []string
		for range 3 {
			again = append(again, enqueueT(t, q, testMsg("a@local.test", "b@example.org")))
		}
		waitFor(t, "the new messages tried", tried(again...))
		clk.Advance(PromoteInterval / 2)
		down.Store(false)
		if _, err := q.Retry(context.Background(), again[0]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the retried message delivered", func() bool { return len(listT(t, q, Filter{ID: again[0]})) == 0 })
		// Its result and any promotion commit together: the others'
		// next attempts are still ahead of the frozen clock.
		for _, id := range again[1:] {
			if rs := recipientState(t, q, id, 0); !rs.NextAttempt.After(clk.Now()) {
				t.Errorf("%s made due again within PromoteInterval: %+v", id, rs)
			}
		}
		clk.Advance(PromoteInterval)
		waitFor(t, "the rest delivered once due", func() bool { return len(listT(t, q, Filter{Destination: "example.org"})) == 0 })
	})
}

// TestHopStatePromotions: which deferred recipients a success makes due.
// Local deliveries fail per mailbox, so they never promote; the first
// success since the start promotes the recipients held by an earlier
// process; a success after the destination was unreachable promotes all
// its deferred mail, at most once per PromoteInterval; a success without
// an unreachable before it promotes nothing (a greylisting peer's
// deferrals keep their schedule).
func TestHopStatePromotions(t *testing.T) {
	h := hopState{up: map[string]bool{}, down: map[string]bool{}, promoted: map[string]time.Time{}}
	now := time.Now()
	at := func(d time.Duration) time.Time { return now.Add(d) }
	steps := []struct {
		name string
		act  func() promotion
		want promotion
	}{
		{"local", func() promotion { return h.reached(Local, at(0)) }, promoteNone},
		{"first-success-since-start", func() promotion { return h.reached("example.org", at(0)) }, promoteHeld},
		{"second-success", func() promotion { return h.reached("example.org", at(time.Second)) }, promoteNone},
		{"unreachable-then-success-within-interval", func() promotion {
			h.unreachable("example.org")
			return h.reached("example.org", at(2*time.Second))
		}, promoteNone},
		{"success-after-interval", func() promotion { return h.reached("example.org", at(PromoteInterval+3*time.Second)) }, promoteAll},
		{"then-nothing", func() promotion { return h.reached("example.org", at(PromoteInterval+4*time.Second)) }, promoteNone},
		{"unreachable-again-later", func() promotion {
			h.unreachable("example.org")
			return h.reached("example.org", at(3*PromoteInterval))
		}, promoteAll},
	}
	for _, st := range steps {
		if got := st.act(); got != st.want {
			t.Errorf("%s: promotion %d, want %d", st.name, got, st.want)
		}
	}
}

// TestMigrateAddsHopIndex: a queue written by the previous schema (version
// 1: without recipients_hop and messages_received, recipients_due without
// attempts) opens, keeps its mail and gets the version 2 indexes.
func TestMigrateAddsHopIndex(t *testing.T) {
	dir := t.TempDir()
	d, err := openDB(dir+"/"+FileName, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range schema {
		switch {
		case strings.Contains(s, "recipients_hop"), strings.Contains(s, "messages_received"):
			continue
		case strings.Contains(s, "recipients_due"):
			s = `CREATE INDEX recipients_due ON recipients (status, next_attempt)`
		}
		if _, err := d.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Exec(`INSERT INTO messages VALUES ('m1', 1, 's@example.com', 3, '{}', x'787878');
		INSERT INTO recipients (msg_id, idx, address, destination, next_attempt, updated_at) VALUES ('m1', 0, 'r@example.org', 'example.org', 1, 1);
		PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	d.Close()
	q := openT(t, dir, Options{})
	var n int
	if err := q.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'recipients_hop'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("recipients_hop: %d (%v)", n, err)
	}
	var due string
	if err := q.db.QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'recipients_due'`).Scan(&due); err != nil || !strings.Contains(due, "attempts") {
		t.Fatalf("recipients_due: %q (%v), want it with attempts", due, err)
	}
	if err := q.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'messages_received'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("messages_received: %d (%v)", n, err)
	}
	if err := q.db.QueryRow(`PRAGMA user_version`).Scan(&n); err != nil || n != schemaVersion {
		t.Fatalf("user_version %d (%v), want %d", n, err, schemaVersion)
	}
	if items := listT(t, q, Filter{}); len(items) != 1 || items[0].ID != "m1" {
		t.Fatalf("mail after the migration: %+v", items)
	}
}

// TestUnreachableDestinationIsHeld: once a delivery finds its destination
// unreachable (UnreachableError), the destination's other due mail is
// deferred to that recipient's next attempt without a delivery attempt
// each (the frozen clock keeps the hold); Retry-Queue lifts the hold and
// tries everything at once; a success ends the hold; other destinations
// are not held.
func TestUnreachableDestinationIsHeld(t *testing.T) {
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	var down atomic.Bool
	down.Store(true)
	var calls, otherCalls atomic.Int32
	q.Handle(AnyRemote, &recorder{fn: func(_ context.Context, r Recipient, _ int) error {
		if r.Destination == "other.example" {
			otherCalls.Add(1)
			return nil
		}
		calls.Add(1)
		if down.Load() {
			return Unreachable(errors.New("4.4.1 cannot connect to 127.0.0.1:25: connection refused"))
		}
		return nil
	}})
	runT(t, q)
	first := enqueueT(t, q, testMsg("a@local.test", "b@example.org"))
	waitFor(t, "the first attempt", func() bool { return recipientState(t, q, first, 0).Attempts == 1 })
	probe := recipientState(t, q, first, 0)

	var held []string
	for range 20 {
		held = append(held, enqueueT(t, q, testMsg("a@local.test", "b@example.org")))
	}
	other := enqueueT(t, q, testMsg("a@local.test", "c@other.example"))
	waitFor(t, "the held mail deferred", func() bool {
		for _, id := range held {
			if rs := recipientState(t, q, id, 0); rs.LastError == "" {
				return false
			}
		}
		return true
	})
	t.Run("ok/held-not-tried", func(t *testing.T) {
		if n := calls.Load(); n != 1 {
			t.Errorf("%d delivery attempts to the unreachable destination, want 1", n)
		}
		for _, id := range held {
			rs := recipientState(t, q, id, 0)
			if rs.Attempts != 0 || !rs.NextAttempt.Equal(probe.NextAttempt) || !strings.HasPrefix(rs.LastError, "not tried: example.org could not be reached (4.4.1 cannot connect") {
				t.Errorf("held recipient %s: %+v (the probe's next attempt %v)", id, rs, probe.NextAttempt)
			}
		}
		waitFor(t, "the other destination delivered", func() bool { return len(listT(t, q, Filter{ID: other})) == 0 })
	})
	t.Run("ok/retry-lifts-the-hold", func(t *testing.T) {
		if _, err := q.Retry(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "every held message tried", func() bool {
			for _, id := range held {
				if recipientState(t, q, id, 0).Attempts == 0 {
					return false
				}
			}
			return true
		})
	})
	t.Run("ok/success-ends-the-hold", func(t *testing.T) {
		down.Store(false)
		if _, err := q.Retry(context.Background(), first); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "everything delivered", func() bool { return len(listT(t, q, Filter{})) == 0 })
		later := enqueueT(t, q, testMsg("a@local.test", "b@example.org"))
		waitFor(t, "new mail delivered at once", func() bool { return len(listT(t, q, Filter{ID: later})) == 0 })
	})
}

// TestHoldEndsWithinMaxHold: after a recipient that found its
// destination down has failed often enough to wait past MaxHold (its
// third attempt: 15 minutes), the mail held with the destination is
// tried again by MaxHold, not at that recipient's later attempt — so
// after a long outage mail flows within minutes of the peer's return.
func TestHoldEndsWithinMaxHold(t *testing.T) {
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	q.Handle(AnyRemote, &recorder{fn: func(context.Context, Recipient, int) error {
		return Unreachable(errors.New("4.4.1 cannot connect to 127.0.0.1:25: connection refused"))
	}})
	runT(t, q)
	probe := enqueueT(t, q, testMsg("a@local.test", "b@example.org"))
	for k := 1; k <= 3; k++ {
		waitFor(t, fmt.Sprintf("attempt %d", k), func() bool { return recipientState(t, q, probe, 0).Attempts == k })
		if k < 3 {
			clk.Advance(Backoff(k) + Backoff(k)/10 + time.Second)
		}
	}
	failedAt, next := clk.Now(), recipientState(t, q, probe, 0).NextAttempt
	if next.Sub(failedAt) <= MaxHold {
		t.Fatalf("the probe's next attempt %v after its failure, want more than MaxHold", next.Sub(failedAt))
	}
	var held []string
	for range 5 {
		held = append(held, enqueueT(t, q, testMsg("a@local.test", "b@example.org")))
	}
	waitFor(t, "the new mail held", func() bool {
		for _, id := range held {
			if recipientState(t, q, id, 0).LastError == "" {
				return false
			}
		}
		return true
	})
	for _, id := range held {
		rs := recipientState(t, q, id, 0)
		if rs.Attempts != 0 || rs.NextAttempt.After(failedAt.Add(MaxHold)) {
			t.Errorf("held recipient %s: next attempt %v after the failure (the probe's %v), want at most MaxHold (%v); %+v",
				id, rs.NextAttempt.Sub(failedAt), next.Sub(failedAt), MaxHold, rs)
		}
	}
}

// TestUnreachableHoldsTheDueMailAtOnce: a server that starts with a
// backlog for a destination that is down tries no more of it than the
// dispatcher hands out at once (2×Workers); the rest is held, each with
// its expiry still ahead, none counted as an attempt.
func TestUnreachableHoldsTheDueMailAtOnce(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	q := openT(t, dir, Options{Now: clk.Now})
	const n = 300
	for range n {
		enqueueT(t, q, testMsg("a@local.test", "b@example.org"))
	}
	var calls atomic.Int32
	q.Handle(AnyRemote, &recorder{fn: func(context.Context, Recipient, int) error {
		calls.Add(1)
		return Unreachable(errors.New("4.4.1 cannot connect to 127.0.0.1:25: connection refused"))
	}})
	runT(t, q)
	// Waiting, and the results of the deliveries tried committed (the
	// hold's UPDATE also defers the rows of deliveries in flight, whose
	// results then overwrite them).
	waitFor(t, "every recipient waiting", func() bool {
		c, err := q.Count(context.Background())
		return err == nil && c.Waiting == n && c.Deferred == int(calls.Load())
	})
	c, _ := q.Count(context.Background())
	if got := int(calls.Load()); got > 2*DefaultWorkers || c.Deferred != got {
		t.Errorf("%d delivery attempts (%d recipients deferred after one), want at most %d", got, c.Deferred, 2*DefaultWorkers)
	}
	for _, it := range listT(t, q, Filter{}) {
		rs := it.Recipients[0]
		if rs.Attempts == 0 && (!strings.HasPrefix(rs.LastError, "not tried: example.org could not be reached") || !rs.NextAttempt.After(clk.Now())) {
			t.Fatalf("held recipient %s: %+v", it.ID, rs)
		}
	}
}

// TestCountReadsOnlyIndexes: Count, which the metrics endpoint calls at
// every scrape, reads covering indexes only — with 100,000 messages
// waiting, reading the messages (for the oldest) and each pending
// recipient's row (for its attempts) took 740 ms a call
// (BenchmarkLargeQueue/count; about 45 ms with the indexes).
func TestCountReadsOnlyIndexes(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	rows, err := q.db.Query("EXPLAIN QUERY PLAN "+countSQL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		if (strings.HasPrefix(detail, "SCAN") || strings.HasPrefix(detail, "SEARCH")) && !strings.Contains(detail, "COVERING INDEX") {
			t.Errorf("Count reads rows: %s", detail)
		}
	}
}
