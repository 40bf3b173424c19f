package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// TestExpiredAndExpiringCertificates: an expired certificate that is the
// only one for a connector's FQDN is still used (STARTTLS advertised) and
// logs 12016; one that expires within 30 days logs 12018 at start.
func TestExpiredAndExpiringCertificates(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	now := time.Now()
	expired := testpki.SelfSigned(t, testpki.Options{CommonName: "old.contoso.test", DNSNames: []string{"old.contoso.test"},
		NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	soon := testpki.SelfSigned(t, testpki.Options{CommonName: "soon.contoso.test", DNSNames: []string{"soon.contoso.test"},
		NotBefore: now.Add(-300 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)})
	outExpired := testpki.SelfSigned(t, testpki.Options{CommonName: "out.contoso.test", DNSNames: []string{"out.contoso.test"},
		NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(-48 * time.Hour)})
	oldT, soonT, outT := e.importLeaf("old", expired), e.importLeaf("soon", soon), e.importLeaf("out", outExpired)
	e.ok("cert", "enable", outT, "--services", "SMTP")
	e.ok("connector", "send", "add", "Outbound", "--address-space", "*", "--smart-host", "127.0.0.1:9", "--fqdn", "out.contoso.test")
	r := e.run("", "cert", "enable", oldT, "--services", "SMTP")
	if r.code != 0 || !strings.Contains(r.stderr, "DateInvalid") {
		t.Fatalf("enable an expired certificate: %d %s", r.code, r.stderr)
	}
	e.ok("cert", "enable", soonT, "--services", "SMTP")
	oldAddr, soonAddr := testpki.FreePort(t), testpki.FreePort(t)
	e.ok("connector", "receive", "add", "Old", "--bindings", oldAddr, "--fqdn", "old.contoso.test")
	e.ok("connector", "receive", "add", "Soon", "--bindings", soonAddr, "--fqdn", "soon.contoso.test")
	// A second connector with the same FQDN: the events are throttled per
	// FQDN, so it adds none.
	e.ok("connector", "receive", "add", "Old too", "--bindings", testpki.FreePort(t), "--fqdn", "old.contoso.test")
	m.start()
	waitPort(t, oldAddr)
	if got := servedThumbprint(t, oldAddr); got != oldT {
		t.Errorf("expired only certificate: served %s, want %s", got, oldT)
	}
	var ev16, ev18 []struct{ Parameters []string }
	e.jsonOf(&ev16, "events", "--id", "12016")
	e.jsonOf(&ev18, "events", "--id", "12018")
	byFqdn := map[string]string{}
	for _, ev := range ev16 {
		byFqdn[ev.Parameters[0]] = ev.Parameters[1]
	}
	if len(ev16) != 2 || byFqdn["old.contoso.test"] != oldT || byFqdn["out.contoso.test"] != outT {
		t.Errorf("12016 for the receive and the send connector: %+v", ev16)
	}
	if len(ev18) != 1 || ev18[0].Parameters[1] != soonT {
		t.Errorf("12018: %+v", ev18)
	}
	var ex struct{ Winner, How, STARTTLS string }
	e.jsonOf(&ex, "cert", "explain", "--connector", "Old")
	if ex.Winner != oldT || ex.How != "expired" || !strings.Contains(ex.STARTTLS, "12016") {
		t.Errorf("explain: %+v", ex)
	}
}

// TestCertificateNamedByConnector: a connector that names its certificate
// (S4a) gets it even when another would win by name; removing that
// certificate is refused with the connector's name; when it is missing,
// STARTTLS is not advertised.
func TestCertificateNamedByConnector(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	named := e.ok("cert", "new", "--domain", "named.contoso.test", "--subject", "o=Contoso,cn=named.contoso.test", "--services", "SMTP")
	addr := testpki.FreePort(t)
	e.ok("connector", "receive", "add", "Named", "--bindings", addr, "--fqdn", "hub.contoso.test",
		"--tls-certificate-name", "<I>CN=named.contoso.test,O=Contoso<S>cn=named.contoso.test, o=Contoso")
	m.start()
	waitPort(t, addr)
	if got := servedThumbprint(t, addr); got != named {
		t.Errorf("named certificate: served %s, want %s", got, named)
	}
	r := e.run("", "cert", "remove", named, "--force")
	if r.code == 0 || !strings.Contains(r.stderr, `"Named"`) {
		t.Fatalf("removing a named certificate: %d %s", r.code, r.stderr)
	}
	e.ok("connector", "receive", "set", "Named", "--tls-certificate-name", "<I>CN=gone.contoso.test<S>CN=gone.contoso.test")
	deadline := time.Now().Add(10 * time.Second)
	for hasKeyword(ehlo(t, addr), "STARTTLS") {
		if time.Now().After(deadline) {
			t.Fatal("STARTTLS still advertised with the named certificate missing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.ok("cert", "remove", named, "--force")
}

// TestEnableWarnsOfPrecedence: enabling a self-signed certificate for a
// name a CA-issued one already serves warns, naming the winner and the
// connectors (M5).
func TestEnableWarnsOfPrecedence(t *testing.T) {
	e := newEnv(t)
	ca := newOpensslCA(e, "ca", "/CN=Precedence CA")
	newMailServer(t, e, "hub.contoso.test")
	e.ok("trust", "add", "ca.pem")
	e.ok("cert", "request", "--domain", "mail.contoso.test", "--out", "m.req")
	ca.sign("m.req", "m.pem", false)
	winner := e.ok("cert", "import", "m.pem")
	e.ok("cert", "enable", winner, "--services", "SMTP")
	e.ok("connector", "receive", "add", "Client MAIL", "--bindings", testpki.FreePort(t), "--fqdn", "mail.contoso.test")
	self := e.ok("cert", "new", "--domain", "mail.contoso.test", "--services", "POP")
	r := e.run("", "cert", "enable", self, "--services", "SMTP")
	if r.code != 0 {
		t.Fatalf("enable: %s", r.stderr)
	}
	for _, want := range []string{"will not be used for external TLS connections with an FQDN of 'mail.contoso.test'", winner, "Client MAIL"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("warning lacks %q:\n%s", want, r.stderr)
		}
	}
}

// TestSMTPBadInputLive: protocol errors on a running server get the right
// reply and leave the session usable; nothing half-received is queued.
func TestSMTPBadInputLive(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	e.ok("connector", "receive", "set", m.name, "--max-message-size", "2KB")
	m.start()
	cases := []struct {
		name   string
		script []string // lines to send; "<" lines are expected reply prefixes
	}{
		{"mail-before-ehlo", []string{"MAIL FROM:<a@example.org>", "<503 5.5.1", "EHLO x", "<250"}},
		{"rcpt-before-mail", []string{"EHLO x", "<250", "RCPT TO:<alice@contoso.test>", "<503 5.5.1"}},
		{"unknown-command", []string{"EHLO x", "<250", "FROB", "<500 5.5.2", "NOOP", "<250"}},
		{"declared-size-over-limit", []string{"EHLO x", "<250", "MAIL FROM:<a@example.org> SIZE=100000", "<552 5.3.4"}},
		{"auth-before-tls", []string{"EHLO x", "<250", "AUTH PLAIN AGFsaWNlQGNvbnRvc28udGVzdABhbGljZS1zZWNyZXQtMQ==", "<538 5.7.11"}},
		{"overlong-line", []string{"EHLO x", "<250", "NOOP " + strings.Repeat("x", 5000), "<500 5.5.2", "NOOP", "<250"}},
		{"unknown-mailbox", []string{"EHLO x", "<250", "MAIL FROM:<a@example.org>", "<250", "RCPT TO:<nobody@contoso.test>", "<550 5.1.1"}},
		{"message-over-size", append([]string{"EHLO x", "<250", "MAIL FROM:<a@example.org>", "<250", "RCPT TO:<alice@contoso.test>", "<250", "DATA", "<354"},
			append(repeat("0123456789012345678901234567890123456789012345678901234567890123456789", 60), ".", "<552 5.3.4", "NOOP", "<250")...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runScript(t, m.addr, c.script) })
	}
	if items := e.ok("queue", "list", "--json"); strings.TrimSpace(items) != "[]" {
		t.Errorf("something was queued: %s", items)
	}

	t.Run("pipelined-after-starttls-discarded", func(t *testing.T) {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		expectReply(t, r, "220")
		fmt.Fprint(c, "EHLO x\r\n")
		expectReply(t, r, "250")
		// The injected MAIL rides in the same packet as STARTTLS.
		fmt.Fprint(c, "STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
		expectReply(t, r, "220")
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		tr := bufio.NewReader(tc)
		fmt.Fprint(tc, "EHLO x\r\n")
		expectReply(t, tr, "250")
		fmt.Fprint(tc, "RCPT TO:<alice@contoso.test>\r\n")
		expectReply(t, tr, "503 5.5.1") // no MAIL: the injected one was dropped
	})
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func runScript(t *testing.T, addr string, script []string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	expectReply(t, r, "220")
	for _, line := range script {
		if strings.HasPrefix(line, "<") {
			expectReply(t, r, line[1:])
			continue
		}
		fmt.Fprintf(c, "%s\r\n", line)
	}
}

// expectReply reads one (possibly multi-line) reply and checks its start.
func expectReply(t *testing.T, r *bufio.Reader, prefix string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading reply (want %s): %v", prefix, err)
		}
		if !strings.HasPrefix(line, prefix[:3]) {
			t.Fatalf("reply %q, want %s", strings.TrimSpace(line), prefix)
		}
		if len(line) > 3 && line[3] == ' ' {
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("reply %q, want %s", strings.TrimSpace(line), prefix)
			}
			return
		}
	}
}
