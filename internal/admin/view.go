package admin

import (
	"certrelay/internal/dnsname"
	"context"
	"fmt"
	"sort"
	"strings"

	"certrelay/internal/certinfo"
	"certrelay/internal/certview"
	"certrelay/internal/selection"
	"certrelay/internal/trust"
)

// Certificate is a certificate or pending request with every property of
// SPEC §2 (see certview.Certificate).
type Certificate = certview.Certificate

// ListOptions filter ListCertificates.
type ListOptions struct {
	// Domain keeps the certificates whose CertificateDomains hold this
	// name, directly or through a wildcard (S3), ranked as selection ranks
	// them (S4). A wildcard here matches that wildcard entry literally.
	Domain string
}

// ListCertificates returns the certificates and pending requests of the
// personal store (M6), by thumbprint, or ranked when filtered by domain.
func (a *Admin) ListCertificates(ctx context.Context, o ListOptions) ([]Certificate, error) {
	if o.Domain != "" {
		n, err := dnsname.Parse(o.Domain)
		if err != nil {
			return nil, fmt.Errorf("--domain: %w", err)
		}
		o.Domain = string(n)
	}
	entries, err := a.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	v, err := a.src.Viewer(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Certificate, 0, len(entries))
	for _, e := range entries {
		c := v.View(e)
		if o.Domain != "" && !holdsName(c.CertificateDomains, o.Domain) {
			continue
		}
		out = append(out, c)
	}
	if o.Domain != "" {
		sort.SliceStable(out, func(i, j int) bool { return rankLess(out[i], out[j]) })
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

// rankLess orders certificates as SPEC S4 ranks them: usable before
// unusable; a certificate from a trusted CA before a self-signed one;
// then the latest NotBefore; then the thumbprint.
func rankLess(a, b Certificate) bool {
	ra, rb := rankClass(a), rankClass(b)
	if ra != rb {
		return ra < rb
	}
	if a.NotBefore != nil && b.NotBefore != nil && !a.NotBefore.Equal(*b.NotBefore) {
		return a.NotBefore.After(*b.NotBefore)
	}
	return a.Thumbprint < b.Thumbprint
}

func rankClass(c Certificate) int {
	switch {
	case c.Status == trust.Valid && !c.IsSelfSigned && c.HasPrivateKey:
		return 0
	case c.Status == trust.Valid && c.HasPrivateKey:
		return 1
	case c.Status == trust.PendingRequest:
		return 4
	case c.HasPrivateKey:
		return 2
	}
	return 3
}

// GetCertificate returns one certificate or request by thumbprint.
func (a *Admin) GetCertificate(ctx context.Context, thumbprint string) (Certificate, error) {
	t, ok := certinfo.NormalizeThumbprint(thumbprint)
	if !ok {
		return Certificate{}, badThumbprint(thumbprint)
	}
	e, err := a.Store.Get(ctx, t)
	if err != nil {
		return Certificate{}, err
	}
	v, err := a.src.Viewer(ctx)
	if err != nil {
		return Certificate{}, err
	}
	return v.View(e), nil
}
