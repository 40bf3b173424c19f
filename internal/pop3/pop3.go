// Package pop3 is certrelay's POP3 server engine: RFC 1939 (USER, PASS,
// STAT, LIST, UIDL, TOP, RETR, DELE, RSET, NOOP, QUIT, with deletions
// made only when QUIT ends a session in the TRANSACTION state), RFC 2449
// (CAPA, RESP-CODES, PIPELINING), RFC 3206 (the SYS and AUTH response
// codes), RFC 2595 (STLS) and RFC 5034 (AUTH PLAIN, RFC 4616).
//
// It is our own: no Go POP3 server library can be fetched by this
// project (the module proxy refuses popgun and the go-pop3 variants), and
// the protocol is small. The engine knows no certificates and no
// mailboxes: STLS goes through Config.StartTLS (the serving layer), logins
// through Config.Login, which returns the Maildrop a session reads.
//
// Limits (SPEC P1): a command line longer than Config.MaxLine is refused
// and the rest of it discarded, never buffered; every read has a deadline
// (Config.PreAuthTimeout before login, Config.AuthTimeout after — RFC 1939
// asks for at least 10 minutes — and Config.SessionTimeout for the whole
// session); a session that sends Config.MaxErrors bad commands is closed.
// Each limit met is reported through Config.LimitReached. Connections are
// counted by the caller, which owns the listeners.
package pop3

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Msg is one message of a maildrop, as the session started.
type Msg struct {
	Size int64  // octets, as RETR sends them
	UID  string // the unique-id UIDL gives (RFC 1939 section 7: 1 to 70 characters 0x21–0x7E)
}

// Maildrop is a mailbox opened by a login, locked for the session.
type Maildrop interface {
	// Messages returns the maildrop's messages when the session started;
	// the list does not change during the session.
	Messages() []Msg
	// Open returns the content of message i (0-based) with CRLF line
	// endings.
	Open(i int) (io.ReadCloser, error)
	// Commit deletes the messages at these indices: called once, when QUIT
	// ends the TRANSACTION state with messages marked.
	Commit(deleted []int) error
	// Close releases the maildrop (its lock); called once, at the end.
	Close()
}

// Errors Config.Login returns, each answered with its response code.
var (
	ErrAuthFailed  = errors.New("authentication failed")                     // -ERR [AUTH]
	ErrInUse       = errors.New("the maildrop is in use by another session") // -ERR [IN-USE]
	ErrRateLimited = errors.New("too many failed logins from this address")  // -ERR [SYS/TEMP]
)

// Limit names a limit a client met.
type Limit string

// The limits a session enforces.
const (
	LimitLine      Limit = "MaxCommandSize"
	LimitPreAuth   Limit = "PreAuthenticatedConnectionTimeout"
	LimitAuth      Limit = "AuthenticatedConnectionTimeout"
	LimitSession   Limit = "ConnectionTimeout"
	LimitErrors    Limit = "MaxErrors"
	LimitPlainText Limit = "LoginType" // a login attempted before TLS where only TLS logins are allowed
)

// Config configures sessions. Zero values take the defaults stated.
type Config struct {
	Hostname string // in the greeting
	// StartTLS upgrades the connection after "+OK Begin TLS"; nil: STLS is
	// not offered (no certificate). It returns the TLS connection.
	StartTLS func(ctx context.Context, c net.Conn) (net.Conn, error)
	// PlainTextLogin allows USER/PASS and AUTH without TLS (LoginType
	// PlainTextLogin); false: only over TLS (SecureLogin, the default).
	PlainTextLogin bool
	// Login checks a user's password and opens their maildrop; it returns
	// one of the errors above (others are answered as a temporary failure).
	Login func(ctx context.Context, user, password string, remote net.Addr, tls bool) (Maildrop, error)
	// MaxLine bounds a command line, CRLF included; default 512 (RFC 2449
	// asks for 255 at least).
	MaxLine int
	// PreAuthTimeout, AuthTimeout: the wait for a command before and after
	// login; defaults 1 and 30 minutes. SessionTimeout: the whole session;
	// default 1 hour.
	PreAuthTimeout, AuthTimeout, SessionTimeout time.Duration
	// MaxErrors bad commands end the session; default 10.
	MaxErrors int
	// LimitReached is told of each limit met (for events); may be nil.
	LimitReached func(l Limit, remote net.Addr)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.MaxLine <= 0 {
		c.MaxLine = 512
	}
	if c.PreAuthTimeout <= 0 {
		c.PreAuthTimeout = time.Minute
	}
	if c.AuthTimeout <= 0 {
		c.AuthTimeout = 30 * time.Minute
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = time.Hour
	}
	if c.MaxErrors <= 0 {
		c.MaxErrors = 10
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
}

var errLineTooLong = errors.New("line too long")

// session is one POP3 conversation.
type session struct {
	cfg   Config
	nc    net.Conn // what deadlines are set on (the TLS connection after STLS)
	br    *bufio.Reader
	bw    *bufio.Writer
	tls   bool
	user  string // given by USER
	drop  Maildrop
	msgs  []Msg
	del   []bool
	ndel  int
	errs  int
	end   time.Time
	quit  bool
	limit func(Limit)
}

// Serve runs one session on c until it ends, and closes c. tls says
// whether c is already TLS (implicit TLS, port 995 style).
func Serve(ctx context.Context, c net.Conn, cfg Config, tls bool) {
	cfg.defaults()
	s := &session{cfg: cfg, nc: c, tls: tls, br: bufio.NewReaderSize(c, 1024), bw: bufio.NewWriterSize(c, 4096)}
	s.end = cfg.Now().Add(cfg.SessionTimeout)
	s.limit = func(l Limit) {
		if cfg.LimitReached != nil {
			cfg.LimitReached(l, c.RemoteAddr())
		}
	}
	defer func() {
		if s.drop != nil {
			s.drop.Close()
		}
		s.nc.Close()
	}()
	s.ok(cfg.Hostname + " POP3 server ready (certrelay)")
	for !s.quit {
		if err := s.bw.Flush(); err != nil {
			return
		}
		line, err := s.readLine()
		if errors.Is(err, errLineTooLong) {
			s.limit(LimitLine)
			s.err(fmt.Sprintf("command line too long: at most %d bytes", s.cfg.MaxLine))
			if s.countError() {
				return
			}
			continue
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.timeout()
			}
			return
		}
		s.command(ctx, line)
		if s.br.Buffered() == 0 || s.quit {
			if err := s.bw.Flush(); err != nil {
				return
			}
		}
	}
	s.bw.Flush()
}

// timeout says which limit ended the session.
func (s *session) timeout() {
	switch {
	case !s.cfg.Now().Before(s.end):
		s.limit(LimitSession)
		s.err("[SYS/TEMP] session time limit reached, closing")
	case s.drop == nil:
		s.limit(LimitPreAuth)
		s.err("[SYS/TEMP] timeout waiting for a command, closing")
	default:
		s.limit(LimitAuth)
		s.err("[SYS/TEMP] timeout waiting for a command, closing")
	}
	s.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	s.bw.Flush()
}

// readLine reads one line, without CRLF, within the time left; a line
// longer than MaxLine is discarded to its end and reported.
func (s *session) readLine() (string, error) {
	wait := s.cfg.PreAuthTimeout
	if s.drop != nil {
		wait = s.cfg.AuthTimeout
	}
	dl := s.cfg.Now().Add(wait)
	if s.end.Before(dl) {
		dl = s.end
	}
	s.nc.SetReadDeadline(dl)
	var buf []byte
	long := false
	for {
		chunk, err := s.br.ReadSlice('\n')
		if !long {
			buf = append(buf, chunk...)
			if len(buf) > s.cfg.MaxLine {
				long, buf = true, nil
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	if long {
		return "", errLineTooLong
	}
	return strings.TrimRight(string(buf), "\r\n"), nil
}

func (s *session) ok(text string)  { s.bw.WriteString("+OK " + text + "\r\n") }
func (s *session) err(text string) { s.bw.WriteString("-ERR " + text + "\r\n") }

// countError counts a bad command; true when the session must end.
func (s *session) countError() bool {
	s.errs++
	if s.errs >= s.cfg.MaxErrors {
		s.limit(LimitErrors)
		s.err("[SYS/PERM] too many bad commands, closing")
		s.quit = true
		return true
	}
	return false
}

func (s *session) bad(text string) {
	s.err(text)
	s.countError()
}

func (s *session) command(ctx context.Context, line string) {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	if s.drop == nil {
		s.authorization(ctx, verb, arg)
		return
	}
	s.transaction(verb, arg)
}

// canLogin reports whether a password may be sent now.
func (s *session) canLogin() bool { return s.tls || s.cfg.PlainTextLogin }

func (s *session) authorization(ctx context.Context, verb, arg string) {
	switch verb {
	case "CAPA":
		s.capa()
	case "STLS":
		s.stls(ctx)
	case "USER":
		if !s.canLogin() {
			s.refusePlain()
			return
		}
		if arg == "" || len(arg) > 255 {
			s.bad("USER needs a user name")
			return
		}
		s.user = arg
		s.ok("send the password with PASS")
	case "PASS":
		if !s.canLogin() {
			s.refusePlain()
			return
		}
		if s.user == "" {
			s.bad("send USER first")
			return
		}
		user := s.user
		s.user = ""
		s.login(ctx, user, arg)
	case "AUTH":
		s.auth(ctx, arg)
	case "QUIT":
		s.ok("bye")
		s.quit = true
	case "APOP":
		s.bad("APOP is not offered: log in with USER and PASS, or AUTH PLAIN, over TLS")
	case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP":
		s.bad("log in first")
	default:
		s.bad("unknown command")
	}
}

func (s *session) refusePlain() {
	s.limit(LimitPlainText)
	if s.cfg.StartTLS != nil {
		s.bad("[AUTH] this server takes passwords only over TLS: send STLS first")
	} else {
		s.bad("[AUTH] this server takes passwords only over TLS, and TLS is not available on this port now: connect to its TLS port")
	}
}

func (s *session) capa() {
	s.ok("capability list follows")
	lines := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if s.drop == nil {
		if !s.tls && s.cfg.StartTLS != nil {
			lines = append(lines, "STLS")
		}
		if s.canLogin() {
			lines = append(lines, "USER", "SASL PLAIN")
		}
	}
	lines = append(lines, "IMPLEMENTATION certrelay", ".")
	for _, l := range lines {
		s.bw.WriteString(l + "\r\n")
	}
}

func (s *session) stls(ctx context.Context) {
	switch {
	case s.tls:
		s.bad("TLS is already in use")
		return
	case s.cfg.StartTLS == nil:
		s.bad("[SYS/TEMP] TLS is not available now")
		return
	}
	s.ok("Begin TLS negotiation")
	if err := s.bw.Flush(); err != nil {
		s.quit = true
		return
	}
	s.nc.SetDeadline(time.Now().Add(s.cfg.PreAuthTimeout))
	tc, err := s.cfg.StartTLS(ctx, s.nc)
	if err != nil {
		s.quit = true
		return
	}
	// Commands pipelined after STLS in plain text are discarded (RFC 2595
	// section 4: an attacker may have injected them).
	s.nc, s.tls, s.user = tc, true, ""
	s.br.Reset(tc)
	s.bw.Reset(tc)
}

func (s *session) auth(ctx context.Context, arg string) {
	mech, ir, hasIR := strings.Cut(arg, " ")
	switch {
	case arg == "":
		// RFC 5034 section 4: AUTH alone lists the mechanisms.
		s.ok("methods follow")
		if s.canLogin() {
			s.bw.WriteString("PLAIN\r\n")
		}
		s.bw.WriteString(".\r\n")
		return
	case !strings.EqualFold(mech, "PLAIN"):
		s.bad("unknown authentication mechanism: use PLAIN")
		return
	case !s.canLogin():
		s.refusePlain()
		return
	}
	if !hasIR {
		s.bw.WriteString("+ \r\n")
		s.bw.Flush()
		line, err := s.readLine()
		if err != nil {
			s.quit = true
			return
		}
		ir = line
	}
	if ir == "*" {
		s.bad("authentication cancelled")
		return
	}
	user, pass, err := DecodePlain(ir)
	if err != nil {
		s.bad("[AUTH] " + err.Error())
		return
	}
	s.login(ctx, user, pass)
}

// DecodePlain reads a SASL PLAIN response (RFC 4616): base64 of
// authzid NUL authcid NUL password; an authorization identity other than
// the user's own is refused.
func DecodePlain(b64 string) (user, password string, err error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return "", "", errors.New("the PLAIN response is not base64")
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return "", "", errors.New("the PLAIN response must be authzid NUL user NUL password")
	}
	if parts[0] != "" && parts[0] != parts[1] {
		return "", "", errors.New("logging in as another user is not allowed")
	}
	return parts[1], parts[2], nil
}

func (s *session) login(ctx context.Context, user, pass string) {
	if s.cfg.Login == nil {
		s.err("[SYS/TEMP] logins are not available")
		return
	}
	d, err := s.cfg.Login(ctx, user, pass, s.nc.RemoteAddr(), s.tls)
	switch {
	case err == nil:
		s.drop = d
		s.msgs = d.Messages()
		s.del = make([]bool, len(s.msgs))
		s.ok(fmt.Sprintf("logged in; %d messages", len(s.msgs)))
	case errors.Is(err, ErrAuthFailed):
		// Not counted as a bad command: failed logins are limited per
		// client address by Login (a lockout), whatever the connection.
		s.err("[AUTH] authentication failed")
	case errors.Is(err, ErrInUse):
		s.err("[IN-USE] the mailbox is open in another POP3 session")
	case errors.Is(err, ErrRateLimited):
		s.err("[SYS/TEMP] too many failed logins from your address: try again later")
	default:
		s.err("[SYS/TEMP] the mailbox cannot be opened now: try again later")
	}
}

// msg reads a message number argument: 1-based, not deleted.
func (s *session) msg(arg string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(s.msgs) {
		s.bad("no such message")
		return 0, false
	}
	if s.del[n-1] {
		s.bad("message " + strconv.Itoa(n) + " is deleted")
		return 0, false
	}
	return n - 1, true
}

func (s *session) transaction(verb, arg string) {
	switch verb {
	case "STAT":
		var size int64
		for i, m := range s.msgs {
			if !s.del[i] {
				size += m.Size
			}
		}
		s.ok(fmt.Sprintf("%d %d", len(s.msgs)-s.ndel, size))
	case "LIST", "UIDL":
		s.list(verb, arg)
	case "RETR":
		if i, ok := s.msg(arg); ok {
			s.send(i, -1)
		}
	case "TOP":
		a, b, _ := strings.Cut(arg, " ")
		n, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || n < 0 {
			s.bad("TOP needs a message number and a number of lines")
			return
		}
		if i, ok := s.msg(a); ok {
			s.send(i, n)
		}
	case "DELE":
		if i, ok := s.msg(arg); ok {
			s.del[i] = true
			s.ndel++
			s.ok("message " + strconv.Itoa(i+1) + " deleted")
		}
	case "RSET":
		for i := range s.del {
			s.del[i] = false
		}
		s.ndel = 0
		s.ok(fmt.Sprintf("%d messages", len(s.msgs)))
	case "NOOP":
		s.ok("")
	case "QUIT":
		// The UPDATE state: deletions are made, and the maildrop is
		// released before the answer, so a client that reconnects at once
		// finds it free.
		s.quit = true
		var idx []int
		for i, d := range s.del {
			if d {
				idx = append(idx, i)
			}
		}
		var err error
		if len(idx) > 0 {
			err = s.drop.Commit(idx)
		}
		s.drop.Close()
		s.drop = nil
		switch {
		case err != nil:
			s.err("[SYS/TEMP] some deleted messages could not be removed")
		case len(idx) == 0:
			s.ok("bye")
		default:
			s.ok(fmt.Sprintf("bye; %d messages deleted", len(idx)))
		}
	case "CAPA":
		s.capa()
	case "USER", "PASS", "AUTH", "STLS", "APOP":
		s.bad("already logged in")
	default:
		s.bad("unknown command")
	}
}

func (s *session) list(verb, arg string) {
	line := func(i int) string {
		if verb == "LIST" {
			return fmt.Sprintf("%d %d", i+1, s.msgs[i].Size)
		}
		return fmt.Sprintf("%d %s", i+1, s.msgs[i].UID)
	}
	if strings.TrimSpace(arg) != "" {
		if i, ok := s.msg(arg); ok {
			s.ok(line(i))
		}
		return
	}
	s.ok(fmt.Sprintf("%d messages", len(s.msgs)-s.ndel))
	for i := range s.msgs {
		if !s.del[i] {
			s.bw.WriteString(line(i) + "\r\n")
		}
	}
	s.bw.WriteString(".\r\n")
}

// send writes message i, dot-stuffed, ending with ".": whole (lines < 0)
// or its header and the first lines of its body (TOP).
func (s *session) send(i, lines int) {
	r, err := s.drop.Open(i)
	if err != nil {
		s.err("[SYS/TEMP] the message cannot be read now")
		return
	}
	defer r.Close()
	s.ok(fmt.Sprintf("%d octets", s.msgs[i].Size))
	s.nc.SetWriteDeadline(time.Now().Add(s.cfg.AuthTimeout))
	br := bufio.NewReaderSize(r, 8192)
	inBody, n, start := false, 0, true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			whole := err == nil || errors.Is(err, io.EOF) // the chunk ends its line
			if start {
				if lines >= 0 && inBody {
					if n >= lines {
						break
					}
					n++
				}
				if chunk[0] == '.' {
					s.bw.WriteByte('.') // RFC 1939 section 3: byte-stuffing
				}
			}
			if whole {
				line := strings.TrimRight(string(chunk), "\r\n")
				if start && !inBody && line == "" {
					inBody = true
				}
				s.bw.WriteString(line)
				s.bw.WriteString("\r\n")
			} else {
				s.bw.Write(chunk) // a long line, in parts
			}
			start = whole
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
	}
	s.bw.WriteString(".\r\n")
	s.nc.SetWriteDeadline(time.Time{})
}
