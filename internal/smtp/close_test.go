package smtp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestQuitClose: how a session ends after QUIT. With nothing sent after
// QUIT the connection closes at once, without the half-close and the
// wait for the peer's close (issue 19: their cost in every session), and
// the client reads the 221 and then a clean end of stream. With input
// after QUIT — pipelined commands the server will never read — it is
// still half-closed and drained, so closing does not reset the
// connection and destroy the 221 before the client reads it.
func TestQuitClose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after string // sent with QUIT
		// atOnce: the session must end while the client keeps its end
		// open (the drain would wait 500 ms for the client's FIN).
		atOnce bool
	}{
		{"ok/nothing-after-quit-closes-at-once", "", true},
		{"ok/input-after-quit-drained", strings.Repeat("NOOP\r\n", 3000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			srv := newTestServer(&fakeHandler{})
			done := make(chan time.Time, 1)
			go func() {
				srv.ServeConn(context.Background(), server)
				done <- time.Now()
			}()
			client.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(client)
			if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
				t.Fatalf("greeting %q", l)
			}
			if _, err := io.WriteString(client, "QUIT\r\n"+tc.after); err != nil {
				t.Fatal(err)
			}
			l, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(l, "221 2.0.0 ") {
				t.Fatalf("after QUIT: %q, %v; want 221", l, err)
			}
			got221 := time.Now()
			var ended time.Time
			select {
			case ended = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the session did not end")
			}
			if tc.atOnce && ended.Sub(got221) > 250*time.Millisecond {
				t.Errorf("the session ended %v after the 221: it waited for the client", ended.Sub(got221))
			}
			if _, err := br.ReadString('\n'); err != io.EOF {
				if errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("after the 221: connection reset, want a clean end of stream")
				} else {
					t.Errorf("after the 221: %v, want EOF", err)
				}
			}
		})
	}
}

// TestEmptyNow: what the peer sent after QUIT is read without waiting;
// the socket counts as empty when a read finds nothing left (EAGAIN) or
// the peer's FIN, and not when more is left than four reads take.
func TestEmptyNow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sent  int
		empty bool
	}{
		{"ok/nothing", 0, true},
		{"ok/close-notify-sized", 24, true},
		{"ok/two-reads", 1500, true},
		{"fail/more-than-four-reads", 5000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			if tc.sent > 0 {
				if _, err := client.Write(make([]byte, tc.sent)); err != nil {
					t.Fatal(err)
				}
			}
			// Wait until all of it has arrived.
			tcs := server.(*net.TCPConn)
			deadline := time.Now().Add(5 * time.Second)
			for tc.sent > 0 && inQueue(t, tcs) < tc.sent && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			var scratch [firstReadSize]byte
			if got := emptyNow(tcs, scratch[:]); got != tc.empty {
				t.Errorf("emptyNow = %v, want %v", got, tc.empty)
			}
			if left := inQueue(t, tcs); tc.empty && left != 0 {
				t.Errorf("%d bytes left unread", left)
			}
		})
	}
}

// inQueue is how many bytes the socket holds unread (FIONREAD).
func inQueue(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n
}
