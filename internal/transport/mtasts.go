package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/mtasts"
	moxtlsrpt "github.com/mjl-/mox/tlsrpt"

	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
	"certrelay/internal/tlsrpt"
	"certrelay/internal/tracking"
)

// MTA-STS for outbound SMTP (RFC 8461). The record and policy parsers and
// the MX matching are mox's (github.com/mjl-/mox/mtasts); the fetch is
// written here because mox's uses one package-wide HTTP client and the
// system's resolver, while certrelay resolves through the DNS server the
// administrator named and verifies the policy host's certificate against
// this server's trusted roots (the system bundle and those added with
// trust add).

// PolicyMTASTS is the policy name of MTA-STS in the trace.
const PolicyMTASTS = "MTA-STS"

// STS fetches and caches MTA-STS policies. The cache keeps each policy
// for its max_age (at most a year, RFC 8461 3.2) and notices a new policy
// by the id of the domain's _mta-sts TXT record; a domain whose record or
// policy cannot be had is asked again after five minutes. Safe for
// concurrent use.
type STS struct {
	// Resolver looks up the _mta-sts TXT records and the policy hosts'
	// addresses; nil: the system's.
	Resolver *net.Resolver
	// Roots verify the policy hosts' and the MX hosts' certificates
	// (PKIX); nil: the system's.
	Roots func(ctx context.Context) *x509.CertPool
	Now   func() time.Time
	// Port is the HTTPS port of policy hosts; 0: 443.
	Port int
	// Persist keeps fetched policies across restarts (RFC 8461 5.1); nil:
	// in memory only.
	Persist PolicyStore

	mu    sync.Mutex
	cache map[string]*stsEntry
}

// PolicyStore keeps MTA-STS policies across restarts
// (internal/policycache).
type PolicyStore interface {
	LoadPolicy(ctx context.Context, domain string) (id, text string, fetched, expires time.Time, ok bool)
	SavePolicy(ctx context.Context, domain, id, text string, fetched, expires time.Time) error
}

// stsEntry is a domain's cached policy (nil policy: none, until retry).
type stsEntry struct {
	id      string
	policy  *mtasts.Policy
	text    string
	fetched time.Time
	expires time.Time // end of max_age; for a failure, when to ask again
	why     string    // how it was obtained, or why there is none
}

const stsRetry = 5 * time.Minute

func (c *STS) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Text returns the text of domain's cached policy ("" when none).
func (c *STS) Text(domain string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.cache[domain]; e != nil {
		return e.text
	}
	return ""
}

// Policy returns the MTA-STS policy that applies to mail for domain, or
// nil with the reason none applies. A policy in mode none is no policy.
func (c *STS) Policy(ctx context.Context, domain string) (*mtasts.Policy, string) {
	now := c.now()
	r := c.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	c.mu.Lock()
	cached := c.cache[domain]
	c.mu.Unlock()
	if cached == nil && c.Persist != nil {
		// After a restart: the policy kept on disk, while it is valid.
		if id, text, fetched, expires, ok := c.Persist.LoadPolicy(ctx, domain); ok && now.Before(expires) {
			if p, err := mtasts.ParsePolicy(text); err == nil {
				cached = &stsEntry{id: id, policy: p, text: text, fetched: fetched, expires: expires}
				c.put(domain, cached)
			}
		}
	}
	txts, err := r.LookupTXT(ctx, "_mta-sts."+domain)
	var rec *mtasts.Record
	for _, t := range txts {
		if r, ok, err := mtasts.ParseRecord(t); ok && err == nil {
			rec = r
			break
		}
	}
	var dnsErr *net.DNSError
	notFound := errors.As(err, &dnsErr) && dnsErr.IsNotFound
	switch {
	case rec == nil && cached != nil && cached.policy != nil && now.Before(cached.expires):
		// RFC 8461 5.1: a cached policy stays in force until it expires,
		// even while the record is gone or cannot be read.
		return usable(cached.policy, fmt.Sprintf("cached policy id %s (fetched %s, valid until %s)", cached.id, cached.fetched.UTC().Format(time.RFC3339), cached.expires.UTC().Format(time.RFC3339)))
	case rec == nil && (err == nil || notFound):
		return nil, "no _mta-sts." + domain + " record"
	case rec == nil:
		return nil, "the _mta-sts." + domain + " lookup failed: " + err.Error()
	case cached != nil && cached.id == rec.ID && now.Before(cached.expires):
		if cached.policy == nil {
			return nil, cached.why
		}
		return usable(cached.policy, fmt.Sprintf("cached policy id %s (fetched %s, valid until %s)", cached.id, cached.fetched.UTC().Format(time.RFC3339), cached.expires.UTC().Format(time.RFC3339)))
	}
	// A new id, or nothing cached: fetch.
	p, text, err := c.fetch(ctx, domain)
	if err != nil {
		if cached != nil && cached.policy != nil && now.Before(cached.expires) {
			return usable(cached.policy, fmt.Sprintf("cached policy id %s (the policy for id %s could not be fetched: %v)", cached.id, rec.ID, err))
		}
		e := &stsEntry{id: rec.ID, fetched: now, expires: now.Add(stsRetry), why: "the policy of " + domain + " could not be fetched: " + err.Error()}
		c.put(domain, e)
		return nil, e.why
	}
	age := time.Duration(p.MaxAgeSeconds) * time.Second
	if age > 365*24*time.Hour {
		age = 365 * 24 * time.Hour
	}
	e := &stsEntry{id: rec.ID, policy: p, text: text, fetched: now, expires: now.Add(age)}
	c.put(domain, e)
	if c.Persist != nil {
		// A policy not kept is only fetched again after a restart.
		_ = c.Persist.SavePolicy(ctx, domain, e.id, e.text, e.fetched, e.expires)
	}
	return usable(p, fmt.Sprintf("policy id %s fetched now, cached for max_age %ds", rec.ID, p.MaxAgeSeconds))
}

func usable(p *mtasts.Policy, why string) (*mtasts.Policy, string) {
	if p.Mode == mtasts.ModeNone {
		return nil, "mode none: " + why
	}
	return p, why
}

func (c *STS) put(domain string, e *stsEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil {
		c.cache = map[string]*stsEntry{}
	}
	if len(c.cache) > 10000 { // bounded: drop what has expired
		now := c.now()
		for d, x := range c.cache {
			if now.After(x.expires) {
				delete(c.cache, d)
			}
		}
	}
	c.cache[domain] = e
}

// fetch gets https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461
// 3.3): no redirects, status 200, at most 64 KiB, within a minute.
func (c *STS) fetch(ctx context.Context, domain string) (*mtasts.Policy, string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	host := "mta-sts." + domain
	port := c.Port
	if port == 0 {
		port = 443
	}
	var roots *x509.CertPool
	if c.Roots != nil {
		roots = c.Roots(ctx)
	}
	d := &net.Dialer{Resolver: c.Resolver, Timeout: 30 * time.Second}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, net.JoinHostPort(host, fmt.Sprint(port)))
			},
			TLSClientConfig:   &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("%s answered %s, not 200", host, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10+1))
	if err != nil {
		return nil, "", err
	}
	if len(body) > 64<<10 {
		return nil, "", fmt.Errorf("the policy at %s is larger than 64 KiB", host)
	}
	p, err := mtasts.ParsePolicy(string(body))
	if err != nil {
		return nil, "", fmt.Errorf("the policy at %s: %w", host, err)
	}
	return p, string(body), nil
}

// stsMatches reports whether an MX host is among the policy's mx patterns.
func stsMatches(p *mtasts.Policy, host string) bool {
	return p.Matches(dns.Domain{ASCII: strings.ToLower(strings.TrimSuffix(host, "."))})
}

// stsCheck verifies an MX host's certificate as MTA-STS requires (RFC
// 8461 4.2): PKIX-valid for the host name against roots.
func stsCheck(cs tls.ConnectionState, host string, roots *x509.CertPool, now time.Time) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	opts := x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: x509.NewCertPool(), CurrentTime: now}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// hostPolicy is the authenticated-TLS policy of one MX host: DANE when
// its validated TLSA records are usable, otherwise the domain's MTA-STS
// policy, if any.
type hostPolicy struct {
	dane    *danePolicy
	sts     *mtasts.Policy
	stsWhy  string
	stsText string // the policy as served, for TLS reports
	report  bool   // sessions are reported (MX delivery, not domain security)
	optOut  bool   // the message says TLS-Required: No (RFC 8689 5)
}

// tlsRequiredNo reports whether the message's header has
// "TLS-Required: No" (RFC 8689 5).
func tlsRequiredNo(body []byte) bool {
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return false // the end of the header
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("TLS-Required")) {
			return bytes.EqualFold(bytes.TrimSpace(v), []byte("No"))
		}
	}
	return false
}

// report passes a session's TLS outcome to Results.
func (s *Sender) report(ctx context.Context, r tlsrpt.Result) {
	if s.Results == nil {
		return
	}
	r.Time = time.Now()
	s.Results(ctx, r)
}

// remoteHost is the IP address the client is connected to.
func remoteHost(c *smtp.Client) string {
	if a := c.RemoteAddr(); a != nil {
		h, _, err := net.SplitHostPort(a.String())
		if err == nil {
			return h
		}
	}
	return ""
}

// hostName returns the host of a host:port.
func hostName(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func (s *Sender) stsRoots(ctx context.Context) *x509.CertPool {
	if s.STS != nil && s.STS.Roots != nil {
		return s.STS.Roots(ctx)
	}
	return nil
}

// stsTLS is MTA-STS in mode enforce on an open session (RFC 8461 4.2,
// 5): STARTTLS is required and the certificate must be PKIX-valid for the
// MX host; otherwise the message is deferred with the reason.
func (s *Sender) stsTLS(ctx context.Context, client *smtp.Client, dec *selection.Decision, hostport, domain string, pol hostPolicy, rec *tracking.Record, rpt *tlsrpt.Result) error {
	rec.Policy = PolicyMTASTS
	name := hostName(hostport)
	if !client.Supports("STARTTLS") {
		rec.PolicyWhy = "mode enforce (" + pol.stsWhy + "): " + name + " does not offer STARTTLS"
		rpt.ResultType = string(moxtlsrpt.ResultSTARTTLSNotSupported)
		return tempf("4.7.5", "MTA-STS: the policy of %s is enforce and %s does not offer STARTTLS; the message waits", domain, name)
	}
	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, CipherSuites: serving.CipherSuites}
	if cert, d := s.Serving.ClientCertificate(dec.Request); cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		rec.ClientCert = d.Winner.Thumbprint
	}
	if err := client.StartTLS(ctx, cfg); err != nil {
		rec.PolicyWhy = "mode enforce (" + pol.stsWhy + "): TLS failed: " + err.Error()
		rt, reason := moxtlsrpt.TLSFailureDetails(err)
		rpt.ResultType, rpt.Reason = string(rt), reason
		return tempf("4.7.5", "MTA-STS: the policy of %s is enforce and TLS with %s failed: %v; the message waits", domain, name, err)
	}
	cs, _ := client.TLSConnectionState()
	rec.TLS = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	if len(cs.PeerCertificates) > 0 {
		rec.PeerCert = cs.PeerCertificates[0].Subject.String()
		rec.PeerThumb = thumbprint(cs.PeerCertificates[0].Raw)
	}
	if err := stsCheck(cs, name, s.stsRoots(ctx), time.Now()); err != nil {
		rec.PolicyWhy = "mode enforce (" + pol.stsWhy + "): the certificate " + rec.PeerThumb + " of " + name + " is not valid for it: " + err.Error()
		rt, reason := moxtlsrpt.TLSFailureDetails(err)
		rpt.ResultType, rpt.Reason = string(rt), reason
		return tempf("4.7.5", "MTA-STS: the policy of %s is enforce and the certificate %s of %s is not valid for it (%v); the message waits", domain, rec.PeerThumb, name, err)
	}
	rec.PolicyWhy = "mode enforce (" + pol.stsWhy + "): " + name + " is a listed MX host and its certificate " + rec.PeerThumb + " is valid for it (trusted roots)"
	rpt.OK = true
	return nil
}

// stsTestingOutcome says how a session in TLS fared against a policy in
// mode testing: what enforce would have done.
func (s *Sender) stsTestingOutcome(ctx context.Context, cs tls.ConnectionState, hostport string, pol hostPolicy, rpt *tlsrpt.Result) string {
	name := hostName(hostport)
	if !stsMatches(pol.sts, name) {
		rpt.ResultType, rpt.Reason = string(moxtlsrpt.ResultValidationFailure), "mx-not-in-policy"
		return "mode testing (" + pol.stsWhy + "): " + name + " is not a listed MX host, which enforce would refuse; delivered anyway"
	}
	if err := stsCheck(cs, name, s.stsRoots(ctx), time.Now()); err != nil {
		rt, reason := moxtlsrpt.TLSFailureDetails(err)
		rpt.ResultType, rpt.Reason = string(rt), reason
		return "mode testing (" + pol.stsWhy + "): the certificate of " + name + " is not valid for it (" + err.Error() + "), which enforce would refuse; delivered anyway"
	}
	rpt.OK = true
	return "mode testing (" + pol.stsWhy + "): " + name + " is a listed MX host with a valid certificate"
}

// stsReport starts the TLS report entry of a session under an MTA-STS
// policy (RFC 8460: against the recipient domain, the policy's lines).
func stsReport(rpt *tlsrpt.Result, domain string, pol hostPolicy, mx string) {
	rpt.PolicyType, rpt.PolicyDomain, rpt.MXHost = "sts", domain, mx
	rpt.PolicyString = nil
	for _, l := range strings.Split(strings.TrimSpace(pol.stsText), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			rpt.PolicyString = append(rpt.PolicyString, l)
		}
	}
}

// requireTLSSmartHost is REQUIRETLS (RFC 8689 4.2.1) where no DANE,
// MTA-STS enforce or domain-security policy applies: only a smart host
// (a name the administrator configured, not one found in DNS) may be
// used, over STARTTLS with a certificate PKIX-valid for that name against
// the trusted roots. Anything else fails the message for good (5.7.10),
// as a later attempt would meet the same policy.
func (s *Sender) requireTLSSmartHost(ctx context.Context, client *smtp.Client, c *directory.SendConnector, dec *selection.Decision, hostport string, rec *tracking.Record) error {
	rec.Policy = "REQUIRETLS"
	name := hostName(hostport)
	if len(c.SmartHosts) == 0 {
		rec.PolicyWhy = "the sender required TLS (REQUIRETLS) and no DANE or MTA-STS enforce policy authenticates " + name
		return permf("5.7.10", "REQUIRETLS: no DANE or MTA-STS enforce policy authenticates %s, and the sender required it (RFC 8689)", name)
	}
	if !client.Supports("STARTTLS") {
		rec.PolicyWhy = "REQUIRETLS: smart host " + name + " does not offer STARTTLS"
		return permf("5.7.10", "REQUIRETLS: smart host %s does not offer STARTTLS, and the sender required TLS (RFC 8689)", name)
	}
	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, CipherSuites: serving.CipherSuites}
	if cert, d := s.Serving.ClientCertificate(dec.Request); cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		rec.ClientCert = d.Winner.Thumbprint
	}
	if err := client.StartTLS(ctx, cfg); err != nil {
		rec.PolicyWhy = "REQUIRETLS: TLS with smart host " + name + " failed: " + err.Error()
		return tempf("4.7.10", "REQUIRETLS: TLS with smart host %s failed: %v; the message waits", name, err)
	}
	cs, _ := client.TLSConnectionState()
	rec.TLS = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	if len(cs.PeerCertificates) > 0 {
		rec.PeerCert = cs.PeerCertificates[0].Subject.String()
		rec.PeerThumb = thumbprint(cs.PeerCertificates[0].Raw)
	}
	if err := stsCheck(cs, name, s.stsRoots(ctx), time.Now()); err != nil {
		rec.PolicyWhy = "REQUIRETLS: the certificate of smart host " + name + " is not valid for it: " + err.Error()
		return permf("5.7.10", "REQUIRETLS: the certificate %s of smart host %s is not valid for it (%v), and the sender required authenticated TLS (RFC 8689)", rec.PeerThumb, name, err)
	}
	rec.PolicyWhy = "REQUIRETLS: smart host " + name + " presented a certificate valid for its name (trusted roots)"
	return nil
}
