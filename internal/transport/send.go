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

	"certrelay/internal/directory"
	"certrelay/internal/queue"
	"certrelay/internal/selection"
	"certrelay/internal/servercred"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
	"certrelay/internal/store"
)

// Sender delivers the queue's remote recipients through send connectors
// (SPEC S1, S4a, DS2): it routes the destination domain to a connector,
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
	Events   EventSink             // optional: direct trust's events (2018, 2019, 12019, 12012–12024)
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
	hosts, err := s.hosts(ctx, conn, d.Destination)
	if err != nil {
		return all(err)
	}
	var lastErr error
	for _, host := range hosts {
		outs, err := s.tryHost(ctx, st, conn, dec, host, d)
		if err == nil {
			return outs
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return all(lastErr)
}

// hosts returns the addresses to try, in order: the smart hosts, or the
// MX hosts by preference (the domain itself when it has no MX, RFC 5321
// 5.1).
func (s *Sender) hosts(ctx context.Context, c *directory.SendConnector, domain string) ([]string, error) {
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
		return out, nil
	}
	r := s.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	mxs, err := r.LookupMX(ctx, domain)
	var dnsErr *net.DNSError
	switch {
	case err == nil && len(mxs) == 1 && mxs[0].Host == ".":
		return nil, permf("5.1.10", "%s accepts no mail (null MX, RFC 7505)", domain)
	case err == nil && len(mxs) > 0:
		sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
		out := make([]string, len(mxs))
		for i, mx := range mxs {
			out[i] = withPort(mx.Host)
		}
		return out, nil
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		// No MX: the domain's own address (implicit MX).
		if _, err := r.LookupHost(ctx, domain); err != nil {
			return nil, permf("5.1.2", "%s has no MX and no address: the domain does not exist", domain)
		}
		return []string{withPort(domain)}, nil
	}
	return nil, tempf("4.4.3", "MX lookup for %s failed: %v", domain, err)
}

// tryHost runs one SMTP session with host. It returns an error when the
// host could not take the message (try the next one), and otherwise the
// per-recipient outcomes.
func (s *Sender) tryHost(ctx context.Context, st *State, c *directory.SendConnector, dec *selection.Decision, host string, d queue.Delivery) ([]queue.Outcome, error) {
	rec := tracking.Record{Time: time.Now(), MessageID: d.MsgID, Connector: c.Name, Host: host}
	for _, r := range d.Recipients {
		rec.Recipients = append(rec.Recipients, r.Address)
	}
	fqdn := heloName(c, st)
	client, err := s.connect(ctx, host)
	if err != nil {
		return nil, s.track(rec, tempf("4.4.1", "cannot connect to %s: %v", host, err))
	}
	defer client.Close()
	client.LocalName = fqdn
	if err := client.Hello(ctx, fqdn); err != nil {
		return nil, s.track(rec, sessionError(host, "EHLO", err))
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
			s.Log.Warn("STARTTLS failed; retrying in plain text", "host", host, "err", err)
		} else if cs, ok := client.TLSConnectionState(); ok {
			rec.TLS = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
			if len(cs.PeerCertificates) > 0 {
				rec.PeerCert = cs.PeerCertificates[0].Subject.String()
				rec.PeerThumb = thumbprint(cs.PeerCertificates[0].Raw)
			}
		}
	} else if c.RequireTLS {
		_ = client.Quit(ctx)
		return nil, s.track(rec, tempf("4.7.10", "send connector %q requires TLS and %s does not offer STARTTLS; the message waits", c.Name, host))
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
	rcpts := make([]string, len(d.Recipients))
	for i, r := range d.Recipients {
		rcpts[i] = r.Address
	}
	opts := &smtp.SendOptions{}
	opts.Mail.Size = int64(len(d.Body))
	if d.Meta.BodyType == "8BITMIME" {
		opts.Mail.Body = "8BITMIME"
	}
	results, err := client.SendMail(ctx, d.Sender, rcpts, bytes.NewReader(d.Body), opts)
	if err != nil && results == nil {
		return nil, s.track(rec, sessionError(host, "the transaction", err))
	}
	_ = client.Quit(ctx)
	return s.outcomes(rec, host, d, results), nil
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
