package transport

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/mjl-/adns"
	"github.com/mjl-/mox/dane"
	moxdns "github.com/mjl-/mox/dns"
	moxtlsrpt "github.com/mjl-/mox/tlsrpt"

	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
	"certrelay/internal/tlsrpt"
	"certrelay/internal/tracking"
)

// DANE for outbound SMTP (RFC 7672). The certificate checks are mox's
// (github.com/mjl-/mox/dane: DANE-EE and DANE-TA matching, names and
// dates for DANE-TA). The lookups are written here, with miekg/dns,
// because the resolvers mox builds on (github.com/mjl-/adns) decide
// whether to believe the AD bit from /etc/resolv.conf — loopback servers
// or "options trust-ad" — while certrelay believes it from exactly one
// server: the DNSSEC-validating resolver the administrator names (RFC
// 6698 A.3: the path to it must be trusted, as a resolver on the same
// machine is). Without one, DANE is off: no AD bit from anywhere else is
// trusted.

// PolicyDANE is the policy name of DANE in the trace and explanations.
const PolicyDANE = "DANE"

// DNSSECResolver asks the validating resolver the administrator named,
// and trusts its AD bit. Safe for concurrent use.
type DNSSECResolver struct {
	Addr    string        // ip:port
	Timeout time.Duration // per query; default 5 s
}

// query asks one question with the DO and AD bits set, over UDP and then
// TCP when the answer was truncated.
func (r *DNSSECResolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.SetEdns0(4096, true)
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	c := &dns.Client{Net: "udp", Timeout: timeout}
	resp, _, err := c.ExchangeContext(ctx, m, r.Addr)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, r.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("ask %s about %s %s: %w", r.Addr, name, dns.TypeToString[qtype], err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	}
	return nil, fmt.Errorf("%s answered %s for %s %s", r.Addr, dns.RcodeToString[resp.Rcode], name, dns.TypeToString[qtype])
}

// LookupMX returns the domain's MX records and whether the answer was
// DNSSEC-validated (the AD bit). A name that does not exist, or has no
// MX, is a *net.DNSError with IsNotFound.
func (r *DNSSECResolver) LookupMX(ctx context.Context, domain string) ([]*net.MX, bool, error) {
	resp, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, false, err
	}
	var out []*net.MX
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	if len(out) == 0 {
		return nil, resp.AuthenticatedData, &net.DNSError{Err: "no MX record", Name: domain, IsNotFound: true}
	}
	return out, resp.AuthenticatedData, nil
}

// LookupTLSA returns the TLSA records of _port._tcp.host and whether the
// answer was validated; none (NXDOMAIN or no data) is not an error.
func (r *DNSSECResolver) LookupTLSA(ctx context.Context, host string, port int) ([]adns.TLSA, bool, error) {
	resp, err := r.query(ctx, fmt.Sprintf("_%d._tcp.%s", port, strings.TrimSuffix(host, ".")), dns.TypeTLSA)
	if err != nil {
		return nil, false, err
	}
	var out []adns.TLSA
	for _, rr := range resp.Answer {
		t, ok := rr.(*dns.TLSA)
		if !ok {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			continue
		}
		out = append(out, adns.TLSA{Usage: adns.TLSAUsage(t.Usage), Selector: adns.TLSASelector(t.Selector), MatchType: adns.TLSAMatchType(t.MatchingType), CertAssoc: data})
	}
	return out, resp.AuthenticatedData, nil
}

// usableTLSA keeps the records RFC 7672 3.1 lets SMTP use: DANE-TA(2) and
// DANE-EE(3), with a known selector and matching type.
func usableTLSA(records []adns.TLSA) []adns.TLSA {
	var out []adns.TLSA
	for _, t := range records {
		if (t.Usage == adns.TLSAUsageDANETA || t.Usage == adns.TLSAUsageDANEEE) && t.Selector <= 1 && t.MatchType <= 2 {
			out = append(out, t)
		}
	}
	return out
}

// danePolicy is what DANE requires of one MX host.
type danePolicy struct {
	host    string // the TLSA base domain (SNI): the MX host, or its CNAME target
	mxHost  string // the MX host name as the MX record gave it
	port    int
	records []adns.TLSA
}

// daneFor looks up the TLSA records of an MX host found through a
// DNSSEC-validated MX answer (RFC 7672 2.2). It returns nil when DANE does
// not apply to the host (no validated records, or none usable), and an
// error when a lookup failed: the host must then be skipped (2.2.1).
//
// An MX host that is an alias (CNAME) is followed (2.2.2): when the whole
// expansion was validated, the TLSA records of the final name are used if
// it has any, else those of the MX host's own name; an expansion that was
// not validated leaves only the MX host's name. Either name is accepted in
// a DANE-TA certificate (2.2.3); SNI is the TLSA base domain (8.1).
func (s *Sender) daneFor(ctx context.Context, hostport string) (*danePolicy, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, nil
	}
	host = strings.TrimSuffix(host, ".")
	port := 25
	fmt.Sscan(p, &port)
	base, usable, secure, err := s.DNSSEC.TLSAFor(ctx, host, port)
	if err != nil || !secure || len(usable) == 0 {
		return nil, err
	}
	return &danePolicy{host: base, mxHost: host, port: port, records: usable}, nil
}

// TLSAFor finds the TLSA base domain of an MX host (the host, or its
// CNAME target: see daneFor) and returns it with the records RFC 7672
// lets SMTP use, whether they were validated, and a lookup's error.
func (r *DNSSECResolver) TLSAFor(ctx context.Context, host string, port int) (string, []adns.TLSA, bool, error) {
	host = strings.TrimSuffix(host, ".")
	expanded, authentic, err := r.expand(ctx, host)
	if err != nil {
		return host, nil, false, err
	}
	if authentic && !strings.EqualFold(expanded, host) {
		records, secure, err := r.LookupTLSA(ctx, expanded, port)
		if err != nil {
			return expanded, nil, false, err
		}
		if secure && len(records) > 0 {
			return expanded, usableTLSA(records), true, nil
		}
	}
	records, secure, err := r.LookupTLSA(ctx, host, port)
	return host, usableTLSA(records), secure, err
}

// expand follows the CNAME chain of host in the validating resolver's
// answer to its address query: the final name, and whether the answer
// was validated. A host that is no alias is itself.
func (r *DNSSECResolver) expand(ctx context.Context, host string) (string, bool, error) {
	resp, err := r.query(ctx, host, dns.TypeA)
	if err != nil {
		return host, false, err
	}
	name := dns.Fqdn(host)
	for hops := 0; hops < 10; hops++ {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
				next = c.Target
				break
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	return strings.TrimSuffix(name, "."), resp.AuthenticatedData, nil
}

// daneTLS is DANE on an open session (RFC 7672 2.2, 3): STARTTLS is
// required, and the server's certificate must match one of the usable
// TLSA records; otherwise the message is deferred with the reason.
func (s *Sender) daneTLS(ctx context.Context, client *smtp.Client, c *directory.SendConnector, dec *selection.Decision, hostport, domain string, p *danePolicy, rec *tracking.Record, rpt *tlsrpt.Result) error {
	rec.Policy = PolicyDANE
	list := make([]string, len(p.records))
	for i, t := range p.records {
		list[i] = t.Record()
	}
	// RFC 8460: DANE results are reported against the TLSA base domain,
	// for the MX host as the MX record named it.
	rpt.PolicyType, rpt.PolicyDomain, rpt.PolicyString, rpt.MXHost = "tlsa", p.host, list, p.mxHost
	desc := fmt.Sprintf("%d usable TLSA record(s) at _%d._tcp.%s (%s)", len(p.records), p.port, p.host, strings.Join(list, "; "))
	if !client.Supports("STARTTLS") {
		rec.PolicyWhy = p.host + " has " + desc + " but does not offer STARTTLS"
		rpt.ResultType = string(moxtlsrpt.ResultSTARTTLSNotSupported)
		return tempf("4.7.5", "DANE: %s publishes %s and does not offer STARTTLS; the message waits", p.host, desc)
	}
	cfg := &tls.Config{
		ServerName:         p.host,
		InsecureSkipVerify: true, // checked against the TLSA records below
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       serving.CipherSuites,
	}
	if cert, d := s.Serving.ClientCertificate(dec.Request); cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		rec.ClientCert = d.Winner.Thumbprint
	}
	if err := client.StartTLS(ctx, cfg); err != nil {
		rec.PolicyWhy = "TLS negotiation failed: " + err.Error()
		rt, reason := moxtlsrpt.TLSFailureDetails(err)
		rpt.ResultType, rpt.Reason = string(rt), reason
		return tempf("4.7.5", "DANE: TLS with %s failed: %v; the message waits", hostport, err)
	}
	cs, _ := client.TLSConnectionState()
	rec.TLS = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	if len(cs.PeerCertificates) > 0 {
		rec.PeerCert = cs.PeerCertificates[0].Subject.String()
		rec.PeerThumb = thumbprint(cs.PeerCertificates[0].Raw)
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	more := []moxdns.Domain{{ASCII: domain}}
	if p.mxHost != p.host {
		more = append(more, moxdns.Domain{ASCII: p.mxHost})
	}
	ok, matched, err := dane.Verify(log, p.records, cs, moxdns.Domain{ASCII: p.host}, more, nil)
	if !ok {
		why := fmt.Sprintf("the certificate %s of %s matches none of its %s", rec.PeerThumb, p.host, desc)
		if err != nil {
			why += " (" + err.Error() + ")"
		}
		rec.PolicyWhy = why
		rpt.ResultType, rpt.Reason = string(moxtlsrpt.ResultValidationFailure), "dane-no-match"
		return tempf("4.7.5", "DANE: %s; the message waits", why)
	}
	rec.PolicyWhy = fmt.Sprintf("the certificate %s of %s matches TLSA %s, DNSSEC-validated by the resolver %s", rec.PeerThumb, p.host, matched.Record(), s.DNSSEC.Addr)
	rpt.OK = true
	return nil
}
