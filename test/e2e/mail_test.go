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
	"sync"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// mailServer is a running certrelay with a mailbox alice@contoso.test
// (password in the work directory's "alice.pw") and its default receive
// connector on a free port.
type mailServer struct {
	e    *env
	p    *proc
	addr string // the default connector's address
	name string // the default connector's name
}

const alicePassword = "alice-secret-1"

func newMailServer(t *testing.T, e *env, fqdn string) *mailServer {
	t.Helper()
	e.ok("setup", "--fqdn", fqdn)
	m := &mailServer{e: e, addr: testpki.FreePort(t), name: "Default " + e.server().Name}
	e.ok("connector", "receive", "set", m.name, "--bindings", m.addr)
	e.ok("domain", "add", "contoso.test")
	e.write("alice.pw", []byte(alicePassword+"\n"))
	e.ok("mailbox", "add", "alice@contoso.test", "--password-file", "alice.pw")
	return m
}

func (m *mailServer) start() *mailServer {
	m.p = m.e.serve()
	waitPort(m.e.t, m.addr)
	return m
}

func waitPort(t *testing.T, addr string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

// maildir returns the messages delivered to alice (new/ and cur/).
func (m *mailServer) maildir() []string {
	var out []string
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(m.e.data, "mail", "contoso.test", "alice", sub)
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			b, _ := os.ReadFile(filepath.Join(dir, ent.Name()))
			out = append(out, string(b))
		}
	}
	return out
}

// waitDelivered waits until alice has n messages and returns them.
func (m *mailServer) waitDelivered(n int) []string {
	m.e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if got := m.maildir(); len(got) >= n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.e.t.Fatalf("alice has %d messages, want %d; queue:\n%s\nserver log:\n%s", len(m.maildir()), n, m.e.ok("queue", "list"), m.p.Logs())
	return nil
}

// swaks runs swaks against addr and returns its transcript and exit code.
func swaks(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(testpki.Tool(t, "swaks"), args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// servedThumbprint asks openssl s_client for the certificate presented
// after STARTTLS on addr.
func servedThumbprint(t *testing.T, addr string) string {
	t.Helper()
	cmd := exec.Command(testpki.Tool(t, "openssl"), "s_client", "-starttls", "smtp", "-connect", addr, "-showcerts")
	cmd.Stdin = strings.NewReader("QUIT\r\n")
	out, _ := cmd.CombinedOutput()
	block, _ := pem.Decode(out)
	if block == nil {
		t.Fatalf("openssl s_client -starttls smtp %s got no certificate:\n%s", addr, out)
	}
	sum := sha1.Sum(block.Bytes)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// ehlo returns the EHLO keywords a plain-text client is offered.
func ehlo(t *testing.T, addr string) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "EHLO client.example\r\n")
	var kw []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if len(line) > 4 {
			kw = append(kw, strings.Fields(line[4:])[0])
		}
		if line[3] == ' ' {
			break
		}
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return kw
}

func hasKeyword(kw []string, k string) bool {
	for _, v := range kw {
		if strings.EqualFold(v, k) {
			return true
		}
	}
	return false
}

// TestReceiveWithRealClients: swaks over STARTTLS and Python's smtplib
// deliver to a mailbox; the message is in the Maildir with a Received
// header recording TLS.
func TestReceiveWithRealClients(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test").start()
	out, code := swaks(t, "--server", m.addr, "--from", "bob@example.org", "--to", "alice@contoso.test", "--tls", "--header", "Subject: via swaks")
	if code != 0 || !strings.Contains(out, "250 2.0.0 OK queued as") {
		t.Fatalf("swaks: exit %d\n%s", code, out)
	}
	py := fmt.Sprintf(`
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(%q, %s, timeout=10)
s.ehlo(); s.starttls(context=ctx); s.ehlo()
s.sendmail("carol@example.org", ["alice@contoso.test"], b"Subject: via smtplib\r\n\r\nhello from python\r\n")
s.quit()
`, strings.Split(m.addr, ":")[0], strings.Split(m.addr, ":")[1])
	if out, err := exec.Command(testpki.Tool(t, "python3"), "-c", py).CombinedOutput(); err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	msgs := m.waitDelivered(2)
	joined := strings.Join(msgs, "\n----\n")
	for _, want := range []string{"Subject: via swaks", "Subject: via smtplib", "hello from python", "with ESMTPS", "version=TLS 1.3", "Return-Path: <bob@example.org>", "Return-Path: <carol@example.org>"} {
		if !strings.Contains(joined, want) {
			t.Errorf("mailbox lacks %q:\n%s", want, joined)
		}
	}
}

// TestRelayPermissions: no open relay; authenticated users may relay.
func TestRelayPermissions(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test").start()
	out, code := swaks(t, "--server", m.addr, "--from", "spammer@example.org", "--to", "victim@elsewhere.example", "--tls")
	if code == 0 || !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("unauthenticated relay: exit %d\n%s", code, out)
	}
	out, code = swaks(t, "--server", m.addr, "--from", "alice@contoso.test", "--to", "partner@elsewhere.example", "--tls",
		"--auth", "PLAIN", "--auth-user", "alice@contoso.test", "--auth-password", alicePassword)
	if code != 0 || !strings.Contains(out, "235 2.7.0") || !strings.Contains(out, "250 2.0.0 OK queued as") {
		t.Fatalf("authenticated relay: exit %d\n%s", code, out)
	}
	out, code = swaks(t, "--server", m.addr, "--from", "alice@contoso.test", "--to", "partner@elsewhere.example", "--tls",
		"--auth", "PLAIN", "--auth-user", "alice@contoso.test", "--auth-password", "wrong-password")
	if code == 0 || !strings.Contains(out, "535 5.7.8") {
		t.Fatalf("wrong password: exit %d\n%s", code, out)
	}
	// Without TLS, AUTH is neither offered nor accepted.
	if kw := ehlo(t, m.addr); hasKeyword(kw, "AUTH") {
		t.Errorf("AUTH offered in plain text: %v", kw)
	}
	var items []struct {
		Recipients []struct{ Address, Destination, Status string }
	}
	e.jsonOf(&items, "queue", "list")
	if len(items) != 1 || items[0].Recipients[0].Destination != "elsewhere.example" || items[0].Recipients[0].Status != "pending" {
		t.Fatalf("relayed message in the queue: %+v", items)
	}
}

// TestStartTLSCertificatePerConnector: openssl s_client sees, for each
// connector FQDN, the certificate selection chose and cert explain names:
// a CA-issued certificate beats a newer self-signed one; a wildcard
// serves a host under it.
func TestStartTLSCertificatePerConnector(t *testing.T) {
	e := newEnv(t)
	ca := newOpensslCA(e, "ca", "/CN=Contoso Issuing CA")
	m := newMailServer(t, e, "hub.contoso.test")
	e.ok("trust", "add", "ca.pem")
	// A CA-issued certificate for mail.contoso.test …
	e.ok("cert", "request", "--domain", "mail.contoso.test", "--out", "mail.req")
	ca.sign("mail.req", "mail.pem", false)
	caIssued := e.ok("cert", "import", "mail.pem")
	e.ok("cert", "enable", caIssued, "--services", "SMTP")
	// … and a wildcard for another domain.
	e.ok("cert", "request", "--domain", "*.fabrikam.test", "--out", "wild.req")
	ca.sign("wild.req", "wild.pem", false)
	wild := e.ok("cert", "import", "wild.pem")
	e.ok("cert", "enable", wild, "--services", "SMTP")
	time.Sleep(1100 * time.Millisecond)
	// A newer self-signed one for the same name.
	newer := e.ok("cert", "new", "--domain", "mail.contoso.test", "--services", "SMTP")
	internet, wildAddr := testpki.FreePort(t), testpki.FreePort(t)
	e.ok("connector", "receive", "add", "Internet", "--bindings", internet, "--fqdn", "mail.contoso.test")
	e.ok("connector", "receive", "add", "Wildcard", "--bindings", wildAddr, "--fqdn", "smtp.fabrikam.test")
	m.start()
	waitPort(t, internet)
	waitPort(t, wildAddr)

	internal := e.server().InternalTransportCertificateThumbprint
	cases := []struct {
		name, connector, addr, want string
	}{
		{"default-connector-uses-server-fqdn", m.name, m.addr, internal},
		{"ca-issued-beats-newer-self-signed", "Internet", internet, caIssued},
		{"wildcard-serves-host-under-it", "Wildcard", wildAddr, wild},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := servedThumbprint(t, c.addr); got != c.want {
				t.Errorf("served %s, want %s", got, c.want)
			}
			var ex struct{ Winner, Why string }
			e.jsonOf(&ex, "cert", "explain", "--connector", c.connector)
			if ex.Winner != c.want {
				t.Errorf("cert explain says %s (%s), want %s", ex.Winner, ex.Why, c.want)
			}
		})
	}
	if newer == caIssued {
		t.Fatal("the self-signed certificate is the CA's?")
	}
	// The self-signed one is explained as passed over.
	var ex struct {
		Candidates []struct{ Thumbprint, Verdict, Reason string }
	}
	e.jsonOf(&ex, "cert", "explain", "--connector", "Internet")
	for _, c := range ex.Candidates {
		if c.Thumbprint == newer && c.Verdict != "passed over" {
			t.Errorf("newer self-signed: %s (%s)", c.Verdict, c.Reason)
		}
	}
	// The internal certificate and the wildcard hold no name matching
	// mail.contoso.test: not considered, and counted, so the listing does
	// not look like the whole store.
	if out := e.ok("cert", "explain", "--connector", "Internet"); !strings.Contains(out, "2 other certificates in the store hold no name matching mail.contoso.test") {
		t.Errorf("cert explain does not count the certificates it did not consider:\n%s", out)
	}
}

// TestNoCertificateNoStartTLS: a connector whose FQDN no certificate holds
// does not advertise STARTTLS and logs 12014 with its name and FQDN; mail
// still flows in plain text; a certificate made for that FQDN makes
// STARTTLS appear without restart.
func TestNoCertificateNoStartTLS(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	bare := testpki.FreePort(t)
	e.ok("connector", "receive", "add", "Bare", "--bindings", bare, "--fqdn", "nocert.contoso.test")
	m.start()
	waitPort(t, bare)
	if kw := ehlo(t, bare); hasKeyword(kw, "STARTTLS") {
		t.Fatalf("STARTTLS advertised without a certificate: %v", kw)
	}
	var evs []struct {
		EventId    int
		Parameters []string
		Message    string
	}
	e.jsonOf(&evs, "events", "--id", "12014")
	if len(evs) != 1 || evs[0].Parameters[0] != "nocert.contoso.test" || evs[0].Parameters[1] != "Bare" || !strings.Contains(evs[0].Message, "certrelay cert new --domain nocert.contoso.test") {
		t.Fatalf("12014 events: %+v", evs)
	}
	if out, code := swaks(t, "--server", bare, "--from", "bob@example.org", "--to", "alice@contoso.test"); code != 0 {
		t.Fatalf("plain-text mail refused: %s", out)
	}
	m.waitDelivered(1)
	made := time.Now()
	e.ok("cert", "new", "--domain", "nocert.contoso.test", "--services", "SMTP")
	for !hasKeyword(ehlo(t, bare), "STARTTLS") {
		if time.Since(made) > 10*time.Second {
			t.Fatal("STARTTLS never appeared after the certificate was made")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("STARTTLS advertised %v after cert new returned", time.Since(made).Round(time.Millisecond))
}

// TestPostfixRelaysIn: Debian's Postfix relays mail into certrelay over
// STARTTLS.
func TestPostfixRelaysIn(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test").start()
	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Main: []string{
		"relay_domains = contoso.test",
		"transport_maps = inline:{ contoso.test=smtp:[" + strings.Replace(m.addr, ":", "]:", 1) + " }",
		"smtp_tls_security_level = encrypt",
		"smtp_tls_loglevel = 1",
	}})
	out, code := swaks(t, "--server", pf.Addr, "--from", "dave@example.org", "--to", "alice@contoso.test", "--header", "Subject: through postfix")
	if code != 0 {
		t.Fatalf("swaks to postfix: %s", out)
	}
	msgs := m.waitDelivered(1)
	if !strings.Contains(msgs[0], "Subject: through postfix") || !strings.Contains(msgs[0], "from peer.example.test") || !strings.Contains(msgs[0], "with ESMTPS") {
		t.Errorf("delivered message:\n%s", msgs[0])
	}
	pf.WaitLog(t, "status=sent", 10*time.Second)
	if log := pf.Log(); !strings.Contains(log, "TLS connection established to") {
		t.Errorf("postfix did not use TLS:\n%s", log)
	}
}

// TestKillAfter250: SIGKILL right after 250, restart: the message is
// delivered. Delivery is held back (the mailbox path is blocked) so the
// kill surely comes before it.
func TestKillAfter250(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	block := filepath.Join(e.data, "mail", "contoso.test", "alice")
	if err := os.MkdirAll(filepath.Dir(block), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(block, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.start()
	out, code := swaks(t, "--server", m.addr, "--from", "bob@example.org", "--to", "alice@contoso.test", "--header", "Subject: survives")
	if code != 0 || !strings.Contains(out, "250 2.0.0 OK queued as") {
		t.Fatalf("swaks: %s", out)
	}
	m.p.kill()
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	var items []struct{ ID string }
	e.jsonOf(&items, "queue", "list")
	if len(items) != 1 {
		t.Fatalf("queue after SIGKILL: %+v", items)
	}
	m.start()
	// The message waits for its retry if its first attempt failed before
	// the kill; if the kill came first, the restarted server delivers it
	// at once and it may be gone before the retry is asked for.
	if r := e.run("", "queue", "retry", items[0].ID); r.code != 0 && !strings.Contains(r.stderr, "not in the queue") && !strings.Contains(r.stderr, "not in queue") {
		t.Fatalf("queue retry: exit %d, %s", r.code, r.stderr)
	}
	msgs := m.waitDelivered(1)
	if !strings.Contains(msgs[0], "Subject: survives") {
		t.Fatalf("delivered: %s", msgs[0])
	}
	if len(m.maildir()) != 1 {
		t.Error("delivered twice")
	}
}

// TestHotSwapUnderLoad: during a load of STARTTLS sessions, a better
// certificate enabled by the CLI is served from the next handshake on,
// with no failed session (S7).
func TestHotSwapUnderLoad(t *testing.T) {
	e := newEnv(t)
	ca := newOpensslCA(e, "ca", "/CN=Swap CA")
	m := newMailServer(t, e, "hub.contoso.test")
	e.ok("trust", "add", "ca.pem")
	e.ok("cert", "request", "--domain", "hub.contoso.test", "--out", "better.req")
	ca.sign("better.req", "better.pem", false)
	better := e.ok("cert", "import", "better.pem") // not yet enabled for SMTP
	m.start()
	before := e.server().InternalTransportCertificateThumbprint

	// Workers run STARTTLS sessions back to back and record what each saw.
	var mu sync.Mutex
	var firstNew time.Time
	n, fails, old, newer := 0, 0, 0, 0
	var failures []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				th, err := starttlsOnce(m.addr)
				mu.Lock()
				n++
				switch {
				case err != nil:
					fails++
					failures = append(failures, err)
				case th == before:
					old++
				case th == better:
					newer++
					if firstNew.IsZero() {
						firstNew = time.Now()
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	e.ok("cert", "enable", better, "--services", "SMTP")
	enabled := time.Now()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		seen := !firstNew.IsZero()
		mu.Unlock()
		if seen {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if fails != 0 || firstNew.IsZero() || newer == 0 || old == 0 {
		t.Fatalf("%d sessions: %d failed %v, %d with the old certificate, %d with the new", n, fails, failures, old, newer)
	}
	t.Logf("%d STARTTLS sessions, 0 failed; the new certificate was served %v after cert enable returned", n, firstNew.Sub(enabled).Round(time.Millisecond))
}

// starttlsOnce runs one session and returns the thumbprint the server
// presented.
func starttlsOnce(addr string) (string, error) {
	thumb, _, err := testpki.STARTTLSProbe(addr)
	return thumb, err
}

func thumb(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}
