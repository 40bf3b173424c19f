package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
	"certrelay/internal/tracking"
	"certrelay/internal/trust"
)

// Domain security (SPEC DS1): mutual TLS with partner organisations.
// Mail to a domain of the send list is only sent over STARTTLS to a server
// whose certificate holds the domain, chains to a trusted root and passes
// revocation; mail from a domain of the receive list is only accepted from
// a client that presented such a certificate for the sender's domain.
// Every failure raises its event and the message is deferred (sending) or
// refused (receiving): it is never delivered unauthenticated.

// PeerVerifier judges a partner's certificate: its chain to this server's
// trusted roots and the revocation of each element (trust.Snapshot's
// VerifyPeer). extra are the certificates the peer sent after its leaf.
// It honours ctx; safe for concurrent use.
type PeerVerifier interface {
	VerifyPeer(ctx context.Context, leaf *x509.Certificate, extra []*x509.Certificate) trust.Result
}

// Policy names, as the message trace and `cert explain --direction out`
// show them.
const (
	PolicyDomainSecure  = "domain security"
	PolicyOpportunistic = "opportunistic"
	PolicyDirectTrust   = "direct trust"
)

// domainProblem is why a partner's certificate does not authenticate its
// domain: the event to raise and the words for the reply or the queue.
type domainProblem struct {
	id         int    // 11016/11019/11020 sending; 11015/16031 receiving
	thumbprint string // the certificate's
	status     string // trust's Status, for validation failures
	detail     string // what is wrong, in words
	domains    string // the certificate's domains, for name mismatches
}

// checkPartner checks that the certificate chain a partner presented
// authenticates domain: the leaf holds the domain (a wildcard matching it
// counts), and it passes verifier (chain to a trusted root, revocation).
// receiving selects the receiving side's event IDs. It returns nil when
// it does, with what passed in words in ok.
func checkPartner(ctx context.Context, v PeerVerifier, chain []*x509.Certificate, domain string, receiving bool) (ok string, p *domainProblem) {
	leaf := chain[0]
	th := certinfo.Thumbprint(leaf.Raw)
	domains := certinfo.CertificateDomains(leaf)
	if domain != "" && !selection.MatchName(domains, domain, false) {
		id := 11016
		if receiving {
			id = 11015
		}
		list := strings.Join(domains, ", ")
		if list == "" {
			list = "no DNS name"
		}
		return "", &domainProblem{id: id, thumbprint: th, domains: list,
			detail: fmt.Sprintf("its certificate %s does not hold %s (it holds %s)", th, domain, list)}
	}
	if v == nil {
		id := 11019
		if receiving {
			id = 16031
		}
		return "", &domainProblem{id: id, thumbprint: th, status: "Unknown", detail: "this server has no trust store to validate the certificate with"}
	}
	r := v.VerifyPeer(ctx, leaf, chain[1:])
	if r.Status != trust.Valid {
		id := 11019
		switch {
		case receiving:
			id = 16031
		case r.Status == trust.Revoked || r.Status == trust.RevocationCheckFailure:
			id = 11020
		}
		return "", &domainProblem{id: id, thumbprint: th, status: string(r.Status),
			detail: fmt.Sprintf("its certificate %s failed validation (%s): %s", th, r.Status, r.Problem)}
	}
	root := "a trusted root"
	if n := len(r.Chain); n > 0 {
		root = fmt.Sprintf("the trusted root %q (%s)", r.Chain[n-1].Subject, r.RootCAType)
	}
	return fmt.Sprintf("certificate %s holds %s, chains to %s and passed revocation", th, domain, root), nil
}

// domainOf returns the lower-case domain of an address, "" when it has
// none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
}

// peerChain returns the certificates the peer presented, leaf first.
func peerChain(cs *tls.ConnectionState) []*x509.Certificate {
	if cs == nil {
		return nil
	}
	return cs.PeerCertificates
}

// checkDomainSecureSender is the receiving side of DS1, run at MAIL FROM:
// when the sender's domain is on the receive list, the session must be in
// TLS with a client certificate that authenticates the domain. It returns
// nil when the domain is not listed or the client is authenticated (then
// s.secured names the domain for the Received header), and otherwise the
// reply that refuses the message, having raised the event.
func (s *session) checkDomainSecureSender(st smtp.State, from string) error {
	s.secured, s.securedWhy = "", ""
	domain := domainOf(from)
	cur := s.r.state.Load()
	// A partners' connector (DomainSecureEnabled) authenticates every
	// sender's domain; the null sender's client must still present a
	// certificate that chains to a trusted root and passes revocation.
	if !s.c.DomainSecureEnabled && (domain == "" || !cur.ReceiveDomainSecure[domain]) {
		return nil
	}
	shown := domain
	if shown == "" {
		shown = "the null sender"
	}
	remote := remoteIP(st)
	if st.TLS == nil {
		if !has(s.c.AuthMechanism, "Tls") {
			s.r.evq.raise(11018, domain+" "+s.c.Name, domain, s.c.Name, "the connector does not have the Tls auth mechanism")
			return smtp.Replyf(454, "4.7.0", "Mail from %s is domain-secured and needs TLS, which this connector does not offer now; try again later", shown)
		}
		if d := s.r.Serving.Select(s.r.request(cur, s.c)); d.Winner == nil {
			s.r.evq.raise(11018, domain+" "+s.c.Name, domain, s.c.Name, d.Why)
			return smtp.Replyf(454, "4.7.0", "Mail from %s is domain-secured and needs TLS, which this server cannot offer now; try again later", shown)
		}
		s.r.evq.raise(11012, domain+" "+remote, domain, s.c.Name, remote)
		return smtp.Replyf(530, "5.7.0", "Mail from %s is domain-secured: send it over STARTTLS with a certificate for %s", shown, shown)
	}
	if st.AnonymousTLS {
		return nil // X-ANONYMOUSTLS: an organisation server, authenticated by direct trust
	}
	chain := peerChain(st.TLS)
	if len(chain) == 0 {
		s.r.evq.raise(11017, domain+" "+remote, domain, s.c.Name, remote)
		return smtp.Replyf(530, "5.7.1", "Mail from %s is domain-secured: present a client certificate for %s in the TLS handshake", shown, shown)
	}
	if s.verified == nil {
		s.verified = map[string]verdict{}
	}
	if v, done := s.verified[domain]; done { // one check per session and domain
		if v.err == nil {
			s.secured, s.securedWhy = shown, v.ok
		}
		return v.err
	}
	ok, p := checkPartner(s.ctx, s.r.Peers, chain, domain, true)
	var err error
	switch {
	case p == nil:
		s.secured, s.securedWhy = shown, ok
	case p.id == 11015:
		s.r.evq.raise(11015, domain+" "+p.thumbprint, domain, s.c.Name, remote, p.thumbprint, p.domains)
		err = smtp.Replyf(550, "5.7.1", "Mail from %s is domain-secured, and %s", shown, replyText(p.detail))
	default:
		s.r.evq.raise(16031, domain+" "+p.thumbprint, domain, s.c.Name, remote, p.thumbprint, p.status, p.detail)
		code, enh := 550, "5.7.1"
		if p.status == string(trust.RevocationCheckFailure) {
			code, enh = 451, "4.7.1" // it may pass once the CRL or OCSP responder answers
		}
		err = smtp.Replyf(code, enh, "Mail from %s is domain-secured, and %s", shown, replyText(p.detail))
	}
	s.verified[domain] = verdict{ok, err}
	return err
}

// verdict is a domain-security check's outcome, kept for the session.
type verdict struct {
	ok  string
	err error
}

// remoteIP returns the client's address without the port.
func remoteIP(st smtp.State) string {
	if st.RemoteAddr == nil {
		return "unknown"
	}
	a := st.RemoteAddr.String()
	if i := strings.LastIndexByte(a, ':'); i > 0 {
		a = a[:i]
	}
	return strings.Trim(a, "[]")
}

// replyText keeps a reply text on one line and of a reasonable length.
func replyText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// domainSecureTLS is the sending side of DS1 on an open session with
// host for a domain of the send list: STARTTLS is required (no plain-text
// retry), this server presents the certificate selected for the send
// connector's FQDN, and the server's certificate must authenticate the
// domain. It returns nil with TLS up and rec completed, or the temporary
// error that defers the message, having raised the event.
func (s *Sender) domainSecureTLS(ctx context.Context, client *smtp.Client, c *directory.SendConnector, dec *selection.Decision, host, domain string, rec *tracking.Record) error {
	rec.Policy = PolicyDomainSecure
	raise := func(id int, key string, params ...string) {
		if s.Events != nil {
			_, _ = s.Events.Raise(ctx, id, key, params...)
		}
	}
	if !client.Supports("STARTTLS") {
		raise(11014, domain+" "+host, domain, host, c.Name)
		rec.PolicyWhy = host + " does not offer STARTTLS"
		return tempf("4.7.10", "%s is domain-secured and %s does not offer STARTTLS; the message waits", domain, host)
	}
	cfg := &tls.Config{
		ServerName: serverName(host),
		// The partner's certificate is checked below against this
		// server's trust store and the partner domain (not the host
		// name): crypto/tls knows neither.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       serving.CipherSuites,
	}
	if cert, d := s.Serving.ClientCertificate(dec.Request); cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		rec.ClientCert = d.Winner.Thumbprint
	}
	if err := client.StartTLS(ctx, cfg); err != nil {
		raise(11013, domain+" "+host, domain, host, c.Name, err.Error())
		rec.PolicyWhy = "TLS negotiation failed: " + err.Error()
		return tempf("4.7.5", "%s is domain-secured and TLS with %s failed: %v; the message waits", domain, host, err)
	}
	cs, _ := client.TLSConnectionState()
	rec.TLS = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	chain := peerChain(&cs)
	if len(chain) == 0 {
		raise(11019, domain+" "+host, domain, host, "(none)", "Unknown", "it presented no certificate")
		rec.PolicyWhy = host + " presented no certificate"
		return tempf("4.7.5", "%s is domain-secured and %s presented no certificate; the message waits", domain, host)
	}
	rec.PeerCert = chain[0].Subject.String()
	rec.PeerThumb = thumbprint(chain[0].Raw)
	ok, p := checkPartner(ctx, s.Peers, chain, domain, false)
	if p != nil {
		if p.id == 11016 {
			raise(11016, domain+" "+p.thumbprint, domain, host, p.thumbprint, p.domains)
		} else {
			raise(p.id, domain+" "+p.thumbprint, domain, host, p.thumbprint, p.status, p.detail)
		}
		rec.PolicyWhy = p.detail
		return tempf("4.7.5", "%s is domain-secured and %s failed: %s; the message waits", domain, host, p.detail)
	}
	rec.PolicyWhy = ok
	return nil
}
