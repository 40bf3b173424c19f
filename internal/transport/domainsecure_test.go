package transport

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/queue"
	"certrelay/internal/revocation"
	"certrelay/internal/selection"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
	"certrelay/internal/store"
	"certrelay/internal/testpki"
	"certrelay/internal/tracking"
	"certrelay/internal/trust"
)

// snapVerifier is the PeerVerifier the server builds, on a trust
// snapshot of the test's roots and a real revocation checker.
type snapVerifier struct {
	snap    *trust.Snapshot
	checker *revocation.Checker
}

func (v snapVerifier) VerifyPeer(ctx context.Context, leaf *x509.Certificate, extra []*x509.Certificate) trust.Result {
	return v.snap.VerifyPeer(ctx, v.checker, leaf, extra, time.Now())
}

// memSpool keeps what a receiver accepted.
type memSpool struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (m *memSpool) Enqueue(_ context.Context, env Envelope, body []byte) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bodies = append(m.bodies, append([]byte(nil), body...))
	return env.ID, nil
}

func (m *memSpool) messages() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.bodies...)
}

// dsPKI is the partners' PKI: a trusted root whose CRL a real HTTP
// responder serves, an untrusted one, and the revoked certificates.
type dsPKI struct {
	root, rogue *testpki.CA
	resp        *testpki.Responder
	crlURL      string
	verifier    snapVerifier
	mu          sync.Mutex
	revoked     []*x509.Certificate
}

func newDSPKI(t *testing.T) *dsPKI {
	p := &dsPKI{root: testpki.NewRoot(t, testpki.Options{CommonName: "Partners Root CA"}),
		rogue: testpki.NewRoot(t, testpki.Options{CommonName: "Unknown Root CA"}), resp: testpki.NewResponder(t)}
	p.crlURL = p.resp.URL("/partners.crl")
	p.publishCRL(t)
	p.verifier = snapVerifier{snap: trust.NewSnapshot([]trust.Root{trust.PolicyRoot(p.root.Cert, trust.RootRegistry)}, nil),
		checker: &revocation.Checker{Timeout: 5 * time.Second}}
	return p
}

func (p *dsPKI) publishCRL(t *testing.T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resp.SetCRL("/partners.crl", p.root.CRL(t, p.revoked, time.Now().Add(-time.Hour), time.Now().Add(time.Hour)))
}

// leaf issues a certificate for names; revoked puts it on the CRL,
// rogue issues it from the untrusted root.
func (p *dsPKI) leaf(t *testing.T, rogue, revoked bool, names ...string) *testpki.Leaf {
	ca := p.root
	if rogue {
		ca = p.rogue
	}
	l := ca.Issue(t, testpki.Options{CommonName: names[0], DNSNames: names, CRL: []string{p.crlURL}, Key: testpki.ECKey(t)})
	if revoked {
		p.mu.Lock()
		p.revoked = append(p.revoked, l.Cert)
		p.mu.Unlock()
		p.publishCRL(t)
	}
	return l
}

// layerFor is a serving layer whose one certificate is l, for SMTP.
func layerFor(l *testpki.Leaf) *serving.Layer {
	layer := serving.New(serving.Options{LoadKey: func(string) (crypto.Signer, error) { return l.Key, nil }})
	if l != nil {
		layer.Publish([]selection.Candidate{{
			Thumbprint: certinfo.Thumbprint(l.Cert.Raw), Subject: l.Cert.Subject.String(), Issuer: l.Cert.Issuer.String(),
			Domains: certinfo.CertificateDomains(l.Cert), NotBefore: l.Cert.NotBefore, NotAfter: l.Cert.NotAfter,
			Services: store.SMTP, Status: trust.Valid, HasKey: true, KeyReadable: true, Cert: l.Cert, KeyID: certinfo.Thumbprint(l.Cert.Raw),
		}}, time.Now())
	}
	return layer
}

// startReceiver runs a receiver for the accepted domain local, its
// connector "Internet" (FQDN fqdn) on a loopback port offering STARTTLS
// with cert (nil: none) when tls is true, with the given receive list.
func startReceiver(t *testing.T, p *dsPKI, cert *testpki.Leaf, offerTLS bool, fqdn, local string, receiveList ...string) (addr string, sp *memSpool, ev *eventRecorder) {
	return startReceiverWith(t, p, cert, offerTLS, fqdn, local, nil, receiveList...)
}

// startReceiverWith is startReceiver with a change to the snapshot.
func startReceiverWith(t *testing.T, p *dsPKI, cert *testpki.Leaf, offerTLS bool, fqdn, local string, tweak func(*State), receiveList ...string) (addr string, sp *memSpool, ev *eventRecorder) {
	ev, sp = &eventRecorder{}, &memSpool{}
	var layer *serving.Layer
	if cert != nil {
		layer = layerFor(cert)
	}
	r := &Receiver{Spool: sp, Events: ev, Serving: layer, Peers: p.verifier}
	r.Start()
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	mech := []string{}
	if offerTLS {
		mech = []string{"Tls"}
	}
	bind := testpki.FreePort(t)
	conns := []directory.ReceiveConnector{{Name: "Internet", Bindings: []string{bind}, Enabled: true, Fqdn: fqdn,
		AuthMechanism: mech, PermissionGroups: []string{"AnonymousUsers"}}}
	st := NewState(directory.Server{Name: "mx", Fqdn: fqdn}, conns, nil, []directory.AcceptedDomain{{DomainName: local}},
		[]directory.Mailbox{{Address: "bob@" + local}}, time.Now())
	st.ReceiveDomainSecure = map[string]bool{}
	for _, d := range receiveList {
		st.ReceiveDomainSecure[d] = true
	}
	if tweak != nil {
		tweak(st)
	}
	if errs := r.Update(context.Background(), st); len(errs) > 0 {
		t.Fatal(errs)
	}
	return r.Addr(bind), sp, ev
}

// newSender is contoso.test's sender: one send connector to the smart
// host addr for partner.test, domain security on partner.test, and
// client certificate cert.
func newSender(p *dsPKI, cert *testpki.Leaf, addr string) (*Sender, *eventRecorder, *[]tracking.Record) {
	ev := &eventRecorder{}
	var recs []tracking.Record
	send := []directory.SendConnector{{Name: "To partner", AddressSpaces: []directory.AddressSpace{{Domain: "partner.test", Cost: 1}},
		SmartHosts: []string{addr}, Enabled: true, Fqdn: "mail.contoso.test"}}
	st := NewState(directory.Server{Name: "hub1", Fqdn: "hub1.contoso.test"}, nil, send, nil, nil, time.Now())
	st.SendDomainSecure = map[string]bool{"partner.test": true}
	s := &Sender{State: func() *State { return st }, Serving: layerFor(cert), Events: ev, Peers: p.verifier,
		Track: func(r tracking.Record) { recs = append(recs, r) }}
	return s, ev, &recs
}

func delivery() queue.Delivery {
	return queue.Delivery{MsgID: "M1", Sender: "alice@contoso.test", Destination: "partner.test",
		Recipients: []queue.Recipient{{Idx: 0, Address: "bob@partner.test", Destination: "partner.test"}},
		Body:       []byte("Subject: secured\r\n\r\nhello partner\r\n")}
}

// TestDomainSecureSend (DS1, sending side): mail to a domain-secured
// partner is delivered only when the partner's server presents, over
// STARTTLS, a certificate that holds the domain, chains to a trusted root
// and passes revocation (checked against a CRL a real HTTP responder
// serves); every other case defers the message with the reason and raises
// its event, and the partner receives nothing. With a good certificate on
// both sides the partner, which lists contoso.test for receiving, marks
// the mail domain-secured in its Received header.
func TestDomainSecureSend(t *testing.T) {
	p := newDSPKI(t)
	ours := p.leaf(t, false, false, "mail.contoso.test", "contoso.test")
	cases := []struct {
		name     string
		cert     *testpki.Leaf
		noTLS    bool
		event    int
		delivers bool
		reason   string
	}{
		{name: "ok/partner-certificate", cert: p.leaf(t, false, false, "mail.partner.test", "partner.test"), delivers: true},
		{name: "ok/wildcard", cert: p.leaf(t, false, false, "*.partner.test", "partner.test"), delivers: true},
		{name: "fail/no-starttls-11014", cert: p.leaf(t, false, false, "mail.partner.test", "partner.test"), noTLS: true, event: 11014, reason: "does not offer STARTTLS"},
		{name: "fail/lacks-domain-11016", cert: p.leaf(t, false, false, "mail.partner.test"), event: 11016, reason: "does not hold partner.test"},
		{name: "fail/untrusted-11019", cert: p.leaf(t, true, false, "mail.partner.test", "partner.test"), event: 11019, reason: "Untrusted"},
		{name: "fail/revoked-11020", cert: p.leaf(t, false, true, "mail.partner.test", "partner.test"), event: 11020, reason: "Revoked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, spool, _ := startReceiver(t, p, c.cert, !c.noTLS, "mail.partner.test", "partner.test", "contoso.test")
			s, ev, recs := newSender(p, ours, addr)
			out := s.Deliver(context.Background(), delivery())
			if len(out) != 1 {
				t.Fatalf("outcomes %+v", out)
			}
			if c.delivers {
				if out[0].Err != nil {
					t.Fatalf("not delivered: %v", out[0].Err)
				}
				got := spool.messages()
				if len(got) != 1 || !bytes.Contains(got[0], []byte("(domain-secured contoso.test: certificate "+certinfo.Thumbprint(ours.Cert.Raw)+" holds contoso.test")) {
					t.Fatalf("the partner's copy lacks the domain-secured mark:\n%s", got)
				}
				last := (*recs)[len(*recs)-1]
				if last.Policy != PolicyDomainSecure || !strings.Contains(last.PolicyWhy, "holds partner.test, chains to the trusted root") {
					t.Errorf("trace: policy %q why %q", last.Policy, last.PolicyWhy)
				}
				if len(ev.with("110")) != 0 {
					t.Errorf("events on success: %q", ev.with(""))
				}
				return
			}
			if out[0].Err == nil || queue.IsPermanent(out[0].Err) || !strings.Contains(out[0].Err.Error(), c.reason) || !strings.HasPrefix(out[0].Err.Error(), "4.7.") {
				t.Fatalf("outcome %v, want deferred (4.7.x) because %q", out[0].Err, c.reason)
			}
			if got := spool.messages(); len(got) != 0 {
				t.Fatalf("the partner received %d messages sent without authentication", len(got))
			}
			if got := ev.with(strconv.Itoa(c.event) + " "); len(got) != 1 {
				t.Errorf("event %d: %q (all: %q)", c.event, got, ev.with(""))
			}
			last := (*recs)[len(*recs)-1]
			if last.Policy != PolicyDomainSecure || !strings.Contains(last.PolicyWhy+last.Result, c.reason) {
				t.Errorf("trace: %+v", last)
			}
		})
	}
}

// TestDomainSecureReceive (DS1, receiving side): mail from a domain of
// the receive list is accepted only from a client that presented a
// certificate that holds the domain, chains to a trusted root and passes
// revocation; otherwise MAIL FROM is refused with a reply that says why
// and the event is raised. Mail from other domains is unaffected.
func TestDomainSecureReceive(t *testing.T) {
	p := newDSPKI(t)
	server := p.leaf(t, false, false, "mail.contoso.test")
	addr, spool, ev := startReceiver(t, p, server, true, "mail.contoso.test", "contoso.test", "partner.test")
	cases := []struct {
		name   string
		from   string
		tls    bool
		cert   *testpki.Leaf
		code   int
		event  int
		reason string
	}{
		{name: "ok/partner-certificate", from: "carol@partner.test", tls: true, cert: p.leaf(t, false, false, "mail.partner.test", "partner.test")},
		{name: "ok/unlisted-domain-plain", from: "dave@elsewhere.test"},
		{name: "fail/no-tls-11012", from: "carol@partner.test", code: 530, event: 11012, reason: "send it over STARTTLS"},
		{name: "fail/no-certificate-11017", from: "carol@Partner.Test", tls: true, code: 530, event: 11017, reason: "present a client certificate"},
		{name: "fail/lacks-domain-11015", from: "carol@partner.test", tls: true, cert: p.leaf(t, false, false, "mail.partner.test"), code: 550, event: 11015, reason: "does not hold partner.test"},
		{name: "fail/revoked-16031", from: "carol@partner.test", tls: true, cert: p.leaf(t, false, true, "partner.test"), code: 550, event: 16031, reason: "Revoked"},
		{name: "fail/untrusted-16031", from: "carol@partner.test", tls: true, cert: p.leaf(t, true, false, "partner.test"), code: 550, event: 16031, reason: "Untrusted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(spool.messages())
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := smtp.NewClient(context.Background(), conn, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx := context.Background()
			if err := cl.Hello(ctx, "mail.partner.test"); err != nil {
				t.Fatal(err)
			}
			if c.tls {
				cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
				if c.cert != nil {
					cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{c.cert.Cert.Raw}, PrivateKey: c.cert.Key}}
				}
				if err := cl.StartTLS(ctx, cfg); err != nil {
					t.Fatal(err)
				}
			}
			_, err = cl.SendMail(ctx, c.from, []string{"bob@contoso.test"}, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), nil)
			if c.code == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				got := spool.messages()
				if len(got) != before+1 {
					t.Fatal("not accepted")
				}
				mark := bytes.Contains(got[before], []byte("(domain-secured partner.test: certificate "))
				if mark != c.tls {
					t.Errorf("domain-secured mark %v, want %v:\n%s", mark, c.tls, got[before])
				}
				return
			}
			var re *smtp.ReplyError
			if !errors.As(err, &re) || re.Code != c.code || !strings.Contains(re.Message, c.reason) {
				t.Fatalf("reply %v, want %d …%s…", err, c.code, c.reason)
			}
			if len(spool.messages()) != before {
				t.Fatal("a message was accepted without authentication")
			}
			waitFor(t, "the event", func() bool { return len(ev.with(strconv.Itoa(c.event)+" ")) > 0 })
		})
	}
}

// TestDomainSecureConnectors: DomainSecureEnabled on a connector applies
// domain security without the lists — on a send connector to every
// domain it routes, on a receive connector to every sender's domain (the
// null sender's client still needs a valid certificate).
func TestDomainSecureConnectors(t *testing.T) {
	p := newDSPKI(t)
	ours := p.leaf(t, false, false, "mail.contoso.test")
	t.Run("send", func(t *testing.T) {
		addr, spool, _ := startReceiver(t, p, p.leaf(t, false, false, "mail.partner.test"), true, "mail.partner.test", "partner.test")
		s, ev, _ := newSender(p, ours, addr)
		st := s.State()
		st.SendDomainSecure = nil
		st.Send[0].DomainSecureEnabled = true
		out := s.Deliver(context.Background(), delivery())
		if out[0].Err == nil || !strings.Contains(out[0].Err.Error(), "does not hold partner.test") || len(spool.messages()) != 0 || len(ev.with("11016 ")) != 1 {
			t.Fatalf("a domain-secure send connector delivered to a server without the domain: %v", out[0].Err)
		}
	})
	t.Run("receive", func(t *testing.T) {
		addr, spool, _ := startReceiverWith(t, p, p.leaf(t, false, false, "mail.contoso.test"), true, "mail.contoso.test", "contoso.test",
			func(st *State) { st.Connectors[0].DomainSecureEnabled = true })
		send := func(from string, cert *testpki.Leaf) error {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := smtp.NewClient(context.Background(), conn, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
			if cert != nil {
				cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Cert.Raw}, PrivateKey: cert.Key}}
			}
			if err := cl.StartTLS(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			_, err = cl.SendMail(context.Background(), from, []string{"bob@contoso.test"}, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), nil)
			return err
		}
		other := p.leaf(t, false, false, "other.test")
		if err := send("carol@other.test", other); err != nil {
			t.Errorf("an unlisted partner with its certificate: %v", err)
		}
		if err := send("carol@other.test", nil); err == nil || !strings.Contains(err.Error(), "present a client certificate") {
			t.Errorf("without a certificate: %v", err)
		}
		if err := send("", other); err != nil {
			t.Errorf("the null sender with a valid certificate: %v", err)
		}
		if err := send("", p.leaf(t, true, false, "other.test")); err == nil || !strings.Contains(err.Error(), "Untrusted") {
			t.Errorf("the null sender with an untrusted certificate: %v", err)
		}
		if n := len(spool.messages()); n != 2 {
			t.Errorf("%d messages accepted, want 2", n)
		}
	})
}

// BenchmarkCheckPartner is what domain security adds to a session once
// the handshake is done: the partner's chain built against the trusted
// roots, its name checked, and revocation answered from the checker's
// cache (the CRL fetched once, as for a partner seen before).
func BenchmarkCheckPartner(b *testing.B) {
	root := testpki.NewRoot(b, testpki.Options{CommonName: "Partners Root CA"})
	resp := testpki.NewResponder(b)
	url := resp.URL("/p.crl")
	resp.SetCRL("/p.crl", root.CRL(b, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour)))
	leaf := root.Issue(b, testpki.Options{CommonName: "mail.partner.test", DNSNames: []string{"mail.partner.test", "partner.test"}, CRL: []string{url}, Key: testpki.ECKey(b)})
	v := snapVerifier{snap: trust.NewSnapshot([]trust.Root{trust.PolicyRoot(root.Cert, trust.RootRegistry)}, nil),
		checker: &revocation.Checker{Timeout: 5 * time.Second}}
	chain := []*x509.Certificate{leaf.Cert}
	ctx := context.Background()
	if _, p := checkPartner(ctx, v, chain, "partner.test", false); p != nil {
		b.Fatal(p.detail)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, p := checkPartner(ctx, v, chain, "partner.test", false); p != nil {
			b.Fatal(p.detail)
		}
	}
}
