package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"certrelay/internal/testpki"
)

// sendAsAlice submits a message from alice over STARTTLS with AUTH, as a
// mail client of this organisation does.
func (m *mailServer) sendAsAlice(t *testing.T, to, subject string) {
	t.Helper()
	out, code := swaks(t, "--server", m.addr, "--from", "alice@contoso.test", "--to", to, "--tls",
		"--auth", "PLAIN", "--auth-user", "alice@contoso.test", "--auth-password", alicePassword, "--header", "Subject: "+subject)
	if code != 0 || !strings.Contains(out, "250 2.0.0 OK queued as") {
		t.Fatalf("submission: exit %d\n%s", code, out)
	}
}

type queueItem struct {
	ID         string
	Recipients []struct {
		Address, Destination, Status, LastError string
		Attempts                                int
	}
}

func (e *env) queue() []queueItem {
	e.t.Helper()
	var items []queueItem
	e.jsonOf(&items, "queue", "list")
	return items
}

// waitQueue waits until the queue satisfies ok.
func (e *env) waitQueue(what string, ok func([]queueItem) bool) []queueItem {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		items := e.queue()
		if ok(items) {
			return items
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the queue never reached %s: %+v", what, items)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitMbox(t *testing.T, pf *testpki.Postfix, addr, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if box := pf.Mailbox(addr); strings.Contains(box, want) {
			return box
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never received %q; postfix log:\n%s", addr, want, pf.Log())
	return ""
}

// TestSendThroughConnectorWithClientCertificate: Postfix receives mail
// from certrelay through a send connector; the delivered message shows
// that TLS was used and that certrelay presented the certificate selected
// for the send connector's FQDN, the one cert explain predicts.
func TestSendThroughConnectorWithClientCertificate(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.partner.test", Mailboxes: []string{"bob@partner.test"}, TLS: true})
	clientCert := e.ok("cert", "new", "--domain", "out.contoso.test", "--services", "SMTP")
	e.ok("connector", "send", "add", "To partner", "--address-space", "smtp:partner.test;1", "--smart-host", pf.Addr, "--fqdn", "out.contoso.test")
	var ex struct{ Winner string }
	e.jsonOf(&ex, "cert", "explain", "--connector", "To partner", "--direction", "out")
	if ex.Winner != clientCert {
		t.Fatalf("cert explain predicts %s, want %s", ex.Winner, clientCert)
	}
	m.start()
	m.sendAsAlice(t, "bob@partner.test", "over the send connector")
	box := waitMbox(t, pf, "bob@partner.test", "Subject: over the send connector")
	for _, want := range []string{`Client CN "out.contoso.test"`, "using TLSv1.3", "from out.contoso.test"} {
		if !strings.Contains(box, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, box)
		}
	}
	e.waitQueue("empty", func(items []queueItem) bool { return len(items) == 0 })
	var recs []struct{ Connector, TLS, ClientCert, PeerCert, Result string }
	e.jsonOf(&recs, "track")
	if len(recs) != 1 || recs[0].ClientCert != clientCert || !strings.HasPrefix(recs[0].TLS, "TLS 1.3") || recs[0].PeerCert != "CN=mx.partner.test" || recs[0].Result != "delivered" {
		t.Errorf("message trace: %+v", recs)
	}
}

// TestSmartHostDown: the message waits while the smart host is down, is
// retried, survives a SIGKILL between attempts, and is delivered once the
// host comes up.
func TestSmartHostDown(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	peer := testpki.FreePort(t)
	e.ok("connector", "send", "add", "Partner", "--address-space", "smtp:partner.test", "--smart-host", peer)
	m.start()
	m.sendAsAlice(t, "bob@partner.test", "waits for the peer")
	items := e.waitQueue("a failed attempt", func(items []queueItem) bool {
		return len(items) == 1 && items[0].Recipients[0].Attempts >= 1
	})
	if r := items[0].Recipients[0]; r.Status != "pending" || !strings.Contains(r.LastError, "cannot connect to "+peer) {
		t.Fatalf("while the peer is down: %+v", r)
	}
	m.p.kill()
	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Addr: peer, Hostname: "mx.partner.test", Mailboxes: []string{"bob@partner.test"}, TLS: true})
	m.start()
	e.ok("queue", "retry")
	waitMbox(t, pf, "bob@partner.test", "Subject: waits for the peer")
	e.waitQueue("empty", func(items []queueItem) bool { return len(items) == 0 })
	if n := strings.Count(pf.Mailbox("bob@partner.test"), "Subject: waits for the peer"); n != 1 {
		t.Errorf("delivered %d times", n)
	}
}

// TestBounceOn550: a destination that answers 550 gets the sender one
// DSN (RFC 3464) with the original headers.
func TestBounceOn550(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.partner.test", Mailboxes: []string{"bob@partner.test"}, TLS: true})
	e.ok("connector", "send", "add", "Partner", "--address-space", "smtp:partner.test", "--smart-host", pf.Addr)
	m.start()
	m.sendAsAlice(t, "nobody@partner.test", "to a mailbox that does not exist")
	dsns := m.waitDelivered(1)
	e.waitQueue("empty", func(items []queueItem) bool { return len(items) == 0 })
	time.Sleep(500 * time.Millisecond)
	if got := m.maildir(); len(got) != 1 {
		t.Fatalf("alice got %d messages, want one DSN", len(got))
	}
	dsn := dsns[0]
	for _, want := range []string{
		"Return-Path: <>", "From: Mail Delivery System <MAILER-DAEMON@hub.contoso.test>", "Content-Type: multipart/report; report-type=delivery-status",
		"Reporting-MTA: dns; hub.contoso.test", "Final-Recipient: rfc822; nobody@partner.test", "Action: failed", "Status: 5.1.1",
		"Diagnostic-Code: smtp; 550 5.1.1", "Content-Type: text/rfc822-headers", "Subject: to a mailbox that does not exist",
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
}

// TestRequireTLSNeverPlainText: a connector that requires TLS defers mail
// for a peer that offers no STARTTLS; nothing is sent in plain text.
func TestRequireTLSNeverPlainText(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.partner.test", Mailboxes: []string{"bob@partner.test"}})
	e.ok("connector", "send", "add", "Partner", "--address-space", "smtp:partner.test", "--smart-host", pf.Addr, "--require-tls")
	m.start()
	m.sendAsAlice(t, "bob@partner.test", "secret")
	items := e.waitQueue("a deferral", func(items []queueItem) bool {
		return len(items) == 1 && items[0].Recipients[0].Attempts >= 1
	})
	if r := items[0].Recipients[0]; r.Status != "pending" || !strings.Contains(r.LastError, "requires TLS") {
		t.Fatalf("deferral: %+v", r)
	}
	if log := pf.Log(); strings.Contains(log, "from=<alice@contoso.test>") || pf.Mailbox("bob@partner.test") != "" {
		t.Fatalf("the message reached the peer without TLS:\n%s", log)
	}
}

// TestNamedClientCertificateMissing: a send connector naming a certificate
// that is not in the store fails the attempt with 454 4.7.5 (S4a).
func TestNamedClientCertificateMissing(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.partner.test", Mailboxes: []string{"bob@partner.test"}, TLS: true})
	e.ok("connector", "send", "add", "Partner", "--address-space", "smtp:partner.test", "--smart-host", pf.Addr,
		"--tls-certificate-name", "<I>CN=Gone CA<S>CN=gone.contoso.test")
	var ex struct{ Winner, STARTTLS string }
	e.jsonOf(&ex, "cert", "explain", "--connector", "Partner", "--direction", "out")
	if ex.Winner != "" || !strings.Contains(ex.STARTTLS, "454 4.7.5") {
		t.Errorf("explain: %+v", ex)
	}
	m.start()
	m.sendAsAlice(t, "bob@partner.test", "needs its certificate")
	items := e.waitQueue("a deferral", func(items []queueItem) bool {
		return len(items) == 1 && items[0].Recipients[0].Attempts >= 1
	})
	if r := items[0].Recipients[0]; !strings.Contains(r.LastError, "454 4.7.5") {
		t.Fatalf("last error: %+v", r)
	}
}

// TestMXLookupThroughConfiguredResolver: without smart hosts the
// connector looks up the domain's MX through the configured DNS server.
func TestMXLookupThroughConfiguredResolver(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.partner.test", Mailboxes: []string{"bob@partner.test"}, TLS: true})
	_, port, _ := net.SplitHostPort(pf.Addr)
	dnsAddr := startDNS(t, map[string][]dns.RR{
		"partner.test.":    {mustRR(t, "partner.test. 60 IN MX 10 mx.partner.test.")},
		"mx.partner.test.": {mustRR(t, "mx.partner.test. 60 IN A 127.0.0.1")},
	})
	e.ok("server", "set", "--dns-resolver", dnsAddr)
	e.ok("connector", "send", "add", "Internet", "--address-space", "*", "--port", port)
	m.start()
	m.sendAsAlice(t, "bob@partner.test", "found by MX")
	waitMbox(t, pf, "bob@partner.test", "Subject: found by MX")
	var recs []struct{ Host string }
	e.jsonOf(&recs, "track")
	if len(recs) == 0 || recs[0].Host != "mx.partner.test:"+port {
		t.Errorf("trace: %+v", recs)
	}
}

func mustRR(t *testing.T, s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// listenUDPAndTCP listens on one port for both UDP and TCP, as a DNS
// server does. addr is HOST:PORT; with port 0, the port UDP gets is tried
// for TCP, and another one when a TCP socket has it already (an outgoing
// connection of another test may: they share the ephemeral range).
func listenUDPAndTCP(t *testing.T, addr string) (net.PacketConn, net.Listener) {
	t.Helper()
	var err error
	for i := 0; i < 20; i++ {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			break
		}
		var ln net.Listener
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			return pc, ln
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			break
		}
	}
	t.Fatal(err)
	return nil, nil
}

// startDNS serves the given records over UDP and TCP on 127.0.0.1.
func startDNS(t *testing.T, zone map[string][]dns.RR) string {
	t.Helper()
	pc, ln := listenUDPAndTCP(t, "127.0.0.1:0")
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		msg := new(dns.Msg)
		msg.SetReply(r)
		msg.Authoritative = true
		for _, q := range r.Question {
			found := false
			for _, rr := range zone[strings.ToLower(q.Name)] {
				found = true
				if rr.Header().Rrtype == q.Qtype {
					msg.Answer = append(msg.Answer, rr)
				}
			}
			if !found {
				msg.Rcode = dns.RcodeNameError
			}
		}
		w.WriteMsg(msg)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return pc.LocalAddr().String()
}
