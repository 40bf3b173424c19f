package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestCommitManyRows drives the writer's transaction with batches and
// results of many rows (rows.go): every message and recipient is
// written, the last result of a recipient wins, and a message is removed
// exactly when its results leave every recipient delivered.
func TestCommitManyRows(t *testing.T) {
	const manyRows = 500
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	ctx := context.Background()
	req := func(m *Message) *enqReq {
		return &enqReq{id: q.NewID(), msg: m, recv: ms(clk.Now()), meta: "{}", done: make(chan error, 1)}
	}

	// More messages than a chunk, one of them with three recipients.
	var batch []*enqReq
	for i := range manyRows + 20 {
		batch = append(batch, req(testMsg("a@example.test", fmt.Sprintf("u%d@local.test", i))))
	}
	multi := req(testMsg("b@example.test", "x@local.test", "y@local.test", "z@remote.test"))
	batch = append(batch, multi)
	if err := q.commit(batch, nil); err != nil {
		t.Fatal(err)
	}
	if c, err := q.Count(ctx); err != nil || c.Messages != manyRows+21 {
		t.Fatalf("Count = %+v, %v; want %d messages", c, err, manyRows+21)
	}
	got, err := q.Get(ctx, multi.id)
	if err != nil || len(got.Recipients) != 3 || got.Recipients[2].Address != "z@remote.test" || got.Recipients[2].Destination != "remote.test" || string(got.Body) != string(multi.msg.Body) {
		t.Fatalf("Get(multi) = %+v, %v", got, err)
	}

	delivered := func(id string, idx int) rowUpdate {
		return rowUpdate{msgID: id, idx: idx, status: Delivered, next: ms(clk.Now())}
	}
	deferred := func(id string, idx int) rowUpdate {
		return rowUpdate{msgID: id, idx: idx, status: Pending, attempts: 1, next: ms(clk.Now()) + 60000, lastErr: "try later"}
	}
	a, b, c := batch[0].id, batch[1].id, batch[2].id
	ops := []*op{
		// multi: two of three delivered: stays.
		{rows: []rowUpdate{delivered(multi.id, 0), delivered(multi.id, 1)}, finalize: multi.id},
		// a: delivered: removed.
		{rows: []rowUpdate{delivered(a, 0)}, finalize: a},
		// b: deferred, then delivered in a later op of the same
		// transaction: the last wins, removed.
		{rows: []rowUpdate{deferred(b, 0)}},
		{rows: []rowUpdate{delivered(b, 0)}, finalize: b},
		// c: delivered, then deferred: the last wins, stays.
		{rows: []rowUpdate{delivered(c, 0)}},
		{rows: []rowUpdate{deferred(c, 0)}, finalize: c},
	}
	// Results of more recipients than a chunk: the rest delivered.
	var rest []rowUpdate
	for _, r := range batch[3 : len(batch)-1] {
		rest = append(rest, delivered(r.id, 0))
	}
	ops = append(ops, &op{rows: rest})
	if err := q.commit(nil, ops); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name    string
		o       *op
		id      string
		removed bool
	}{{"multi", ops[0], multi.id, false}, {"a", ops[1], a, true}, {"b", ops[3], b, true}, {"c", ops[5], c, false}} {
		_, err := q.Get(ctx, w.id)
		if gone := errors.Is(err, ErrNotFound); gone != w.removed || w.o.removed != w.removed {
			t.Errorf("%s: removed from the queue %v, op.removed %v; want %v (%v)", w.name, gone, w.o.removed, w.removed, err)
		}
	}
	states, err := q.states(ctx, multi.id)
	if err != nil || len(states) != 3 || states[0].Status != Delivered || states[1].Status != Delivered || states[2].Status != Pending {
		t.Errorf("multi's recipients = %+v, %v", states, err)
	}
	if s := recipientState(t, q, c, 0); s.Status != Pending || s.Attempts != 1 || s.LastError != "try later" {
		t.Errorf("c's recipient = %+v, want the deferral (the last result)", s)
	}
	for _, r := range batch[3 : len(batch)-1] {
		if s := recipientState(t, q, r.id, 0); s.Status != Delivered {
			t.Fatalf("%s: %+v, want delivered", r.id, s)
		}
	}
}
