package e2e

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/testpki"
)

// partnerPKI is the partners' CA, trusted by certrelay, with a CRL on a
// real HTTP responder that lists the revoked certificates.
type partnerPKI struct {
	root *testpki.CA
	resp *testpki.Responder
	url  string
}

func newPartnerPKI(t *testing.T) *partnerPKI {
	p := &partnerPKI{root: testpki.NewRoot(t, testpki.Options{CommonName: "Partner Root CA"}), resp: testpki.NewResponder(t)}
	p.url = p.resp.URL("/partner.crl")
	return p
}

func (p *partnerPKI) issue(t *testing.T, names ...string) *testpki.Leaf {
	return p.root.Issue(t, testpki.Options{CommonName: names[0], DNSNames: names, CRL: []string{p.url}, Key: testpki.ECKey(t)})
}

// publish serves the CRL that revokes the given certificates.
func (p *partnerPKI) publish(t *testing.T, revoked ...*x509.Certificate) {
	p.resp.SetCRL("/partner.crl", p.root.CRL(t, revoked, time.Now().Add(-time.Hour), time.Now().Add(time.Hour)))
}

// TestDomainSecureSendToPostfix (DS1, sending side, Postfix as the
// partner): mail to the domain-secured partner.test waits in the queue,
// with the reason and its event, while the partner's server presents a
// certificate without partner.test (11016) or a revoked one (11020), and
// is delivered once it presents a good one; the message trace names the
// policy and why the certificate passed. Neither bad server ever gets the
// message.
func TestDomainSecureSendToPostfix(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	p := newPartnerPKI(t)
	revoked, good := p.issue(t, "mx.partner.test", "partner.test"), p.issue(t, "mx.partner.test", "partner.test")
	p.publish(t, revoked.Cert)
	box := []string{"bob@partner.test"}
	pfName := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.partner.test", Mailboxes: box, TLS: true}) // self-signed for mx.partner.test only
	pfRevoked := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.partner.test", Mailboxes: box, TLS: true, TLSLeaf: revoked})
	pfGood := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.partner.test", Mailboxes: box, TLS: true, TLSLeaf: good})

	e.write("partner-root.pem", testpki.PEM(p.root.Cert))
	e.ok("trust", "add", "partner-root.pem")
	e.ok("server", "set", "--tls-send-domain-secure", "Partner.Test.")
	var srv struct{ TLSSendDomainSecureList []string }
	e.jsonOf(&srv, "server", "show")
	if strings.Join(srv.TLSSendDomainSecureList, ",") != "partner.test" {
		t.Fatalf("TLSSendDomainSecureList %q, want the normalised partner.test", srv.TLSSendDomainSecureList)
	}
	e.ok("cert", "new", "--domain", "out.contoso.test", "--services", "SMTP")
	e.ok("connector", "send", "add", "To partner", "--address-space", "smtp:partner.test;1", "--smart-host", pfName.Addr, "--fqdn", "out.contoso.test")
	m.start()
	m.sendAsAlice(t, "bob@partner.test", "for partners only")

	deferred := func(why string) {
		t.Helper()
		items := e.waitQueue("a deferral because "+why, func(items []queueItem) bool {
			return len(items) == 1 && strings.Contains(items[0].Recipients[0].LastError, why)
		})
		if r := items[0].Recipients[0]; r.Status != "pending" || !strings.HasPrefix(r.LastError, "4.7.5 partner.test is domain-secured") {
			t.Fatalf("deferral: %+v", r)
		}
	}
	deferred("does not hold partner.test")
	if evs := e.eventParams("11016"); len(evs) != 1 || evs[0][0] != "partner.test" || evs[0][1] != pfName.Addr {
		t.Errorf("11016: %q", evs)
	}

	e.ok("connector", "send", "set", "To partner", "--smart-host", pfRevoked.Addr)
	e.ok("queue", "retry")
	deferred("Revoked")
	if evs := e.eventParams("11020"); len(evs) != 1 || evs[0][3] != "Revoked" {
		t.Errorf("11020: %q", evs)
	}

	e.ok("connector", "send", "set", "To partner", "--smart-host", pfGood.Addr)
	e.ok("queue", "retry")
	waitMbox(t, pfGood, "bob@partner.test", "Subject: for partners only")
	e.waitQueue("empty", func(items []queueItem) bool { return len(items) == 0 })
	for _, pf := range []*testpki.Postfix{pfName, pfRevoked} {
		if pf.Mailbox("bob@partner.test") != "" || strings.Contains(pf.Log(), "from=<alice@contoso.test>") {
			t.Errorf("a partner server that failed domain security got the message:\n%s", pf.Log())
		}
	}
	var recs []struct{ Host, Policy, PolicyWhy, Result string }
	e.jsonOf(&recs, "track")
	last := recs[len(recs)-1]
	if last.Host != pfGood.Addr || last.Result != "delivered" || last.Policy != "domain security" ||
		!strings.Contains(last.PolicyWhy, `holds partner.test, chains to the trusted root "CN=Partner Root CA" (Registry) and passed revocation`) {
		t.Errorf("trace of the delivery: %+v", last)
	}
	if out := e.ok("track"); !strings.Contains(out, "policy domain security: certificate") {
		t.Errorf("track does not name the policy:\n%s", out)
	}
	var ex explainOut
	e.jsonOf(&ex, "cert", "explain", "--direction", "out", "--domain", "partner.test")
	if p := ex.DomainPolicy; ex.Connector != "To partner" || p.Policy != "domain security" || !strings.Contains(strings.Join(p.Why, "\n"), "partner.test is on TLSSendDomainSecureList") ||
		p.LastAttempt == nil || p.LastAttempt.Result != "delivered" || p.LastAttempt.Host != pfGood.Addr {
		t.Errorf("cert explain --domain partner.test: %+v", ex)
	}
	if out := e.ok("cert", "explain", "--direction", "out", "--domain", "partner.test"); !strings.Contains(out, "Policy for mail to partner.test: domain security") {
		t.Errorf("cert explain:\n%s", out)
	}
}

// explainOut is the part of cert explain --json that --domain adds.
type explainOut struct {
	Connector, Winner string
	DomainPolicy      struct {
		Policy      string
		Why         []string
		LastAttempt *struct{ Host, Policy, PolicyWhy, Result string }
	}
}

// TestDomainSecureReceiveFromSwaks (DS1, receiving side, swaks as the
// partner's client): mail from the domain-secured partner.test is
// accepted only with a client certificate that holds partner.test,
// chains to a trusted root and is not revoked; without TLS, without a
// certificate, with one for another name and with a revoked one it is
// refused with a reply that says why, and each raises its event. The
// accepted message's Received header says it was domain-secured.
func TestDomainSecureReceiveFromSwaks(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	p := newPartnerPKI(t)
	good, other, revoked := p.issue(t, "mail.partner.test", "partner.test"), p.issue(t, "mail.partner.test"), p.issue(t, "partner.test")
	p.publish(t, revoked.Cert)
	e.write("partner-root.pem", testpki.PEM(p.root.Cert))
	e.ok("trust", "add", "partner-root.pem")
	e.ok("server", "set", "--tls-receive-domain-secure", "partner.test")
	m.start()
	files := func(name string, l *testpki.Leaf) []string {
		return []string{"--tls-cert", e.write(name+".pem", testpki.PEM(l.Cert)), "--tls-key", e.write(name+".key", testpki.KeyPEM(t, l.Key))}
	}
	cases := []struct {
		name  string
		args  []string
		reply string
		event string
	}{
		{"fail/plain-text-11012", nil, "530 5.7.0 Mail from partner.test is domain-secured: send it over STARTTLS", "11012"},
		{"fail/no-certificate-11017", []string{"--tls"}, "530 5.7.1 Mail from partner.test is domain-secured: present a client certificate", "11017"},
		{"fail/other-name-11015", append([]string{"--tls"}, files("other", other)...), "550 5.7.1 Mail from partner.test is domain-secured, and its certificate " + certThumb(other) + " does not hold partner.test", "11015"},
		{"fail/revoked-16031", append([]string{"--tls"}, files("revoked", revoked)...), "550 5.7.1 Mail from partner.test is domain-secured, and its certificate " + certThumb(revoked) + " failed validation (Revoked)", "16031"},
		{"ok/partner-certificate", append([]string{"--tls"}, files("good", good)...), "250 2.0.0 OK queued as", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--server", m.addr, "--from", "carol@partner.test", "--to", "alice@contoso.test", "--header", "Subject: " + c.name}, c.args...)
			out, _ := swaks(t, args...)
			if !strings.Contains(out, c.reply) {
				t.Fatalf("swaks, want %q:\n%s", c.reply, out)
			}
			if c.event != "" {
				if evs := e.eventParams(c.event); len(evs) != 1 || evs[0][0] != "partner.test" {
					t.Errorf("event %s: %q", c.event, evs)
				}
				return
			}
			got := m.waitDelivered(1)
			if len(got) != 1 {
				t.Fatalf("alice has %d messages: only the authenticated one may arrive", len(got))
			}
			if want := "(domain-secured partner.test: certificate " + certThumb(good) + " holds partner.test"; !strings.Contains(got[0], want) {
				t.Errorf("Received header lacks %q:\n%s", want, got[0])
			}
		})
	}

	// A partners' connector (--domain-secure) asks it of every sender.
	before := len(m.maildir())
	plain := []string{"--server", m.addr, "--from", "dave@elsewhere.test", "--to", "alice@contoso.test", "--tls"}
	if out, _ := swaks(t, plain...); !strings.Contains(out, "250 2.0.0 OK queued as") {
		t.Fatalf("an unlisted sender before --domain-secure:\n%s", out)
	}
	m.waitDelivered(before + 1)
	e.ok("connector", "receive", "set", m.name, "--domain-secure")
	var out string
	for i := 0; i < 50; i++ { // the running server applies the change within a moment
		if out, _ = swaks(t, plain...); strings.Contains(out, "530 5.7.1 Mail from elsewhere.test is domain-secured: present a client certificate") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "530 5.7.1 Mail from elsewhere.test is domain-secured") {
		t.Errorf("an unlisted sender without a certificate on a --domain-secure connector:\n%s", out)
	}
}

func certThumb(l *testpki.Leaf) string { return certinfo.Thumbprint(l.Cert.Raw) }
