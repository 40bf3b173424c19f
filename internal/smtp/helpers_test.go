package smtp

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts in testdata/")

// ---- test PKI, built at run time (STYLE.md 6) ----

type testPKI struct {
	roots  *x509.CertPool
	server tls.Certificate // for mx.example.test
	client tls.Certificate // a client certificate, for X-ANONYMOUSTLS
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

// getPKI returns a CA and two leaf certificates made for this test run.
func getPKI(t testing.TB) *testPKI {
	if t != nil {
		t.Helper()
	}
	pkiOnce.Do(func() {
		now := time.Now()
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		caTmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "certrelay smtp test CA"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		ca, _ := x509.ParseCertificate(caDER)
		leaf := func(serial int64, name string) tls.Certificate {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(serial),
				Subject:      pkix.Name{CommonName: name},
				DNSNames:     []string{name},
				NotBefore:    now.Add(-time.Hour),
				NotAfter:     now.Add(24 * time.Hour),
				KeyUsage:     x509.KeyUsageDigitalSignature,
				ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
			if err != nil {
				panic(err)
			}
			return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		}
		p := &testPKI{roots: x509.NewCertPool()}
		p.roots.AddCert(ca)
		p.server = leaf(2, "mx.example.test")
		p.client = leaf(3, "hub1.example.test")
		pki = p
	})
	return pki
}

func (p *testPKI) serverConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequestClientCert,
	}
}

func (p *testPKI) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.roots, ServerName: "mx.example.test"}
}

// ---- fake policy ----

// fakeHandler is a configurable Handler; its sessions record what they
// are asked into it.
type fakeHandler struct {
	caps          func(st State) Capabilities
	newSessionErr error
	helloErr      error
	tlsConfig     *tls.Config
	tlsErr        error
	users         map[string]string // user name -> password
	authErr       error             // returned instead of checking users
	mailErr       map[string]error  // by sender
	rcptErr       map[string]error  // by recipient
	dataErr       error
	queueID       string
	dataMode      string // "" (correct), "ignore-errors", "partial"

	mu        sync.Mutex
	events    []string
	delivered []delivery
	readErrs  []error // errors Data's reader returned
	closed    int
}

type delivery struct {
	from  string
	rcpts []string
	body  string
	st    State
}

func (h *fakeHandler) record(format string, args ...any) {
	h.mu.Lock()
	h.events = append(h.events, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

func (h *fakeHandler) snapshot() (events []string, delivered []delivery, readErrs []error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...), append([]delivery(nil), h.delivered...), append([]error(nil), h.readErrs...)
}

func (h *fakeHandler) closedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

func (h *fakeHandler) NewSession(ctx context.Context, c ConnInfo) (Session, error) {
	if h.newSessionErr != nil {
		return nil, h.newSessionErr
	}
	return &fakeSession{h: h, ctx: ctx}, nil
}

type fakeSession struct {
	h   *fakeHandler
	ctx context.Context
}

var _ Session = (*fakeSession)(nil)
var _ Handler = (*fakeHandler)(nil)

func (s *fakeSession) Greeting() (string, string) { return "", "" }

func (s *fakeSession) Capabilities(st State) Capabilities {
	if s.h.caps != nil {
		return s.h.caps(st)
	}
	return Capabilities{}
}

func (s *fakeSession) Hello(st State) error {
	s.h.record("hello %s ext=%v", st.Hello, st.Extended)
	return s.h.helloErr
}

func (s *fakeSession) TLSConfig(st State, anonymous bool) (*tls.Config, error) {
	s.h.record("tlsconfig anonymous=%v", anonymous)
	return s.h.tlsConfig, s.h.tlsErr
}

func (s *fakeSession) Auth(st State, mech, identity, username, password string) error {
	s.h.record("auth %s identity=%q user=%q", mech, identity, username)
	if s.h.authErr != nil {
		return s.h.authErr
	}
	if p, ok := s.h.users[username]; ok && p == password {
		return nil
	}
	return ErrAuthFailed
}

func (s *fakeSession) Mail(st State, from string, opts MailOptions) error {
	s.h.record("mail %q %+v", from, opts)
	return s.h.mailErr[from]
}

func (s *fakeSession) Rcpt(st State, to string, opts RcptOptions) error {
	s.h.record("rcpt %q %+v", to, opts)
	return s.h.rcptErr[to]
}

func (s *fakeSession) Data(st State, r io.Reader) (string, error) {
	var body []byte
	var err error
	switch s.h.dataMode {
	case "partial":
		buf := make([]byte, 4)
		_, err = io.ReadFull(r, buf)
		s.h.record("data partial")
		return "", nil
	default:
		body, err = io.ReadAll(r)
	}
	if err != nil {
		s.h.mu.Lock()
		s.h.readErrs = append(s.h.readErrs, err)
		s.h.mu.Unlock()
		s.h.record("data error")
		if s.h.dataMode == "ignore-errors" {
			return "", nil
		}
		return "", err
	}
	if s.h.dataErr != nil {
		s.h.record("data refused")
		return "", s.h.dataErr
	}
	s.h.mu.Lock()
	s.h.delivered = append(s.h.delivered, delivery{st.MailFrom, append([]string(nil), st.Rcpts...), string(body), st})
	s.h.mu.Unlock()
	s.h.record("data %d bytes", len(body))
	return s.h.queueID, nil
}

func (s *fakeSession) Reset(st State) { s.h.record("reset") }

func (s *fakeSession) Close(st State) {
	s.h.mu.Lock()
	s.h.closed++
	s.h.mu.Unlock()
	s.h.record("close")
}

// allCaps offers everything; AUTH over TLS only.
func allCaps(st State) Capabilities {
	return Capabilities{StartTLS: true, AnonymousTLS: true, AuthMechanisms: []string{"PLAIN", "LOGIN"}, DSN: true}
}

// newTestServer returns a Server with test timeouts.
func newTestServer(h Handler) *Server {
	return &Server{
		Hostname:     "mx.example.test",
		Handler:      h,
		ReadTimeout:  5 * time.Second,
		DataTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
	}
}

// ---- transcript driver (STYLE.md 8) ----

// step is one move of a scripted client.
type step struct {
	send    string // bytes to write (may be several pipelined lines)
	replies int    // replies to read afterwards
	tls     bool   // do the client side of a TLS handshake
	closed  bool   // expect the server to close the connection
}

// cmd is a step that sends one command line and reads one reply.
func cmd(line string) step { return step{send: line + "\r\n", replies: 1} }

// send is a step that writes raw bytes and reads n replies.
func send(raw string, n int) step { return step{send: raw, replies: n} }

var (
	startTLSHandshake = step{tls: true}
	expectClose       = step{closed: true}
)

// runTranscript runs steps against srv over net.Pipe and returns the
// transcript: "C: " lines the client sent, "S: " lines the server sent.
func runTranscript(t *testing.T, srv *Server, steps []step) string {
	t.Helper()
	clientRaw, serverConn := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeConn(context.Background(), serverConn)
	}()
	defer func() {
		clientRaw.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("server session did not end")
		}
	}()

	var tr strings.Builder
	var conn net.Conn = clientRaw
	br := bufio.NewReader(conn)
	readReply := func() bool {
		for {
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := br.ReadString('\n')
			if err != nil {
				fmt.Fprintf(&tr, "S: <read error: %s>\n", errText(err))
				return false
			}
			fmt.Fprintf(&tr, "S: %s\n", visible(line))
			if len(line) < 4 || line[3] != '-' {
				return true
			}
		}
	}
	// Greeting.
	readReply()
	for _, s := range steps {
		switch {
		case s.tls:
			if br.Buffered() > 0 {
				t.Fatalf("plaintext buffered before TLS")
			}
			tc := tls.Client(clientRaw, getPKI(t).clientConfig())
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				fmt.Fprintf(&tr, "-- TLS handshake failed: %v\n", err)
				return tr.String()
			}
			tr.WriteString("-- TLS handshake done\n")
			conn = tc
			br = bufio.NewReader(conn)
		case s.closed:
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if line, err := br.ReadString('\n'); err == nil {
				fmt.Fprintf(&tr, "S: %s\n", visible(line))
				tr.WriteString("-- connection still open\n")
			} else {
				tr.WriteString("-- connection closed\n")
			}
		default:
			for _, l := range splitKeep(s.send) {
				fmt.Fprintf(&tr, "C: %s\n", visible(l))
			}
			werr := make(chan error, 1)
			go func(c net.Conn, b string) {
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				_, err := io.WriteString(c, b)
				werr <- err
			}(conn, s.send)
			ok := true
			for i := 0; i < s.replies && ok; i++ {
				ok = readReply()
			}
			if !ok {
				return tr.String()
			}
			if s.replies > 0 {
				<-werr
			}
		}
	}
	return tr.String()
}

func errText(err error) string {
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	return err.Error()
}

// splitKeep splits s after each LF.
func splitKeep(s string) []string {
	var out []string
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

// visible shows a line without its CRLF, marks other line ends and
// control characters, and shortens long lines.
func visible(l string) string {
	l = strings.TrimSuffix(l, "\r\n")
	if len(l) > 100 {
		l = l[:40] + "…(" + strconv.Itoa(len(l)) + " bytes)…" + l[len(l)-20:]
	}
	var b strings.Builder
	for _, r := range l {
		switch {
		case r == '\r':
			b.WriteString("<CR>")
		case r == '\n':
			b.WriteString("<LF>")
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "<%02X>", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// golden compares got with testdata/transcripts/<name>.golden, or writes
// it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", "transcripts", strings.ReplaceAll(name, "/", "__")+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("missing golden transcript (run go test -run %s -update): %v", t.Name(), err)
	}
	if string(want) != got {
		t.Errorf("transcript mismatch for %s\n--- want\n%s--- got\n%s", name, want, got)
	}
}
