package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection. Unlike
// net.Pipe, TCP buffers: a TLS peer that fails and sends an alert does not
// block waiting for the other side to read.
// serveTCP serves one session of srv over a loopback TCP pair and
// returns the client's end (with a 10 s deadline), a reader on it, and a
// channel closed when the session has ended.
func serveTCP(t testing.TB, srv *Server) (net.Conn, *bufio.Reader, <-chan struct{}) {
	t.Helper()
	client, server := tcpPair(t)
	done := make(chan struct{})
	go func() {
		srv.ServeConn(context.Background(), server)
		close(done)
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	return client, bufio.NewReader(client), done
}

func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return client, r.c
}

// clientAgainstServer starts srv on one end of a loopback connection and a
// Client on the other.
func clientAgainstServer(t *testing.T, srv *Server) *Client {
	t.Helper()
	cc, sc := tcpPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeConn(context.Background(), sc)
	}()
	t.Cleanup(func() {
		cc.Close()
		<-done
	})
	c, err := NewClient(context.Background(), cc, "mx.example.test")
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	c.LocalName = "client.example.test"
	return c
}

// peer is a scripted fake server for client tests; it records what the
// client wrote, one entry per write.
type peer struct {
	t      *testing.T
	conn   net.Conn
	br     *bufio.Reader
	mu     sync.Mutex
	writes []string
}

// recorder logs each Read (= one client Write over net.Pipe).
type recorder struct{ p *peer }

func (r recorder) Read(b []byte) (int, error) {
	n, err := r.p.conn.Read(b)
	if n > 0 {
		r.p.mu.Lock()
		r.p.writes = append(r.p.writes, string(b[:n]))
		r.p.mu.Unlock()
	}
	return n, err
}

func (p *peer) send(s string) {
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(p.conn, s)
}

func (p *peer) line() string {
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := p.br.ReadString('\n')
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return strings.TrimRight(l, "\r\n")
}

// clientAgainstPeer runs script as the server side and returns the client
// (after its greeting) and the peer.
func clientAgainstPeer(t *testing.T, script func(p *peer)) (*Client, *peer) {
	t.Helper()
	cc, sc := net.Pipe()
	p := &peer{t: t, conn: sc}
	p.br = bufio.NewReaderSize(recorder{p}, 64<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sc.Close()
		p.send("220 peer.example.test ESMTP\r\n")
		script(p)
	}()
	t.Cleanup(func() {
		cc.Close()
		<-done
	})
	c, err := NewClient(context.Background(), cc, "peer.example.test")
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, p
}

func replyCode(err error) int {
	var re *ReplyError
	if errors.As(err, &re) {
		return re.Code
	}
	return 0
}

func TestClientSendMail(t *testing.T) {
	ctx := context.Background()

	t.Run("ok/pipelined-per-recipient-results", func(t *testing.T) {
		h := &fakeHandler{rcptErr: map[string]error{
			"gone@example.test": ErrMailboxUnavailable,
			"busy@example.test": Reply(450, "4.2.1", "Mailbox busy"),
		}}
		c := clientAgainstServer(t, newTestServer(h))
		res, err := c.SendMail(ctx, "alice@example.test",
			[]string{"bob@example.test", "gone@example.test", "busy@example.test"},
			strings.NewReader("Subject: x\r\n\r\nhi\r\n"), nil)
		if err != nil {
			t.Fatalf("SendMail: %v", err)
		}
		if res[0].Err != nil {
			t.Errorf("bob: %v", res[0].Err)
		}
		var re *ReplyError
		if !errors.As(res[1].Err, &re) || !re.Permanent() || re.Code != 550 || re.Enhanced != "5.1.1" {
			t.Errorf("gone: %#v, want permanent 550 5.1.1", res[1].Err)
		}
		if !errors.As(res[2].Err, &re) || !re.Temporary() || re.Code != 450 {
			t.Errorf("busy: %#v, want temporary 450", res[2].Err)
		}
		_, d, _ := h.snapshot()
		if len(d) != 1 || strings.Join(d[0].rcpts, ",") != "bob@example.test" {
			t.Errorf("delivered %+v", d)
		}
		if err := c.Quit(ctx); err != nil {
			t.Errorf("Quit: %v", err)
		}
	})

	t.Run("ok/body-normalised-and-dot-stuffed", func(t *testing.T) {
		h := &fakeHandler{}
		c := clientAgainstServer(t, newTestServer(h))
		body := "Subject: dots\n\n.leading dot\n..two\r\nbare cr\rend"
		if _, err := c.SendMail(ctx, "", []string{"postmaster"}, strings.NewReader(body), nil); err != nil {
			t.Fatalf("SendMail: %v", err)
		}
		_, d, _ := h.snapshot()
		want := "Subject: dots\r\n\r\n.leading dot\r\n..two\r\nbare cr\r\nend\r\n"
		if len(d) != 1 || d[0].body != want {
			t.Fatalf("delivered %+v, want body %q", d, want)
		}
	})

	t.Run("ok/session-reused-after-failures", func(t *testing.T) {
		h := &fakeHandler{mailErr: map[string]error{"bad@example.test": Reply(451, "4.3.0", "Try later")}}
		c := clientAgainstServer(t, newTestServer(h))
		_, err := c.SendMail(ctx, "bad@example.test", []string{"bob@example.test"}, strings.NewReader("x"), nil)
		if re := (*ReplyError)(nil); !errors.As(err, &re) || !re.Temporary() {
			t.Fatalf("first SendMail: %v, want temporary reply", err)
		}
		h.rcptErr = nil
		if _, err := c.SendMail(ctx, "alice@example.test", []string{"gone@example.test"}, strings.NewReader("x"), nil); err != nil {
			t.Fatalf("second SendMail: %v", err)
		}
		_, d, _ := h.snapshot()
		if len(d) != 1 {
			t.Fatalf("delivered %d, want 1", len(d))
		}
	})

	t.Run("fail/all-recipients-refused", func(t *testing.T) {
		h := &fakeHandler{rcptErr: map[string]error{"gone@example.test": ErrMailboxUnavailable}}
		c := clientAgainstServer(t, newTestServer(h))
		res, err := c.SendMail(ctx, "alice@example.test", []string{"gone@example.test"}, strings.NewReader("x"), nil)
		if replyCode(err) != 550 || replyCode(res[0].Err) != 550 {
			t.Fatalf("got %v / %v, want 550", err, res[0].Err)
		}
		if err := c.Noop(ctx); err != nil {
			t.Fatalf("session unusable after refused recipients: %v", err)
		}
	})

	t.Run("fail/data-refused", func(t *testing.T) {
		h := &fakeHandler{dataErr: Reply(554, "5.7.1", "Spam")}
		c := clientAgainstServer(t, newTestServer(h))
		res, err := c.SendMail(ctx, "alice@example.test", []string{"a@example.test", "b@example.test"}, strings.NewReader("x"), nil)
		if replyCode(err) != 554 || replyCode(res[0].Err) != 554 || replyCode(res[1].Err) != 554 {
			t.Fatalf("got %v %v, want 554 for all", err, res)
		}
	})

	t.Run("fail/message-too-large", func(t *testing.T) {
		h := &fakeHandler{caps: func(State) Capabilities { return Capabilities{MaxSize: 10} }}
		c := clientAgainstServer(t, newTestServer(h))
		if n, ok := c.MaxSize(); ok {
			t.Fatalf("MaxSize before EHLO = %d", n)
		}
		res, err := c.SendMail(ctx, "alice@example.test", []string{"b@example.test"}, strings.NewReader(strings.Repeat("x", 100)), nil)
		if replyCode(err) != 552 || replyCode(res[0].Err) != 552 {
			t.Fatalf("got %v, want 552", err)
		}
		if n, ok := c.MaxSize(); !ok || n != 10 {
			t.Errorf("MaxSize = %d, %v", n, ok)
		}
		_, err = c.SendMail(ctx, "alice@example.test", []string{"b@example.test"}, strings.NewReader("x"),
			&SendOptions{Mail: MailOptions{Size: 11}})
		if replyCode(err) != 552 {
			t.Fatalf("declared SIZE: got %v, want 552", err)
		}
	})

	t.Run("fail/invalid-addresses-refused-locally", func(t *testing.T) {
		c := clientAgainstServer(t, newTestServer(&fakeHandler{}))
		for _, bad := range []string{"a@b\r\nRSET", "no-at", "a@b> SIZE=1"} {
			if _, err := c.SendMail(ctx, "alice@example.test", []string{bad}, strings.NewReader("x"), nil); err == nil || isReply(err) {
				t.Errorf("recipient %q: err %v, want a local error", bad, err)
			}
		}
		if _, err := c.SendMail(ctx, "a\r\n@b", []string{"b@example.test"}, strings.NewReader("x"), nil); err == nil {
			t.Error("bad sender accepted")
		}
	})

	t.Run("ok/smtputf8-and-8bitmime", func(t *testing.T) {
		h := &fakeHandler{}
		c := clientAgainstServer(t, newTestServer(h))
		_, err := c.SendMail(ctx, "élodie@exemple.test", []string{"用户@例子.测试"}, strings.NewReader("café"),
			&SendOptions{Mail: MailOptions{Body: "8BITMIME", Size: 6}})
		if err != nil {
			t.Fatal(err)
		}
		ev, _, _ := h.snapshot()
		want := `mail "élodie@exemple.test" {Size:6 Body:8BITMIME SMTPUTF8:true Ret: EnvID: Auth: RequireTLS:false}`
		found := false
		for _, e := range ev {
			found = found || e == want
		}
		if !found {
			t.Errorf("events %q lack %q", ev, want)
		}
	})
}

func TestClientTLSAndAuth(t *testing.T) {
	ctx := context.Background()
	p := getPKI(t)
	users := map[string]string{"alice": "s3cret"}

	t.Run("ok/starttls-auth-send", func(t *testing.T) {
		h := &fakeHandler{caps: allCaps, tlsConfig: p.serverConfig(), users: users}
		c := clientAgainstServer(t, newTestServer(h))
		if err := c.Hello(ctx, "client.example.test"); err != nil {
			t.Fatal(err)
		}
		if c.Supports("AUTH") {
			t.Error("AUTH offered before TLS")
		}
		if err := c.Auth(ctx, "PLAIN", "alice", "s3cret"); err == nil {
			t.Error("Auth sent credentials in plain text")
		}
		if err := c.StartTLS(ctx, &tls.Config{RootCAs: p.roots}); err != nil {
			t.Fatalf("StartTLS: %v", err)
		}
		cs, ok := c.TLSConnectionState()
		if !ok || !cs.HandshakeComplete || cs.ServerName != "mx.example.test" {
			t.Fatalf("TLS state %v %+v", ok, cs)
		}
		if c.Supports("STARTTLS") || !c.Supports("AUTH") {
			t.Errorf("extensions after TLS: %v", c.Extensions())
		}
		if err := c.Auth(ctx, "LOGIN", "alice", "wrong"); replyCode(err) != 535 {
			t.Fatalf("bad password: %v, want 535", err)
		}
		if err := c.Auth(ctx, "", "alice", "s3cret"); err != nil {
			t.Fatalf("Auth: %v", err)
		}
		if _, err := c.SendMail(ctx, "alice@example.test", []string{"bob@example.test"}, strings.NewReader("x"), nil); err != nil {
			t.Fatal(err)
		}
		_, d, _ := h.snapshot()
		if len(d) != 1 || d[0].st.TLS == nil || d[0].st.AuthUsername != "alice" || d[0].st.AuthMechanism != "PLAIN" {
			t.Fatalf("delivery state %+v", d)
		}
	})

	t.Run("ok/auth-login", func(t *testing.T) {
		h := &fakeHandler{caps: allCaps, tlsConfig: p.serverConfig(), users: users}
		c := clientAgainstServer(t, newTestServer(h))
		if err := c.StartTLS(ctx, &tls.Config{RootCAs: p.roots}); err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(ctx, "LOGIN", "alice", "s3cret"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ok/anonymous-tls", func(t *testing.T) {
		h := &fakeHandler{caps: allCaps, tlsConfig: p.serverConfig()}
		c := clientAgainstServer(t, newTestServer(h))
		cfg := &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{p.client}}
		if err := c.AnonymousTLS(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SendMail(ctx, "hub@example.test", []string{"bob@example.test"}, strings.NewReader("x"), nil); err != nil {
			t.Fatal(err)
		}
		_, d, _ := h.snapshot()
		if len(d) != 1 || !d[0].st.AnonymousTLS || len(d[0].st.TLS.PeerCertificates) != 1 ||
			d[0].st.TLS.PeerCertificates[0].Subject.CommonName != "hub1.example.test" {
			t.Fatalf("server did not see X-ANONYMOUSTLS with the client certificate: %+v", d)
		}
	})

	t.Run("fail/starttls-not-offered", func(t *testing.T) {
		c := clientAgainstServer(t, newTestServer(&fakeHandler{}))
		err := c.StartTLS(ctx, &tls.Config{RootCAs: p.roots})
		if !errors.Is(err, ErrNotSupported) {
			t.Fatalf("got %v, want ErrNotSupported", err)
		}
		// Opportunistic TLS (SPEC DS2): mail still flows in plain text.
		if _, err := c.SendMail(ctx, "a@example.test", []string{"b@example.test"}, strings.NewReader("x"), nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("fail/certificate-not-trusted", func(t *testing.T) {
		h := &fakeHandler{caps: allCaps, tlsConfig: p.serverConfig()}
		c := clientAgainstServer(t, newTestServer(h))
		err := c.StartTLS(ctx, &tls.Config{})
		if err == nil || isReply(err) {
			t.Fatalf("got %v, want a handshake error", err)
		}
		if err := c.Noop(ctx); err == nil {
			t.Fatal("client still usable after a failed handshake")
		}
	})
}

func TestClientAgainstFakePeer(t *testing.T) {
	ctx := context.Background()

	t.Run("ok/pipelining-one-write", func(t *testing.T) {
		c, p := clientAgainstPeer(t, func(p *peer) {
			p.line() // EHLO
			p.send("250-peer.example.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
			for i := 0; i < 4; i++ { // MAIL, RCPT, RCPT, DATA
				p.line()
			}
			p.send("250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 No\r\n354 Go\r\n")
			for p.line() != "." {
			}
			p.send("250 2.0.0 queued\r\n")
			p.line()
		})
		res, err := c.SendMail(ctx, "a@example.test", []string{"b@example.test", "c@example.test"}, strings.NewReader("hi\r\n"),
			&SendOptions{Mail: MailOptions{Size: 4}})
		if err != nil || res[0].Err != nil || replyCode(res[1].Err) != 550 {
			t.Fatalf("SendMail: %v %+v", err, res)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.writes) < 2 || p.writes[1] != "MAIL FROM:<a@example.test> SIZE=4\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n" {
			t.Fatalf("client writes %q: want MAIL, RCPTs and DATA in one write", p.writes)
		}
	})

	t.Run("ok/no-pipelining-lockstep", func(t *testing.T) {
		var got []string
		c, _ := clientAgainstPeer(t, func(p *peer) {
			p.line()
			p.send("250 peer.example.test\r\n")
			for _, r := range []string{"250 OK", "550 5.1.1 No", "250 OK", "354 Go"} {
				got = append(got, p.line())
				p.send(r + "\r\n")
			}
			for p.line() != "." {
			}
			p.send("250 OK\r\n")
			p.line()
		})
		res, err := c.SendMail(ctx, "a@example.test", []string{"b@example.test", "c@example.test"}, strings.NewReader("x"), nil)
		if err != nil || replyCode(res[0].Err) != 550 || res[1].Err != nil {
			t.Fatalf("SendMail: %v %+v", err, res)
		}
		want := "MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|RCPT TO:<c@example.test>|DATA"
		if strings.Join(got, "|") != want {
			t.Fatalf("commands %q, want %q", strings.Join(got, "|"), want)
		}
	})

	t.Run("ok/ehlo-refused-falls-back-to-helo", func(t *testing.T) {
		c, _ := clientAgainstPeer(t, func(p *peer) {
			if l := p.line(); !strings.HasPrefix(l, "EHLO ") {
				t.Errorf("first command %q", l)
			}
			p.send("502 5.5.1 What?\r\n")
			if l := p.line(); l != "HELO client.example.test" {
				t.Errorf("fallback %q", l)
			}
			p.send("250 peer.example.test\r\n")
			p.line()
		})
		if err := c.Hello(ctx, "client.example.test"); err != nil {
			t.Fatal(err)
		}
		if len(c.Extensions()) != 0 || c.Supports("PIPELINING") {
			t.Errorf("extensions after HELO: %v", c.Extensions())
		}
	})

	t.Run("fail/421-breaks-client", func(t *testing.T) {
		c, _ := clientAgainstPeer(t, func(p *peer) {
			p.line()
			p.send("250 peer.example.test\r\n")
			p.line()
			p.send("421 4.3.2 Going down\r\n")
		})
		_, err := c.SendMail(ctx, "a@example.test", []string{"b@example.test"}, strings.NewReader("x"), nil)
		var re *ReplyError
		if !errors.As(err, &re) || re.Code != 421 || !re.Temporary() {
			t.Fatalf("got %v, want 421", err)
		}
		if err := c.Noop(ctx); err == nil {
			t.Fatal("client usable after 421")
		}
	})

	t.Run("fail/context-deadline", func(t *testing.T) {
		c, _ := clientAgainstPeer(t, func(p *peer) {
			p.line()
			time.Sleep(300 * time.Millisecond) // never answers in time
		})
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := c.Hello(ctx, "client.example.test")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
		if time.Since(start) > 250*time.Millisecond {
			t.Errorf("Hello took %v after its deadline", time.Since(start))
		}
	})

	t.Run("fail/command-timeout", func(t *testing.T) {
		c, _ := clientAgainstPeer(t, func(p *peer) {
			p.line()
			time.Sleep(300 * time.Millisecond)
		})
		c.CommandTimeout = 50 * time.Millisecond
		err := c.Hello(ctx, "client.example.test")
		if !isTimeout(err) {
			t.Fatalf("got %v, want a timeout", err)
		}
	})

	t.Run("fail/response-injection-after-starttls", func(t *testing.T) {
		c, _ := clientAgainstPeer(t, func(p *peer) {
			p.line()
			p.send("250-peer.example.test\r\n250 STARTTLS\r\n")
			p.line()
			p.send("220 Go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")
			p.line()
		})
		err := c.StartTLS(ctx, &tls.Config{})
		if err == nil || !strings.Contains(err.Error(), "after its STARTTLS reply") {
			t.Fatalf("got %v, want the injection refused", err)
		}
	})

	t.Run("fail/malformed-reply", func(t *testing.T) {
		c, _ := clientAgainstPeer(t, func(p *peer) {
			p.line()
			p.send("250-peer.example.test\r\n251 mixed codes\r\n")
			p.line()
		})
		if err := c.Hello(ctx, "x.example.test"); err == nil || isReply(err) {
			t.Fatalf("got %v, want a protocol error", err)
		}
	})

	t.Run("fail/bad-greeting", func(t *testing.T) {
		cc, sc := net.Pipe()
		defer cc.Close()
		go func() {
			io.WriteString(sc, "554 5.7.1 No thanks\r\n")
			sc.Close()
		}()
		_, err := NewClient(ctx, cc, "peer.example.test")
		if replyCode(err) != 554 {
			t.Fatalf("got %v, want 554", err)
		}
	})

	t.Run("fail/8bitmime-not-offered", func(t *testing.T) {
		c, _ := clientAgainstPeer(t, func(p *peer) {
			p.line()
			p.send("250 peer.example.test\r\n")
			p.line()
		})
		_, err := c.SendMail(ctx, "a@example.test", []string{"b@example.test"}, strings.NewReader("x"),
			&SendOptions{Mail: MailOptions{Body: "8BITMIME"}})
		if !errors.Is(err, ErrNotSupported) {
			t.Fatalf("got %v, want ErrNotSupported", err)
		}
	})
}

func TestDotWriter(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"ok/empty", "", ".\r\n"},
		{"ok/crlf", "a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{"ok/no-final-newline", "a", "a\r\n.\r\n"},
		{"ok/lf", "a\nb\n", "a\r\nb\r\n.\r\n"},
		{"ok/bare-cr", "a\rb", "a\r\nb\r\n.\r\n"},
		{"ok/dots", ".a\r\n..\r\n.\r\nb.c\r\n", "..a\r\n...\r\n..\r\nb.c\r\n.\r\n"},
		{"ok/smuggling-neutralised", "x\n.\nMAIL FROM:<a@b>\r\n", "x\r\n..\r\nMAIL FROM:<a@b>\r\n.\r\n"},
		{"ok/crlf-split-across-writes", "a\r|\nb", "a\r\nb\r\n.\r\n"},
		{"ok/dot-after-split", "a\r\n|.b", "a\r\n..b\r\n.\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var sb strings.Builder
			bw := bufio.NewWriter(&sb)
			d := dotWriter{w: bw, bol: true}
			for _, part := range strings.Split(tc.in, "|") {
				d.Write([]byte(part))
			}
			d.close()
			bw.Flush()
			if sb.String() != tc.want {
				t.Errorf("got %q, want %q", sb.String(), tc.want)
			}
		})
	}
}

func TestClientDSNParameters(t *testing.T) {
	ctx := context.Background()
	h := &fakeHandler{caps: func(State) Capabilities {
		return Capabilities{DSN: true, AuthMechanisms: []string{"PLAIN"}, AuthWithoutTLS: true}
	}}
	c := clientAgainstServer(t, newTestServer(h))
	opts := &SendOptions{
		Mail: MailOptions{Ret: "HDRS", EnvID: "id+1 x", Auth: "alice@example.test"},
		Rcpt: RcptOptions{Notify: NotifySuccess | NotifyDelay, ORcpt: "bob+x@example.test"},
	}
	if _, err := c.SendMail(ctx, "alice@example.test", []string{"bob@example.test"}, strings.NewReader("x"), opts); err != nil {
		t.Fatal(err)
	}
	ev, _, _ := h.snapshot()
	want := []string{
		`mail "alice@example.test" {Size:0 Body: SMTPUTF8:false Ret:HDRS EnvID:id+1 x Auth:alice@example.test RequireTLS:false}`,
		`rcpt "bob@example.test" {Notify:10 ORcptType:rfc822 ORcpt:bob+x@example.test}`,
	}
	for _, w := range want {
		found := false
		for _, e := range ev {
			found = found || e == w
		}
		if !found {
			t.Errorf("events %q lack %q", ev, w)
		}
	}
	opts.Rcpt = RcptOptions{Notify: NotifyNever}
	if _, err := c.SendMail(ctx, "alice@example.test", []string{"bob@example.test"}, strings.NewReader("x"), opts); err != nil {
		t.Fatal(err)
	}

	plain := clientAgainstServer(t, newTestServer(&fakeHandler{}))
	if _, err := plain.SendMail(ctx, "a@example.test", []string{"b@example.test"}, strings.NewReader("x"), opts); !errors.Is(err, ErrNotSupported) {
		t.Errorf("DSN without server support: %v, want ErrNotSupported", err)
	}
}

func TestReplyErrorText(t *testing.T) {
	cause := errors.New("spool: disk full")
	e := &ReplyError{Code: 452, Enhanced: "4.3.1", Message: "Insufficient storage\nTry later", Err: cause}
	if got := e.Error(); got != "smtp: 452 4.3.1 Insufficient storage / Try later: spool: disk full" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(e, cause) {
		t.Error("errors.Is does not see the cause")
	}
	if r := Replyf(550, "5.1.1", "No such user %s", "x"); r.Message != "No such user x" || !r.Permanent() {
		t.Errorf("Replyf = %+v", r)
	}
}
