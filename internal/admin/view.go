package admin

import (
	"certrelay/internal/dnsname"
	"context"
	"sort"
	"strings"

	"certrelay/internal/certinfo"
	"certrelay/internal/certview"
	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// Certificate is a certificate or pending request with every property of
// SPEC §2 (see certview.Certificate).
type Certificate = certview.Certificate

// ListOptions filter ListCertificates.
type ListOptions struct {
	// Domain keeps the certificates whose CertificateDomains hold this
	// name, directly or through a wildcard (S3), in the order selection
	// uses them for it (selection.Rank). A wildcard here matches that
	// wildcard entry literally; selection never serves a wildcard name, so
	// those come newest first.
	Domain string
	// Service the ranking is for; default SMTP.
	Service store.Services
}

// RankedCertificate is a certificate with its place in selection's order
// for a name (cert list --domain).
type RankedCertificate struct {
	Certificate
	// SelectionRank is 1 for the certificate sessions for the name get, 2
	// for the one they would get were the first removed, and so on; 0 when
	// selection would not use it for the name.
	SelectionRank int
	// Selection says how it wins at its rank, or why it is not used.
	Selection string
}

// ListCertificates returns the certificates and pending requests of the
// personal store (M6), by thumbprint, or, filtered by domain, in the
// order selection uses them (see RankCertificates).
func (a *Admin) ListCertificates(ctx context.Context, o ListOptions) ([]Certificate, error) {
	if o.Domain != "" {
		ranked, err := a.RankCertificates(ctx, o)
		if err != nil {
			return nil, err
		}
		out := make([]Certificate, len(ranked))
		for i, r := range ranked {
			out[i] = r.Certificate
		}
		return out, nil
	}
	// A listing reads the stored facts of self-signed certificates
	// instead of parsing them (store.ListFacts).
	list, err := a.Store.ListFacts(ctx)
	if err != nil {
		return nil, err
	}
	v, err := a.src.Viewer(ctx)
	if err != nil {
		return nil, err
	}
	return v.ViewAllListed(list), nil
}

// RankCertificates returns the certificates and pending requests that
// hold o.Domain, in the order selection uses them for a session of
// o.Service with that FQDN: the order is selection.Rank's, computed by
// the engine sessions use, so the first is the certificate a client is
// served. Those selection would never use follow, with the reason.
func (a *Admin) RankCertificates(ctx context.Context, o ListOptions) ([]RankedCertificate, error) {
	n, err := dnsname.Parse(o.Domain)
	if err != nil {
		return nil, invalidValue("DomainName", o.Domain, err)
	}
	o.Domain = string(n)
	if o.Service == store.None {
		o.Service = store.SMTP
	}
	entries, err := a.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	v, err := a.src.Viewer(ctx)
	if err != nil {
		return nil, err
	}
	views := map[string]Certificate{}
	for _, e := range entries {
		if c := v.View(e); holdsName(c.CertificateDomains, o.Domain) {
			views[c.Thumbprint] = c
		}
	}
	cands, now, err := a.NewCandidateBuilder().Build(ctx)
	if err != nil {
		return nil, err
	}
	req := selection.ForConnector(o.Domain, "", "", false, o.Service)
	out := make([]RankedCertificate, 0, len(views))
	for _, r := range selection.Rank(cands, req, now) {
		if c, ok := views[r.Thumbprint]; ok {
			out = append(out, RankedCertificate{Certificate: c, SelectionRank: r.Rank, Selection: r.Reason})
			delete(views, r.Thumbprint)
		}
	}
	// Anything the candidates missed (a certificate added in between).
	rest := make([]string, 0, len(views))
	for t := range views {
		rest = append(rest, t)
	}
	sort.Strings(rest)
	for _, t := range rest {
		out = append(out, RankedCertificate{Certificate: views[t], Selection: "added while the list was made: run the command again"})
	}
	return out, nil
}

func holdsName(domains []string, name string) bool {
	name = strings.TrimSpace(name)
	if selection.IsWildcard(name) {
		for _, d := range domains {
			if strings.EqualFold(d, name) {
				return true
			}
		}
		return false
	}
	return selection.MatchName(domains, name, false)
}

// GetCertificate returns one certificate or request by thumbprint.
func (a *Admin) GetCertificate(ctx context.Context, thumbprint string) (Certificate, error) {
	t, ok := certinfo.NormalizeThumbprint(thumbprint)
	if !ok {
		return Certificate{}, badThumbprint(thumbprint)
	}
	e, err := a.Store.Get(ctx, t)
	if err != nil {
		return Certificate{}, asError(err)
	}
	v, err := a.src.Viewer(ctx)
	if err != nil {
		return Certificate{}, err
	}
	return v.View(e), nil
}
