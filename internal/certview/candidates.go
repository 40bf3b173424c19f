package certview

import (
	"certrelay/internal/parallel"
	"context"
	"crypto/x509"
	"time"

	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// Candidate describes e as selection sees it, against the viewer's trust
// state and clock: its fields, Status, services and the facts of its
// private key — whether the store holds it, whether the service account
// can read it, what is wrong with it — read from the key file's metadata
// and the store, never from the key itself. So every account that can
// read the data directory gets the same candidate, and the same decision,
// as the server (internal/serving loads the winner's key).
func (v *Viewer) Candidate(e store.Entry) selection.Candidate {
	if e.Pending() {
		return selection.Candidate{Thumbprint: e.Thumbprint, Pending: true, Subject: e.Request.Subject.String(), KeyID: e.KeyID}
	}
	in := v.src.describe(e)
	ki := v.src.Store.KeyInfo(e)
	r := v.snap.Judge(e.Cert, nil, v.now, v.records)
	c := selection.Candidate{
		Thumbprint: e.Thumbprint, Subject: in.Subject, Issuer: in.Issuer, Domains: in.CertificateDomains,
		NotBefore: e.Cert.NotBefore, NotAfter: e.Cert.NotAfter, IsSelfSigned: in.IsSelfSigned,
		Services: e.Services, Status: r.Status, Cert: e.Cert,
		HasKey: ki.Present || ki.Hidden, KeyReadable: ki.ServiceCanRead || ki.Hidden,
		KeyID: e.KeyID,
	}
	// Send the intermediates, not the root (RFC 8446 4.4.2).
	if len(r.Chain) > 2 {
		c.Chain = make([]*x509.Certificate, 0, len(r.Chain)-2)
		for _, el := range r.Chain[1 : len(r.Chain)-1] {
			c.Chain = append(c.Chain, el.Cert)
		}
	}
	switch kt := v.keyTrouble(e, ki, in.IsSelfSigned); {
	case kt.Blocks:
		c.KeyError = kt.Problem + ": " + kt.Fix
	case kt.Problem != "":
		c.KeyWarning = kt.Problem + ": " + kt.Fix
	}
	return c
}

// CandidateBuilder turns the personal store into selection candidates,
// once: for commands (cert explain, cert list --domain, cert enable's
// warnings). A running server keeps a CandidateSet instead. No private key
// is read. Safe for concurrent use.
type CandidateBuilder struct{ src *Source }

// NewCandidateBuilder returns a builder for this data directory.
func (s *Source) NewCandidateBuilder() *CandidateBuilder { return &CandidateBuilder{src: s} }

// Build returns the candidates as of now, ordered by thumbprint.
func (b *CandidateBuilder) Build(ctx context.Context) ([]selection.Candidate, time.Time, error) {
	entries, err := b.src.Store.List(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	v, err := b.src.Viewer(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	return v.candidates(entries), v.now, nil
}

// BuildHolding returns the candidates that may hold the DNS name fqdn
// (a superset of those selection.Holds accepts, from
// store.ListHolding), as of now, ordered by thumbprint: what
// selection.SelectHolding needs to decide a request by that name, without
// reading the rest of the store. When the store cannot narrow the search
// (a name that is not ASCII), it returns every candidate, as Build does.
func (b *CandidateBuilder) BuildHolding(ctx context.Context, fqdn string) ([]selection.Candidate, time.Time, error) {
	entries, ok, err := b.src.Store.ListHolding(ctx, fqdn)
	if err != nil {
		return nil, time.Time{}, err
	}
	if !ok {
		return b.Build(ctx)
	}
	v, err := b.src.Viewer(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	return v.candidates(entries), v.now, nil
}

// candidates describes entries as Candidate does, on every core: with
// thousands of certificates, checking each self-signature (C6) and chain
// is most of a server's start.
func (v *Viewer) candidates(entries []store.Entry) []selection.Candidate {
	out := make([]selection.Candidate, len(entries))
	parallel.Each(len(entries), func(i int) { out[i] = v.Candidate(entries[i]) })
	return out
}
