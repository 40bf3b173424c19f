package smtp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
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
