package transport

import (
	"bytes"
	"certrelay/internal/trace"
	"certrelay/internal/tracking"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mjl-/mox/mtasts"
	moxtlsrpt "github.com/mjl-/mox/tlsrpt"

	"certrelay/internal/directory"
	"certrelay/internal/queue"
	"certrelay/internal/selection"
	"certrelay/internal/servercred"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
	"certrelay/internal/store"
	"certrelay/internal/tlsrpt"
)

// Sender delivers the queue's remote recipients through send connectors
// (SPEC S1, S4a, DS1, DS2): it routes the destination domain to a connector,
// tries its smart hosts (or the domain's MX hosts) in order, offers the
// certificate selection picks for the connector's FQDN as the client
// certificate over STARTTLS, and reports each recipient's outcome.
// Safe for concurrent use.
type Sender struct {
	State    func() *State
	Serving  *serving.Layer // the client certificates
	Resolver *net.Resolver  // MX and address lookups; nil: the system's
	Log      *slog.Logger
	Track    func(tracking.Record) // optional: the message trace
	Events   EventSink             // optional: direct trust's events (2018, 2019, 12019, 12012–12024), domain security's (11013–11020)
	// DNSSEC is the validating resolver the administrator named, whose
	// AD bit DANE trusts (RFC 7672); nil: no DANE (MX lookups go through
	// Resolver).
	DNSSEC *DNSSECResolver
	// STS fetches and caches MTA-STS policies (RFC 8461); nil: none.
	STS *STS
	// Results, when set, is told the TLS outcome of every session with a
	// domain's MX host, for TLS reporting (RFC 8460); it must not block
	// for long.
	Results func(ctx context.Context, r tlsrpt.Result)
	// Peers validates partners' certificates for domain security (DS1);
	// nil: mail to a domain-secured domain is deferred.
	Peers PeerVerifier
	// Credential is this server's organisation credential (servercred),
	// for hubs that cannot authenticate by certificate; nil: none.
	Credential *servercred.Key
	// Trace, when set, receives direct trust's decisions (SPEC D2).
	Trace *trace.Hub
	// DialTimeout bounds each connection attempt; default 30 s.
	DialTimeout time.Duration
	// Dial, when set, replaces the network dial (tests).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

var _ queue.Deliverer = (*Sender)(nil)

// tempf and permf build the errors Deliver reports per recipient.
func tempf(code, format string, args ...any) error {
	return fmt.Errorf("%s %s", code, fmt.Sprintf(format, args...))
}

func permf(code, format string, args ...any) error {
	return queue.Permanent(fmt.Errorf("%s %s", code, fmt.Sprintf(format, args...)))
}

// Deliver implements queue.Deliverer.
func (s *Sender) Deliver(ctx context.Context, d queue.Delivery) []queue.Outcome {
	st := s.State()
	if name, ok := strings.CutPrefix(d.Destination, serverPrefix); ok {
		return s.deliverOrg(ctx, st, name, d)
	}
	all := func(err error) []queue.Outcome {
		out := make([]queue.Outcome, len(d.Recipients))
		for i, r := range d.Recipients {
			out[i] = queue.Outcome{Idx: r.Idx, Err: err}
		}
		return out
	}
	conn, why := Route(st.Send, st.Server.Name, d.Destination)
	if conn == nil {
		// A connector of another server (an edge's to the internet):
		// the mail goes to that server, over X-AnonymousTLS.
		if _, via := RouteVia(st.Send, st.Server.Name, d.Destination); via != "" {
			return s.deliverOrg(ctx, st, via, d)
		}
		return all(tempf("4.4.4", "%s", why))
	}
	if conn.MaxMessageSize > 0 && int64(len(d.Body)) > conn.MaxMessageSize {
		return all(permf("5.3.4", "the message (%d bytes) is larger than send connector %q allows (%d bytes)", len(d.Body), conn.Name, conn.MaxMessageSize))
	}
	req := selection.ForConnector(conn.Fqdn, st.Server.Fqdn, conn.TlsCertificateName, false, store.SMTP)
	dec := s.Serving.Select(req)
	if conn.TlsCertificateName != "" && dec.Winner == nil {
		return all(tempf("454 4.7.5", "the certificate send connector %q names (%s) is not in the personal store or cannot be used: %s", conn.Name, conn.TlsCertificateName, dec.Why))
	}
	hosts, mxSecure, err := s.hosts(ctx, conn, d.Destination)
	if err != nil {
		return all(err)
	}
	domain := strings.ToLower(d.Destination)
	secured := st.SendDomainSecure[domain] || conn.DomainSecureEnabled
	var pol hostPolicy
	// RFC 8689 5: a message marked "TLS-Required: No" (and not sent with
	// REQUIRETLS) asks that DANE and MTA-STS failures not stop it; domain
	// security, the administrator's agreement with a partner, still holds.
	pol.optOut = !secured && !d.Meta.RequireTLS && tlsRequiredNo(d.Body)
	if !secured && !pol.optOut && len(conn.SmartHosts) == 0 && s.STS != nil {
		pol.sts, pol.stsWhy = s.STS.Policy(ctx, domain)
		pol.stsText = s.STS.Text(domain)
	}
	pol.report = !secured && len(conn.SmartHosts) == 0
	// lastErr says the destination is unreachable (queue.Unreachable, so
	// the queue holds its other mail) only when no host took a connection.
	var lastErr error
	reached := false
	for _, host := range hosts {
		pol.dane = nil
		if mxSecure && !secured && !pol.optOut {
			// RFC 7672 2.2: the MX answer was validated, so each MX
			// host's TLSA records say whether DANE applies to it.
			if pol.dane, err = s.daneFor(ctx, host); err != nil {
				lastErr = tempf("4.7.5", "DANE: the TLSA lookup for %s failed, so it is skipped: %v", host, err)
				continue
			}
		}
		if pol.dane == nil && pol.sts != nil && pol.sts.Mode == mtasts.ModeEnforce && !stsMatches(pol.sts, hostName(host)) {
			// RFC 8461 4.1: an MX host the policy does not list is not used.
			lastErr = tempf("4.7.5", "MTA-STS: the policy of %s (mode enforce; %s) does not list the MX host %s, so it is skipped", domain, pol.stsWhy, hostName(host))
			var rpt tlsrpt.Result
			stsReport(&rpt, domain, pol, hostName(host))
			rpt.ResultType, rpt.Reason = string(moxtlsrpt.ResultValidationFailure), "mx-not-in-policy"
			s.report(ctx, rpt)
			s.track(tracking.Record{Time: time.Now(), MessageID: d.MsgID, Connector: conn.Name, Host: host, Policy: PolicyMTASTS, PolicyWhy: pol.stsWhy}, lastErr)
			continue
		}
		outs, err := s.tryHost(ctx, st, conn, dec, host, d, pol)
		if err == nil {
			return outs
		}
		lastErr = err
		reached = reached || !queue.IsUnreachable(err)
		if ctx.Err() != nil {
			break
		}
	}
	if reached || ctx.Err() != nil {
		var u *queue.UnreachableError
		if errors.As(lastErr, &u) {
			lastErr = u.Err
		}
	}
	return all(lastErr)
}

// hosts returns the addresses to try, in order: the smart hosts, or the
// MX hosts by preference (the domain itself when it has no MX, RFC 5321
// 5.1).
func (s *Sender) hosts(ctx context.Context, c *directory.SendConnector, domain string) (hosts []string, mxSecure bool, err error) {
	port := strconv.Itoa(c.Port)
	if c.Port == 0 {
		port = "25"
	}
	withPort := func(h string) string {
		if _, _, err := net.SplitHostPort(h); err == nil {
			return h
		}
		return net.JoinHostPort(strings.TrimSuffix(h, "."), port)
	}
	if len(c.SmartHosts) > 0 {
		out := make([]string, len(c.SmartHosts))
		for i, h := range c.SmartHosts {
			out[i] = withPort(h)
		}
		return out, false, nil
	}
	r := s.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	var mxs []*net.MX
	if s.DNSSEC != nil {
		mxs, mxSecure, err = s.DNSSEC.LookupMX(ctx, domain)
	} else {
		mxs, err = r.LookupMX(ctx, domain)
	}
	var dnsErr *net.DNSError
	switch {
	case err == nil && len(mxs) == 1 && mxs[0].Host == ".":
		return nil, false, permf("5.1.10", "%s accepts no mail (null MX, RFC 7505)", domain)
	case err == nil && len(mxs) > 0:
		sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
		out := make([]string, len(mxs))
		for i, mx := range mxs {
			out[i] = withPort(mx.Host)
		}
		return out, mxSecure, nil
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		// No MX: the domain's own address (implicit MX; RFC 7672 2.2.2
		// then looks for TLSA records at the domain itself).
		if _, err := r.LookupHost(ctx, domain); err != nil {
			return nil, false, permf("5.1.2", "%s has no MX and no address: the domain does not exist", domain)
		}
		return []string{withPort(domain)}, mxSecure, nil
	}
	return nil, false, tempf("4.4.3", "MX lookup for %s failed: %v", domain, err)
}

// tryHost runs one SMTP session with host. It returns an error when the
// host could not take the message (try the next one), and otherwise the
// per-recipient outcomes.
func (s *Sender) tryHost(ctx context.Context, st *State, c *directory.SendConnector, dec *selection.Decision, host string, d queue.Delivery, pol hostPolicy) ([]queue.Outcome, error) {
	rec := tracking.Record{Time: time.Now(), MessageID: d.MsgID, Connector: c.Name, Host: host}
	for _, r := range d.Recipients {
		rec.Recipients = append(rec.Recipients, r.Address)
	}
	fqdn := heloName(c, st)
	client, err := s.connect(ctx, host)
	if err != nil {
		return nil, s.track(rec, queue.Unreachable(tempf("4.4.1", "cannot connect to %s: %v", host, err)))
	}
	defer client.Close()
	client.LocalName = fqdn
	if err := client.Hello(ctx, fqdn); err != nil {
		return nil, s.track(rec, sessionError(host, "EHLO", err))
	}
	if st.SendDomainSecure[strings.ToLower(d.Destination)] || c.DomainSecureEnabled {
		if err := s.domainSecureTLS(ctx, client, c, dec, host, d.Destination, &rec); err != nil {
			_ = client.Quit(ctx)
			return nil, s.track(rec, err)
		}
		return s.transact(ctx, client, rec, host, d)
	}
	// The session's TLS outcome for the daily report (RFC 8460), for
	// deliveries to a domain's MX hosts.
	rpt := tlsrpt.Result{PolicyType: "no-policy-found", PolicyDomain: strings.ToLower(d.Destination), MXHost: hostName(host), ReceivingIP: remoteHost(client)}
	if pol.sts != nil {
		stsReport(&rpt, strings.ToLower(d.Destination), pol, hostName(host))
	}
	if pol.report {
		defer func() { s.report(ctx, rpt) }()
	}
	if pol.dane != nil {
		if err := s.daneTLS(ctx, client, c, dec, host, strings.ToLower(d.Destination), pol.dane, &rec, &rpt); err != nil {
			_ = client.Quit(ctx)
			return nil, s.track(rec, err)
		}
		return s.transact(ctx, client, rec, host, d)
	}
	if pol.sts != nil && pol.sts.Mode == mtasts.ModeEnforce {
		if err := s.stsTLS(ctx, client, dec, host, strings.ToLower(d.Destination), pol, &rec, &rpt); err != nil {
			_ = client.Quit(ctx)
			return nil, s.track(rec, err)
		}
		return s.transact(ctx, client, rec, host, d)
	}
	if d.Meta.RequireTLS {
		// RFC 8689 4.2.1: no DANE, MTA-STS enforce or domain security
		// authenticates this host; a smart host may still be checked by
		// its configured name against the trusted roots.
		if err := s.requireTLSSmartHost(ctx, client, c, dec, host, &rec); err != nil {
			rpt.ResultType, rpt.Reason = string(moxtlsrpt.ResultValidationFailure), "requiretls-unauthenticated"
			_ = client.Quit(ctx)
			return nil, s.track(rec, err)
		}
		rpt.OK = true
		return s.transact(ctx, client, rec, host, d)
	}
	rec.Policy = PolicyOpportunistic
	rec.PolicyWhy = "no domain security, DANE or MTA-STS policy applies: STARTTLS when offered, any certificate accepted"
	if pol.optOut {
		rec.PolicyWhy = "the message says TLS-Required: No (RFC 8689), so DANE and MTA-STS were not applied: STARTTLS when offered, any certificate accepted"
	}
	if pol.sts != nil { // mode testing: delivered as without a policy, the outcome reported
		rec.Policy = PolicyMTASTS + " testing"
		rec.PolicyWhy = "mode testing (" + pol.stsWhy + "): STARTTLS not offered, which enforce would refuse"
	}
	plainRetry := false
	if client.Supports("STARTTLS") {
		cfg := &tls.Config{
			ServerName:         serverName(host),
			InsecureSkipVerify: true, // opportunistic TLS accepts any server certificate (DS2)
			MinVersion:         tls.VersionTLS12,
			CipherSuites:       serving.CipherSuites,
		}
		if cert, d := s.Serving.ClientCertificate(dec.Request); cert != nil {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
			rec.ClientCert = d.Winner.Thumbprint
		}
		if err := client.StartTLS(ctx, cfg); err != nil {
			if c.RequireTLS {
				return nil, s.track(rec, tempf("4.7.5", "TLS with %s failed and send connector %q requires it: %v", host, c.Name, err))
			}
			plainRetry = true
			rt, reason := moxtlsrpt.TLSFailureDetails(err)
			rpt.ResultType, rpt.Reason = string(rt), reason
			if pol.sts != nil {
				rec.PolicyWhy = "mode testing (" + pol.stsWhy + "): TLS failed (" + err.Error() + "), which enforce would refuse; sent in plain text"
			}
			s.Log.Warn("STARTTLS failed; retrying in plain text", "host", host, "err", err)
		} else if cs, ok := client.TLSConnectionState(); ok {
			rec.TLS = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
			if len(cs.PeerCertificates) > 0 {
				rec.PeerCert = cs.PeerCertificates[0].Subject.String()
				rec.PeerThumb = thumbprint(cs.PeerCertificates[0].Raw)
			}
			if pol.sts != nil {
				rec.PolicyWhy = s.stsTestingOutcome(ctx, cs, host, pol, &rpt)
			} else {
				rpt.OK = true
			}
		}
	} else if c.RequireTLS {
		rpt.ResultType = string(moxtlsrpt.ResultSTARTTLSNotSupported)
		_ = client.Quit(ctx)
		return nil, s.track(rec, tempf("4.7.10", "send connector %q requires TLS and %s does not offer STARTTLS; the message waits", c.Name, host))
	} else {
		rpt.ResultType = string(moxtlsrpt.ResultSTARTTLSNotSupported)
	}
	if plainRetry {
		client.Close()
		if client, err = s.connect(ctx, host); err != nil {
			return nil, s.track(rec, tempf("4.4.1", "cannot reconnect to %s: %v", host, err))
		}
		defer client.Close()
		client.LocalName = fqdn
		if err := client.Hello(ctx, fqdn); err != nil {
			return nil, s.track(rec, sessionError(host, "EHLO", err))
		}
	}
	return s.transact(ctx, client, rec, host, d)
}

// transact sends the message in an established session and reports each
// recipient's outcome.
func (s *Sender) transact(ctx context.Context, client *smtp.Client, rec tracking.Record, host string, d queue.Delivery) ([]queue.Outcome, error) {
	if d.Meta.RequireTLS && !client.Supports("REQUIRETLS") {
		// RFC 8689 4.2.1: only under an authenticated policy (checked by
		// the caller), to a server that supports REQUIRETLS.
		_ = client.Quit(ctx)
		return nil, s.track(rec, permf("5.7.10", "REQUIRETLS: %s does not support REQUIRETLS, and the sender required it (RFC 8689)", host))
	}
	return s.sendMessage(ctx, client, rec, host, d, d.Meta.RequireTLS)
}

// sendMessage sends d on an open session (MAIL, RCPT, DATA with SIZE,
// 8BITMIME and REQUIRETLS as d and requireTLS say), ends it, and returns
// each recipient's outcome — or the session's error when no recipient got
// an answer.
func (s *Sender) sendMessage(ctx context.Context, client *smtp.Client, rec tracking.Record, peer string, d queue.Delivery, requireTLS bool) ([]queue.Outcome, error) {
	rcpts := make([]string, len(d.Recipients))
	for i, r := range d.Recipients {
		rcpts[i] = r.Address
	}
	opts := &smtp.SendOptions{}
	opts.Mail.Size = int64(len(d.Body))
	if d.Meta.BodyType == "8BITMIME" {
		opts.Mail.Body = "8BITMIME"
	}
	opts.Mail.RequireTLS = requireTLS
	results, err := client.SendMail(ctx, d.Sender, rcpts, bytes.NewReader(d.Body), opts)
	if err != nil && results == nil {
		return nil, s.track(rec, sessionError(peer, "the transaction", err))
	}
	_ = client.Quit(ctx)
	return s.outcomes(rec, peer, d, results), nil
}

// heloName is the name certrelay gives in EHLO through c: its FQDN, or the
// server's.
func heloName(c *directory.SendConnector, st *State) string {
	if c.Fqdn != "" {
		return c.Fqdn
	}
	return st.Server.Fqdn
}

func (s *Sender) connect(ctx context.Context, addr string) (*smtp.Client, error) {
	timeout := s.DialTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var conn net.Conn
	var err error
	if s.Dial != nil {
		conn, err = s.Dial(dctx, addr)
	} else {
		d := net.Dialer{Resolver: s.Resolver}
		conn, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	c, err := smtp.NewClient(ctx, conn, host)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// replyOutcome turns the peer's reply for a recipient into an outcome:
// 5xx permanent, anything else temporary.
func replyOutcome(host string, err error) error {
	var re *smtp.ReplyError
	if errors.As(err, &re) {
		text := fmt.Sprintf("%d %s %s (from %s)", re.Code, enhancedOf(re), re.Message, host)
		if re.Permanent() {
			return queue.Permanent(errors.New(text))
		}
		return errors.New(text)
	}
	return tempf("4.4.2", "the session with %s broke: %v", host, err)
}

func enhancedOf(re *smtp.ReplyError) string {
	if re.Enhanced != "" {
		return re.Enhanced
	}
	return fmt.Sprintf("%d.0.0", re.Code/100)
}

// sessionError reports a failure before the transaction; a 5xx greeting
// or EHLO is still only a reason to try the next host.
func sessionError(host, step string, err error) error {
	var re *smtp.ReplyError
	if errors.As(err, &re) {
		return tempf("4.4.2", "%s refused %s: %d %s", host, step, re.Code, re.Message)
	}
	return tempf("4.4.2", "%s with %s failed: %v", step, host, err)
}

func (s *Sender) track(rec tracking.Record, err error) error {
	rec.Result = "deferred: " + err.Error()
	if s.Track != nil {
		s.Track(rec)
	}
	return err
}

func serverName(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	if net.ParseIP(h) != nil {
		return ""
	}
	return h
}
