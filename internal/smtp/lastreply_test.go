package smtp

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// deadlineConn notes the write deadline in force when a write begins with
// a given reply code.
type deadlineConn struct {
	net.Conn
	code string

	mu       sync.Mutex
	deadline time.Time // the last one set
	atWrite  time.Time // in force at the write of code
	at       time.Time // when that write began
}

func (d *deadlineConn) SetWriteDeadline(t time.Time) error {
	d.mu.Lock()
	d.deadline = t
	d.mu.Unlock()
	return d.Conn.SetWriteDeadline(t)
}

func (d *deadlineConn) SetDeadline(t time.Time) error {
	d.mu.Lock()
	d.deadline = t
	d.mu.Unlock()
	return d.Conn.SetDeadline(t)
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	d.mu.Lock()
	if strings.HasPrefix(string(p), d.code+" ") {
		d.atWrite, d.at = d.deadline, time.Now()
	}
	d.mu.Unlock()
	return d.Conn.Write(p)
}

// TestLastReplyWriteBound: the last reply of a session (221 after QUIT,
// 421 when the server shuts down) may take closingWriteTimeout to write,
// not the write timeout of ordinary replies: a peer that stops reading
// at the end of a session holds it (and a shutdown waiting for it) for
// seconds, not for WriteTimeout.
func TestLastReplyWriteBound(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		end        func(client net.Conn, cancel context.CancelFunc)
	}{
		{"ok/221-after-quit", "221", func(client net.Conn, _ context.CancelFunc) { io.WriteString(client, "QUIT\r\n") }},
		{"ok/421-at-shutdown", "421", func(_ net.Conn, cancel context.CancelFunc) { cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			defer client.Close()
			srv := newTestServer(&fakeHandler{})
			srv.WriteTimeout = time.Hour
			dc := &deadlineConn{Conn: server, code: tc.code}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() {
				srv.ServeConn(ctx, dc)
				close(done)
			}()
			client.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(client)
			if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
				t.Fatalf("greeting %q", l)
			}
			tc.end(client, cancel)
			if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, tc.code+" ") {
				t.Fatalf("last reply %q, %v; want %s", l, err, tc.code)
			}
			<-done
			dc.mu.Lock()
			defer dc.mu.Unlock()
			if dc.at.IsZero() {
				t.Fatalf("no write began with %s", tc.code)
			}
			if got := dc.atWrite.Sub(dc.at); got > closingWriteTimeout+time.Second || got <= 0 {
				t.Errorf("the %s was written with a deadline %v away; want at most %v (closingWriteTimeout), not the write timeout (%v)",
					tc.code, got.Round(time.Second), closingWriteTimeout, srv.WriteTimeout)
			}
		})
	}
}
