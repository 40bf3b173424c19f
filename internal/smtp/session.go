package smtp

import (
	"context"
	"crypto/tls"
	"io"
	"net"
)

// Handler creates the policy object of each connection. Its methods are
// called from the connection's goroutine, so NewSession must be safe for
// concurrent use (one call per accepted connection, in parallel).
type Handler interface {
	// NewSession is called once per connection, after accept and before
	// the greeting. ctx is the connection's context: it is cancelled when
	// the connection ends or the server is closed, and the Session may
	// keep it for its own I/O (spooling, directory look-ups).
	//
	// A non-nil error refuses the connection: a *ReplyError is sent as is
	// (typically 554 5.7.1 or 421 4.3.2) and any other error sends
	// "421 4.3.2 Service not available" and is logged; then the
	// connection is closed without calling any Session method.
	NewSession(ctx context.Context, c ConnInfo) (Session, error)
}

// ConnInfo describes an accepted connection.
type ConnInfo struct {
	ID         uint64   // unique per Server, also used as the "conn" log key
	LocalAddr  net.Addr // the address the client connected to (which binding)
	RemoteAddr net.Addr
}

// Session is the policy of one SMTP connection: it decides what to offer
// and accepts or refuses each step. The server calls its methods one at a
// time, from the connection's goroutine, so an implementation needs no
// locking for its own state.
//
// Errors: a method that returns a *ReplyError sends that reply (a 421
// reply also closes the connection, as RFC 5321 3.8 describes). Any other
// error is logged in full and the client gets a generic temporary reply
// (451 4.3.0, or 454 4.7.0 for Auth and TLSConfig): internal details never
// reach the wire.
//
// The State argument is a snapshot: the server does not change it after
// the call, but it shares memory (Rcpts, TLS) with later snapshots, so do
// not modify it. Policy methods should be quick; Data may take as long as
// durable storage needs, bounded by the connection's context.
type Session interface {
	// Greeting returns the domain for the 220 greeting, HELO/EHLO replies
	// and closing replies (normally the receive connector's FQDN, SPEC
	// S1), and the text that follows it in the greeting. An empty domain
	// means Server.Hostname; an empty text means "ESMTP ready".
	Greeting() (domain, text string)

	// Capabilities decides what EHLO advertises to this client. It is
	// called for every HELO/EHLO (so again after STARTTLS, when the client
	// must say EHLO anew) and whenever a command needs the capabilities
	// before any EHLO. The server itself removes STARTTLS and
	// X-ANONYMOUSTLS once TLS is active, and AUTH before TLS unless
	// AuthWithoutTLS is set.
	Capabilities(st State) Capabilities

	// Hello vets the HELO/EHLO name, available as st.Hello (st.Extended
	// tells which verb). A nil error accepts it. An error refuses it and
	// leaves the client without a greeting.
	Hello(st State) error

	// TLSConfig returns the configuration for the handshake the client
	// has just asked for: STARTTLS (anonymous false) or X-ANONYMOUSTLS
	// (anonymous true). It is called at the moment of the request, so a
	// certificate that changed since the last session takes effect at the
	// next handshake (SPEC S7). A nil config or an error replies
	// 454 4.7.0 TLS not available and the session goes on in plain text.
	TLSConfig(st State, anonymous bool) (*tls.Config, error)

	// Auth checks credentials for mech "PLAIN" or "LOGIN". identity is
	// the authorization identity (empty when the client asked for none,
	// and always empty for LOGIN). Return ErrAuthFailed (535 5.7.8) for
	// wrong credentials. The server never logs the credentials.
	Auth(st State, mech, identity, username, password string) error

	// Mail starts a transaction with the reverse-path from ("" is the null
	// path <>). The address has been syntax-checked; source routes are
	// removed. opts.Size has been checked against the SIZE limit.
	Mail(st State, from string, opts MailOptions) error

	// Rcpt adds a recipient. to is a checked address or "postmaster"
	// (RFC 5321 4.5.1, in the case the client used). st.Rcpts holds the
	// recipients accepted so far.
	Rcpt(st State, to string, opts RcptOptions) error

	// Data receives the message, st.Rcpts being its accepted recipients.
	// r yields the content with dot-stuffing undone and CRLF line ends,
	// and returns io.EOF after the terminating "." line. r is only valid
	// during the call.
	//
	// Data must return only after the message is durably stored, and
	// must read r to io.EOF before returning nil. If r returns any other
	// error (ErrMessageTooLarge, ErrBareNewline, ErrDataLineTooLong, a
	// timeout or a lost connection), Data must discard what it stored and
	// return that error (or one wrapping it). The server does not rely on
	// it: whatever Data returns, a message whose reader failed, or that
	// Data did not read to the end, is never acknowledged with 250.
	//
	// queueID, when not empty, is shown to the client in the 250 reply
	// ("250 2.0.0 OK queued as ID") for tracing.
	Data(st State, r io.Reader) (queueID string, err error)

	// Reset ends the transaction Mail accepted: after DATA whatever its
	// outcome, on RSET, HELO/EHLO, and before Close when a transaction is
	// open. It is called exactly once per successful Mail.
	Reset(st State)

	// Close is called once when the connection ends, whatever the reason.
	Close(st State)
}

// TLSObserver may be implemented by a Session that wants to know how each
// handshake after STARTTLS or X-ANONYMOUSTLS ended (nil: TLS is up), for
// metrics. It is called from the connection's goroutine and must not
// block.
// st.TLS is the new connection's state when err is nil.
type TLSObserver interface {
	TLSDone(st State, anonymous bool, err error)
}

// State is what the server knows about a session when it calls a Session
// method.
type State struct {
	ConnInfo

	// Hello is the HELO/EHLO argument, "" before the first one and after
	// TLS starts. Extended is true for EHLO.
	Hello    string
	Extended bool

	// TLS is the state of the TLS connection, nil in plain text. It
	// includes PeerCertificates, for direct trust (SPEC X2) and domain
	// security (DS1). AnonymousTLS is true when the client started TLS
	// with X-ANONYMOUSTLS rather than STARTTLS.
	TLS          *tls.ConnectionState
	AnonymousTLS bool

	// AuthMechanism is "" until AUTH succeeds; then AuthUsername is the
	// authentication identity and AuthIdentity the authorization identity
	// the client asked for (often "").
	AuthMechanism string
	AuthUsername  string
	AuthIdentity  string

	// InTransaction is true between a successful MAIL and the end of the
	// transaction; MailFrom ("" for the null path) and Mail are the MAIL
	// command's, Rcpts the recipients accepted so far.
	InTransaction bool
	MailFrom      string
	Mail          MailOptions
	Rcpts         []string
}

// Capabilities is what a session offers in its EHLO reply. PIPELINING,
// 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8 and SIZE are always offered.
type Capabilities struct {
	// MaxSize is the SIZE limit in octets (RFC 1870), advertised in EHLO,
	// checked against MAIL's SIZE= (552 5.3.4) and enforced while the data
	// arrives. 0 means Server.MaxMessageBytes.
	MaxSize int64
	// StartTLS advertises STARTTLS (RFC 3207). Set it only when a
	// certificate exists for this session (SPEC S5).
	StartTLS bool
	// AnonymousTLS advertises X-ANONYMOUSTLS (SPEC S6, X2).
	AnonymousTLS bool
	// ServerAuth lists the X-EXPS mechanisms offered after X-ANONYMOUSTLS
	// to a Session that implements ServerAuthenticator (serverauth.go).
	ServerAuth []string
	// AuthMechanisms lists the SASL mechanisms to offer, among "PLAIN" and
	// "LOGIN" (others are ignored: the engine implements only those).
	// Empty: no AUTH.
	AuthMechanisms []string
	// AuthWithoutTLS allows AUTH in plain text. By default AUTH is neither
	// advertised nor accepted before TLS (538 5.7.11).
	AuthWithoutTLS bool
	// DSN advertises DSN (RFC 3461) and accepts its MAIL and RCPT
	// parameters; without it they are refused with 555 5.5.4.
	DSN bool
	// RequireTLS advertises REQUIRETLS (RFC 8689) in sessions under TLS,
	// and accepts MAIL's REQUIRETLS parameter there; in plain text it is
	// neither advertised nor accepted (530 5.7.10).
	RequireTLS bool
}

// MailOptions are the ESMTP parameters of MAIL FROM.
type MailOptions struct {
	Size     int64  // SIZE= (RFC 1870); 0 when absent
	Body     string // BODY= "7BIT" or "8BITMIME" (RFC 6152); "" when absent
	SMTPUTF8 bool   // SMTPUTF8 (RFC 6531)
	Ret      string // RET= "FULL" or "HDRS" (RFC 3461); "" when absent
	EnvID    string // ENVID= (RFC 3461), xtext-decoded
	Auth     string // AUTH= (RFC 4954 5), xtext-decoded; "<>" when unknown
	// RequireTLS is MAIL's REQUIRETLS (RFC 8689): the message may only be
	// relayed over TLS to a server authenticated by DANE or MTA-STS that
	// also supports REQUIRETLS.
	RequireTLS bool
}

// RcptOptions are the ESMTP parameters of RCPT TO (RFC 3461).
type RcptOptions struct {
	Notify    Notify // NOTIFY=; 0 when absent
	ORcptType string // ORCPT= address type, such as "rfc822"
	ORcpt     string // ORCPT= address, xtext-decoded
}

// Notify is the set of DSN conditions of RCPT's NOTIFY= parameter.
type Notify uint8

// Notify values. NotifyNever excludes the others.
const (
	NotifyNever Notify = 1 << iota
	NotifySuccess
	NotifyFailure
	NotifyDelay
)
