package serving

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"certrelay/internal/testpki"
)

// soKeepAlive reads SO_KEEPALIVE of an accepted connection.
func soKeepAlive(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestKeepAliveOption: ListenOptions.KeepAlive below zero leaves TCP
// keep-alive off on the connections a binding accepts (no setsockopt
// calls per connection); zero keeps Go's default, on.
func TestKeepAliveOption(t *testing.T) {
	for _, tc := range []struct {
		name      string
		keepAlive time.Duration
		want      int
	}{
		{"off/negative", -1, 0},
		{"on/default", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan int, 1)
			ls := New(Options{}).Listeners(ListenOptions{Kind: "test listener", KeepAlive: tc.keepAlive})
			defer ls.Close()
			addr := testpki.FreePort(t)
			if errs := ls.Set(context.Background(), []Binding{{Addr: addr, Owner: "test", Handle: func(c net.Conn) {
				defer c.Close()
				got <- soKeepAlive(t, c)
			}}}); len(errs) != 0 {
				t.Fatal(errs)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			select {
			case v := <-got:
				if v != tc.want {
					t.Errorf("SO_KEEPALIVE %d, want %d", v, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no connection accepted")
			}
		})
	}
}
