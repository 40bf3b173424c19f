package transport

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/testpki"
)

// tcpTimer returns the "tr" field of /proc/net/tcp for the socket from
// local to remote (both 127.0.0.1): "00" no timer, "01" retransmit,
// "02" keep-alive, "" when the socket is not there.
func tcpTimer(t *testing.T, local, remote *net.TCPAddr) string {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("0100007F:%04X 0100007F:%04X ", local.Port, remote.Port)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 5 && strings.Contains(line, want) {
			tr, _, _ := strings.Cut(f[5], ":")
			return tr
		}
	}
	return ""
}

// TestNoKeepAliveInactivityCloses: the receive connector's sockets have
// no TCP keep-alive (the listener turns it off: four system calls per
// connection saved), and a silent peer is still closed by the
// connector's inactivity timeout, with 421 4.4.2.
func TestNoKeepAliveInactivityCloses(t *testing.T) {
	addr := testpki.FreePort(t)
	r := &Receiver{Events: &eventRecorder{}}
	r.Start()
	defer r.Shutdown(context.Background())
	conns := []directory.ReceiveConnector{{Name: "Default", Bindings: []string{addr}, Enabled: true, Fqdn: "mail.contoso.test",
		ConnectionInactivityTimeout: directory.Duration(time.Second)}}
	if errs := r.Update(context.Background(), NewState(directory.Server{Name: "hub1"}, conns, nil, nil, nil, time.Now())); len(errs) != 0 {
		t.Fatal(errs)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("greeting %q, %v", line, err)
	}
	time.Sleep(100 * time.Millisecond) // the greeting's ACK: no retransmit timer left
	server, client := c.RemoteAddr().(*net.TCPAddr), c.LocalAddr().(*net.TCPAddr)
	switch tr := tcpTimer(t, server, client); tr {
	case "":
		t.Fatal("the server's socket is not in /proc/net/tcp")
	case "02":
		t.Error("the server's socket has a keep-alive timer")
	}
	began := time.Now()
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "421 4.4.2 ") {
		t.Fatalf("after silence: %q, %v; want 421 4.4.2", line, err)
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Error("the connection stayed open after the 421")
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("closed after %v, want about the inactivity timeout (1 s)", d)
	}
}
