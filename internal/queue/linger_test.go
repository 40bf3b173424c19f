package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestResultsRideWithNextBatch checks resultsLinger: delivery results
// with no message waiting are held until the next Enqueue and committed
// in its transaction (one commit for both); a result nobody enqueues
// after is still committed once the linger ends; an op someone waits for
// (a removal) is not held.
func TestResultsRideWithNextBatch(t *testing.T) {
	old := resultsLinger
	t.Cleanup(func() { resultsLinger = old })
	resultsLinger = time.Minute
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	ctx := context.Background()

	id1, err := q.Enqueue(ctx, testMsg("a@example.test", "u1@local.test"))
	if err != nil {
		t.Fatal(err)
	}
	c0 := q.Stats().Commits
	released := make(chan struct{})
	q.submit(&op{rows: []rowUpdate{{msgID: id1, idx: 0, status: Delivered, next: ms(clk.Now())}}, finalize: id1,
		release: func() { close(released) }})
	time.Sleep(100 * time.Millisecond)
	if c := q.Stats().Commits; c != c0 {
		t.Fatalf("%d commits of a result alone, want it held for the next batch", c-c0)
	}
	select {
	case <-released:
		t.Fatal("the result's leases were released before its commit")
	default:
	}
	id2, err := q.Enqueue(ctx, testMsg("a@example.test", "u2@local.test"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("the result was not committed with the next batch")
	}
	if c := q.Stats().Commits; c != c0+1 {
		t.Errorf("%d commits for the result and the message, want 1", c-c0)
	}
	if _, err := q.Get(ctx, id1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(delivered message) = %v, want it removed by the result's transaction", err)
	}

	// An op with a waiter is not held.
	done := make(chan error, 1)
	q.submit(&op{deleteMsg: id2, done: done})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a removal someone waits for was held for the linger")
	}
	if _, err := q.Get(ctx, id2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(removed message) = %v, want ErrNotFound", err)
	}
}

// TestResultAloneCommittedAfterLinger checks that a result with no
// ingest after it is committed once resultsLinger has passed.
func TestResultAloneCommittedAfterLinger(t *testing.T) {
	old := resultsLinger
	t.Cleanup(func() { resultsLinger = old })
	resultsLinger = 50 * time.Millisecond
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	ctx := context.Background()
	id, err := q.Enqueue(ctx, testMsg("a@example.test", "u1@local.test"))
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	q.submit(&op{rows: []rowUpdate{{msgID: id, idx: 0, status: Delivered, next: ms(clk.Now())}}, finalize: id,
		release: func() { close(released) }})
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("a result alone was never committed")
	}
	if _, err := q.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(delivered message) = %v, want it removed", err)
	}
}
