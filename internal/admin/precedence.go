package admin

import (
	"certrelay/internal/certinfo"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// precedenceWarnings returns M5's warnings (texts with marks, see text.go) for certificate t, just enabled
// for SMTP: for each name it holds, and each connector FQDN it matches,
// where selection picks another certificate, which one takes precedence
// and which connectors use that name.
func (a *Admin) precedenceWarnings(ctx context.Context, srv directory.Server, t string) ([]string, error) {
	cands, now, err := a.NewCandidateBuilder().Build(ctx)
	if err != nil {
		return nil, err
	}
	var me *selection.Candidate
	for i := range cands {
		if cands[i].Thumbprint == t {
			me = &cands[i]
		}
	}
	if me == nil {
		return nil, nil
	}
	conns, err := a.Dir.ReceiveConnectors(ctx, srv.Name)
	if err != nil {
		return nil, err
	}
	byFqdn := map[string][]string{}
	for _, c := range conns {
		f := c.Fqdn
		if f == "" {
			f = srv.Fqdn
		}
		byFqdn[strings.ToLower(f)] = append(byFqdn[strings.ToLower(f)], c.Name)
	}
	names := map[string]bool{}
	for _, d := range me.Domains {
		if !selection.IsWildcard(d) {
			names[strings.ToLower(d)] = true
		}
	}
	for f := range byFqdn {
		if selection.MatchName(me.Domains, f, false) {
			names[f] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var out []string
	for _, fqdn := range sorted {
		d := selection.Select(cands, selection.Request{FQDN: fqdn, Service: store.SMTP}, now)
		if d.Winner == nil {
			continue
		}
		if d.Winner.Thumbprint == t {
			if w := lastResortWarning(&d, fqdn, byFqdn[fqdn], now); w != "" {
				out = append(out, w)
			}
			continue
		}
		kind := "certificate"
		if !d.Winner.IsSelfSigned {
			kind = "CA signed certificate"
		}
		w := msgf("This certificate will not be used for external TLS connections with an FQDN of '%s' because the %s with thumbprint '%s' takes precedence.", fqdn, kind, d.Winner.Thumbprint)
		if cs := byFqdn[fqdn]; len(cs) > 0 {
			w += msgf(" The following connectors match that FQDN: %s.", strings.Join(cs, ", "))
		}
		out = append(out, w)
	}
	return out, nil
}

// lastResortWarning says, when the certificate just enabled wins for
// fqdn only as one of S4's last resorts, that sessions use it and which
// event each logs.
func lastResortWarning(d *selection.Decision, fqdn string, conns []string, now time.Time) string {
	var w string
	switch d.LastResort(now) {
	case selection.WonRevocationUnknown:
		w = msgf("This certificate is used for TLS connections with an FQDN of '%s' as a last resort: its revocation could not be established and no certificate from a trusted CA that holds the name passes every check, so each session that uses it logs event 16030.", fqdn)
	case selection.WonExpired:
		w = msgf("This certificate is used for TLS connections with an FQDN of '%s' as a last resort: it has expired and nothing valid comes before it, so event 12016 is logged.", fqdn)
	default:
		return ""
	}
	if len(conns) > 0 {
		w += msgf(" The following connectors match that FQDN: %s.", strings.Join(conns, ", "))
	}
	return w
}

// statusWarning is what M5 says about a certificate that cannot serve as
// it stands, in agreement with selection (C9, S4): a CA-issued
// certificate whose revocation could not be established, and an expired
// one, are still used as last resorts, each time with an event; any other
// Status keeps it from every service. A Valid certificate whose private
// key is in trouble gets the key's problem and fix. "" when all is well.
func statusWarning(c Certificate, now time.Time) string {
	switch {
	case c.Status == trust.Valid && c.StatusDetail == "", c.Status == trust.PendingRequest, c.NotAfter == nil:
		return ""
	case c.Status == trust.Valid:
		return msgf("Its private key needs attention: %s. %s", c.StatusDetail, c.Fix)
	}
	head := msgf("Its status is %s (%s).", c.Status, c.StatusDetail)
	switch selection.Usability(&selection.Candidate{Status: c.Status, IsSelfSigned: c.IsSelfSigned, NotAfter: *c.NotAfter}, now) {
	case selection.WonRevocationUnknown:
		return head + " Services use it only as a last resort: when no certificate from a trusted CA that holds the name passes every check, sessions get it anyway and each logs event 16030. " + escapeMarks(c.Fix)
	case selection.WonExpired:
		return head + " Services use it only as a last resort: when no valid certificate comes before it (SPEC S4), sessions get it anyway and event 12016 is logged. " + escapeMarks(c.Fix)
	}
	return head + " Services will not use it until that is fixed. " + escapeMarks(c.Fix)
}

// connectorsNaming returns the connectors whose TlsCertificateName names
// c, when no other certificate of the store has c's issuer and subject.
func (a *Admin) connectorsNaming(ctx context.Context, c Certificate) ([]string, error) {
	if c.Issuer == "" {
		return nil, nil
	}
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return nil, err
	}
	conns, err := a.Dir.ReceiveConnectors(ctx, srv.Name)
	if err != nil {
		return nil, err
	}
	sends, err := a.Dir.SendConnectors(ctx)
	if err != nil {
		return nil, err
	}
	type named struct{ name, tls string }
	var all []named
	for _, rc := range conns {
		all = append(all, named{fmt.Sprintf("%q", rc.Name), rc.TlsCertificateName})
	}
	for _, sc := range sends {
		all = append(all, named{fmt.Sprintf("%q (send)", sc.Name), sc.TlsCertificateName})
	}
	var hits []string
	for _, n := range all {
		if n.tls == "" {
			continue
		}
		issuer, subject, err := selection.ParseTLSCertificateName(n.tls)
		if err == nil && selection.EqualNames(issuer, c.Issuer) && selection.EqualNames(subject, c.Subject) {
			hits = append(hits, n.name)
		}
	}
	if len(hits) == 0 {
		return nil, nil
	}
	entries, err := a.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Cert == nil || e.Thumbprint == c.Thumbprint {
			continue
		}
		if selection.EqualNames(certinfo.NameString(e.Cert.RawIssuer), c.Issuer) && selection.EqualNames(certinfo.NameString(e.Cert.RawSubject), c.Subject) {
			return nil, nil // another certificate answers the name
		}
	}
	return hits, nil
}
