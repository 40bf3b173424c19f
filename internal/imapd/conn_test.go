package imapd

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"

	"certrelay/internal/testpki"
)

// connServer is an IMAP server whose connections are Conns, as
// internal/access hands them to imapserver for a plain-text binding.
type connServer struct {
	addr     string
	implicit bool // TLS from the first byte, over a Conn (as on 993)
	pool     *x509.CertPool
	hellos   atomic.Int32 // handshakes run on imapserver's connection goroutine
	conns    chan *imapserver.Conn
	backend  *Backend
}

type connListener struct {
	net.Listener
	implicit *tls.Config
}

func (l connListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.implicit != nil {
		tc := tls.Server(NewConn(c), l.implicit)
		tc.Handshake() // as internal/access does before imapserver sees it
		return tc, nil
	}
	return NewConn(c), nil
}

func serveConns(t *testing.T, root string) *connServer { return serveConnsTLS(t, root, false) }

func serveConnsTLS(t *testing.T, root string, implicit bool) *connServer {
	t.Helper()
	leaf := testpki.SelfSigned(t, testpki.Options{CommonName: "imap.example.test", DNSNames: []string{"imap.example.test"}, Key: testpki.ECKey(t)})
	cs := &connServer{implicit: implicit, pool: x509.NewCertPool(), conns: make(chan *imapserver.Conn, 16)}
	cs.pool.AddCert(leaf.Cert)
	cert := tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}
	b := New(Options{Login: func(user, pass string, _ net.Addr, _ bool) (string, error) {
		if user == "alice@example.test" && pass == "correct horse" {
			return filepath.Join(root, "box"), nil
		}
		return "", imapserver.ErrAuthFailed
	}})
	cs.backend = b
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			select {
			case cs.conns <- c:
			default:
			}
			return b.NewSession(c), nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       testLogger{t},
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			buf := make([]byte, 64<<10)
			if strings.Contains(string(buf[:runtime.Stack(buf, false)]), "imapserver.(*Conn).serve") {
				cs.hellos.Add(1)
			}
			return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
		}},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var implicitTLS *tls.Config
	if implicit {
		implicitTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	go srv.Serve(connListener{ln, implicitTLS})
	t.Cleanup(func() { srv.Close() })
	cs.addr = ln.Addr().String()
	return cs
}

// rawClient speaks IMAP4 line by line, as the bench and e2e clients do.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// selectExists selects INBOX on r and returns its "* N EXISTS" line.
func selectExists(t *testing.T, r *rawClient) string {
	t.Helper()
	for _, l := range r.cmd("s SELECT INBOX") {
		if strings.HasSuffix(l, " EXISTS") {
			return l
		}
	}
	t.Fatal("SELECT without EXISTS")
	return ""
}

func rawDial(t *testing.T, cs *connServer, starttls bool) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", cs.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := &rawClient{t: t, c: c, br: bufio.NewReader(c)}
	if cs.implicit {
		tc := tls.Client(c, &tls.Config{ServerName: "imap.example.test", RootCAs: cs.pool})
		r.c, r.br = tc, bufio.NewReader(tc)
	}
	r.line()
	if starttls {
		r.cmd("a STARTTLS")
		tc := tls.Client(c, &tls.Config{ServerName: "imap.example.test", RootCAs: cs.pool})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		r.c, r.br = tc, bufio.NewReader(tc)
	}
	r.cmd("b LOGIN alice@example.test \"correct horse\"")
	r.cmd("c SELECT INBOX")
	return r
}

func (r *rawClient) line() string {
	r.t.Helper()
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (after %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (r *rawClient) send(s string) {
	r.t.Helper()
	if _, err := fmt.Fprintf(r.c, "%s\r\n", s); err != nil {
		r.t.Fatal(err)
	}
}

// cmd sends a tagged command and returns the untagged lines before its
// OK; anything else fails the test.
func (r *rawClient) cmd(s string) []string {
	r.t.Helper()
	r.send(s)
	tag := strings.Fields(s)[0]
	var untagged []string
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				r.t.Fatalf("%s: %s", s, l)
			}
			return untagged
		}
		untagged = append(untagged, l)
	}
}

func (r *rawClient) idle() {
	r.t.Helper()
	r.send("i IDLE")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		r.t.Fatalf("IDLE: %q", l)
	}
}

// TestConnHandshakeAside: after STARTTLS on a Conn, the TLS handshake
// runs outside imapserver's connection goroutine (whose stack it would
// leave grown), and the session goes on over TLS.
func TestConnHandshakeAside(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m1", "Subject: first\r\n\r\nhello\r\n")
	cs := serveConns(t, root)
	for i := 0; i < 3; i++ {
		r := rawDial(t, cs, true)
		if got := r.cmd("d NOOP"); len(got) != 0 {
			t.Errorf("NOOP after SELECT: %q", got)
		}
	}
	if n := cs.hellos.Load(); n != 0 {
		t.Errorf("%d of 3 handshakes ran on imapserver's connection goroutine", n)
	}
	// A failed handshake ends the connection, as it did inline.
	c, err := net.Dial("tcp", cs.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	br.ReadString('\n')
	fmt.Fprintf(c, "a STARTTLS\r\n")
	br.ReadString('\n')
	fmt.Fprintf(c, "not a ClientHello\r\n")
	if _, err := br.ReadString('\n'); err == nil {
		t.Error("the connection stayed open after a failed handshake")
	}
}

// TestConnIdle: on a Conn, IDLE holds no goroutine of its own; a delivery
// and another session's flag change still reach the client at once, in
// plain text, after STARTTLS and in TLS from the first byte; after DONE
// nothing more is written until the next command reports it.
func TestConnIdle(t *testing.T) {
	for _, mode := range []string{"plain", "starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			starttls := mode == "starttls"
			root := t.TempDir()
			deliver(t, root, "m1", "Subject: first\r\n\r\nhello\r\n")
			cs := serveConnsTLS(t, root, mode == "implicit")
			const n = 20
			var cls []*rawClient
			for i := 0; i < n; i++ {
				cls = append(cls, rawDial(t, cs, starttls))
			}
			other := rawDial(t, cs, starttls)
			time.Sleep(200 * time.Millisecond)
			before := runtime.NumGoroutine()
			for _, r := range cls {
				r.idle()
			}
			time.Sleep(200 * time.Millisecond)
			if added := runtime.NumGoroutine() - before; added >= n/2 {
				t.Errorf("%d connections in IDLE added %d goroutines, want none", n, added)
			}

			deliver(t, root, "m2", "Subject: second\r\n\r\nworld\r\n")
			for i, r := range cls {
				r.c.SetReadDeadline(time.Now().Add(3 * time.Second)) // well before RefreshInterval
				if l := r.line(); l != "* 2 EXISTS" {
					t.Fatalf("client %d in IDLE: %q, want * 2 EXISTS", i, l)
				}
			}
			other.cmd("s STORE 1 +FLAGS (\\Flagged)")
			for i, r := range cls {
				if l := r.line(); !strings.Contains(l, "FETCH") || !strings.Contains(l, `\Flagged`) {
					t.Fatalf("client %d in IDLE: %q, want the flag change", i, l)
				}
			}
			for _, r := range cls {
				r.send("DONE")
				if l := r.line(); !strings.HasPrefix(l, "i OK") {
					t.Fatalf("DONE: %q", l)
				}
			}
			// Out of IDLE, a delivery waits for the next command.
			deliver(t, root, "m3", "Subject: third\r\n\r\n!\r\n")
			r := cls[0]
			r.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if l, err := r.br.ReadString('\n'); err == nil {
				t.Fatalf("written outside IDLE: %q", l)
			}
			r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if got := r.cmd("n NOOP"); len(got) != 1 || got[0] != "* 3 EXISTS" {
				t.Errorf("NOOP after the delivery: %q", got)
			}
			// A second IDLE on the same connection works too.
			r.idle()
			deliver(t, root, "m4", "Subject: fourth\r\n\r\n!\r\n")
			if l := r.line(); l != "* 4 EXISTS" {
				t.Fatalf("second IDLE: %q", l)
			}
			r.send("DONE")
			if l := r.line(); !strings.HasPrefix(l, "i OK") {
				t.Fatalf("DONE: %q", l)
			}
		})
	}
}

// TestConnIdleBye: a connection in IDLE that the server ends (what
// internal/access's ConnectionTimeout does: imapserver.Conn.Bye) gets
// its BYE and is closed.
func TestConnIdleBye(t *testing.T) {
	root := t.TempDir()
	cs := serveConns(t, root)
	r := rawDial(t, cs, true)
	ic := <-cs.conns
	r.idle()
	time.Sleep(100 * time.Millisecond)
	ic.Bye("session time limit reached")
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q, want * BYE", l)
	}
	if l, err := r.br.ReadString('\n'); err == nil {
		t.Fatalf("the connection stayed open: %q", l)
	}
}

// TestSelectRereadsOnlyChangedFolders: a SELECT of a folder other
// sessions keep open does not list it again while its directories are
// unchanged, and does as soon as another program changes it (a file put
// in new/, a flag renamed in cur/), even within the same second.
func TestSelectRereadsOnlyChangedFolders(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m1", "Subject: first\r\n\r\nhello\r\n")
	box := filepath.Join(root, "box")
	age := func() { // as if the last change were an hour ago
		old := time.Now().Add(-time.Hour)
		for _, d := range []string{box, filepath.Join(box, "cur"), filepath.Join(box, "new")} {
			if err := os.Chtimes(d, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	age()
	cs := serveConns(t, root)
	keeper := rawDial(t, cs, false) // keeps the folder open
	keeper.cmd("k NOOP")
	age()                      // its SELECT moved m1 from new/ to cur/ just now
	r := rawDial(t, cs, false) // its SELECT reads the folder, and trusts the times
	b := cs.backend
	m := b.reg.lookup(box)
	reads := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.reads
	}
	exists := func() string { t.Helper(); return selectExists(t, r) }
	before := reads()
	if got := exists(); got != "* 1 EXISTS" {
		t.Fatalf("SELECT: %q", got)
	}
	if n := reads() - before; n != 0 {
		t.Errorf("a SELECT of an unchanged folder read it %d times, want 0", n)
	}
	// Another program delivers: a file in new/, no announcement.
	name := fmt.Sprintf("%d.other.example.test", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(box, "new", name), []byte("Subject: other\r\n\r\nhi\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := exists(); got != "* 2 EXISTS" {
		t.Fatalf("SELECT after another program's delivery: %q, want * 2 EXISTS", got)
	}
	// A change within the same timestamp as the last read (the kernel's
	// clock is coarse) leaves the times as they were: times less than
	// mtimeSlack old are not trusted, so it is read anyway.
	now := time.Now()
	setTimes := func() {
		for _, d := range []string{box, filepath.Join(box, "cur"), filepath.Join(box, "new")} {
			if err := os.Chtimes(d, now, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	setTimes()
	exists()
	same := fmt.Sprintf("%d.same.example.test", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(box, "new", same), []byte("Subject: same tick\r\n\r\nhi\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setTimes()
	if got := exists(); got != "* 3 EXISTS" {
		t.Fatalf("SELECT after a change in the same timestamp: %q, want * 3 EXISTS", got)
	}
	// Another program sets a flag: a rename in cur/.
	age()
	exists()
	cur, _ := os.ReadDir(filepath.Join(box, "cur"))
	for _, e := range cur {
		if strings.HasPrefix(e.Name(), name) {
			if err := os.Rename(filepath.Join(box, "cur", e.Name()), filepath.Join(box, "cur", e.Name()+"F")); err != nil {
				t.Fatal(err)
			}
		}
	}
	exists()
	got := strings.Join(r.cmd("f FETCH 2 FLAGS"), " ")
	if !strings.Contains(got, `\Flagged`) {
		t.Errorf("FETCH after another program flagged the message: %q", got)
	}
}
