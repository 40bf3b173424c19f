package server

import (
	"context"
	"crypto/x509"
	"sync"
	"time"

	"certrelay/internal/certview"
	"certrelay/internal/revocation"
	"certrelay/internal/transport"
	"certrelay/internal/trust"
)

// peerVerifier validates partners' certificates for domain security
// (SPEC DS1) against this server's trusted roots and intermediates, with
// the revocation checker the store's certificates use (its proxy, its
// cache of CRL and OCSP answers). The trust snapshot is read again when
// the trust store changes (invalidate) and at least every minute, so a
// root added by another process is used soon even if a change is missed.
// Safe for concurrent use.
type peerVerifier struct {
	src *certview.Source

	mu      sync.Mutex
	snap    *trust.Snapshot
	checker *revocation.Checker
	read    time.Time
}

var _ transport.PeerVerifier = (*peerVerifier)(nil)

const peerSnapshotAge = time.Minute

// invalidate makes the next check read the trust store again.
func (p *peerVerifier) invalidate() {
	p.mu.Lock()
	p.snap = nil
	p.mu.Unlock()
}

func (p *peerVerifier) state(ctx context.Context) (*trust.Snapshot, *revocation.Checker, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.snap != nil && now.Sub(p.read) < peerSnapshotAge {
		return p.snap, p.checker, nil
	}
	snap, err := p.src.Trust.Snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	v, err := p.src.Verifier(ctx) // the proxy setting and the shared cache
	if err != nil {
		return nil, nil, err
	}
	p.snap, p.checker, p.read = snap, v.Checker, now
	return snap, v.Checker, nil
}

// VerifyPeer implements transport.PeerVerifier.
func (p *peerVerifier) VerifyPeer(ctx context.Context, leaf *x509.Certificate, extra []*x509.Certificate) trust.Result {
	snap, checker, err := p.state(ctx)
	if err != nil {
		return trust.Result{Status: trust.Unknown, Problem: "cannot read the trust store: " + err.Error()}
	}
	return snap.VerifyPeer(ctx, checker, leaf, extra, p.src.Now())
}

// Roots returns the trusted roots (the system bundle and those added),
// for MTA-STS's PKIX checks; nil when the trust store cannot be read
// (then nothing verifies).
func (p *peerVerifier) Roots(ctx context.Context) *x509.CertPool {
	snap, _, err := p.state(ctx)
	if err != nil {
		return x509.NewCertPool()
	}
	return snap.RootPool()
}
