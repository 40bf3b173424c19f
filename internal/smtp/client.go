package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Client defaults (RFC 5321 4.5.3.2).
const (
	// DefaultCommandTimeout bounds each command's reply and the greeting.
	DefaultCommandTimeout = 5 * time.Minute
	// DefaultClientDataTimeout bounds each write of message data and the
	// wait for the reply after the final dot.
	DefaultClientDataTimeout = 10 * time.Minute
	// maxReplyLines bounds the lines of one reply.
	maxReplyLines = 1000
)

// ErrNotSupported is returned (wrapped) when a request needs an extension
// the server does not offer (STARTTLS, AUTH, 8BITMIME, SMTPUTF8, DSN).
var ErrNotSupported = errors.New("smtp: extension not supported by server")

// Client is an SMTP client session on one connection, for the send
// connectors. It is not safe for concurrent use. Every negative reply is
// returned as a *ReplyError (Temporary for 4xx, Permanent for 5xx); any
// other error (I/O, timeout, cancelled context, protocol violation) leaves
// the connection unusable: it is closed, and every later call returns the
// same error.
//
// Each method that talks to the server takes a context: cancelling it
// aborts the exchange (and the connection); its deadline, if earlier,
// shortens the timeouts below.
type Client struct {
	// LocalName is the name sent in EHLO when SendMail or Auth must greet
	// first. Default "localhost".
	LocalName string
	// CommandTimeout bounds each command's reply. Default DefaultCommandTimeout.
	CommandTimeout time.Duration
	// DataTimeout bounds each write of message data and the final reply.
	// Default DefaultClientDataTimeout.
	DataTimeout time.Duration
	// AllowInsecureAuth lets Auth send credentials without TLS.
	AllowInsecureAuth bool

	raw      net.Conn // deadlines are set here
	conn     net.Conn // raw, or the *tls.Conn over it
	br       *bufio.Reader
	bw       *bufio.Writer
	host     string // for tls.Config.ServerName
	greeting string

	helloName string
	extended  bool
	ext       map[string]string
	tlsState  *tls.ConnectionState
	anonTLS   bool
	authed    bool

	timeout   time.Duration // of the exchange in progress
	ctxDL     time.Time     // deadline of its context
	cancelled atomic.Bool   // its context is done
	broken    error
}

// clientIO is the source and sink of the Client's buffers: it sets the
// deadline of each read and write.
type clientIO struct{ c *Client }

func (x *clientIO) Read(p []byte) (int, error) {
	x.c.setDeadline(true)
	return x.c.conn.Read(p)
}

func (x *clientIO) Write(p []byte) (int, error) {
	x.c.setDeadline(false)
	return x.c.conn.Write(p)
}

func (c *Client) setDeadline(read bool) {
	d := time.Now().Add(c.timeout)
	if !c.ctxDL.IsZero() && c.ctxDL.Before(d) {
		d = c.ctxDL
	}
	set := c.raw.SetWriteDeadline
	if read {
		set = c.raw.SetReadDeadline
	}
	set(d)
	if c.cancelled.Load() {
		set(time.Unix(1, 0))
	}
}

// Dial connects to addr ("host:port") and reads the greeting. The host
// part becomes the TLS server name.
func Dial(ctx context.Context, addr string) (*Client, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("smtp: dial %s: %w", addr, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtp: dial %s: %w", addr, err)
	}
	return NewClient(ctx, conn, host)
}

// NewClient starts a client session on conn and reads the greeting; host
// is the server's name, used to verify its certificate after STARTTLS.
// A greeting other than 220 is returned as a *ReplyError and conn is
// closed.
func NewClient(ctx context.Context, conn net.Conn, host string) (*Client, error) {
	c := &Client{raw: conn, conn: conn, host: host}
	c.br = bufio.NewReaderSize(&clientIO{c}, 4096) // bounds a reply line (RFC 5321: 512)
	c.bw = bufio.NewWriterSize(&clientIO{c}, 4096)
	var greeting string
	err := c.exchange(ctx, "greeting", c.commandTimeout(), func() error {
		r, err := c.expect(220)
		if err != nil {
			return err
		}
		greeting = r.lines[0]
		return nil
	})
	if err != nil {
		c.fail(err)
		return nil, err
	}
	c.greeting = greeting
	return c, nil
}

// Greeting returns the text of the server's 220 greeting (its domain
// first).
func (c *Client) Greeting() string { return c.greeting }

// RemoteAddr returns the server's address.
func (c *Client) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

func (c *Client) commandTimeout() time.Duration {
	if c.CommandTimeout > 0 {
		return c.CommandTimeout
	}
	return DefaultCommandTimeout
}

func (c *Client) dataTimeout() time.Duration {
	if c.DataTimeout > 0 {
		return c.DataTimeout
	}
	return DefaultClientDataTimeout
}

// exchange runs f with timeout and ctx in force. An error that is not a
// *ReplyError breaks the client, and so does a 421 reply.
func (c *Client) exchange(ctx context.Context, op string, timeout time.Duration, f func() error) error {
	if c.broken != nil {
		return c.broken
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("smtp: %s: %w", op, err)
	}
	c.timeout = timeout
	c.ctxDL, _ = ctx.Deadline()
	c.cancelled.Store(false)
	stop := context.AfterFunc(ctx, func() {
		c.cancelled.Store(true)
		c.raw.SetDeadline(time.Unix(1, 0))
	})
	err := f()
	if err != nil && !isReply(err) && isTimeout(err) && !c.ctxDL.IsZero() && !time.Now().Before(c.ctxDL) {
		// The connection's deadline was the context's.
		err = fmt.Errorf("smtp: %s: %w", op, context.DeadlineExceeded)
		stop()
		c.fail(err)
		return err
	}
	if !stop() {
		// ctx ended during the exchange: the deadline was moved to the
		// past, whatever happened the connection is in an unknown state.
		if err == nil || !isReply(err) {
			err = fmt.Errorf("smtp: %s: %w", op, ctx.Err())
		}
		c.fail(err)
		return err
	}
	var re *ReplyError
	switch {
	case err == nil:
	case errors.As(err, &re):
		if re.Code == 421 {
			c.fail(err)
		}
	default:
		err = fmt.Errorf("smtp: %s: %w", op, err)
		c.fail(err)
	}
	return err
}

func isReply(err error) bool {
	var re *ReplyError
	return errors.As(err, &re)
}

// fail breaks the client: the connection is closed and err is returned
// from now on.
func (c *Client) fail(err error) {
	if c.broken == nil {
		c.broken = err
		c.raw.Close()
	}
}

// readReply reads one reply; lines are its texts, enhanced code removed.
func (c *Client) readReply() (code int, enhanced string, lines []string, err error) {
	for {
		line, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return 0, "", nil, errors.New("reply line too long")
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, "", nil, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		n, more, text, ok := parseReplyLine(s)
		if !ok || (code != 0 && n != code) {
			return 0, "", nil, fmt.Errorf("malformed reply %q", truncate(s, 80))
		}
		code = n
		if enh, rest := splitEnhanced(code, text); enh != "" {
			if enhanced == "" {
				enhanced = enh
			}
			text = rest
		}
		lines = append(lines, text)
		if !more {
			return code, enhanced, lines, nil
		}
		if len(lines) >= maxReplyLines {
			return 0, "", nil, errors.New("reply too long")
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// cmd sends one command and reads its reply; a code other than want is
// returned as a *ReplyError.
func (c *Client) cmd(want int, line string) (*reply, error) {
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	return c.expect(want)
}

// reply is a server reply.
type reply struct {
	code     int
	enhanced string
	lines    []string
}

func (r *reply) err() *ReplyError {
	return &ReplyError{Code: r.code, Enhanced: r.enhanced, Message: strings.Join(r.lines, "\n")}
}

// expect reads a reply and turns a code other than want into an error.
func (c *Client) expect(want int) (*reply, error) {
	code, enh, lines, err := c.readReply()
	if err != nil {
		return nil, err
	}
	r := &reply{code, enh, lines}
	if code != want {
		return r, r.err()
	}
	return r, nil
}

// Hello sends EHLO name, and HELO if the server refuses EHLO with a 5xx
// reply. It must come before any other command; SendMail and Auth call it
// with LocalName when needed.
func (c *Client) Hello(ctx context.Context, name string) error {
	if c.helloName != "" {
		return errors.New("smtp: Hello called twice")
	}
	if err := checkLine(name); err != nil || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("smtp: bad EHLO name %q", name)
	}
	return c.hello(ctx, name)
}

func (c *Client) hello(ctx context.Context, name string) error {
	return c.exchange(ctx, "EHLO", c.commandTimeout(), func() error {
		r, err := c.cmd(250, "EHLO "+name)
		if err == nil {
			c.helloName, c.extended = name, true
			c.ext = parseExtensions(r.lines)
			return nil
		}
		var re *ReplyError
		if !errors.As(err, &re) || !re.Permanent() {
			return err
		}
		if _, err := c.cmd(250, "HELO "+name); err != nil {
			return err
		}
		c.helloName, c.extended = name, false
		c.ext = map[string]string{}
		return nil
	})
}

func parseExtensions(lines []string) map[string]string {
	ext := make(map[string]string, len(lines))
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext
}

func (c *Client) ensureHello(ctx context.Context) error {
	if c.helloName != "" {
		return nil
	}
	name := c.LocalName
	if name == "" {
		name = "localhost"
	}
	return c.hello(ctx, name)
}

// Extensions returns the EHLO keywords (upper case) and their parameters;
// empty before Hello and after HELO. The map is a copy.
func (c *Client) Extensions() map[string]string {
	m := make(map[string]string, len(c.ext))
	for k, v := range c.ext {
		m[k] = v
	}
	return m
}

// Supports reports whether the server advertised the EHLO keyword ext.
func (c *Client) Supports(ext string) bool {
	_, ok := c.ext[strings.ToUpper(ext)]
	return ok
}

// MaxSize returns the server's SIZE limit; ok is false when it gave none
// (no SIZE, or SIZE 0 which means no fixed limit).
func (c *Client) MaxSize() (n int64, ok bool) {
	v, has := c.ext["SIZE"]
	if !has {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// StartTLS upgrades the connection with STARTTLS (RFC 3207) and says EHLO
// again. cfg.ServerName defaults to the host given to NewClient. A
// failed handshake breaks the client.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	return c.startTLS(ctx, cfg, "STARTTLS")
}

// AnonymousTLS is StartTLS with Exchange's X-ANONYMOUSTLS verb (SPEC S6,
// X2): the server presents its internal transport certificate, and cfg
// should present this server's and verify the peer by direct trust
// (typically InsecureSkipVerify with VerifyPeerCertificate or
// VerifyConnection).
func (c *Client) AnonymousTLS(ctx context.Context, cfg *tls.Config) error {
	return c.startTLS(ctx, cfg, "X-ANONYMOUSTLS")
}

func (c *Client) startTLS(ctx context.Context, cfg *tls.Config, verb string) error {
	if err := c.ensureHello(ctx); err != nil {
		return err
	}
	if c.tlsState != nil {
		return errors.New("smtp: TLS already active")
	}
	if !c.Supports(verb) {
		return fmt.Errorf("smtp: %s: %w", verb, ErrNotSupported)
	}
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName = c.host
	}
	err := c.exchange(ctx, verb, c.commandTimeout(), func() error {
		if _, err := c.cmd(220, verb); err != nil {
			return err
		}
		if c.br.Buffered() > 0 {
			// The mirror of CVE-2011-0411: plaintext that follows the
			// 220 would be read as if it came over TLS.
			return errors.New("server sent data after its STARTTLS reply")
		}
		tc := tls.Client(c.raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		cs := tc.ConnectionState()
		c.conn = tc
		c.br.Reset(&clientIO{c})
		c.bw.Reset(&clientIO{c})
		c.tlsState = &cs
		c.anonTLS = verb == "X-ANONYMOUSTLS"
		return nil
	})
	if err != nil {
		if isReply(err) {
			return err
		}
		c.fail(err)
		return err
	}
	name := c.helloName
	c.helloName, c.ext = "", nil
	return c.hello(ctx, name)
}

// TLSConnectionState returns the TLS state; ok is false in plain text.
func (c *Client) TLSConnectionState() (state tls.ConnectionState, ok bool) {
	if c.tlsState == nil {
		return tls.ConnectionState{}, false
	}
	return *c.tlsState, true
}

// Auth authenticates with mech "PLAIN" or "LOGIN" ("" picks PLAIN if
// offered, else LOGIN). It refuses to send credentials in plain text
// unless AllowInsecureAuth is set. Wrong credentials come back as a
// *ReplyError (535 5.7.8). Credentials never appear in errors.
func (c *Client) Auth(ctx context.Context, mech, username, password string) error {
	if err := c.ensureHello(ctx); err != nil {
		return err
	}
	if c.authed {
		return errors.New("smtp: already authenticated")
	}
	if c.tlsState == nil && !c.AllowInsecureAuth {
		return errors.New("smtp: AUTH refused: the connection is not encrypted")
	}
	offered := strings.Fields(strings.ToUpper(c.ext["AUTH"]))
	if mech == "" {
		for _, m := range []string{"PLAIN", "LOGIN"} {
			if contains(offered, m) {
				mech = m
				break
			}
		}
	}
	mech = strings.ToUpper(mech)
	if mech == "" || !contains(offered, mech) {
		return fmt.Errorf("smtp: AUTH %s: %w", mech, ErrNotSupported)
	}
	enc := base64.StdEncoding.EncodeToString
	err := c.exchange(ctx, "AUTH", c.commandTimeout(), func() error {
		switch mech {
		case "PLAIN":
			_, err := c.cmd(235, "AUTH PLAIN "+enc([]byte("\x00"+username+"\x00"+password)))
			return err
		default:
			if _, err := c.cmd(334, "AUTH LOGIN"); err != nil {
				return err
			}
			if _, err := c.cmd(334, enc([]byte(username))); err != nil {
				return err
			}
			_, err := c.cmd(235, enc([]byte(password)))
			return err
		}
	})
	if err == nil {
		c.authed = true
	}
	return err
}

// Noop sends NOOP, to check the connection is alive.
func (c *Client) Noop(ctx context.Context) error {
	return c.exchange(ctx, "NOOP", c.commandTimeout(), func() error {
		_, err := c.cmd(250, "NOOP")
		return err
	})
}

// Reset sends RSET, abandoning any transaction.
func (c *Client) Reset(ctx context.Context) error {
	return c.exchange(ctx, "RSET", c.commandTimeout(), func() error {
		_, err := c.cmd(250, "RSET")
		return err
	})
}

// Quit sends QUIT and closes the connection. The reply is not checked
// beyond being a reply.
func (c *Client) Quit(ctx context.Context) error {
	err := c.exchange(ctx, "QUIT", c.commandTimeout(), func() error {
		_, err := c.cmd(221, "QUIT")
		return err
	})
	c.Close()
	if isReply(err) {
		return nil
	}
	return err
}

// Close closes the connection without QUIT.
func (c *Client) Close() error {
	if c.broken == nil {
		c.broken = net.ErrClosed
	}
	return c.raw.Close()
}

// checkLine refuses strings that would break a command line.
func checkLine(s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return errors.New("smtp: CR, LF or NUL in command argument")
	}
	return nil
}
