package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// idleClient connects and brings the session to its wait after EHLO,
// reading with a small buffer of its own (so that the client's memory
// does not hide the server's).
func idleClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var buf [512]byte
	readUntil := func(end string) {
		got := ""
		for !strings.Contains(got, end) {
			n, err := c.Read(buf[:])
			if err != nil {
				t.Fatalf("waiting for %q: %v (got %q)", end, err, got)
			}
			got += string(buf[:n])
		}
	}
	readUntil("220 ")
	io.WriteString(c, "EHLO idle.example.test\r\n")
	readUntil("250 ")
	c.SetDeadline(time.Time{})
	return c
}

// An idle session gives its input and output buffers back while it waits
// for a command (issue 19: 10,000 idle sessions at ≤ 40 KiB each): the
// heap held per waiting session stays well below the buffers' size.
func TestIdleSessionHoldsNoBuffers(t *testing.T) {
	const n = 200
	srv := newTestServer(&fakeHandler{})
	srv.MaxConnections, srv.MaxConnectionsPerClient = 2*n, 2*n
	addr, _ := startServer(t, srv)
	for i := 0; i < 5; i++ { // warm up
		idleClient(t, addr).Close()
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = idleClient(t, addr)
	}
	time.Sleep(100 * time.Millisecond) // every session back in its wait
	after := heap()
	per := float64(after-before) / n
	buffers := float64(readBufferSize + writeBufferSize)
	t.Logf("%.0f bytes of heap per idle session (client side included); the buffers are %.0f", per, buffers)
	if per > buffers/2 {
		t.Errorf("an idle session holds %.0f bytes of heap, more than half its buffers (%.0f): are they released while it waits?", per, buffers)
	}
	// They still work.
	for _, i := range []int{0, n / 2, n - 1} {
		c := conns[i]
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "NOOP\r\n")
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(l, "250 ") {
			t.Errorf("session %d after idling: NOOP got %q, %v", i, l, err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
}

// What arrives after a wait is read whole, however it is cut: a command
// in pieces, a pipelined group larger than the first read, STARTTLS
// followed by more text.
func TestIdleWaitKeepsInput(t *testing.T) {
	var group strings.Builder
	group.WriteString("MAIL FROM:<a@example.test>\r\n")
	const rcpts = 60 // about 1.6 KiB, beyond firstReadSize
	for i := 0; i < rcpts; i++ {
		fmt.Fprintf(&group, "RCPT TO:<recipient-%02d@example.test>\r\n", i)
	}
	group.WriteString("RSET\r\n")
	if group.Len() <= firstReadSize {
		t.Fatalf("the group (%d bytes) must be larger than firstReadSize (%d)", group.Len(), firstReadSize)
	}
	cases := []struct {
		name   string
		pieces []string
		want   []string // the last line of each reply, in order
	}{
		{"ok/command-in-pieces", []string{"MAIL FR", "OM:<a@exam", "ple.test>\r", "\n"}, []string{"250 2.1.0 OK"}},
		{"ok/group-beyond-first-read", []string{group.String()}, append(append([]string{"250 2.1.0 OK"}, repeat("250 2.1.5 OK", rcpts)...), "250 2.0.0 OK")},
		{"ok/two-commands-one-read", []string{"NOOP\r\nNOOP\r\n"}, []string{"250 2.0.0 OK", "250 2.0.0 OK"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(&fakeHandler{})
			addr, _ := startServer(t, srv)
			c := idleClient(t, addr)
			defer c.Close()
			time.Sleep(20 * time.Millisecond) // the session waits
			for _, p := range tc.pieces {
				io.WriteString(c, p)
				time.Sleep(20 * time.Millisecond)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			for i, want := range tc.want {
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
				if got := strings.TrimSpace(l); got != want {
					t.Fatalf("reply %d: %q, want %q", i, got, want)
				}
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// The inactivity timeout still ends a session that waits without its
// buffers, in plain text and after STARTTLS: 421 4.4.2, then the close.
func TestIdleWaitInactivityTimeout(t *testing.T) {
	for _, starttls := range []bool{false, true} {
		name := "fail/plain-text"
		if starttls {
			name = "fail/after-starttls"
		}
		t.Run(name, func(t *testing.T) {
			srv := newTestServer(&fakeHandler{caps: allCaps, tlsConfig: getPKI(t).serverConfig()})
			srv.ReadTimeout = 300 * time.Millisecond
			addr, _ := startServer(t, srv)
			var c net.Conn = idleClient(t, addr)
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			if starttls {
				io.WriteString(c, "STARTTLS\r\n")
				if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
					t.Fatalf("STARTTLS: %q %v", l, err)
				}
				tc := tls.Client(c, getPKI(t).clientConfig())
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				c, br = tc, bufio.NewReader(tc)
				io.WriteString(c, "EHLO idle.example.test\r\n")
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						t.Fatal(err)
					}
					if strings.HasPrefix(l, "250 ") {
						break
					}
				}
			}
			began := time.Now()
			l, err := br.ReadString('\n')
			if got := strings.TrimRight(l, "\r\n"); got != "421 4.4.2 Timeout waiting for command, closing connection" {
				t.Fatalf("after %v waiting: %q, %v; want 421 4.4.2 Timeout waiting for command", time.Since(began).Round(time.Millisecond), got, err)
			}
			if _, err := br.ReadString('\n'); err == nil {
				t.Error("the connection is still open after the 421")
			}
		})
	}
}

// greetPanicHandler's sessions panic in Greeting.
type greetPanicHandler struct{ fakeHandler }

func (h *greetPanicHandler) NewSession(ctx context.Context, c ConnInfo) (Session, error) {
	return &greetPanicSession{fakeSession{h: &h.fakeHandler, ctx: ctx}}, nil
}

type greetPanicSession struct{ fakeSession }

func (s *greetPanicSession) Greeting() (string, string) { panic("greeting bug") }

// A Session whose Greeting panics is still closed (conn.run sets the
// session up in steps of their own, see its comment).
func TestGreetingPanicClosesSession(t *testing.T) {
	h := &greetPanicHandler{}
	srv := newTestServer(h)
	addr, _ := startServer(t, srv)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Errorf("got %q, want the connection closed without a greeting", b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.closedCount() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.closedCount(); n != 1 {
		t.Errorf("Session.Close called %d times after a panic in Greeting, want 1", n)
	}
}

// TestTakeBuffersAllocatesNothing: a session gives its buffers back
// before each wait and takes them again after it; once the pool holds
// them, that allocates nothing (issue 19: the reader and writer under
// the buffers were allocated at each take).
func TestTakeBuffersAllocatesNothing(t *testing.T) {
	_, server := tcpPair(t)
	srv := newTestServer(&fakeHandler{})
	srv.init()
	c := newConn(srv, server, srv.limitsFor(server.LocalAddr()))
	// Under the race detector the pool drops a quarter of the buffers it
	// is given, and a take allocates what was dropped: up to one
	// allocation per take on average, still fewer than the reader and
	// writer this test is about.
	most := 0.0
	if raceEnabled {
		most = 1
	}
	if n := testing.AllocsPerRun(100, func() {
		c.releaseBuffers()
		c.takeBuffers()
	}); n > most {
		t.Errorf("%v allocations per release and take, want at most %v", n, most)
	}
}
