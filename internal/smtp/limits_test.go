package smtp

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// limitRecorder collects what Server.LimitReached is told.
type limitRecorder struct {
	mu     sync.Mutex
	events []LimitEvent
}

func (r *limitRecorder) record(ev LimitEvent) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *limitRecorder) find(l Limit) (LimitEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Limit == l {
			return ev, true
		}
	}
	return LimitEvent{}, false
}

func (r *limitRecorder) count(l Limit) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.Limit == l {
			n++
		}
	}
	return n
}

// wantLimit fails unless the recorder saw l with the given group and value.
func (r *limitRecorder) want(t *testing.T, l Limit, group, value string) {
	t.Helper()
	ev, ok := r.find(l)
	if !ok {
		t.Errorf("LimitReached was not told of %v; it got %+v", l, r.events)
		return
	}
	if ev.Group != group || ev.Value != value {
		t.Errorf("LimitReached(%v) group %q value %q, want %q %q", l, ev.Group, ev.Value, group, value)
	}
}

// dialFrom connects to addr from the local IP from ("" for any) and
// returns the connection and its first line (the greeting or a refusal).
func dialFrom(t *testing.T, addr, from string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, _ := br.ReadString('\n')
	return c, br, strings.TrimRight(l, "\r\n")
}

// waitClosed waits until the server has ended n sessions.
func waitClosed(t *testing.T, h *fakeHandler, n int) {
	t.Helper()
	for i := 0; i < 400 && h.closedCount() < n; i++ {
		time.Sleep(25 * time.Millisecond)
	}
	if h.closedCount() < n {
		t.Fatalf("%d sessions ended, want %d", h.closedCount(), n)
	}
}

// TestConnectionLimits protects item 14 of issue 9: connections are
// limited in total and per client address, and the client beyond a limit
// is told which, with 421 4.7.0, rather than being left waiting.
func TestConnectionLimits(t *testing.T) {
	const refusedTotal = "421 4.7.0 Too many connections to this server, try again later"
	const refusedClient = "421 4.7.0 Too many connections from your address, try again later"

	t.Run("fail/group-full-gets-421", func(t *testing.T) {
		h := &fakeHandler{}
		rec := &limitRecorder{}
		srv := newTestServer(h)
		srv.Limits = func(net.Addr) Limits {
			return Limits{Group: "Internet", MaxConnections: 2, MaxConnectionsPerClient: 10}
		}
		srv.LimitReached = rec.record
		addr, _ := startServer(t, srv)
		a, _, g1 := dialFrom(t, addr, "")
		_, _, g2 := dialFrom(t, addr, "")
		_, br3, g3 := dialFrom(t, addr, "")
		if !strings.HasPrefix(g1, "220 ") || !strings.HasPrefix(g2, "220 ") {
			t.Fatalf("first two connections: %q, %q", g1, g2)
		}
		if g3 != refusedTotal {
			t.Fatalf("third connection got %q, want %q", g3, refusedTotal)
		}
		if l, err := br3.ReadString('\n'); err == nil {
			t.Errorf("refused connection still open: %q", l)
		}
		rec.want(t, LimitConnections, "Internet", "2")
		// A session ending makes room. Its slot is freed when its socket
		// is closed, a moment after Session.Close: a client that retries
		// (as one told 421 does) is greeted within seconds.
		a.Close()
		waitClosed(t, h, 1)
		g := ""
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, _, g = dialFrom(t, addr, ""); g != refusedTotal || time.Now().After(deadline) {
				break
			}
		}
		if !strings.HasPrefix(g, "220 ") {
			t.Errorf("after one session ended: %q, want a greeting", g)
		}
		if h.closedCount() != 1 {
			t.Errorf("Session.Close called %d times; refused connections must get no Session", h.closedCount())
		}
	})

	t.Run("fail/per-client-gets-421", func(t *testing.T) {
		h := &fakeHandler{}
		rec := &limitRecorder{}
		srv := newTestServer(h)
		srv.Limits = func(net.Addr) Limits { return Limits{Group: "Internet", MaxConnectionsPerClient: 2} }
		srv.LimitReached = rec.record
		addr, _ := startServer(t, srv)
		for i := 0; i < 2; i++ {
			if _, _, g := dialFrom(t, addr, "127.0.0.1"); !strings.HasPrefix(g, "220 ") {
				t.Fatalf("connection %d from 127.0.0.1: %q", i+1, g)
			}
		}
		if _, _, g := dialFrom(t, addr, "127.0.0.1"); g != refusedClient {
			t.Errorf("third connection from 127.0.0.1 got %q, want %q", g, refusedClient)
		}
		if _, _, g := dialFrom(t, addr, "127.0.0.2"); !strings.HasPrefix(g, "220 ") {
			t.Errorf("another address was refused too: %q", g)
		}
		rec.want(t, LimitConnectionsPerClient, "Internet", "2")
		if ev, _ := rec.find(LimitConnectionsPerClient); ev.Conn.RemoteAddr == nil || !strings.HasPrefix(ev.Conn.RemoteAddr.String(), "127.0.0.1:") {
			t.Errorf("event names client %v, want 127.0.0.1", ev.Conn.RemoteAddr)
		}
	})

	t.Run("fail/group-shared-by-listeners", func(t *testing.T) {
		srv := newTestServer(&fakeHandler{})
		srv.Limits = func(net.Addr) Limits { return Limits{Group: "Internet", MaxConnections: 1} }
		addr1, _ := startServer(t, srv)
		addr2, _ := startServer(t, srv)
		dialFrom(t, addr1, "")
		if _, _, g := dialFrom(t, addr2, ""); g != refusedTotal {
			t.Errorf("second binding of the group got %q, want %q", g, refusedTotal)
		}
	})

	t.Run("fail/server-wide-cap-over-groups", func(t *testing.T) {
		rec := &limitRecorder{}
		srv := newTestServer(&fakeHandler{})
		srv.MaxConnections = 1
		srv.Limits = func(local net.Addr) Limits {
			return Limits{Group: local.String(), MaxConnections: 100}
		}
		srv.LimitReached = rec.record
		addr1, _ := startServer(t, srv)
		addr2, _ := startServer(t, srv)
		dialFrom(t, addr1, "")
		if _, _, g := dialFrom(t, addr2, ""); g != refusedTotal {
			t.Errorf("connection beyond Server.MaxConnections got %q, want %q", g, refusedTotal)
		}
		rec.want(t, LimitServerConnections, addr2, "1")
	})

	t.Run("ok/default-per-client-limit", func(t *testing.T) {
		srv := newTestServer(&fakeHandler{})
		addr, _ := startServer(t, srv)
		for i := 0; i < DefaultMaxConnectionsPerClient; i++ {
			if _, _, g := dialFrom(t, addr, ""); !strings.HasPrefix(g, "220 ") {
				t.Fatalf("connection %d: %q", i+1, g)
			}
		}
		if _, _, g := dialFrom(t, addr, ""); g != refusedClient {
			t.Errorf("connection %d got %q, want %q", DefaultMaxConnectionsPerClient+1, g, refusedClient)
		}
	})
}

// TestTimeLimits protects item 15 of issue 9: a session and a message
// have a time budget however steadily the client trickles, besides the
// inactivity timeout of RFC 5321 4.5.3.2.7.
func TestTimeLimits(t *testing.T) {
	// trickle writes one unit every interval until the server answers or
	// closes, for at most 10 s, and returns the last line it got.
	trickle := func(t *testing.T, c net.Conn, br *bufio.Reader, unit string) string {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			var last string
			for {
				c.SetReadDeadline(time.Now().Add(15 * time.Second))
				l, err := br.ReadString('\n')
				if err != nil {
					got <- last
					return
				}
				last = strings.TrimRight(l, "\r\n")
			}
		}()
		stop := time.After(10 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case l := <-got:
				return l
			case <-stop:
				t.Fatalf("the session is still open after 10 s of trickling %q", unit)
				return ""
			case <-tick.C:
				c.SetWriteDeadline(time.Now().Add(time.Second))
				io.WriteString(c, unit) // the server may have closed
			}
		}
	}
	startData := func(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, br, g := dialFrom(t, addr, "")
		if !strings.HasPrefix(g, "220") {
			t.Fatalf("greeting %q", g)
		}
		rc := &rawClient{t: t, c: c, br: br}
		rc.cmd("EHLO c.example.test")
		rc.cmd("MAIL FROM:<a@example.test>")
		rc.cmd("RCPT TO:<b@example.test>")
		if r := rc.cmd("DATA"); !strings.HasPrefix(r, "354") {
			t.Fatalf("DATA: %q", r)
		}
		return c, br
	}

	t.Run("fail/noop-trickle-cut-by-session-budget", func(t *testing.T) {
		rec := &limitRecorder{}
		h := &fakeHandler{}
		srv := newTestServer(h)
		srv.SessionTimeout = 600 * time.Millisecond
		srv.LimitReached = rec.record
		addr, _ := startServer(t, srv)
		c, br, _ := dialFrom(t, addr, "")
		if last := trickle(t, c, br, "NOOP\r\n"); last != "421 4.4.2 Session time limit reached, closing connection" {
			t.Errorf("last reply %q, want 421 4.4.2 Session time limit reached", last)
		}
		rec.want(t, LimitSession, "", "600ms")
	})

	t.Run("fail/data-trickle-cut-by-message-budget", func(t *testing.T) {
		rec := &limitRecorder{}
		h := &fakeHandler{}
		srv := newTestServer(h)
		srv.MessageTimeout = 500 * time.Millisecond
		srv.LimitReached = rec.record
		addr, _ := startServer(t, srv)
		c, br := startData(t, addr)
		if last := trickle(t, c, br, "x"); last != "421 4.4.2 Message time limit reached, message not accepted, closing connection" {
			t.Errorf("last reply %q, want 421 4.4.2 Message time limit reached", last)
		}
		waitClosed(t, h, 1)
		_, d, errs := h.snapshot()
		if len(d) != 0 || len(errs) != 1 || !isTimeout(errs[0]) {
			t.Errorf("delivered %d, reader errors %v: want nothing delivered and one timeout", len(d), errs)
		}
		rec.want(t, LimitMessageTime, "", "500ms")
	})

	t.Run("fail/data-trickle-cut-by-session-budget", func(t *testing.T) {
		rec := &limitRecorder{}
		h := &fakeHandler{}
		srv := newTestServer(h)
		srv.SessionTimeout = 700 * time.Millisecond
		srv.LimitReached = rec.record
		addr, _ := startServer(t, srv)
		c, br := startData(t, addr)
		if last := trickle(t, c, br, "x"); last != "421 4.4.2 Session time limit reached, closing connection" {
			t.Errorf("last reply %q, want 421 4.4.2 Session time limit reached", last)
		}
		waitClosed(t, h, 1)
		if _, d, _ := h.snapshot(); len(d) != 0 {
			t.Errorf("a message cut by the session budget was delivered")
		}
		rec.want(t, LimitSession, "", "700ms")
	})

	t.Run("fail/inactivity-per-listener", func(t *testing.T) {
		rec := &limitRecorder{}
		srv := newTestServer(&fakeHandler{})
		srv.Limits = func(net.Addr) Limits { return Limits{Group: "Client", InactivityTimeout: 200 * time.Millisecond} }
		srv.LimitReached = rec.record
		addr, _ := startServer(t, srv)
		_, br, _ := dialFrom(t, addr, "")
		l, _ := br.ReadString('\n')
		if got := strings.TrimRight(l, "\r\n"); got != "421 4.4.2 Timeout waiting for command, closing connection" {
			t.Errorf("idle client got %q", got)
		}
		rec.want(t, LimitInactivity, "Client", "200ms")
	})
}

// limitCases are transcripts of item 16 of issue 9: recipients are
// deduplicated within a transaction and capped per message.
func limitCases() []transcriptCase {
	rcpts := func(want ...string) func(*testing.T, *fakeHandler, string) {
		return func(t *testing.T, h *fakeHandler, _ string) {
			t.Helper()
			ev, d, _ := h.snapshot()
			if len(d) != 1 || strings.Join(d[0].rcpts, " ") != strings.Join(want, " ") {
				t.Fatalf("delivered %+v, want one message to %q", d, want)
			}
			n := 0
			for _, e := range ev {
				if strings.HasPrefix(e, "rcpt ") {
					n++
				}
			}
			if n != len(want) {
				t.Errorf("Session.Rcpt called %d times, want %d (once per distinct recipient)", n, len(want))
			}
		}
	}
	dup := cmd("RCPT TO:<bob@example.test>")
	return []transcriptCase{
		{name: "ok/duplicate-recipients-once", h: &fakeHandler{}, steps: []step{ehlo, mailA,
			dup, dup, cmd("RCPT TO:<bob@EXAMPLE.test>"), cmd("RCPT TO:<Bob@example.test>"), dup,
			dataGo, send("x\r\n.\r\n", 1)},
			check: rcpts("bob@example.test", "Bob@example.test")},
		{name: "ok/duplicates-do-not-count-towards-the-cap", server: func(s *Server) { s.MaxRecipients = 2 }, h: &fakeHandler{},
			steps: []step{ehlo, mailA, dup, dup, dup, dup, cmd("RCPT TO:<carol@example.test>"), dup,
				cmd("RCPT TO:<dave@example.test>"), dataGo, send("x\r\n.\r\n", 1)},
			check: rcpts("bob@example.test", "carol@example.test")},
		{name: "ok/session-reports-duplicate", h: &fakeHandler{rcptErr: map[string]error{"postmaster": ErrDuplicateRecipient}},
			steps: []step{ehlo, mailA, cmd("RCPT TO:<postmaster@example.test>"), cmd("RCPT TO:<postmaster>"), dataGo, send("x\r\n.\r\n", 1)},
			check: func(t *testing.T, h *fakeHandler, tr string) {
				_, d, _ := h.snapshot()
				if len(d) != 1 || len(d[0].rcpts) != 1 {
					t.Errorf("delivered %+v, want one message to postmaster@example.test only", d)
				}
				if n := strings.Count(tr, "S: 250 2.1.5 "); n != 2 {
					t.Errorf("%d RCPT accepted, want 2 (the duplicate gets 250 too):\n%s", n, tr)
				}
			}},
		{name: "fail/recipient-cap-per-listener", server: func(s *Server) {
			s.Limits = func(net.Addr) Limits { return Limits{MaxRecipients: 2} }
		}, h: &fakeHandler{}, steps: []step{ehlo, mailA, rcptB, cmd("RCPT TO:<carol@example.test>"),
			cmd("RCPT TO:<dave@example.test>"), dataGo, send("x\r\n.\r\n", 1)},
			check: rcpts("bob@example.test", "carol@example.test")},
	}
}

// TestRecipientCapReported: the recipient cap and the size limit are
// reported to LimitReached, with the listener's group.
func TestRecipientCapReported(t *testing.T) {
	rec := &limitRecorder{}
	srv := newTestServer(&fakeHandler{caps: func(State) Capabilities { return Capabilities{MaxSize: 10} }})
	srv.Limits = func(net.Addr) Limits { return Limits{Group: "Internet", MaxRecipients: 1} }
	srv.LimitReached = rec.record
	runTranscript(t, srv, []step{ehlo, mailA, rcptB, cmd("RCPT TO:<carol@example.test>"),
		dataGo, send("more than ten octets\r\n.\r\n", 1), cmd("MAIL FROM:<a@example.test> SIZE=11")})
	rec.want(t, LimitRecipients, "Internet", "1")
	rec.want(t, LimitMessageSize, "Internet", "10")
	if n := rec.count(LimitMessageSize); n != 2 {
		t.Errorf("size limit reported %d times, want 2 (DATA, then MAIL SIZE=)", n)
	}
}

// emfileListener fails Accept with EMFILE n times, then blocks until
// closed.
type emfileListener struct {
	n      int
	calls  int
	mu     sync.Mutex
	closed chan struct{}
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls++
	fail := l.calls <= l.n
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *emfileListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}

func (l *emfileListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// TestAcceptBackoff protects item 14 of issue 9: when accept fails for
// lack of file descriptors the server backs off, doubling its wait, and
// says so once per streak in its log and each time to LimitReached, rather
// than spinning and logging every failure.
func TestAcceptBackoff(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	rec := &limitRecorder{}
	var slept []time.Duration
	l := &emfileListener{n: 9, closed: make(chan struct{})}
	srv := newTestServer(&fakeHandler{})
	srv.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	srv.LimitReached = rec.record
	srv.init()
	srv.sleep = func(d time.Duration) {
		mu.Lock()
		slept = append(slept, d)
		mu.Unlock()
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	for i := 0; i < 400; i++ {
		mu.Lock()
		n := len(slept)
		mu.Unlock()
		if n >= 9 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000}
	if len(slept) != len(want) {
		t.Fatalf("backed off %v, want %v (ms)", slept, want)
	}
	for i := range want {
		if slept[i] != want[i]*time.Millisecond {
			t.Errorf("back-off %d = %v, want %v", i+1, slept[i], want[i]*time.Millisecond)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for one streak of accept failures, want 1:\n%s", n, logs.String())
	}
	if n := rec.count(LimitAccept); n != 9 {
		t.Errorf("LimitReached told of %d accept failures, want 9", n)
	}
	if ev, _ := rec.find(LimitAccept); ev.Err == nil || !strings.Contains(ev.Err.Error(), "too many open files") {
		t.Errorf("accept failure reported with error %v", ev.Err)
	}
}

// TestLimitNames: each limit is named by the setting that changes it.
func TestLimitNames(t *testing.T) {
	for l, want := range map[Limit]string{LimitConnections: "MaxInboundConnection", LimitConnectionsPerClient: "MaxInboundConnectionPerSource",
		LimitSession: "ConnectionTimeout", LimitInactivity: "ConnectionInactivityTimeout", LimitRecipients: "MaxRecipientsPerMessage"} {
		if got := fmt.Sprint(l); got != want {
			t.Errorf("%d.String() = %q, want %q", int(l), got, want)
		}
	}
}
