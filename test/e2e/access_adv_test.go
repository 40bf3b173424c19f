package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestIMAPHandshakeFailuresLeaveOthersServed: on the implicit-TLS port
// (993) and after STARTTLS, clients that send nothing, plain text, half
// a ClientHello or offer only TLS 1.1 fail alone: while the silent ones
// still hold their connections, Python's imaplib logs in over both and
// selects INBOX.
func TestIMAPHandshakeFailuresLeaveOthersServed(t *testing.T) {
	e := newEnv(t)
	a := newAccessServer(t, e).start()
	a.deliver("before", 1)
	dial := func(addr string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(60 * time.Second))
		return c
	}
	starttls := func() net.Conn {
		t.Helper()
		c := dial(a.imap)
		br := bufio.NewReader(c)
		br.ReadString('\n')
		fmt.Fprintf(c, "a STARTTLS\r\n")
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
			t.Fatalf("STARTTLS: %q", l)
		}
		return c
	}
	ended := func(what string, c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("%s: the connection stayed open", what)
				}
				return
			}
			if strings.Contains(string(buf[:n]), "OK") {
				t.Errorf("%s: answered in plain text: %q", what, buf[:n])
			}
		}
	}
	// Silent clients on both ports, held open during the rest.
	for i := 0; i < 8; i++ {
		dial(a.imaps)
		starttls()
	}
	for _, addr := range []string{a.imaps, ""} {
		where := "993"
		get := func() net.Conn { return dial(a.imaps) }
		if addr == "" {
			where, get = "STARTTLS", starttls
		}
		c := get()
		fmt.Fprintf(c, "b LOGIN alice@contoso.test secret\r\n")
		ended(where+": plain text", c)
		c = get()
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
		c.(*net.TCPConn).CloseWrite()
		ended(where+": half a ClientHello", c)
		c = get()
		tc := tls.Client(c, &tls.Config{ServerName: "mail.contoso.test", InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err := tc.Handshake(); err == nil {
			t.Errorf("%s: a TLS 1.1 handshake succeeded", where)
		}
		ended(where+": TLS 1.1", c)
	}
	out := a.py(`
for name, m in (("993", IMAPS(HOST, IMAPS_PORT, ssl_context=ctx)), ("starttls", imaplib.IMAP4(HOST, IMAP))):
    if name == "starttls":
        m.host = NAME; m.starttls(ssl_context=ctx)
    m.login(USER, PASSWORD)
    typ, n = m.select("INBOX")
    check(typ == "OK", name + " SELECT")
    print(name, "selected", n[0].decode(), flush=True)
    m.logout()
`)
	for _, want := range []string{"993 selected 1", "starttls selected 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("with failed and silent handshakes around: %q, want %q", out, want)
		}
	}
}
