package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"
)

// TestTicketWithFirstReply: a TLS 1.3 session ticket (sent by crypto/tls
// after the client's second flight when a client certificate is
// requested) leaves in the same write as the reply to the EHLO after
// STARTTLS, not in a write of its own (issue 19), and a second
// connection resumes with it. TLS 1.2's second flight, which its client
// waits for, is not held: the session completes and resumes too.
func TestTicketWithFirstReply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint16
		// writes: greeting, EHLO, 220, the server's flight(s), EHLO
		// after TLS, 221.
		writes int32
	}{
		{"ok/tls13-ticket-with-ehlo-reply", tls.VersionTLS13, 6},
		{"ok/tls12-second-flight-at-once", tls.VersionTLS12, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(4)
			conf := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache, ServerName: "mx.example.test",
				MinVersion: tc.version, MaxVersion: tc.version}
			srv := newTestServer(tlsDiscardHandler{getPKI(t).serverConfig()})
			session := func() (int32, bool) {
				client, server := tcpPair(t)
				counted := &countingConn{Conn: server}
				done := make(chan struct{})
				go func() {
					srv.ServeConn(context.Background(), counted)
					close(done)
				}()
				client.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(client)
				expect := func(code string) {
					t.Helper()
					for {
						l, err := br.ReadString('\n')
						if err != nil || !strings.HasPrefix(l, code) {
							t.Fatalf("reply %q, %v; want %s", l, err, code)
						}
						if l[3] == ' ' {
							return
						}
					}
				}
				expect("220")
				io.WriteString(client, "EHLO client.example.test\r\n")
				expect("250")
				io.WriteString(client, "STARTTLS\r\n")
				expect("220")
				tlc := tls.Client(client, conf)
				if err := tlc.Handshake(); err != nil {
					t.Fatal(err)
				}
				br.Reset(tlc)
				io.WriteString(tlc, "EHLO client.example.test\r\n")
				expect("250")
				io.WriteString(tlc, "QUIT\r\n")
				expect("221")
				resumed := tlc.ConnectionState().DidResume
				tlc.Close()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("the session did not end")
				}
				return counted.writes.Load(), resumed
			}
			writes, resumed := session()
			if resumed {
				t.Fatal("the first session resumed")
			}
			if writes != tc.writes {
				t.Errorf("the server wrote %d times, want %d", writes, tc.writes)
			}
			if _, resumed := session(); !resumed {
				t.Error("the second session did not resume: no ticket reached the client")
			}
		})
	}
}
