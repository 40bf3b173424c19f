package smtp

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tlsIdleClient brings a session through STARTTLS to its wait after the
// second EHLO.
func tlsIdleClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	reply := func(r *bufio.Reader) string {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reply: %v", err)
			}
			if len(l) < 4 || l[3] != '-' {
				return l
			}
		}
	}
	reply(br)
	io.WriteString(c, "EHLO idle.example.test\r\n")
	reply(br)
	io.WriteString(c, "STARTTLS\r\n")
	if l := reply(br); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := bufio.NewReaderSize(tc, 512)
	io.WriteString(tc, "EHLO idle.example.test\r\n")
	if l := reply(tr); !strings.HasPrefix(l, "250 ") {
		t.Fatalf("EHLO after STARTTLS: %q", l)
	}
	c.SetDeadline(time.Time{})
	return tc
}

// TestHandshakersKeepSessionStacksSmall: STARTTLS handshakes run on the
// server's handshakers (issue 19), whose stacks have grown already: a
// session idle after STARTTLS holds a small stack, and a few
// handshakers serve many sessions one after the other.
func TestHandshakersKeepSessionStacksSmall(t *testing.T) {
	const n = 100
	srv := newTestServer(&fakeHandler{tlsConfig: getPKI(t).serverConfig(), caps: allCaps})
	srv.MaxConnections, srv.MaxConnectionsPerClient = 2*n, 2*n
	addr, _ := startServer(t, srv)
	for range 5 { // warm up: the handshakers' stacks grow
		tlsIdleClient(t, addr).Close()
	}
	stacks := func() uint64 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.StackInuse
	}
	before := stacks()
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = tlsIdleClient(t, addr)
	}
	per := (int64(stacks()) - int64(before)) / n
	for _, c := range conns {
		c.Close()
	}
	t.Logf("stack per idle STARTTLS session: %d bytes; %d handshakers", per, srv.hs.n.Load())
	if hs := srv.hs.n.Load(); hs < 1 || hs > 4 {
		t.Errorf("%d handshakers for sessions one after the other, want 1 to 4", hs)
	}
	// Measured: about 4 KiB with the handshakers, 8.5 KiB when each
	// session ran its handshake itself.
	if per > 6<<10 && !raceEnabled {
		t.Errorf("%d bytes of stack per idle STARTTLS session, want ≤ 6 KiB", per)
	}
}

// TestHandshakePanicContained: a panic during a handshake run by a
// handshaker (here in the TLS configuration's callback) ends that session
// as a panic of the session does, and the server goes on serving.
func TestHandshakePanicContained(t *testing.T) {
	cfg := getPKI(t).serverConfig()
	var boom atomic.Bool
	boom.Store(true)
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if boom.Load() {
			panic("boom in the handshake")
		}
		return nil, nil
	}
	srv := newTestServer(&fakeHandler{tlsConfig: cfg, caps: allCaps})
	addr, _ := startServer(t, srv)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	br.ReadString('\n')
	io.WriteString(c, "STARTTLS\r\n")
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("STARTTLS: %q", l)
	}
	if err := tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake(); err == nil {
		t.Error("the handshake succeeded")
	}
	boom.Store(false)
	tlsIdleClient(t, addr).Close() // the server still serves STARTTLS
}

// TestHandshakersEndWhenIdle: handshakers end after their idle time, so
// a burst of handshakes does not keep their stacks.
func TestHandshakersEndWhenIdle(t *testing.T) {
	srv := newTestServer(&fakeHandler{tlsConfig: getPKI(t).serverConfig(), caps: allCaps})
	srv.hs.idle = 50 * time.Millisecond
	addr, _ := startServer(t, srv)
	tlsIdleClient(t, addr).Close()
	if srv.hs.n.Load() == 0 {
		t.Fatal("no handshaker ran the handshake")
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.hs.n.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.hs.n.Load(); n != 0 {
		t.Errorf("%d handshakers left after their idle time", n)
	}
}
