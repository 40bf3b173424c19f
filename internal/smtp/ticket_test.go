package smtp

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"
)

// TestSessionTicket: after STARTTLS a client that offers resumption
// gets a TLS 1.3 session ticket at the end of the handshake, before it
// sends anything, so a probe that only shakes hands (openssl s_client
// -sess_out, testssl) sees resumption offered; the next connection
// resumes with it. TLS 1.2 resumes too. (A branch once held the ticket
// back to ride with the next reply, one write fewer per session; it was
// dropped because such a probe then saw no ticket, and the bench, whose
// clients offer no resumption, could not tell the difference.)
func TestSessionTicket(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint16
	}{
		{"ok/tls13-ticket-before-client-speaks", tls.VersionTLS13},
		{"ok/tls12-resumes", tls.VersionTLS12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(4)
			conf := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache, ServerName: "mx.example.test",
				MinVersion: tc.version, MaxVersion: tc.version}
			srv := newTestServer(tlsDiscardHandler{getPKI(t).serverConfig()})
			// session runs one STARTTLS session; a silent client shakes
			// hands, reads for a moment without sending, and hangs up.
			session := func(silent bool) bool {
				client, br, done := serveTCP(t, srv)
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
				if silent {
					// crypto/tls takes a ticket in while reading.
					tlc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
					if n, err := tlc.Read(make([]byte, 1)); n > 0 || err == nil {
						t.Fatalf("the server sent application data before EHLO: %d, %v", n, err)
					}
				} else {
					br.Reset(tlc)
					io.WriteString(tlc, "EHLO client.example.test\r\n")
					expect("250")
					io.WriteString(tlc, "QUIT\r\n")
					expect("221")
				}
				resumed := tlc.ConnectionState().DidResume
				client.Close()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("the session did not end")
				}
				return resumed
			}
			if session(tc.version == tls.VersionTLS13) {
				t.Fatal("the first session resumed")
			}
			if !session(false) {
				t.Error("the second session did not resume: no ticket reached the client")
			}
		})
	}
}
