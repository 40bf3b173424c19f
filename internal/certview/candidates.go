package certview

import (
	"context"
	"crypto"
	"crypto/tls"
	"sync"
	"time"

	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// CandidateBuilder turns the personal store into selection candidates:
// each certificate with its Status (from trust and the stored revocation
// results), its key facts and, when the key loads, a tls.Certificate with
// its chain ready for handshakes. Parsed keys are kept between builds, so
// rebuilding after a store change only reads new keys. Safe for
// concurrent use.
type CandidateBuilder struct {
	src  *Source
	mu   sync.Mutex
	keys map[string]crypto.Signer // by key ID
}

// NewCandidateBuilder returns a builder for this data directory.
func (s *Source) NewCandidateBuilder() *CandidateBuilder {
	return &CandidateBuilder{src: s, keys: map[string]crypto.Signer{}}
}

// Build returns the candidates as of now.
func (b *CandidateBuilder) Build(ctx context.Context) ([]selection.Candidate, time.Time, error) {
	entries, err := b.src.Store.List(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	v, err := b.src.Viewer(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := map[string]bool{}
	out := make([]selection.Candidate, 0, len(entries))
	for _, e := range entries {
		if e.Pending() {
			out = append(out, selection.Candidate{Thumbprint: e.Thumbprint, Pending: true, Subject: e.Request.Subject.String()})
			continue
		}
		c := v.View(e)
		ki := b.src.Store.KeyInfo(e)
		cand := selection.Candidate{
			Thumbprint: e.Thumbprint, Subject: c.Subject, Issuer: c.Issuer, Domains: c.CertificateDomains,
			NotBefore: e.Cert.NotBefore, NotAfter: e.Cert.NotAfter, IsSelfSigned: c.IsSelfSigned,
			Services: e.Services, Status: c.Status, Cert: e.Cert,
			HasKey: ki.Present, KeyReadable: ki.ServiceCanRead,
		}
		switch kt := keyTroubleOf(e, ki, c.IsSelfSigned, b.src.Store.Account()); {
		case kt.Blocks:
			cand.KeyError = kt.Problem + ": " + kt.Fix
		case kt.Problem != "":
			cand.KeyWarning = kt.Problem + ": " + kt.Fix
		}
		if ki.Present && e.Services != store.None {
			seen[e.KeyID] = true
			key, ok := b.keys[e.KeyID]
			if !ok {
				k, err := b.src.Store.PrivateKey(e)
				if err != nil {
					cand.KeyError = "its private key cannot be loaded: " + err.Error()
				} else {
					key, ok = k, true
					b.keys[e.KeyID] = k
				}
			}
			if ok {
				tc := &tls.Certificate{Certificate: [][]byte{e.Cert.Raw}, PrivateKey: key, Leaf: e.Cert}
				// Send the intermediates, not the root (RFC 8446 4.4.2).
				for i := 1; i < len(c.Chain)-1; i++ {
					tc.Certificate = append(tc.Certificate, c.Chain[i].Cert.Raw)
				}
				cand.TLS = tc
			}
		}
		out = append(out, cand)
	}
	for id := range b.keys {
		if !seen[id] {
			delete(b.keys, id)
		}
	}
	return out, v.now, nil
}
