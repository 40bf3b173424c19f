package smtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startServer runs srv.Serve on a loopback listener.
func startServer(t *testing.T, srv *Server) (addr string, serveErr <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), ch
}

// rawClient is a line-level client for lifecycle tests.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, br: bufio.NewReader(c)}
	if l := rc.reply(); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q", l)
	}
	return rc
}

// reply reads one reply and returns its last line ("" on EOF).
func (rc *rawClient) reply() string {
	rc.t.Helper()
	for {
		rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		l, err := rc.br.ReadString('\n')
		if err != nil {
			return ""
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

func (rc *rawClient) cmd(line string) string {
	rc.t.Helper()
	io.WriteString(rc.c, line+"\r\n")
	return rc.reply()
}

// blockingHandler's Data waits for release after reading the message.
type blockingHandler struct {
	fakeHandler
	inData  chan struct{}
	release chan struct{}
}

func (h *blockingHandler) NewSession(ctx context.Context, c ConnInfo) (Session, error) {
	return &blockingSession{fakeSession{h: &h.fakeHandler, ctx: ctx}, h}, nil
}

type blockingSession struct {
	fakeSession
	b *blockingHandler
}

func (s *blockingSession) Data(st State, r io.Reader) (string, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return "", err
	}
	close(s.b.inData)
	<-s.b.release
	return "stored", nil
}

func TestShutdown(t *testing.T) {
	t.Run("ok/idle-session-gets-421", func(t *testing.T) {
		h := &fakeHandler{}
		srv := newTestServer(h)
		addr, serveErr := startServer(t, srv)
		rc := dialRaw(t, addr)
		if r := rc.cmd("EHLO c.example.test"); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("EHLO: %q", r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if r := rc.reply(); r != "421 4.3.2 Service shutting down, closing connection" {
			t.Errorf("got %q, want 421 4.3.2", r)
		}
		if err := <-serveErr; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		if h.closedCount() != 1 {
			t.Errorf("Session.Close called %d times", h.closedCount())
		}
		if _, err := net.Dial("tcp", addr); err == nil {
			t.Error("listener still accepting")
		}
	})

	t.Run("ok/message-in-progress-completes", func(t *testing.T) {
		h := &blockingHandler{inData: make(chan struct{}), release: make(chan struct{})}
		srv := newTestServer(h)
		addr, _ := startServer(t, srv)
		rc := dialRaw(t, addr)
		rc.cmd("EHLO c.example.test")
		rc.cmd("MAIL FROM:<a@example.test>")
		rc.cmd("RCPT TO:<b@example.test>")
		if r := rc.cmd("DATA"); !strings.HasPrefix(r, "354") {
			t.Fatalf("DATA: %q", r)
		}
		io.WriteString(rc.c, "hello\r\n.\r\n")
		<-h.inData
		shut := make(chan error, 1)
		go func() { shut <- srv.Shutdown(context.Background()) }()
		time.Sleep(50 * time.Millisecond)
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v while a message was being stored", err)
		default:
		}
		close(h.release)
		if r := rc.reply(); r != "250 2.0.0 OK queued as stored" {
			t.Errorf("final reply %q", r)
		}
		if r := rc.reply(); !strings.HasPrefix(r, "421 4.3.2") {
			t.Errorf("after the message: %q, want 421 4.3.2", r)
		}
		if err := <-shut; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})

	t.Run("fail/deadline-closes-connections", func(t *testing.T) {
		h := &blockingHandler{inData: make(chan struct{}), release: make(chan struct{})}
		defer close(h.release)
		srv := newTestServer(h)
		addr, _ := startServer(t, srv)
		rc := dialRaw(t, addr)
		rc.cmd("EHLO c.example.test")
		rc.cmd("MAIL FROM:<a@example.test>")
		rc.cmd("RCPT TO:<b@example.test>")
		rc.cmd("DATA")
		io.WriteString(rc.c, "hello\r\n.\r\n")
		<-h.inData
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want DeadlineExceeded", err)
		}
		if r := rc.reply(); r != "" {
			t.Errorf("got %q after forced close, want EOF", r)
		}
	})

	t.Run("ok/serveconn-context-cancel", func(t *testing.T) {
		srv := newTestServer(&fakeHandler{})
		cc, sc := net.Pipe()
		defer cc.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			srv.ServeConn(ctx, sc)
			close(done)
		}()
		br := bufio.NewReader(cc)
		br.ReadString('\n') // greeting
		cancel()
		l, _ := br.ReadString('\n')
		if !strings.HasPrefix(l, "421 4.3.2") {
			t.Errorf("got %q, want 421 4.3.2", l)
		}
		<-done
	})

	t.Run("ok/close-stops-serve", func(t *testing.T) {
		srv := newTestServer(&fakeHandler{})
		addr, serveErr := startServer(t, srv)
		rc := dialRaw(t, addr)
		srv.Close()
		if err := <-serveErr; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		if r := rc.reply(); r != "" {
			t.Errorf("got %q after Close, want EOF", r)
		}
		if err := srv.Serve(nopListener{}); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve after Close: %v", err)
		}
	})
}

type nopListener struct{ net.Listener }

func (nopListener) Close() error { return nil }

// countingConn counts the writes that reach the connection.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestPipeliningFlushesOncePerGroup(t *testing.T) {
	srv := newTestServer(&fakeHandler{})
	cc, sc := tcpPair(t)
	counted := &countingConn{Conn: sc}
	done := make(chan struct{})
	go func() {
		srv.ServeConn(context.Background(), counted)
		close(done)
	}()
	defer func() { cc.Close(); <-done }()
	br := bufio.NewReader(cc)
	readReplies := func(n int) []string {
		var out []string
		for len(out) < n {
			cc.SetReadDeadline(time.Now().Add(5 * time.Second))
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l[3] == ' ' {
				out = append(out, strings.TrimSpace(l))
			}
		}
		return out
	}
	readReplies(1)
	before := counted.writes.Load()
	group := "EHLO c.example.test\r\nNOOP\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n"
	io.WriteString(cc, group)
	got := readReplies(6)
	if got[5] != "354 End data with <CR><LF>.<CR><LF>" {
		t.Fatalf("replies %q", got)
	}
	if w := counted.writes.Load() - before; w != 1 {
		t.Errorf("%d writes for one pipelined group, want 1", w)
	}
}

func TestConcurrentSessions(t *testing.T) {
	h := &fakeHandler{caps: allCaps, tlsConfig: getPKI(t).serverConfig()}
	srv := newTestServer(h)
	addr, _ := startServer(t, srv)
	const clients, msgs = 8, 5
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx := context.Background()
			c, err := Dial(ctx, addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if i%2 == 0 {
				if err := c.StartTLS(ctx, getPKI(t).clientConfig()); err != nil {
					t.Error(err)
					return
				}
			}
			for j := 0; j < msgs; j++ {
				body := fmt.Sprintf("Subject: %d/%d\r\n\r\nbody\r\n", i, j)
				if _, err := c.SendMail(ctx, "a@example.test", []string{"b@example.test"}, strings.NewReader(body), nil); err != nil {
					t.Error(err)
					return
				}
			}
			c.Quit(ctx)
		}(i)
	}
	wg.Wait()
	_, d, _ := h.snapshot()
	if len(d) != clients*msgs {
		t.Errorf("delivered %d, want %d", len(d), clients*msgs)
	}
}

// panicHandler panics in Mail.
type panicHandler struct{ fakeHandler }

func (h *panicHandler) NewSession(ctx context.Context, c ConnInfo) (Session, error) {
	return &panicSession{fakeSession{h: &h.fakeHandler, ctx: ctx}}, nil
}

type panicSession struct{ fakeSession }

func (s *panicSession) Mail(State, string, MailOptions) error { panic("policy bug") }

func TestSessionPanicIsContained(t *testing.T) {
	h := &panicHandler{}
	srv := newTestServer(h)
	addr, _ := startServer(t, srv)
	rc := dialRaw(t, addr)
	rc.cmd("EHLO c.example.test")
	if r := rc.cmd("MAIL FROM:<a@example.test>"); r != "" {
		t.Errorf("got %q, want the connection closed", r)
	}
	if h.closedCount() != 1 {
		t.Errorf("Session.Close called %d times after a panic", h.closedCount())
	}
	rc2 := dialRaw(t, addr)
	if r := rc2.cmd("NOOP"); r != "250 2.0.0 OK" {
		t.Errorf("server unusable after a session panic: %q", r)
	}
}

func TestLogsHideCredentialsAndQuoteInput(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := &fakeHandler{caps: func(State) Capabilities {
		return Capabilities{AuthMechanisms: []string{"PLAIN", "LOGIN"}, AuthWithoutTLS: true}
	}, users: map[string]string{"alice": "s3cret"}}
	srv := newTestServer(h)
	srv.Logger = logger
	plain := b64("\x00alice\x00s3cret")
	login := b64("s3cret")
	runTranscript(t, srv, []step{
		cmd("EHLO c.example.test"),
		cmd("AUTH LOGIN " + b64("alice")), cmd(login),
		cmd("AUTH PLAIN " + plain),
		cmd("MAIL FROM:<a@example.test> \x1b[31mred"),
		quit,
	})
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	for _, secret := range []string{plain, login, "s3cret", b64("alice"), "\x1b"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, `cmd=AUTH arg=LOGIN`) || !strings.Contains(logs, `arg="FROM:<a@example.test> \\x1b[31mred"`) {
		t.Errorf("AUTH command not logged by mechanism:\n%s", logs)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
