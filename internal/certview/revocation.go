package certview

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"certrelay/internal/revocation"
	"certrelay/internal/settings"
	"certrelay/internal/trust"
)

// DefaultRevocationTimeout bounds each CRL or OCSP fetch.
const DefaultRevocationTimeout = 5 * time.Second

// Verifier returns a trust.Verifier configured from the settings: the
// HTTP proxy for CRL and OCSP fetches, the shared response cache.
func (s *Source) Verifier(ctx context.Context) (*trust.Verifier, error) {
	c := &revocation.Checker{Timeout: DefaultRevocationTimeout, Cache: s.Trust.RevocationCache(), Now: s.Now}
	p, err := s.Settings.Get(ctx, settings.Proxy)
	if err != nil {
		return nil, err
	}
	if p != "" {
		u, err := url.Parse(p)
		if err != nil {
			return nil, fmt.Errorf("the proxy setting %q is not a URL: %w", p, err)
		}
		c.Proxy = u
	}
	return &trust.Verifier{Store: s.Trust, Checker: c, Now: s.Now}, nil
}

// RefreshRevocation re-checks, with cached answers where they are still
// current, the revocation of every certificate in the store whose record
// is missing or stale. It reports how many certificates it checked. Used
// by the server in the background and after imports.
func (s *Source) RefreshRevocation(ctx context.Context, only string) (int, error) {
	entries, err := s.Store.List(ctx)
	if err != nil {
		return 0, err
	}
	snap, err := s.Trust.Snapshot(ctx)
	if err != nil {
		return 0, err
	}
	records, err := s.Trust.RevocationRecords(ctx)
	if err != nil {
		return 0, err
	}
	v, err := s.Verifier(ctx)
	if err != nil {
		return 0, err
	}
	now := s.Now()
	checked := 0
	for _, e := range entries {
		if e.Pending() || (only != "" && e.Thumbprint != only) {
			continue
		}
		due := false
		for _, t := range snap.ElementThumbprints(e.Cert, now) {
			rec, ok := records[t]
			if !ok || rec.Stale(now) || rec.Result.Status == revocation.Unknown && now.Sub(rec.CheckedAt) > time.Minute {
				due = true
			}
		}
		if !due {
			continue
		}
		if _, err := v.Verify(ctx, e.Cert, nil, false); err != nil {
			return checked, err
		}
		checked++
	}
	return checked, nil // each result stored logs a trust change: running servers judge again
}
