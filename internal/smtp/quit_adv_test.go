package smtp

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Adversarial tests of the end of a session after QUIT (issue 19:
// emptyNow takes a short read for an empty socket).

// TestEmptyNowLeavesNothingUnread: whatever the peer has sent after QUIT
// — exactly the scratch buffer's size, one byte either side, several
// buffers' worth, several segments, a FIN after it, urgent data in the
// middle (a telnet user's interrupt) — emptyNow either reports the socket
// empty with nothing left unread (closing then sends no reset), or
// reports it not empty (the drain takes over).
func TestEmptyNowLeavesNothingUnread(t *testing.T) {
	for _, tc := range []struct {
		name     string
		segments []int // sizes written one after the other
		oobAfter int   // >0: an urgent byte after that many segments
		fin      bool
	}{
		{"ok/scratch-size", []int{firstReadSize}, 0, false},
		{"ok/scratch-size-less-one", []int{firstReadSize - 1}, 0, false},
		{"ok/scratch-size-plus-one", []int{firstReadSize + 1}, 0, false},
		{"ok/four-scratches", []int{4 * firstReadSize}, 0, false},
		{"ok/split-segments", []int{300, 300, 300, 300}, 0, false},
		{"ok/split-with-fin", []int{700, 700}, 0, true},
		{"ok/scratch-size-with-fin", []int{firstReadSize}, 0, true},
		{"ok/urgent-in-the-middle", []int{100, 100}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			cc := client.(*net.TCPConn)
			cc.SetNoDelay(true)
			total := 0
			for i, n := range tc.segments {
				if _, err := client.Write(make([]byte, n)); err != nil {
					t.Fatal(err)
				}
				total += n
				if tc.oobAfter > 0 && i+1 == tc.oobAfter {
					rc, err := cc.SyscallConn()
					if err != nil {
						t.Fatal(err)
					}
					var serr error
					rc.Write(func(fd uintptr) bool {
						serr = unix.Sendto(int(fd), []byte{0xff}, unix.MSG_OOB, nil)
						return true
					})
					if serr != nil {
						t.Fatal(serr)
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
			if tc.fin {
				cc.CloseWrite()
			}
			tcs := server.(*net.TCPConn)
			deadline := time.Now().Add(5 * time.Second)
			for tc.oobAfter == 0 && inQueue(t, tcs) < total && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(5 * time.Millisecond) // the FIN, the urgent byte
			var scratch [firstReadSize]byte
			empty := emptyNow(tcs, scratch[:])
			left := unreadNow(t, tcs)
			if empty && left != 0 {
				t.Errorf("emptyNow reported the socket empty with %d bytes left unread", left)
			}
		})
	}
}

// TestQuitWithInputAfterItGets221: a client pipelines QUIT with more
// input of various sizes, in one write or several segments, with or
// without its FIN, and reads only afterwards: it must always read the
// 221, and then the end of the stream, not a reset (the input it sent
// in the same write as QUIT is the server's to drain).
func TestQuitWithInputAfterItGets221(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after []int // sizes of the writes after "QUIT\r\n" (the first in the same write)
		fin   bool
	}{
		{"ok/scratch-size", []int{firstReadSize}, false},
		{"ok/scratch-size-less-quit", []int{firstReadSize - len("QUIT\r\n")}, false},
		{"ok/larger", []int{5000}, false},
		{"ok/larger-with-fin", []int{5000}, true},
		{"ok/scratch-size-with-fin", []int{firstReadSize}, true},
		{"ok/fin-only", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(&fakeHandler{})
			client, br, done := serveTCP(t, srv)
			if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
				t.Fatalf("greeting %q", l)
			}
			first := []byte("QUIT\r\n")
			if len(tc.after) > 0 {
				first = append(first, strings.Repeat("x", tc.after[0]-2)+"\r\n"...)
			}
			if _, err := client.Write(first); err != nil {
				t.Fatal(err)
			}
			if tc.fin {
				client.(*net.TCPConn).CloseWrite()
			}
			l, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(l, "221 2.0.0 ") {
				t.Fatalf("after QUIT: %q, %v; want 221", l, err)
			}
			if _, err := br.ReadString('\n'); err != io.EOF {
				if errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("after the 221: connection reset, want a clean end of stream")
				} else {
					t.Errorf("after the 221: %v, want EOF", err)
				}
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the session did not end")
			}
		})
	}
}

// unreadNow reads, without waiting, what the socket still holds, and
// returns how many bytes that was (0 at its end, or when it is empty).
func unreadNow(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	buf := make([]byte, 64<<10)
	rc.Read(func(fd uintptr) bool {
		for {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err != nil || n <= 0 {
				return true
			}
			total += n
		}
	})
	return total
}
