package e2e

import (
	"bufio"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// Issue 14: POP3, IMAP4 and UM on the certificates of the store, driven
// by clients no one here wrote — Python's imaplib and poplib, openssl
// s_client, mbsync, fetchmail, testssl, sipsak.

// accessServer is a mail server (mailServer) with POP3 and IMAP4 enabled
// on free ports and a CA-issued certificate for mail.contoso.test enabled
// for POP and IMAP (which sets their X509CertificateName, M5).
type accessServer struct {
	*mailServer
	root                   *testpki.CA
	caFile                 string
	cert                   string // the CA-issued certificate's thumbprint
	pop, pops, imap, imaps string // addresses
}

func newAccessServer(t *testing.T, e *env) *accessServer {
	t.Helper()
	m := newMailServer(t, e, "hub.contoso.test")
	a := &accessServer{mailServer: m, pop: testpki.FreePort(t), pops: testpki.FreePort(t), imap: testpki.FreePort(t), imaps: testpki.FreePort(t)}
	a.root = testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Access Root"})
	a.caFile = e.write("access-root.pem", testpki.PEM(a.root.Cert))
	e.ok("trust", "add", "access-root.pem")
	// With a CRL distribution point, as a real CA's certificate has
	// (testssl rates a certificate without one HIGH).
	resp := testpki.NewResponder(t)
	now := time.Now()
	resp.SetCRL("/root.crl", a.root.CRL(t, nil, now.Add(-time.Hour), now.Add(24*time.Hour)))
	leaf := a.root.Issue(t, testpki.Options{CommonName: "mail.contoso.test", DNSNames: []string{"mail.contoso.test"}, NotBefore: now.Add(-48 * time.Hour),
		CRL: []string{resp.URL("/root.crl")}})
	a.cert = e.importLeaf("mail", leaf)
	e.ok("cert", "enable", a.cert, "--services", "POP,IMAP")
	e.ok("access", "pop", "set", "--enabled", "--unencrypted-or-tls-bindings", a.pop, "--ssl-bindings", a.pops)
	e.ok("access", "imap", "set", "--enabled", "--unencrypted-or-tls-bindings", a.imap, "--ssl-bindings", a.imaps)
	return a
}

func (a *accessServer) start() *accessServer {
	a.mailServer.start()
	for _, addr := range []string{a.pop, a.pops, a.imap, a.imaps} {
		waitPort(a.e.t, addr)
	}
	return a
}

// deliver sends a message to alice with swaks and waits for it.
func (a *accessServer) deliver(subject string, n int) {
	a.e.t.Helper()
	out, code := swaks(a.e.t, "--server", a.addr, "--from", "bob@example.org", "--to", "alice@contoso.test", "--tls",
		"--header", "Subject: "+subject, "--body", "body of "+subject)
	if code != 0 {
		a.e.t.Fatalf("swaks: exit %d\n%s", code, out)
	}
	a.waitDelivered(n)
}

func hostPort(addr string) (string, string) {
	h, p, _ := net.SplitHostPort(addr)
	return h, p
}

// pyClient runs a Python program with the server's addresses, alice's
// password and the CA file in its globals.
func (a *accessServer) py(prog string) string {
	a.e.t.Helper()
	head := fmt.Sprintf(`
import imaplib, poplib, ssl, sys, socket
HOST, NAME = "127.0.0.1", "mail.contoso.test"
POP, POPS_PORT, IMAP, IMAPS_PORT = %s, %s, %s, %s
USER, PASSWORD = "alice@contoso.test", %q
ctx = ssl.create_default_context(cafile=%q)
def check(cond, what):
    if not cond:
        print("FAILED:", what); sys.exit(1)
# Connect to loopback, but check the certificate for NAME.
class IMAPS(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        return self.ssl_context.wrap_socket(socket.create_connection((HOST, self.port), timeout), server_hostname=NAME)
class POPS(poplib.POP3_SSL):
    def _create_socket(self, timeout):
        return self.context.wrap_socket(socket.create_connection((HOST, self.port), timeout), server_hostname=NAME)
`, port(a.pop), port(a.pops), port(a.imap), port(a.imaps), alicePassword, a.caFile)
	return python(a.e.t, head+prog)
}

func port(addr string) string { _, p := hostPort(addr); return p }

// TestReadMailWithPythonClients: imaplib and poplib, each with STARTTLS/
// STLS and with implicit TLS, verify the CA-issued certificate for
// mail.contoso.test (the name X509CertificateName holds), log in, list,
// fetch a message swaks delivered, and delete it.
func TestReadMailWithPythonClients(t *testing.T) {
	e := newEnv(t)
	a := newAccessServer(t, e).start()
	a.deliver("first via swaks", 1)
	a.deliver("second via swaks", 2)
	out := a.py(`
# IMAP4 with STARTTLS
m = imaplib.IMAP4(HOST, IMAP)
check(b"LOGINDISABLED" in m.capability()[1][0], "LOGIN offered before TLS")
m.host = NAME; m.starttls(ssl_context=ctx)
typ, _ = m.login(USER, PASSWORD); check(typ == "OK", "IMAP login")
typ, data = m.list(); check(typ == "OK" and any(b"INBOX" in d for d in data), "LIST")
typ, data = m.select("INBOX"); check(data[0] == b"2", "SELECT: %r" % data)
typ, data = m.uid("SEARCH", None, "SUBJECT", "first"); uid = data[0].split()[0]
typ, data = m.uid("FETCH", uid, "(BODY[] BODYSTRUCTURE FLAGS)")
check(b"Subject: first via swaks" in data[0][1], "FETCH BODY[]: %r" % data)
m.uid("STORE", uid, "+FLAGS", r"(\Deleted)"); m.expunge()
typ, data = m.select("INBOX"); check(data[0] == b"1", "after EXPUNGE: %r" % data)
m.logout()
# IMAP4 over implicit TLS
m = IMAPS(HOST, IMAPS_PORT, ssl_context=ctx)
typ, _ = m.authenticate("PLAIN", lambda _: b"\0" + USER.encode() + b"\0" + PASSWORD.encode()); check(typ == "OK", "AUTHENTICATE PLAIN")
typ, data = m.select("INBOX", readonly=True); check(data[0] == b"1", "IMAPS SELECT: %r" % data)
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); check(b"second via swaks" in data[0][1], "IMAPS FETCH: %r" % data)
m.logout()
print("imap ok")
# POP3 with STLS
p = poplib.POP3(HOST, POP)
check("STLS" in p.capa(), "STLS not offered")
try:
    p.user(USER); check(False, "USER accepted before TLS")
except poplib.error_proto as e:
    check(b"STLS" in e.args[0], "refusal before TLS: %r" % e.args[0])
p.host = NAME; p.stls(context=ctx)
p.user(USER); p.pass_(PASSWORD)
count, size = p.stat(); check(count == 1, "STAT %d" % count)
resp, lines, octets = p.retr(1); check(b"Subject: second via swaks" in lines, "RETR: %r" % lines[:10])
check(len(p.uidl()[1]) == 1, "UIDL")
p.dele(1); p.quit()
# POP3 over implicit TLS: the deletion was committed at QUIT
p = POPS(HOST, POPS_PORT, context=ctx)
p.user(USER); p.pass_(PASSWORD)
count, size = p.stat(); check(count == 0, "after DELE and QUIT: %d messages" % count)
p.quit()
print("pop ok")
`)
	if !strings.Contains(out, "imap ok") || !strings.Contains(out, "pop ok") {
		t.Fatal(out)
	}
	if got := a.maildir(); len(got) != 0 {
		t.Errorf("the mailbox still holds %d messages after both were deleted", len(got))
	}
}

// servedOver returns the thumbprint of the certificate openssl s_client
// gets after STARTTLS in proto (imap, pop3), or over implicit TLS when
// proto is "".
func servedOver(t *testing.T, proto, addr string) string {
	t.Helper()
	args := []string{"s_client", "-connect", addr, "-servername", "mail.contoso.test", "-showcerts"}
	if proto != "" {
		args = append(args, "-starttls", proto)
	}
	cmd := exec.Command(testpki.Tool(t, "openssl"), args...)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	block, _ := pem.Decode(out)
	if block == nil {
		return ""
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(block.Bytes)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

type accessExplain struct {
	Fqdn, Winner, Why, Setting string
}

func (e *env) explain(service string) accessExplain {
	e.t.Helper()
	var x accessExplain
	e.jsonOf(&x, "cert", "explain", "--service", service)
	return x
}

// waitServed polls until s_client gets want over proto at addr (a
// change reaches a running server within milliseconds; S7).
func waitServed(t *testing.T, proto, addr, want string) {
	t.Helper()
	got := ""
	for i := 0; i < 50; i++ {
		if got = servedOver(t, proto, addr); got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s on %s serves %q, want %q", or(proto, "implicit TLS"), addr, got, want)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestSClientSeesExplainedCertificateAndHotSwap: openssl s_client
// -starttls imap|pop3 (and on the implicit-TLS ports) gets the
// certificate cert explain --service IMAP|POP names; enabling a newer
// CA-issued certificate for IMAP is served from the next handshake,
// without a restart, and POP3 keeps its own; removing it brings the
// first back.
func TestSClientSeesExplainedCertificateAndHotSwap(t *testing.T) {
	e := newEnv(t)
	a := newAccessServer(t, e).start()
	for _, c := range []struct{ service, proto, plain, implicit string }{{"IMAP", "imap", a.imap, a.imaps}, {"POP", "pop3", a.pop, a.pops}} {
		x := e.explain(c.service)
		if x.Fqdn != "mail.contoso.test" || x.Winner != a.cert {
			t.Fatalf("cert explain --service %s: %+v, want %s for mail.contoso.test", c.service, x, a.cert)
		}
		if got := servedOver(t, c.proto, c.plain); got != x.Winner {
			t.Errorf("s_client -starttls %s got %s, explain names %s", c.proto, got, x.Winner)
		}
		if got := servedOver(t, "", c.implicit); got != x.Winner {
			t.Errorf("s_client on the %s TLS port got %s, explain names %s", c.service, got, x.Winner)
		}
	}
	// A newer CA-issued certificate, enabled for IMAP only.
	leaf := a.root.Issue(t, testpki.Options{CommonName: "mail.contoso.test", DNSNames: []string{"mail.contoso.test"}})
	newer := e.importLeaf("newer", leaf)
	e.ok("cert", "enable", newer, "--services", "IMAP")
	if x := e.explain("IMAP"); x.Winner != newer {
		t.Fatalf("explain IMAP after enabling a newer certificate: %+v", x)
	}
	waitServed(t, "imap", a.imap, newer)
	waitServed(t, "", a.imaps, newer)
	if got := servedOver(t, "pop3", a.pop); got != a.cert {
		t.Errorf("POP3 changed to %s although the new certificate is not enabled for POP", got)
	}
	e.ok("cert", "remove", newer, "--force")
	waitServed(t, "imap", a.imap, a.cert)
	select {
	case err := <-a.p.done:
		t.Fatalf("the server stopped: %v", err)
	default:
	}
}

// TestNoCertificateNoSTLS: with no certificate for POP3's name, STLS and
// STARTTLS are not offered, the TLS ports refuse handshakes, event 16062
// names the fix; enabling a certificate brings TLS back without restart.
func TestNoCertificateNoSTLS(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	pop, imapAddr, imaps := testpki.FreePort(t), testpki.FreePort(t), testpki.FreePort(t)
	e.ok("access", "pop", "set", "--enabled", "--unencrypted-or-tls-bindings", pop, "--ssl-bindings", "", "--x509-certificate-name", "pop.contoso.test")
	e.ok("access", "imap", "set", "--enabled", "--unencrypted-or-tls-bindings", imapAddr, "--ssl-bindings", imaps, "--x509-certificate-name", "pop.contoso.test")
	m.start()
	waitPort(t, pop)
	out := python(t, fmt.Sprintf(`
import poplib, imaplib
p = poplib.POP3("127.0.0.1", %s)
print("POP CAPA", sorted(p.capa().keys()))
m = imaplib.IMAP4("127.0.0.1", %s)
print("IMAP CAPA", m.capability()[1][0].decode())
`, port(pop), port(imapAddr)))
	if strings.Contains(out, "STLS") || strings.Contains(out, "STARTTLS") || strings.Contains(out, "'USER'") {
		t.Errorf("TLS or plain-text login offered without a certificate:\n%s", out)
	}
	if got := servedOver(t, "", imaps); got != "" {
		t.Errorf("the IMAP4 TLS port served %s without a certificate for its name", got)
	}
	e.wantEvent("16062", "POP3", "pop.contoso.test")
	e.wantEvent("16062", "IMAP4", "pop.contoso.test")
	// The fix the event names.
	th := mustThumbprint(t, e.ok("cert", "new", "--domain", "pop.contoso.test", "--services", "POP,IMAP"))
	waitServed(t, "pop3", pop, th)
	waitServed(t, "", imaps, th)
}

// TestExchange2007Switch (S9): with the switch, the newest certificate
// wins over an older CA-issued one and a wildcard no longer matches —
// for POP3 only: IMAP4 and SMTP keep the default rules.
func TestExchange2007Switch(t *testing.T) {
	e := newEnv(t)
	a := newAccessServer(t, e)
	self := mustThumbprint(t, e.ok("cert", "new", "--domain", "mail.contoso.test", "--services", "POP,IMAP,SMTP"))
	a.start()
	if x := e.explain("POP"); x.Winner != a.cert {
		t.Fatalf("default rules: POP3 chose %s, want the CA-issued %s", x.Winner, a.cert)
	}
	e.ok("access", "pop", "set", "--exchange2007-certificate-selection")
	if x := e.explain("POP"); x.Winner != self {
		t.Fatalf("S9: POP3 chose %s, want the newest (self-signed) %s", x.Winner, self)
	}
	waitServed(t, "pop3", a.pop, self)
	if x := e.explain("IMAP"); x.Winner != a.cert {
		t.Errorf("the POP3 switch changed IMAP4's choice to %s", x.Winner)
	}
	if got := servedOver(t, "imap", a.imap); got != a.cert {
		t.Errorf("IMAP4 serves %s", got)
	}
	var sm struct{ Winner string }
	e.jsonOf(&sm, "cert", "explain", "--fqdn", "mail.contoso.test", "--service", "SMTP")
	if sm.Winner != self {
		// SMTP: both hold the name, but only the self-signed one is enabled for SMTP.
		t.Errorf("SMTP chose %s", sm.Winner)
	}
	// Wildcards: only *.contoso.test for wild.contoso.test.
	wild := a.root.Issue(t, testpki.Options{CommonName: "*.contoso.test", DNSNames: []string{"*.contoso.test"}})
	wt := e.importLeaf("wild", wild)
	e.ok("cert", "enable", wt, "--services", "POP,IMAP")
	e.ok("access", "pop", "set", "--x509-certificate-name", "wild.contoso.test")
	e.ok("access", "imap", "set", "--x509-certificate-name", "wild.contoso.test")
	if x := e.explain("IMAP"); x.Winner != wt {
		t.Errorf("default rules: the wildcard does not serve IMAP4 for wild.contoso.test: %+v", x)
	}
	if x := e.explain("POP"); x.Winner != "" || !strings.Contains(x.Why, "wild.contoso.test") {
		t.Errorf("S9: a wildcard served POP3: %+v", x)
	}
	e.wantEvent("16062", "POP3", "wild.contoso.test")
	e.ok("access", "pop", "set", "--exchange2007-certificate-selection=false")
	if x := e.explain("POP"); x.Winner != wt {
		t.Errorf("switch off: POP3 chose %q", x.Winner)
	}
}

// TestAccessBadInput: what clients send wrong is answered correctly and
// changes nothing: commands before login, logins before TLS, overlong
// lines, a literal larger than the APPEND limit, and 1,000 wrong
// passwords (answered each, the address then locked out — also for the
// right password — with one event 16064 and no password in the log).
// The mailbox is the same before and after.
func TestAccessBadInput(t *testing.T) {
	e := newEnv(t)
	a := newAccessServer(t, e)
	e.ok("access", "imap", "set", "--max-message-size", "64KB")
	a.start()
	a.deliver("keep me", 1)
	before := strings.Join(a.maildir(), "\n")
	out := a.py(`
import base64
def lines(s, n):
    return [s.makefile("rb").readline().decode().strip() for _ in range(n)]
def send(s, f, line):
    s.sendall(line.encode() + b"\r\n"); return f.readline().decode().strip()
# POP3: commands before login, login before TLS, an overlong line.
s = socket.create_connection((HOST, POP)); f = s.makefile("rb"); f.readline()
check(send(s, f, "STAT").startswith("-ERR"), "STAT before login")
check(send(s, f, "RETR 1").startswith("-ERR"), "RETR before login")
check("STLS" in send(s, f, "USER " + USER), "USER before TLS")
check("STLS" in send(s, f, "PASS " + PASSWORD), "PASS before TLS")
r = send(s, f, "AUTH PLAIN " + base64.b64encode(("\0" + USER + "\0" + PASSWORD).encode()).decode())
check(r.startswith("-ERR [AUTH]"), "AUTH before TLS: " + r)
r = send(s, f, "NOOP " + "x" * 5000); check(r.startswith("-ERR command line too long"), "overlong: " + r)
check(send(s, f, "QUIT").startswith("+OK"), "QUIT")
# IMAP4: commands before login, LOGIN before TLS, an overlong line, a literal over the limit.
s = socket.create_connection((HOST, IMAP)); f = s.makefile("rb"); f.readline()
r = send(s, f, "a1 SELECT INBOX"); check(r.startswith("a1 NO") or r.startswith("a1 BAD"), "SELECT before login: " + r)
r = send(s, f, "a2 LOGIN %s %s" % (USER, PASSWORD)); check(r.startswith("a2 NO") or r.startswith("a2 BAD"), "LOGIN before TLS: " + r)
s.sendall(b"a3 NOOP " + b"x" * 70000 + b"\r\n"); r = f.readline().decode()
check(not r.startswith("a3 OK"), "overlong IMAP line accepted: " + r[:80])
s.close()
m = imaplib.IMAP4(HOST, IMAP); m.host = NAME; m.starttls(ssl_context=ctx); m.login(USER, PASSWORD)
typ, data = m.append("INBOX", None, None, b"Subject: big\r\n\r\n" + b"x" * 100000)
check(typ == "NO" and b"TOOBIG" in data[0], "APPEND over the limit: %s %r" % (typ, data))
typ, data = m.select("INBOX"); check(typ == "OK" and data[0] == b"1", "the session after TOOBIG: %s %r" % (typ, data))
m.logout()
# 1,000 wrong passwords over POP3 (each answered), then the right one is refused too.
p = poplib.POP3(HOST, POP); p.host = NAME; p.stls(context=ctx)
answers = {}
for i in range(1000):
    try:
        p.user(USER); p.pass_("wrong-%d" % i); check(False, "a wrong password was accepted")
    except poplib.error_proto as e:
        k = e.args[0].decode().split(":")[0]
        answers[k] = answers.get(k, 0) + 1
print("answers", answers)
check(sum(answers.values()) == 1000, "not every attempt was answered")
try:
    p.user(USER); p.pass_(PASSWORD); check(False, "logged in from a locked-out address")
except poplib.error_proto as e:
    check(b"SYS/TEMP" in e.args[0], "locked out: %r" % e.args[0])
p.quit()
# IMAP4 refuses too: the lockout is the address's, not the protocol's.
m = imaplib.IMAP4(HOST, IMAP); m.host = NAME; m.starttls(ssl_context=ctx)
try:
    m.login(USER, PASSWORD); check(False, "IMAP login from a locked-out address")
except imaplib.IMAP4.error as e:
    check("too many failed logins" in str(e), "IMAP lockout: %s" % e)
print("bad input ok")
`)
	if !strings.Contains(out, "bad input ok") {
		t.Fatal(out)
	}
	if !strings.Contains(out, "-ERR [AUTH] authentication failed': 10") || !strings.Contains(out, "-ERR [SYS/TEMP] too many failed logins from your address': 990") {
		t.Errorf("answers to 1,000 wrong passwords: %s", out)
	}
	if after := strings.Join(a.maildir(), "\n"); after != before {
		t.Errorf("the mailbox changed:\nbefore %q\nafter  %q", before, after)
	}
	e.wantEvent("16064", "POP3", "127.0.0.1", "10")
	if evs := e.eventParams("16064"); len(evs) != 1 {
		t.Errorf("16064 logged %d times, want once", len(evs))
	}
	logs := a.p.Logs()
	if strings.Contains(logs, "wrong-1") || strings.Contains(logs, alicePassword) {
		t.Error("a password reached the log")
	}
	if !strings.Contains(logs, "login failed") {
		t.Error("failed logins are not logged")
	}
}

// TestAccessSettingsBadInput: settings refused with the reason, and
// nothing changed.
func TestAccessSettingsBadInput(t *testing.T) {
	e := newEnv(t)
	newMailServer(t, e, "hub.contoso.test")
	before := e.ok("access", "pop", "show", "--json") + e.ok("access", "imap", "show", "--json") + e.ok("access", "um", "show", "--json")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"bad/binding", []string{"access", "pop", "set", "--ssl-bindings", "pop.example:995"}, "not an IP address"},
		{"bad/port", []string{"access", "imap", "set", "--unencrypted-or-tls-bindings", "127.0.0.1:99999"}, "1 to 65535"},
		{"bad/login-type", []string{"access", "pop", "set", "--login-type", "PlainTextAuthentication"}, "does not offer"},
		{"bad/zero-connections", []string{"access", "pop", "set", "--max-connections", "0"}, "--max-connections \"0\": give a whole number from 1"},
		{"bad/per-ip-over-total", []string{"access", "imap", "set", "--max-connections", "10", "--max-connection-from-single-ip", "20"}, "more than"},
		{"bad/short-auth-timeout", []string{"access", "pop", "set", "--authenticated-connection-timeout", "1m"}, "10m0s to 7 days"},
		{"bad/duration", []string{"access", "pop", "set", "--connection-timeout", "soon"}, "10m, 90s or 00:10:00"},
		{"bad/wildcard-name", []string{"access", "pop", "set", "--x509-certificate-name", "*.contoso.test"}, "wildcard"},
		{"bad/pop-message-size", []string{"access", "pop", "set", "--max-message-size", "10MB"}, "unknown flag"},
		{"bad/taken-by-connector", []string{"access", "pop", "set", "--unencrypted-or-tls-bindings", "0.0.0.0:" + port(newMailServerAddr(e))}, "taken by receive connector"},
		{"bad/um-mode", []string{"access", "um", "set", "--um-startup-mode", "Secure"}, "TLS, TCP, Dual"},
		{"bad/nothing", []string{"access", "um", "set"}, "nothing to set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.run("", c.args...)
			if r.code == 0 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("certrelay %v: exit %d, stderr %q; want a refusal naming %q", c.args, r.code, r.stderr, c.want)
			}
		})
	}
	after := e.ok("access", "pop", "show", "--json") + e.ok("access", "imap", "show", "--json") + e.ok("access", "um", "show", "--json")
	if after != before {
		t.Errorf("refused settings changed something:\n%s\n%s", before, after)
	}
}

func newMailServerAddr(e *env) string {
	var c []struct{ Bindings []string }
	e.jsonOf(&c, "connector", "receive", "list")
	return c[0].Bindings[0]
}

// localhostCert gives POP3 and IMAP4 a CA-issued certificate for
// "localhost", so clients that check the name they connect to (mbsync,
// fetchmail) can verify it without any DNS.
func (a *accessServer) localhostCert() string {
	a.e.t.Helper()
	th := a.e.importLeaf("localhost", a.root.Issue(a.e.t, testpki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}}))
	a.e.ok("cert", "enable", th, "--services", "POP,IMAP") // X509CertificateName becomes localhost
	return th
}

// TestMbsyncBothWays: mbsync (isync) synchronises alice's INBOX both ways
// over STARTTLS, checking the certificate: a message swaks delivered
// reaches the local Maildir, and one written locally reaches the server.
func TestMbsyncBothWays(t *testing.T) {
	mbsync := testpki.Tool(t, "mbsync")
	e := newEnv(t)
	a := newAccessServer(t, e)
	a.localhostCert()
	a.start()
	a.deliver("pull me", 1)
	local := e.path("local")
	if err := os.MkdirAll(local, 0o700); err != nil {
		t.Fatal(err)
	}
	rc := e.write("mbsyncrc", []byte(fmt.Sprintf(`IMAPAccount cr
Host localhost
Port %s
User alice@contoso.test
PassCmd "cat %s"
SSLType STARTTLS
CertificateFile %s

IMAPStore remote
Account cr

MaildirStore local
Path %s/
Inbox %s/INBOX

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Create Both
SyncState *
Sync All
`, port(a.imap), e.path("alice.pw"), a.caFile, local, local)))
	run := func() string {
		cmd := exec.Command(mbsync, "-c", rc, "-a")
		cmd.Dir = e.work
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s\nserver log:\n%s", err, out, a.p.Logs())
		}
		return string(out)
	}
	run()
	got := readDir(t, local+"/INBOX")
	if !strings.Contains(got, "Subject: pull me") {
		t.Fatalf("mbsync did not bring the message to the local Maildir:\n%s", got)
	}
	e.write("local/INBOX/new/1700000000.42_1.client", []byte("From: alice@contoso.test\r\nSubject: push me\r\n\r\nwritten locally\r\n"))
	run()
	server := strings.Join(a.maildir(), "\n")
	if !strings.Contains(server, "Subject: push me") || !strings.Contains(server, "Subject: pull me") {
		t.Fatalf("after the second sync the server holds:\n%s", server)
	}
	// A third run has nothing to do, and changes nothing.
	run()
	if n := len(a.maildir()); n != 2 {
		t.Errorf("the server holds %d messages after a sync with nothing to do, want 2", n)
	}
}

// readDir returns the content of every message of a Maildir.
func readDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, ent := range ents {
			data, _ := os.ReadFile(filepath.Join(dir, sub, ent.Name()))
			b.Write(data)
			b.WriteString("\n----\n")
		}
	}
	return b.String()
}

// TestFetchmailSTLS: fetchmail downloads over POP3 with STLS, checking
// the certificate, and deletes what it fetched (committed at QUIT).
func TestFetchmailSTLS(t *testing.T) {
	fetchmail := testpki.Tool(t, "fetchmail")
	e := newEnv(t)
	a := newAccessServer(t, e)
	a.localhostCert()
	a.start()
	a.deliver("fetch me", 1)
	a.deliver("fetch me too", 2)
	mbox := e.path("fetched.mbox")
	rc := e.write("fetchmailrc", []byte(fmt.Sprintf(`poll localhost protocol POP3 port %s timeout 20
  user "alice@contoso.test" there with password "%s"
  sslproto 'TLS1.2+' sslcertck sslcertfile "%s"
  mda "/bin/sh -c 'cat >> %s'"
`, port(a.pop), alicePassword, a.caFile, mbox)))
	cmd := exec.Command(fetchmail, "-f", rc, "--nosyslog", "-v", "--idfile", e.path("fetchids"))
	cmd.Dir = e.work
	cmd.Env = append(os.Environ(), "HOME="+e.work)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s\nserver log:\n%s", err, out, a.p.Logs())
	}
	if !strings.Contains(string(out), "STLS") {
		t.Errorf("fetchmail did not use STLS:\n%s", out)
	}
	data, _ := os.ReadFile(mbox)
	if !strings.Contains(string(data), "Subject: fetch me") || !strings.Contains(string(data), "Subject: fetch me too") {
		t.Fatalf("fetchmail delivered:\n%s\n%s", data, out)
	}
	if n := len(a.maildir()); n != 0 {
		t.Errorf("the server still holds %d messages after fetchmail fetched and deleted them", n)
	}
}

// TestSSLAuditAccess: testssl finds nothing of severity HIGH or CRITICAL
// on IMAP4 and POP3, with STARTTLS/STLS and on their implicit-TLS ports,
// serving a CA-issued certificate (its root given to testssl).
func TestSSLAuditAccess(t *testing.T) {
	testssl := testpki.Tool(t, "testssl")
	e := newEnv(t)
	a := newAccessServer(t, e).start()
	targets := []struct{ name, starttls, addr string }{
		{"imap-starttls", "imap", a.imap}, {"pop3-stls", "pop3", a.pop}, {"imaps", "", a.imaps}, {"pop3s", "", a.pops},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			out := e.path("testssl-" + tg.name + ".json")
			args := []string{"--quiet", "--color", "0", "--fast", "--warnings", "batch", "--ip", "127.0.0.1", "--nodns", "none",
				"--add-ca", a.caFile, "--jsonfile-pretty", out}
			if tg.starttls != "" {
				args = append(args, "--starttls", tg.starttls)
			}
			cmd := exec.Command(testssl, append(args, "mail.contoso.test:"+port(tg.addr))...)
			cmd.Dir = e.work
			text, err := cmd.CombinedOutput()
			if _, ok := err.(*exec.ExitError); err != nil && !ok {
				t.Fatalf("testssl: %v", err)
			}
			data, rerr := os.ReadFile(out)
			if rerr != nil {
				t.Fatalf("testssl wrote no JSON (%v, %v):\n%s", err, rerr, text)
			}
			findings, perr := parseTestssl(data)
			if perr != nil || len(findings) < 20 {
				t.Fatalf("testssl JSON (%v): %d findings\n%s", perr, len(findings), text)
			}
			var bad []string
			for _, f := range findings {
				switch strings.ToUpper(f.Severity) {
				case "HIGH", "CRITICAL", "FATAL":
					bad = append(bad, fmt.Sprintf("%-8s %s: %s", f.Severity, f.ID, f.Finding))
				case "MEDIUM", "LOW":
					t.Logf("%-8s %s: %s", f.Severity, f.ID, f.Finding)
				}
			}
			if len(bad) > 0 {
				t.Errorf("testssl on %s found:\n%s\n%s", tg.name, strings.Join(bad, "\n"), text)
			}
		})
	}
}

// sipsak sends OPTIONS over TLS to addr for the server's name and returns
// its output and exit status (0: a 200 answer).
// TestIdleSeesSMTPDelivery: a client in IMAP IDLE (a Python socket, over
// STARTTLS) is told "* 2 EXISTS" when swaks delivers a message by SMTP,
// well before any periodic re-read (imapd.RefreshInterval, 10 s).
func TestIdleSeesSMTPDelivery(t *testing.T) {
	e := newEnv(t)
	a := newAccessServer(t, e).start()
	a.deliver("before idle", 1)
	cmd := exec.Command(testpki.Tool(t, "python3"), "-c", fmt.Sprintf(`
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=%q)
s = socket.create_connection(("127.0.0.1", %s), 10); f = s.makefile("rb")
def until(tag):
    while True:
        l = f.readline().decode()
        if not l: sys.exit("closed")
        if l.startswith(tag): return l
f.readline(); s.sendall(b"a STARTTLS\r\n"); until("a ")
s = ctx.wrap_socket(s, server_hostname="mail.contoso.test"); f = s.makefile("rb")
s.sendall(b"b LOGIN alice@contoso.test %s\r\n"); until("b OK")
s.sendall(b"c SELECT INBOX\r\n"); until("c OK")
s.sendall(b"d IDLE\r\n"); until("+")
print("idling", flush=True)
s.settimeout(8)
l = until("* 2 EXISTS")
print("got", l.strip(), time.time(), flush=True)
s.sendall(b"DONE\r\n"); until("d OK")
`, a.caFile, port(a.imap), alicePassword))
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "idling") {
		t.Fatalf("the client did not reach IDLE: %q %v", l, err)
	}
	sent := time.Now()
	a.deliver("during idle", 2)
	l, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "got * 2 EXISTS") {
		t.Fatalf("the idling client was not told of the delivery: %q %v\nserver log:\n%s", l, err, a.p.Logs())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python: %v", err)
	}
	t.Logf("told %v after swaks was started", time.Since(sent).Round(time.Millisecond))
}

// TestUIDsSurviveRestart: UIDVALIDITY, UIDNEXT and each message's UID are
// the same after the server restarts, and a new message gets the next UID.
func TestUIDsSurviveRestart(t *testing.T) {
	e := newEnv(t)
	a := newAccessServer(t, e).start()
	a.deliver("one", 1)
	a.deliver("two", 2)
	prog := `
m = imaplib.IMAP4(HOST, IMAP); m.host = NAME; m.starttls(ssl_context=ctx); m.login(USER, PASSWORD)
m.select("INBOX", readonly=True)
typ, v = m.response("UIDVALIDITY"); typ, n = m.response("UIDNEXT")
typ, uids = m.uid("SEARCH", None, "ALL")
print("state", v[0].decode(), n[0].decode(), uids[0].decode())
`
	state := func() string {
		out := a.py(prog)
		i := strings.Index(out, "state ")
		if i < 0 {
			t.Fatal(out)
		}
		return strings.TrimSpace(out[i:])
	}
	before := state()
	a.p.stop()
	a.start()
	if after := state(); after != before {
		t.Fatalf("after a restart: %q, before %q", after, before)
	}
	a.deliver("three", 3)
	f := strings.Fields(before) // state VALIDITY NEXT UID…
	after := strings.Fields(state())
	if after[1] != f[1] || after[len(after)-1] != f[2] {
		t.Errorf("a new message after the restart: %v; before %v (its UID must be the old UIDNEXT)", after, f)
	}
}
