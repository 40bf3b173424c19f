package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/servercred"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
	"certrelay/internal/store"
	"certrelay/internal/trace"
)

// Recipient is one accepted recipient of a message.
type Recipient struct {
	Address string
	Local   bool   // delivered to a mailbox of this server; false: relayed
	Server  string // the home server of a mailbox on another server of the organisation
	Notify  string // DSN NOTIFY= (RFC 3461), "" when absent
	ORCPT   string // DSN ORCPT= as "type;address"
}

// Envelope is what the transport hands to the spool with each message.
type Envelope struct {
	ID         string
	From       string // "" for the null reverse-path
	Recipients []Recipient
	Helo       string
	ClientAddr string
	Connector  string
	AuthUser   string
	TLS        string // negotiated protocol and cipher, "" in plain text
	Received   time.Time
	Ret        string // DSN RET= (FULL or HDRS)
	EnvID      string // DSN ENVID=
	BodyType   string // BODY= (7BIT or 8BITMIME)
	SMTPUTF8   bool
	RequireTLS bool // MAIL's REQUIRETLS (RFC 8689)
}

// Spool stores accepted messages durably. Enqueue must return only once
// the message survives a crash: the transport answers 250 right after.
type Spool interface {
	Enqueue(ctx context.Context, env Envelope, body []byte) (id string, err error)
}

// SpaceChecker is implemented by spools that can tell, before a message
// arrives, that they have no room for it. The transport then answers MAIL
// with 452 4.3.1 (as Postfix does below its free-space threshold) rather
// than filling the disk and failing after DATA.
type SpaceChecker interface {
	CheckSpace(size int64) error
}

// StorageError marks Enqueue errors caused by the storage (disk full,
// I/O): the client gets 452 4.3.1 instead of 451.
type StorageError interface{ StorageFull() bool }

// Receiver runs the receive connectors of one server on the serving
// layer: it gives the layer its bindings (one listener each, served by
// the SMTP engine) and asks it for the STARTTLS certificate at each
// handshake. Safe for concurrent use.
type Receiver struct {
	Spool  Spool
	Log    *slog.Logger
	Now    func() time.Time
	NewID  func() string // message IDs for Received headers and the queue
	Events EventSink
	// Serving is the TLS serving layer the connectors' certificates and
	// listeners come from; nil: Start makes one of its own, which serves
	// no certificate (tests).
	Serving *serving.Layer

	// MaxConnections bounds the SMTP sessions of the process over all
	// connectors (the open-file limit allows no more); 0: the engine's
	// default. FileLimit is that open-file limit, for events.
	MaxConnections int
	FileLimit      uint64
	// BindRetry and BindRetryMax space the retries of a binding that
	// cannot be opened; defaults serving.DefaultBindRetry and
	// serving.DefaultBindRetryMax.
	BindRetry, BindRetryMax time.Duration
	// Handshake, when set, is told how each STARTTLS (or X-ANONYMOUSTLS) handshake on a
	// connector ended (nil: TLS is up), for metrics; it must not block.
	Handshake func(connector string, err error)
	// Credential is this server's organisation credential (servercred),
	// for hubs that cannot authenticate by certificate; nil: none.
	Credential *servercred.Key
	// Trace, when set, receives each session's decisions (SPEC D2):
	// selections, TLS negotiated, direct-trust checks.
	Trace *trace.Hub
	// Peers validates partners' client certificates for domain security
	// (DS1); nil: mail from a domain-secured domain is refused.
	Peers PeerVerifier

	state atomic.Pointer[State]
	srv   *smtp.Server
	ls    *serving.Listeners
	evq   eventQueue

	mu     sync.Mutex
	done   chan struct{} // closed by Shutdown
	closed bool
}

// EventSink receives the events the transport raises; key throttles.
type EventSink interface {
	Raise(ctx context.Context, id int, key string, params ...string) (bool, error)
}

// Start prepares the SMTP engine. Call Update to open listeners.
func (r *Receiver) Start() {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Log == nil {
		r.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var sink serving.EventSink
	if r.Events != nil {
		sink = r.Events
	}
	if r.Serving == nil {
		r.Serving = serving.New(serving.Options{Log: r.Log, Now: r.Now, Events: sink})
	}
	r.done = make(chan struct{})
	r.srv = &smtp.Server{Handler: r, Logger: r.Log, MaxConnections: r.MaxConnections,
		Limits: r.limits, LimitReached: r.limitReached}
	r.evq.start(r.Events, r.Log, r.Now, r.done)
	r.ls = r.Serving.Listeners(serving.ListenOptions{Kind: "receive connector", LogKey: "connector",
		FailedEvent: 16027, RestoredEvent: 16028, Retry: r.BindRetry, RetryMax: r.BindRetryMax, Events: sink,
		// The SMTP engine's inactivity timeouts close a silent peer.
		KeepAlive: -1})
}

// State returns the current snapshot.
func (r *Receiver) State() *State { return r.state.Load() }

// Update installs a new snapshot of the directory: new sessions use it
// at once; listeners are opened and closed to match the enabled
// connectors' bindings. It returns the bindings that could not be
// opened: each gets event 16027 and is retried with a back-off (16028
// when it opens). Then it checks the connectors' certificates
// (CheckCertificates).
func (r *Receiver) Update(ctx context.Context, st *State) []error {
	r.state.Store(st)
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil
	}
	owner := map[string]string{} // binding → connector; the last connector naming a binding has it
	for _, c := range st.Connectors {
		if !c.Enabled {
			continue
		}
		for _, b := range c.Bindings {
			owner[b] = c.Name
		}
	}
	want := make([]serving.Binding, 0, len(owner))
	for b, name := range owner {
		want = append(want, serving.Binding{Addr: b, Owner: name, Serve: r.serve})
	}
	errs := r.ls.Set(ctx, want)
	r.CheckCertificates(ctx)
	return errs
}

// serve runs the SMTP engine on one listener.
func (r *Receiver) serve(ln net.Listener) error {
	if err := r.srv.Serve(ln); !errors.Is(err, smtp.ErrServerClosed) {
		return err
	}
	return nil
}

// Addr returns the address a binding actually listens on (useful with
// port 0 in tests), or "".
func (r *Receiver) Addr(binding string) string { return r.ls.Addr(binding) }

// Listening returns the bindings that have a listener, sorted.
func (r *Receiver) Listening() []string { return r.ls.Listening() }

// Shutdown stops listening and waits for sessions to end until ctx ends.
func (r *Receiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
	r.mu.Unlock()
	r.ls.Close()
	return r.srv.Shutdown(ctx)
}

// CheckCertificates raises the STARTTLS events of each TLS connector of
// the current snapshot, against the serving layer's published
// certificates: 12014 when no certificate serves it (STARTTLS is not
// advertised), 12016 when the one that does has expired (still used).
// Update calls it; call it after publishing new certificates.
func (r *Receiver) CheckCertificates(ctx context.Context) {
	st := r.state.Load()
	if r.Events == nil || st == nil {
		return
	}
	now := r.Now()
	for i := range st.Connectors {
		c := &st.Connectors[i]
		if !c.Enabled || !has(c.AuthMechanism, "Tls") {
			continue
		}
		d := r.Serving.Select(r.request(st, c))
		fqdn := st.fqdn(c)
		switch {
		case d.Winner == nil:
			_, _ = r.Events.Raise(ctx, 12014, fqdn, fqdn, c.Name, fqdn, d.Why)
		case d.Expired(now):
			w := d.Winner
			_, _ = r.Events.Raise(ctx, 12016, fqdn, fqdn, w.Thumbprint, w.NotAfter.UTC().Format(time.RFC3339))
		}
	}
}

func (r *Receiver) request(st *State, c *directory.ReceiveConnector) selection.Request {
	return selection.ForConnector(c.Fqdn, st.Server.Fqdn, c.TlsCertificateName, c.TlsWildcardOneLabel, store.SMTP)
}

// NewSession implements smtp.Handler.
func (r *Receiver) NewSession(ctx context.Context, ci smtp.ConnInfo) (smtp.Session, error) {
	st := r.state.Load()
	c := st.connectorFor(ci.LocalAddr.String())
	if c == nil {
		return nil, smtp.Reply(421, "4.3.2", "Service not available")
	}
	return &session{r: r, ctx: ctx, st: st, c: c, fqdn: st.fqdn(c)}, nil
}

// session is one SMTP connection's policy.
type session struct {
	r    *Receiver
	ctx  context.Context
	st   *State // the snapshot the connection started with
	c    *directory.ReceiveConnector
	fqdn string

	rcpts []Recipient
	local map[string]bool // mailboxes in rcpts

	// X-ANONYMOUSTLS (anontls.go): the internal certificate presented,
	// direct trust's outcome, and the organisation server the client is
	// (nil until authenticated) and how it was authenticated.
	internal *serving.Internal
	served   string // the STARTTLS certificate's thumbprint, for 16070
	trust    Trust
	peer     *OrgServer
	peerAuth string

	// Domain security (domainsecure.go): the domain the current
	// transaction's sender was authenticated for ("" when none) and how;
	// each domain's verdict, checked once per session.
	secured, securedWhy string
	verified            map[string]verdict
}

func (s *session) Greeting() (string, string) { return s.fqdn, "certrelay ESMTP ready" }

func (s *session) Capabilities(st smtp.State) smtp.Capabilities {
	caps := smtp.Capabilities{MaxSize: s.c.MaxMessageSize, DSN: true, RequireTLS: true}
	if has(s.c.AuthMechanism, "Tls") && st.TLS == nil {
		// The current snapshot, not the connection's: a certificate made
		// since the connection opened is offered at once (S7).
		cur := s.r.state.Load()
		caps.StartTLS = s.r.Serving.Select(s.r.request(cur, s.c)).Winner != nil
	}
	if has(s.c.AuthMechanism, "BasicAuth") || has(s.c.AuthMechanism, "BasicAuthRequireTLS") {
		caps.AuthMechanisms = []string{"PLAIN", "LOGIN"}
	}
	s.orgCapabilities(st, s.r.state.Load(), &caps)
	return caps
}

func (s *session) Hello(st smtp.State) error {
	if st.AnonymousTLS && st.TLS != nil && s.peer == nil {
		return s.checkPeer(st)
	}
	return nil
}

// TLSConfig picks the certificate at the moment of the handshake (S7):
// the snapshot current now, not the one the connection started with.
func (s *session) TLSConfig(st smtp.State, anonymous bool) (*tls.Config, error) {
	if anonymous {
		if in := s.anonymousTLSConfig(); in != nil {
			return in.Server, nil
		}
		return nil, nil
	}
	cfg, d := s.r.Serving.Config(s.r.request(s.r.state.Load(), s.c))
	selected(s.ctx, s.r.Events, s.r.Trace, d, s.c.Name)
	if cfg == nil {
		return nil, nil
	}
	if d != nil && d.Winner != nil {
		s.served = d.Winner.Thumbprint
	}
	s.r.raiseLastResort(d, s.fqdn, s.c.Name)
	return cfg, nil
}

// TLSDone implements smtp.TLSObserver: the handshake's outcome, for
// metrics.
func (s *session) TLSDone(st smtp.State, anonymous bool, err error) {
	if s.r.Handshake != nil {
		s.r.Handshake(s.c.Name, err)
	}
	served := s.served
	if anonymous && s.internal != nil {
		served = s.internal.Thumbprint
	}
	negotiated(s.ctx, s.r.Events, s.r.Trace, s.c.Name, st.RemoteAddr, st.TLS, served, err)
}

func (s *session) Auth(st smtp.State, mech, identity, username, password string) error {
	if identity != "" && !strings.EqualFold(identity, username) {
		return smtp.Reply(535, "5.7.8", "Authorization identity not allowed")
	}
	m, ok := s.r.state.Load().Mailboxes[strings.ToLower(username)]
	if !ok || m.PasswordHash == "" {
		// Compare anyway, so timing does not tell which users exist.
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return smtp.ErrAuthFailed
	}
	if bcrypt.CompareHashAndPassword([]byte(m.PasswordHash), []byte(password)) != nil {
		return smtp.ErrAuthFailed
	}
	return nil
}

// dummyHash is made at the first failed login, not when the package is
// loaded: a bcrypt hash costs 60 ms, which every certrelay command would
// otherwise pay at start.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("certrelay timing equaliser"), bcrypt.DefaultCost)
	return h
})

func (s *session) Mail(st smtp.State, from string, opts smtp.MailOptions) error {
	if s.c.RequireTLS && st.TLS == nil {
		return smtp.ErrTLSRequired
	}
	if st.AnonymousTLS && s.peer == nil {
		return s.trustFailed(st, "")
	}
	if st.AuthMechanism == "" && s.peer == nil && !has(s.c.PermissionGroups, "AnonymousUsers") {
		return smtp.Reply(530, "5.7.1", "Client was not authenticated")
	}
	if err := s.checkDomainSecureSender(st, from); err != nil {
		return err
	}
	if sc, ok := s.r.Spool.(SpaceChecker); ok {
		if err := sc.CheckSpace(opts.Size); err != nil {
			return &smtp.ReplyError{Code: 452, Enhanced: "4.3.1", Message: "Insufficient system storage", Err: err}
		}
	}
	s.rcpts = s.rcpts[:0]
	clear(s.local)
	return nil
}

func (s *session) Rcpt(st smtp.State, to string, opts smtp.RcptOptions) error {
	cur := s.r.state.Load()
	addr := strings.ToLower(to)
	if addr == "postmaster" { // RFC 5321 4.5.1: <postmaster> without a domain
		if pm := cur.postmaster(); pm != "" {
			if s.hasLocal(pm) {
				return smtp.ErrDuplicateRecipient
			}
			s.rcpts = append(s.rcpts, Recipient{Address: pm, Local: true})
			return nil
		}
		return smtp.ErrMailboxUnavailable
	}
	_, domain, _ := strings.Cut(addr, "@")
	if cur.Domains[domain] {
		m, ok := cur.Mailboxes[addr]
		if !ok {
			return smtp.Replyf(550, "5.1.1", "<%s>: no such mailbox here", addr)
		}
		if s.hasLocal(addr) { // Alice@ and alice@ are one mailbox: one copy
			return smtp.ErrDuplicateRecipient
		}
		r := Recipient{Address: addr, Local: true, Notify: notifyText(opts.Notify), ORCPT: orcpt(opts)}
		if m.Server != "" && !strings.EqualFold(m.Server, cur.Server.Name) {
			// Homed on another server of the organisation: relayed there.
			r.Local, r.Server = false, m.Server
		}
		s.rcpts = append(s.rcpts, r)
		return nil
	}
	if st.AuthMechanism == "" && s.peer == nil {
		return smtp.Reply(550, "5.7.1", "Unable to relay: authenticate to send mail outside this organisation")
	}
	s.rcpts = append(s.rcpts, Recipient{Address: to, Local: false, Notify: notifyText(opts.Notify), ORCPT: orcpt(opts)})
	return nil
}

// hasLocal reports whether the transaction already delivers to mailbox
// addr (lower-case), and notes that it will.
func (s *session) hasLocal(addr string) bool {
	if s.local[addr] {
		return true
	}
	if s.local == nil {
		s.local = map[string]bool{}
	}
	s.local[addr] = true
	return false
}

func notifyText(n smtp.Notify) string {
	if n == 0 {
		return ""
	}
	if n&smtp.NotifyNever != 0 {
		return "NEVER"
	}
	var parts []string
	for _, x := range []struct {
		bit  smtp.Notify
		name string
	}{{smtp.NotifySuccess, "SUCCESS"}, {smtp.NotifyFailure, "FAILURE"}, {smtp.NotifyDelay, "DELAY"}} {
		if n&x.bit != 0 {
			parts = append(parts, x.name)
		}
	}
	return strings.Join(parts, ",")
}

func orcpt(o smtp.RcptOptions) string {
	if o.ORcpt == "" {
		return ""
	}
	return o.ORcptType + ";" + o.ORcpt
}

func (s *session) Data(st smtp.State, r io.Reader) (string, error) {
	id := s.r.newID()
	now := s.r.Now()
	var buf bytes.Buffer
	buf.Grow(4096 + 512)
	trace := s.anonymousTrace(st)
	if s.secured != "" {
		trace = "domain-secured " + s.secured + ": " + s.securedWhy
	}
	writeReceived(&buf, st, s.fqdn, id, now, trace)
	start := buf.Len()
	if _, err := buf.ReadFrom(r); err != nil {
		return "", err
	}
	if receivedFields(buf.Bytes()[start:]) >= MaxReceived {
		s.r.Log.Warn("routing loop: message refused", "from", sanitize(st.MailFrom), "helo", sanitize(st.Hello), "received", MaxReceived)
		return "", smtp.Reply(554, "5.4.6", fmt.Sprintf("Routing loop detected: the message has passed %d hops", MaxReceived))
	}
	env := Envelope{
		ID: id, From: st.MailFrom, Recipients: append([]Recipient(nil), s.rcpts...),
		Helo: st.Hello, ClientAddr: st.RemoteAddr.String(), Connector: s.c.Name,
		AuthUser: st.AuthUsername, Received: now, TLS: tlsSummary(st.TLS),
		Ret: st.Mail.Ret, EnvID: st.Mail.EnvID, BodyType: st.Mail.Body, SMTPUTF8: st.Mail.SMTPUTF8, RequireTLS: st.Mail.RequireTLS,
	}
	qid, err := s.r.Spool.Enqueue(s.ctx, env, buf.Bytes())
	if err != nil {
		var se StorageError
		if errors.As(err, &se) && se.StorageFull() {
			return "", &smtp.ReplyError{Code: 452, Enhanced: "4.3.1", Message: "Insufficient system storage", Err: err}
		}
		return "", &smtp.ReplyError{Code: 451, Enhanced: "4.3.0", Message: "Temporary local error, try again later", Err: err}
	}
	return qid, nil
}

func (s *session) Reset(st smtp.State) {
	s.rcpts = s.rcpts[:0]
	clear(s.local)
	s.secured, s.securedWhy = "", ""
}
func (s *session) Close(st smtp.State) {}

func (r *Receiver) newID() string {
	if r.NewID != nil {
		return r.NewID()
	}
	return fmt.Sprintf("%X", r.Now().UnixNano())
}

// writeReceived writes the trace header of RFC 5321 4.4, with the
// protocol of RFC 3848 and the TLS parameters (DS2).
func writeReceived(b *bytes.Buffer, st smtp.State, by, id string, now time.Time, org string) {
	proto := "SMTP"
	if st.Extended {
		proto = "ESMTP"
		if st.TLS != nil {
			proto += "S"
		}
		if st.AuthMechanism != "" {
			proto += "A"
		}
	}
	host := "unknown"
	if tcp, ok := st.RemoteAddr.(*net.TCPAddr); ok {
		host = tcp.IP.String()
	}
	fmt.Fprintf(b, "Received: from %s ([%s])\r\n\tby %s (certrelay) with %s", sanitize(st.Hello), host, by, proto)
	if st.TLS != nil {
		if st.AnonymousTLS {
			fmt.Fprintf(b, "\r\n\t(X-AnonymousTLS %s)", tlsSummary(st.TLS))
		} else {
			fmt.Fprintf(b, "\r\n\t(%s)", tlsSummary(st.TLS))
		}
		if org != "" {
			fmt.Fprintf(b, "\r\n\t(%s)", org)
		}
	}
	fmt.Fprintf(b, "\r\n\tid %s", id)
	if len(st.Rcpts) == 1 {
		fmt.Fprintf(b, "\r\n\tfor <%s>", sanitize(st.Rcpts[0]))
	}
	fmt.Fprintf(b, "; %s\r\n", now.Format(time.RFC1123Z))
}

func tlsSummary(cs *tls.ConnectionState) string {
	if cs == nil {
		return ""
	}
	return fmt.Sprintf("version=%s cipher=%s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
}

// sanitize keeps client-supplied text in a header safe.
func sanitize(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == ';' || r == '(' || r == ')' {
			return '_'
		}
		return r
	}, s)
}
