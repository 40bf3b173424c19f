package server

import (
	"context"
	"fmt"
	"time"

	"certrelay/internal/certview"
	"certrelay/internal/selection"
	"certrelay/internal/transport"
)

// stateBuilder makes transport snapshots from the data directory.
type stateBuilder struct {
	src   *certview.Source
	cands *certview.CandidateBuilder
}

// build reads the directory and the store and returns a new snapshot with
// a fresh selection index.
func (b *stateBuilder) build(ctx context.Context) (*transport.State, error) {
	me, err := b.src.LocalServer(ctx)
	if err != nil {
		return nil, err
	}
	conns, err := b.src.Dir.ReceiveConnectors(ctx, me.Name)
	if err != nil {
		return nil, err
	}
	send, err := b.src.Dir.SendConnectors(ctx)
	if err != nil {
		return nil, err
	}
	domains, err := b.src.Dir.AcceptedDomains(ctx)
	if err != nil {
		return nil, err
	}
	boxes, err := b.src.Dir.Mailboxes(ctx)
	if err != nil {
		return nil, err
	}
	cands, now, err := b.cands.Build(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the certificate store: %w", err)
	}
	return transport.NewState(me, conns, send, domains, boxes, selection.NewIndex(cands, now), now), nil
}

// generations returns the store's and the directory's change counters.
func generations(ctx context.Context, src *certview.Source) (int64, int64) {
	s, _ := src.Store.Generation(ctx)
	d, _ := src.Dir.Generation(ctx)
	return s, d
}

// nextRebuild returns when the snapshot must be rebuilt even without a
// change: when a certificate's validity changes.
func nextRebuild(st *transport.State) time.Duration {
	vu := st.Index.ValidUntil()
	if vu.IsZero() {
		return time.Hour
	}
	d := time.Until(vu) + time.Second
	if d < time.Second {
		d = time.Second
	}
	if d > time.Hour {
		d = time.Hour
	}
	return d
}
