package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPooledBuffersAcrossSTARTTLSFailures: one server's sessions share
// pooled buffers (issue 19: the conn keeps its buffers' reader and
// writer, and grows its stack before the handshake). Many at once, some
// completing STARTTLS and sending a message, some failing the handshake
// (garbage in place of a ClientHello, or a close in the middle of it),
// some plain with pipelined commands: each session's replies and its
// message hold its own data and no other session's, and every session
// ends.
func TestPooledBuffersAcrossSTARTTLSFailures(t *testing.T) {
	p := getPKI(t)
	h := &fakeHandler{caps: allCaps, tlsConfig: p.serverConfig(), queueID: "Q"}
	srv := newTestServer(h)
	srv.MaxConnectionsPerClient = 1000 // every session is from 127.0.0.1
	const n = 48
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	ends := make(chan struct{}, n)
	for i := range n {
		client, server := tcpPair(t)
		go func() {
			srv.ServeConn(context.Background(), server)
			ends <- struct{}{}
		}()
		wg.Go(func() {
			defer client.Close()
			client.SetDeadline(time.Now().Add(20 * time.Second))
			if err := poolClient(client, p.clientConfig(), i); err != nil {
				errs <- fmt.Errorf("session %d (kind %d): %w", i, i%4, err)
			}
		})
	}
	wg.Wait()
	for range n {
		select {
		case <-ends:
		case <-time.After(20 * time.Second):
			t.Fatal("a session did not end")
		}
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, delivered, _ := h.snapshot()
	want := 0
	for i := range n {
		if i%4 == 0 || i%4 == 3 {
			want++
		}
	}
	if len(delivered) != want {
		t.Errorf("%d messages delivered, want %d", len(delivered), want)
	}
	for _, d := range delivered {
		if len(d.rcpts) != 1 {
			t.Errorf("message from %s: recipients %v", d.from, d.rcpts)
			continue
		}
		tok := strings.TrimSuffix(strings.TrimPrefix(d.from, "s"), "@example.org")
		if d.rcpts[0] != "r"+tok+"@example.net" || d.body != poolBody(tok) {
			t.Errorf("message from %s: recipient %v, body %q", d.from, d.rcpts, d.body)
		}
	}
}

func poolBody(tok string) string {
	return "Subject: " + tok + "\r\n\r\n" + strings.Repeat(tok+" ", 900) + "\r\n"
}

// poolClient runs session i's script; its replies must name no other
// session's token.
func poolClient(c net.Conn, cfg *tls.Config, i int) error {
	tok := fmt.Sprintf("t%03d", i)
	br := bufio.NewReader(c)
	var replies strings.Builder
	read := func() (string, error) {
		var last string
		for {
			l, err := br.ReadString('\n')
			replies.WriteString(l)
			if err != nil {
				return l, err
			}
			if len(l) < 4 || l[3] != '-' {
				last = l
				break
			}
		}
		return last, nil
	}
	say := func(conn io.Writer, s string, code string) error {
		if _, err := io.WriteString(conn, s); err != nil {
			return err
		}
		l, err := read()
		if err != nil || !strings.HasPrefix(l, code) {
			return fmt.Errorf("after %q: %q, %v", strings.TrimSpace(s), l, err)
		}
		return nil
	}
	if l, err := read(); err != nil || !strings.HasPrefix(l, "220") {
		return fmt.Errorf("greeting %q, %v", l, err)
	}
	if err := say(c, "EHLO "+tok+".example\r\n", "250"); err != nil {
		return err
	}
	message := func(w io.Writer) error {
		for _, s := range []struct{ line, code string }{
			{"MAIL FROM:<s" + tok + "@example.org>\r\n", "250"},
			{"RCPT TO:<r" + tok + "@example.net>\r\n", "250"},
			{"DATA\r\n", "354"},
			{poolBody(tok) + ".\r\n", "250"},
			{"QUIT\r\n", "221"},
		} {
			if err := say(w, s.line, s.code); err != nil {
				return err
			}
		}
		return nil
	}
	switch i % 4 {
	case 0: // STARTTLS, then a message over TLS
		if err := say(c, "STARTTLS\r\n", "220"); err != nil {
			return err
		}
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			return err
		}
		br = bufio.NewReader(tc)
		if err := say(tc, "EHLO "+tok+".tls.example\r\n", "250"); err != nil {
			return err
		}
		if err := message(tc); err != nil {
			return err
		}
	case 1: // garbage in place of the ClientHello
		if err := say(c, "STARTTLS\r\n", "220"); err != nil {
			return err
		}
		io.WriteString(c, strings.Repeat("EHLO "+tok+"\r\n", 50))
		io.Copy(&replies, c)
	case 2: // a close in the middle of the handshake
		if err := say(c, "STARTTLS\r\n", "220"); err != nil {
			return err
		}
		c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0xff, 0x01}) // a record header and a byte of a ClientHello
		c.(*net.TCPConn).CloseWrite()
		io.Copy(&replies, c)
	case 3: // plain, pipelined
		var b strings.Builder
		b.WriteString("MAIL FROM:<s" + tok + "@example.org>\r\nRCPT TO:<r" + tok + "@example.net>\r\nDATA\r\n")
		if _, err := io.WriteString(c, b.String()); err != nil {
			return err
		}
		for _, code := range []string{"250", "250", "354"} {
			if l, err := read(); err != nil || !strings.HasPrefix(l, code) {
				return fmt.Errorf("pipelined: %q, %v; want %s", l, err, code)
			}
		}
		if err := say(c, poolBody(tok)+".\r\n", "250"); err != nil {
			return err
		}
		if err := say(c, "QUIT\r\n", "221"); err != nil {
			return err
		}
	}
	got := replies.String()
	for j := 0; j < 1000; j++ {
		other := fmt.Sprintf("t%03d", j)
		if other != tok && strings.Contains(got, other) {
			return fmt.Errorf("the replies hold session %s's data:\n%s", other, got)
		}
	}
	return nil
}
