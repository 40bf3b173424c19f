package admin

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"certrelay/internal/directory"
	"certrelay/internal/dnsname"
	"certrelay/internal/selection"
	"certrelay/internal/settings"
	"certrelay/internal/tracking"
	"certrelay/internal/transport"
)

// DomainPolicy is what `cert explain --direction out --domain D` adds:
// the send connector the domain routes to, the TLS policy that applies to
// mail for it (domain security, DANE, MTA-STS or opportunistic) and why,
// and the last delivery attempt the message trace holds for it, with why
// the partner's certificate passed or failed.
type DomainPolicy struct {
	Domain      string
	Policy      string           // transport.Policy…
	Why         []string         // how the policy was found, a step a line
	LastAttempt *tracking.Record `json:",omitempty"`
}

// explainDomain routes domain and works out its policy now, with the
// same lookups a delivery makes (DNS, the MTA-STS policy fetch); it
// returns the selection request of the connector's client certificate.
func (a *Admin) explainDomain(ctx context.Context, srv directory.Server, domain string, ex *Explanation) (selection.Request, error) {
	n, err := dnsname.ParseHost(domain)
	if err != nil {
		return selection.Request{}, invalidValue("Domain", domain, err)
	}
	d := string(n)
	conns, err := a.Dir.SendConnectors(ctx)
	if err != nil {
		return selection.Request{}, err
	}
	c, why := transport.Route(conns, srv.Name, d)
	if c == nil {
		return selection.Request{}, failed(NotFound, "%s", why).field("Domain", domain)
	}
	ex.Connector = c.Name
	p := &DomainPolicy{Domain: d}
	ex.DomainPolicy = p
	get := func(k string) string { v, _ := a.Settings.Get(ctx, k); return v }
	step := func(format string, args ...any) { p.Why = append(p.Why, fmt.Sprintf(format, args...)) }
	if recs, err := tracking.Read(a.dataDir, ""); err == nil {
		for i := len(recs) - 1; i >= 0; i-- {
			if recipientsIn(recs[i].Recipients, d) {
				r := recs[i]
				p.LastAttempt = &r
				break
			}
		}
	}
	step("%s routes to send connector %q", d, c.Name)
	if listed := contains(settings.SplitList(get(settings.TLSSendDomainSecureList)), d); listed || c.DomainSecureEnabled {
		p.Policy = transport.PolicyDomainSecure
		why := d + " is on TLSSendDomainSecureList"
		if !listed {
			why = fmt.Sprintf("send connector %q has DomainSecureEnabled", c.Name)
		}
		step("%s: STARTTLS is required, and the partner's certificate must hold %s, chain to a trusted root and pass revocation; this server presents the certificate below as its client certificate", why, d)
		return selection.ForConnector(c.Fqdn, srv.Fqdn, c.TlsCertificateName, false, ex.svc), nil
	}
	if len(c.SmartHosts) > 0 {
		p.Policy = transport.PolicyOpportunistic
		step("the connector sends through smart hosts (%s), so DANE and MTA-STS, which apply to a domain's MX hosts, do not", strings.Join(c.SmartHosts, ", "))
		if c.RequireTLS {
			step("the connector requires TLS: mail waits rather than go in plain text")
		}
		return selection.ForConnector(c.Fqdn, srv.Fqdn, c.TlsCertificateName, false, ex.svc), nil
	}
	port := c.Port
	if port == 0 {
		port = 25
	}
	var netRes *net.Resolver
	if addr := get(settings.DNSResolver); addr != "" || get(settings.DNSSECResolver) != "" {
		if addr == "" {
			addr = get(settings.DNSSECResolver)
		}
		netRes = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	}
	if addr := get(settings.DNSSECResolver); addr != "" {
		r := &transport.DNSSECResolver{Addr: addr}
		mxs, secure, err := r.LookupMX(ctx, d)
		var dnsErr *net.DNSError
		switch {
		case err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound):
			step("DANE: the MX lookup through the validating resolver %s failed: %v", addr, err)
		case !secure:
			step("DANE: the MX answer for %s from %s is not DNSSEC-validated (no AD bit), so DANE does not apply", d, addr)
		default:
			hosts := []string{d}
			if len(mxs) > 0 {
				sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
				hosts = hosts[:0]
				for _, mx := range mxs {
					hosts = append(hosts, strings.TrimSuffix(mx.Host, "."))
				}
			}
			dane := false
			for _, h := range hosts {
				base, recs, sec, err := r.TLSAFor(ctx, h, port)
				switch {
				case err != nil:
					step("DANE: the TLSA lookup of _%d._tcp.%s failed (%v): that host is skipped", port, base, err)
					dane = true
				case sec && len(recs) > 0:
					list := make([]string, len(recs))
					for i, t := range recs {
						list[i] = t.Record()
					}
					alias := ""
					if base != h {
						alias = " (its CNAME target, RFC 7672 2.2.2)"
					}
					step("DANE: %s publishes usable, DNSSEC-validated TLSA records at _%d._tcp.%s%s (%s): its certificate must match one", h, port, base, alias, strings.Join(list, "; "))
					dane = true
				default:
					step("DANE: %s has no usable validated TLSA record", h)
				}
			}
			if dane {
				p.Policy = transport.PolicyDANE
				return selection.ForConnector(c.Fqdn, srv.Fqdn, c.TlsCertificateName, false, ex.svc), nil
			}
		}
	} else {
		step("DANE: off — no DNSSEC-validating resolver is named (server set --dnssec-resolver), and no other resolver's AD bit is trusted")
	}
	sts := &transport.STS{Resolver: netRes, Roots: a.trustedRoots}
	if pol, why := sts.Policy(ctx, d); pol != nil {
		p.Policy = transport.PolicyMTASTS
		mx := make([]string, len(pol.MX))
		for i, m := range pol.MX {
			mx[i] = m.LogString()
		}
		step("MTA-STS: mode %s, MX hosts %s (%s)", pol.Mode, strings.Join(mx, ", "), why)
		if pol.Mode == "testing" {
			p.Policy = transport.PolicyMTASTS + " testing"
			step("testing: mail is delivered as without a policy, and what enforce would refuse is reported")
		}
	} else {
		step("MTA-STS: %s", why)
		p.Policy = transport.PolicyOpportunistic
		step("opportunistic: STARTTLS when the host offers it, any certificate accepted")
	}
	return selection.ForConnector(c.Fqdn, srv.Fqdn, c.TlsCertificateName, false, ex.svc), nil
}

// trustedRoots is the trust store's roots, for MTA-STS's PKIX checks.
func (a *Admin) trustedRoots(ctx context.Context) *x509.CertPool {
	snap, err := a.Trust.Snapshot(ctx)
	if err != nil {
		return x509.NewCertPool()
	}
	return snap.RootPool()
}

func recipientsIn(rcpts []string, domain string) bool {
	for _, r := range rcpts {
		if i := strings.LastIndexByte(r, '@'); i >= 0 && strings.EqualFold(r[i+1:], domain) {
			return true
		}
	}
	return false
}
