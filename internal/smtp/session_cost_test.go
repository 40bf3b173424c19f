package smtp

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSessionLogNamesConnection: the connection's logger is made only
// when it first logs (issue 19), and what it logs still carries the
// connection's ID and remote address.
func TestSessionLogNamesConnection(t *testing.T) {
	var mu sync.Mutex
	var sb strings.Builder
	logs := func() string { mu.Lock(); defer mu.Unlock(); return sb.String() }
	srv := newTestServer(&fakeHandler{})
	srv.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &sb}, nil))
	addr, _ := startServer(t, srv)
	rc := dialRaw(t, addr)
	remote := rc.c.LocalAddr().String()
	if r := rc.cmd("GET / HTTP/1.1"); !strings.HasPrefix(r, "421 ") {
		t.Fatalf("HTTP request got %q", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs(), "HTTP request") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs()
	if !strings.Contains(out, "HTTP request") || !strings.Contains(out, "conn=1 ") || !strings.Contains(out, "remote="+remote) {
		t.Errorf("log lacks the connection's ID or remote address %s:\n%s", remote, out)
	}
}

// TestTLSHandshakeTimeout: a client that sends STARTTLS and then nothing
// is closed once Server.TLSHandshakeTimeout has passed (the deadline on
// the connection bounds the handshake, without a context timer).
func TestTLSHandshakeTimeout(t *testing.T) {
	srv := newTestServer(&fakeHandler{tlsConfig: getPKI(t).serverConfig(), caps: allCaps})
	srv.TLSHandshakeTimeout = 300 * time.Millisecond
	client, br, done := serveTCP(t, srv)
	br.ReadString('\n')
	io.WriteString(client, "EHLO client.example.test\r\n")
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l[3] == ' ' {
			break
		}
	}
	io.WriteString(client, "STARTTLS\r\n")
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("STARTTLS: %q", l)
	}
	began := time.Now()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the silent handshake was not ended")
	}
	if d := time.Since(began); d < 250*time.Millisecond {
		t.Errorf("ended after %v, before the handshake timeout", d)
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Error("the connection is still open")
	}
}
