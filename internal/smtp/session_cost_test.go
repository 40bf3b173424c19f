package smtp

import (
	"bufio"
	"crypto/tls"
	"io"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSessionLogNamesConnection: the connection's logger is made only
// when it first logs (issue 19), and what it logs still carries the
// connection's ID and remote address.
func TestSessionLogNamesConnection(t *testing.T) {
	var mu sync.Mutex
	var sb strings.Builder
	logs := func() string { mu.Lock(); defer mu.Unlock(); return sb.String() }
	srv := newTestServer(&fakeHandler{})
	srv.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &sb}, nil))
	addr, _ := startServer(t, srv)
	rc := dialRaw(t, addr)
	remote := rc.c.LocalAddr().String()
	if r := rc.cmd("GET / HTTP/1.1"); !strings.HasPrefix(r, "421 ") {
		t.Fatalf("HTTP request got %q", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs(), "HTTP request") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs()
	if !strings.Contains(out, "HTTP request") || !strings.Contains(out, "conn=1 ") || !strings.Contains(out, "remote="+remote) {
		t.Errorf("log lacks the connection's ID or remote address %s:\n%s", remote, out)
	}
}

// TestTLSHandshakeTimeout: a client that sends STARTTLS and then nothing
// is closed once Server.TLSHandshakeTimeout has passed (the deadline on
// the connection bounds the handshake, without a context timer).
func TestTLSHandshakeTimeout(t *testing.T) {
	srv := newTestServer(&fakeHandler{tlsConfig: getPKI(t).serverConfig(), caps: allCaps})
	srv.TLSHandshakeTimeout = 300 * time.Millisecond
	client, br, done := serveTCP(t, srv)
	br.ReadString('\n')
	io.WriteString(client, "EHLO client.example.test\r\n")
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l[3] == ' ' {
			break
		}
	}
	io.WriteString(client, "STARTTLS\r\n")
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("STARTTLS: %q", l)
	}
	began := time.Now()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the silent handshake was not ended")
	}
	if d := time.Since(began); d < 250*time.Millisecond {
		t.Errorf("ended after %v, before the handshake timeout", d)
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Error("the connection is still open")
	}
}

// TestSessionIsOneGoroutine: a STARTTLS session (greeting, EHLO,
// STARTTLS, handshake, EHLO, QUIT) served by Serve runs on the one
// goroutine the accept loop starts for it, and starts no other — no
// watcher, timer callback or helper goroutine per session. Each would be
// a hand-off between goroutines, and on a runtime with two Ps each ready
// goroutine may wake another thread (issue 19, fourth pass: certrelay's
// sessions and a minimal SMTP server's were compared by runtime trace).
func TestSessionIsOneGoroutine(t *testing.T) {
	srv := newTestServer(&fakeHandler{tlsConfig: getPKI(t).serverConfig(), caps: allCaps})
	addr, _ := startServer(t, srv)
	session := func() {
		rc := dialRaw(t, addr) // reads the greeting
		defer rc.c.Close()
		if r := rc.cmd("EHLO client.example.test"); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("EHLO: %q", r)
		}
		if r := rc.cmd("STARTTLS"); !strings.HasPrefix(r, "220 ") {
			t.Fatalf("STARTTLS: %q", r)
		}
		tc := tls.Client(rc.c, getPKI(t).clientConfig())
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		rc.c, rc.br = tc, bufio.NewReader(tc)
		if r := rc.cmd("EHLO client.example.test"); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("EHLO after STARTTLS: %q", r)
		}
		if r := rc.cmd("QUIT"); !strings.HasPrefix(r, "221 ") {
			t.Fatalf("QUIT: %q", r)
		}
	}
	session() // the first session's one-time work (the accept loop's poller…)
	const n = 40
	created := func() uint64 {
		s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	before := created()
	for range n {
		session()
	}
	// The runtime may start a few goroutines of its own meanwhile (the
	// garbage collector's workers at its first cycle), and so may timers
	// left by earlier tests of the package (a fired time.AfterFunc runs
	// on a goroutine of its own): a slack of half of n, half of what one
	// helper per session would add.
	if got, most := created()-before, uint64(n+n/2+runtime.GOMAXPROCS(0)); got < n || got > most {
		t.Errorf("%d STARTTLS sessions started %d goroutines; want %d (one each) to %d", n, got, n, most)
	}
}
