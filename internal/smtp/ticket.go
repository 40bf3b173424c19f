package smtp

import "net"

// The TLS 1.3 session ticket rides with the first reply (issue 19).
//
// With a client certificate requested (certrelay's connectors do, for
// direct trust and domain security), crypto/tls sends a TLS 1.3
// server's NewSessionTicket after it has read the client's second
// flight, in a write of its own at the end of Handshake — one more
// system call per session for every client that offers resumption
// (OpenSSL's, so Postfix's and most MTAs'; Go's only with a
// ClientSessionCache). Nothing waits for the ticket: an SMTP client
// speaks first after the handshake (EHLO) and reads the ticket when it
// reads the reply. So ticketConn keeps it and sends it in the same write
// as the next reply. crypto/tls has no way to send a server's ticket
// later (QUICConn.SendSessionTicket is QUIC's alone), hence the wrapper.
//
// What is held: during Handshake, a write after the first that begins
// with a protected TLS 1.3 record (content type application_data, 23).
// A TLS 1.3 server writes its whole flight, Finished included, in its
// first write after the ClientHello (or after a HelloRetryRequest, which
// is a plaintext handshake record, 22); after that only tickets and
// alerts. A TLS 1.2 server's second flight (ChangeCipherSpec, Finished)
// begins with record types 20 or 22 and goes at once: the client waits
// for it.

// recordApplicationData is TLS's application_data content type, the
// outer type of every TLS 1.3 record protected by the handshake keys.
const recordApplicationData = 23

// ticketConn is the connection under a session's tls.Conn; see above.
// It is used by the session's goroutine only.
type ticketConn struct {
	net.Conn
	handshaking bool   // Handshake is running
	writes      int    // writes made during this handshake
	held        []byte // records kept for the next write
}

func (t *ticketConn) Write(p []byte) (int, error) {
	if t.handshaking {
		t.writes++
		if t.writes > 1 && len(p) > 0 && p[0] == recordApplicationData {
			t.held = append(t.held, p...)
			return len(p), nil
		}
	}
	if len(t.held) == 0 {
		return t.Conn.Write(p)
	}
	held := len(t.held)
	t.held = append(t.held, p...)
	n, err := t.Conn.Write(t.held)
	t.held = nil
	return max(n-held, 0), err
}

// flush sends what is held, if anything.
func (t *ticketConn) flush() error {
	if len(t.held) == 0 {
		return nil
	}
	_, err := t.Conn.Write(t.held)
	t.held = nil
	return err
}
