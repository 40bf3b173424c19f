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
	host    string // the MX host name (TLSA base domain, SNI)
	port    int
	records []adns.TLSA
}

// daneFor looks up the TLSA records of an MX host found through a
// DNSSEC-validated MX answer (RFC 7672 2.2). It returns nil when DANE does
// not apply to the host (no validated records, or none usable), and an
// error when the lookup failed: the host must then be skipped (2.2.1).
func (s *Sender) daneFor(ctx context.Context, hostport string) (*danePolicy, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, nil
	}
	port := 25
	fmt.Sscan(p, &port)
	records, secure, err := s.DNSSEC.LookupTLSA(ctx, host, port)
	if err != nil {
		return nil, err
	}
	if !secure {
		return nil, nil
	}
	if u := usableTLSA(records); len(u) > 0 {
		return &danePolicy{host: strings.TrimSuffix(host, "."), port: port, records: u}, nil
	}
	return nil, nil
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
	// RFC 8460: DANE results are reported against the TLSA base domain.
	rpt.PolicyType, rpt.PolicyDomain, rpt.PolicyString, rpt.MXHost = "tlsa", p.host, list, p.host
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
	ok, matched, err := dane.Verify(log, p.records, cs, moxdns.Domain{ASCII: p.host}, []moxdns.Domain{{ASCII: domain}}, nil)
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

// UsableTLSA looks up the TLSA records of _port._tcp.host and returns
// those RFC 7672 lets SMTP use, whether the answer was validated, and
// the lookup's error; for explanations (`cert explain --domain`).
func (r *DNSSECResolver) UsableTLSA(ctx context.Context, host string, port int) ([]adns.TLSA, bool, error) {
	records, secure, err := r.LookupTLSA(ctx, host, port)
	return usableTLSA(records), secure, err
}
