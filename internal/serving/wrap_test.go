package serving

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"certrelay/internal/certprop"
	"certrelay/internal/selection"
	"certrelay/internal/testpki"
)

// countingConn counts what was read through it.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// TestImplicitTLSWrap: a binding's Wrap sits under its implicit TLS: the
// handler gets a tls.Conn over the wrapped connection, and the
// handshake and the records are read through the wrapper.
func TestImplicitTLSWrap(t *testing.T) {
	kr := &keyring{}
	l := New(Options{LoadKey: kr.load})
	c := kr.candidateFor(t, "mail.contoso.test", 1)
	l.Publish([]selection.Candidate{c}, time.Now())
	var read atomic.Int64
	under := make(chan bool, 1)
	echo := func(conn net.Conn) {
		defer conn.Close()
		tc, ok := conn.(*tls.Conn)
		_, wrapped := tc.NetConn().(countingConn)
		under <- ok && wrapped
		line, _ := bufio.NewReader(conn).ReadString('\n')
		fmt.Fprintf(conn, "echo %s", line)
	}
	ls := l.Listeners(ListenOptions{Kind: "test listener"})
	defer ls.Close()
	addr := testpki.FreePort(t)
	errs := ls.Set(context.Background(), []Binding{{Addr: addr, Owner: "implicit", Handle: echo,
		TLS: func(*tls.ClientHelloInfo) selection.Request {
			return selection.Request{FQDN: "mail.contoso.test", Service: certprop.SMTP}
		},
		Wrap: func(c net.Conn) net.Conn { return countingConn{c, &read} }}})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "mail.contoso.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "hello\n")
	if reply, err := bufio.NewReader(conn).ReadString('\n'); err != nil || reply != "echo hello\n" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	if !<-under {
		t.Error("the handler's connection is not TLS over the wrapped connection")
	}
	if read.Load() < 100 {
		t.Errorf("%d bytes read through the wrapper, want the handshake and the line", read.Load())
	}
}
