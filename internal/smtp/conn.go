package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// readBufferSize is the per-connection input buffer. It bounds the runs
// the data reader hands out and the pipelined input answered per flush.
const readBufferSize = 8 << 10

// writeBufferSize is the per-connection reply buffer.
const writeBufferSize = 2 << 10

// closingWriteTimeout bounds the write of a last reply (421, 221).
const closingWriteTimeout = 10 * time.Second

var (
	errLineTooLong = errors.New("smtp: command line too long")
	errStopping    = errors.New("smtp: server shutting down")
)

// conn is one server-side SMTP connection.
type conn struct {
	srv *Server
	cfg *config
	nc  net.Conn // the accepted connection; deadlines are set here
	c   net.Conn // nc, or the *tls.Conn over it after STARTTLS
	br  *bufio.Reader
	bw  *bufio.Writer
	log *slog.Logger // made by logger at its first use
	dbg bool         // debug logging enabled

	sess   Session
	st     State
	domain string

	caps      Capabilities
	capsValid bool
	maxSize   int64 // SIZE limit of the current transaction
	rcptTried bool  // a RCPT was attempted in this transaction
	errors    int
	dataMode  bool // reading message data: per-read deadline
	closing   bool // close after flushing the replies
	closeHard bool // the peer must not be lingered for (handshake failed…)
	quit      bool // the session ended with QUIT
	dr        dataReader

	lim        connLimits          // this connection's limits (SPEC P1)
	sessionEnd time.Time           // the session's time budget ends
	lastWrite  time.Time           // set by finish: the last replies' write ends by then
	messageEnd time.Time           // the current message's budget ends (during DATA)
	readCause  Limit               // which limit set the last read deadline
	rcptSet    map[string]struct{} // rcptKey of the transaction's recipients
	rcptCapHit bool                // LimitRecipients reported in this transaction

	stopping atomic.Bool // Shutdown or ctx: end at the next command
	idle     atomic.Bool // blocked waiting for a command

	readSize int                 // the input buffer's size
	first    [firstReadSize]byte // what waitInput reads without buffers
	pending  []byte              // input read by waitInput, not yet buffered (in first)

	// The sources of br and bw, kept here so that taking the buffers
	// back after each wait allocates nothing (issue 19).
	rd connReader
	wr connWriter
}

var (
	_ io.Reader   = (*dataReader)(nil)
	_ io.WriterTo = (*dataReader)(nil)
	_ io.Reader   = (*connReader)(nil)
	_ io.Writer   = (*connWriter)(nil)
)

// connReader is the source of conn.br. It first returns what waitInput
// read (conn.pending). It flushes pending replies before every read that
// reaches the network (so pipelined replies leave in one write, and never
// after the server blocks) and, during DATA, refreshes the read deadline.
type connReader struct{ c *conn }

func (r *connReader) Read(p []byte) (int, error) {
	c := r.c
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.bw.Buffered() > 0 {
		if err := c.bw.Flush(); err != nil {
			return 0, err
		}
	}
	if c.dataMode {
		c.setDataDeadline()
	}
	return c.c.Read(p)
}

// connWriter is the sink of conn.bw; it sets the write deadline: the
// write timeout, but no later than the end of the session's budget plus
// the time a last reply may take, and, once the session is finishing,
// no later than closingWriteTimeout after that.
type connWriter struct{ c *conn }

func (w *connWriter) Write(p []byte) (int, error) {
	d := time.Now().Add(w.c.cfg.writeTimeout)
	if end := w.c.sessionEnd.Add(closingWriteTimeout); end.Before(d) {
		d = end
	}
	if !w.c.lastWrite.IsZero() && w.c.lastWrite.Before(d) {
		d = w.c.lastWrite
	}
	w.c.nc.SetWriteDeadline(d)
	return w.c.c.Write(p)
}

func newConn(s *Server, nc net.Conn, lim connLimits) *conn {
	c := &conn{srv: s, cfg: &s.cfg, nc: nc, c: nc, lim: lim, sessionEnd: time.Now().Add(lim.sessionTimeout)}
	c.rd.c, c.wr.c = c, c
	c.readSize = max(readBufferSize, c.cfg.maxLine)
	c.takeBuffers()
	c.st.ID = s.nextID.Add(1)
	c.st.LocalAddr = nc.LocalAddr()
	c.st.RemoteAddr = nc.RemoteAddr()
	return c
}

// stop asks the session to end at the next command boundary; if it is
// waiting for a command, the wait is cut short. See Server.Shutdown.
func (c *conn) stop() {
	c.stopping.Store(true)
	if c.idle.Load() {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

// run is the life of the connection. Its frame, and those of the
// functions it has called when a session waits for a command, are small
// (the setup and the command loop are functions of their own): the
// garbage collector halves a goroutine's stack only when less than a
// quarter of it is in use, and an idle session should keep 4 KiB of
// stack, not 8 (issue 19).
func (c *conn) run(parent context.Context) {
	// The Session's context survives a graceful stop (a message being
	// stored must not be cut) and ends with the connection.
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	defer cancel()
	stopAfter := context.AfterFunc(parent, c.stop)
	defer stopAfter()
	c.setLogger(ctx)
	defer c.finish()
	defer c.recoverPanic()
	if !c.open(ctx) {
		return
	}
	defer c.closeSession()
	c.greet()
	c.loop(ctx)
}

// setLogger notes whether debug logging is on; the connection's logger
// is made when it first logs (logger).
//
//go:noinline
func (c *conn) setLogger(ctx context.Context) {
	c.dbg = c.cfg.log.Enabled(ctx, slog.LevelDebug)
}

// logger returns the connection's logger, the server's with the
// connection's ID and remote address. It is made at the first use: most
// sessions log nothing (debug logging off), and slog's With formats its
// attributes at once — an allocation and a few hundred nanoseconds in
// every session (issue 19).
func (c *conn) logger() *slog.Logger {
	if c.log == nil {
		remote := ""
		if c.st.RemoteAddr != nil {
			remote = c.st.RemoteAddr.String()
		}
		c.log = c.cfg.log.With("conn", c.st.ID, "remote", remote)
	}
	return c.log
}

// recoverPanic, deferred, turns a panic of the session into its end.
func (c *conn) recoverPanic() {
	if r := recover(); r != nil {
		c.logger().Error("smtp session panic", "panic", r, "stack", string(debug.Stack()))
		c.closeHard = true
	}
}

// open asks the Handler for the Session; it reports false when the
// connection is refused (the reply written).
//
//go:noinline
func (c *conn) open(ctx context.Context) bool {
	sess, err := c.srv.Handler.NewSession(ctx, c.st.ConnInfo)
	if err != nil {
		c.domain = c.cfg.hostname
		c.logger().Info("smtp connection refused by policy", "err", err)
		c.replyError(err, 421, "4.3.2", "Service not available")
		c.closing = true
		return false
	}
	c.sess = sess
	return true
}

// greet sends the 220 greeting.
//
//go:noinline
func (c *conn) greet() {
	domain, text := c.sess.Greeting()
	if domain == "" {
		domain = c.cfg.hostname
	}
	c.domain = sanitizeText(domain)
	if text == "" {
		text = "ESMTP ready"
	}
	c.writeReply(220, "", c.domain+" "+sanitizeText(text))
	if c.dbg {
		c.logger().Debug("smtp session start")
	}
}

// closeSession, deferred, ends the transaction left open and tells the
// Session the connection ends.
func (c *conn) closeSession() {
	if c.st.InTransaction {
		c.resetTx()
	}
	c.sess.Close(c.st)
}

// loop reads and answers commands until the connection is to close.
func (c *conn) loop(ctx context.Context) {
	for !c.closing {
		line, err := c.readCommand()
		if err != nil {
			c.readFailed(err)
			continue
		}
		c.dispatch(ctx, line)
	}
}

// readFailed answers a failed command read; all but a line too long end
// the session.
//
//go:noinline
func (c *conn) readFailed(err error) {
	switch {
	case err == errLineTooLong:
		c.fail(500, "5.5.2", "Line too long")
		return
	case err == errStopping || (isTimeout(err) && c.stopping.Load()):
		c.writeReply(421, "4.3.2", "Service shutting down, closing connection")
	case isTimeout(err):
		c.timeLimit(c.readCause, false)
	default:
		if c.dbg && err != io.EOF {
			c.logger().Debug("smtp read failed", "err", err)
		}
		c.closeHard = true
	}
	c.closing = true
}

// finish flushes the last replies and closes the connection. After an
// error reply the peer may still be sending (pipelined commands): closing
// with unread input would make TCP reset the connection and could destroy
// our last reply, so a TCP connection is half-closed and briefly drained.
// After QUIT with nothing buffered after it, what the socket holds is
// read without waiting (a TLS client that has read the 221 sends its
// close_notify and FIN) and, if that empties it, the connection is
// closed at once: a close with no unread input sends the 221 and a FIN,
// never a reset, so the drain (a shutdown, a timer, a wait for the
// peer's close and two reads; issue 19) buys nothing.
func (c *conn) finish() {
	if c.bw == nil { // a panic while the buffers were in the pool
		c.takeBuffers()
	}
	c.lastWrite = time.Now().Add(closingWriteTimeout)
	flushErr := c.bw.Flush()
	if tc, ok := c.nc.(*net.TCPConn); ok && !c.closeHard && flushErr == nil &&
		!(c.quit && c.br.Buffered() == 0 && len(c.pending) == 0 && emptyNow(tc, c.first[:])) {
		if tc.CloseWrite() == nil {
			tc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			io.CopyN(io.Discard, tc, 64<<10)
		}
	}
	c.nc.Close()
	c.releaseBuffers() // what is left in them is dropped with the connection
	if c.dbg {
		c.logger().Debug("smtp session end")
	}
}

// readCommand reads the next command line. It marks the connection idle
// while it may block, so stop can interrupt the wait.
func (c *conn) readCommand() ([]byte, error) {
	if n := c.br.Buffered(); n > 0 {
		// A pipelined command is already here: no wait, no deadline
		// to set (which costs a timer update per command).
		if buf, _ := c.br.Peek(n); bytes.IndexByte(buf, '\n') >= 0 {
			if c.stopping.Load() {
				return nil, errStopping
			}
			return c.readLine()
		}
	}
	c.idle.Store(true)
	defer c.idle.Store(false)
	// Set the deadline before looking at stopping: a stop that comes
	// later moves the deadline to the past, one that came earlier is seen.
	c.setReadDeadline()
	if c.stopping.Load() {
		return nil, errStopping
	}
	if c.br.Buffered() == 0 {
		if err := c.waitInput(); err != nil {
			return nil, err
		}
	}
	return c.readLine()
}

// readLine reads one line, without its LF or CRLF and trailing blanks. A
// bare LF ends a command line too (see the package documentation). A line
// longer than the limit is consumed up to its LF and reported as
// errLineTooLong. The slice is valid until the next read. Not inlined:
// readCommand's frame stays small while it waits (see conn.run).
//
//go:noinline
func (c *conn) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		for err == bufio.ErrBufferFull {
			_, err = c.br.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	if len(line) > c.cfg.maxLine {
		return nil, errLineTooLong
	}
	return trimLine(line), nil
}

// trimLine removes the line end and trailing spaces and tabs.
func trimLine(b []byte) []byte {
	n := len(b)
	for n > 0 {
		switch b[n-1] {
		case '\n', '\r', ' ', '\t':
			n--
			continue
		}
		break
	}
	return b[:n]
}

// writeReply writes one reply line; enhanced may be empty.
func (c *conn) writeReply(code int, enhanced, text string) {
	c.bw.WriteByte(byte('0' + code/100))
	c.bw.WriteByte(byte('0' + code/10%10))
	c.bw.WriteByte(byte('0' + code%10))
	c.bw.WriteByte(' ')
	if enhanced != "" {
		c.bw.WriteString(enhanced)
		if text != "" {
			c.bw.WriteByte(' ')
		}
	}
	c.bw.WriteString(text)
	c.bw.WriteString("\r\n")
}

// writeMultiline writes a reply of several lines (RFC 5321 4.2.1).
func (c *conn) writeMultiline(code int, enhanced string, lines []string) {
	for i, l := range lines {
		sep := byte('-')
		if i == len(lines)-1 {
			sep = ' '
		}
		c.bw.WriteString(strconv.Itoa(code))
		c.bw.WriteByte(sep)
		if enhanced != "" {
			c.bw.WriteString(enhanced)
			if l != "" {
				c.bw.WriteByte(' ')
			}
		}
		c.bw.WriteString(l)
		c.bw.WriteString("\r\n")
	}
}

// fail sends a reply for a protocol error and counts it (see countError).
func (c *conn) fail(code int, enhanced, text string) {
	if !c.countError() {
		c.writeReply(code, enhanced, text)
	}
}

// countError counts a protocol error. The error that reaches MaxErrors is
// answered with 421 4.7.0 and the connection closes; countError then
// reports true and the caller must not reply.
func (c *conn) countError() bool {
	c.errors++
	if c.errors < c.cfg.maxErrors {
		return false
	}
	c.logger().Info("smtp too many errors", "errors", c.errors)
	c.writeReply(421, "4.7.0", "Too many errors, closing connection")
	c.closing = true
	return true
}

// replyError sends the reply for an error from the Session: a
// *ReplyError with a 4xx or 5xx code as is (421 closes the connection),
// anything else as the fallback reply, the error being logged.
func (c *conn) replyError(err error, code int, enhanced, text string) {
	var re *ReplyError
	if errors.As(err, &re) && re.Code >= 400 && re.Code <= 599 {
		if re.Err != nil {
			c.logger().Info("smtp policy reply", "code", re.Code, "err", re)
		}
		enh := re.enhanced()
		msg := re.Message
		if msg == "" {
			msg = text
		}
		if strings.IndexByte(msg, '\n') >= 0 {
			lines := splitLines(msg)
			for i := range lines {
				lines[i] = sanitizeText(lines[i])
			}
			c.writeMultiline(re.Code, enh, lines)
		} else {
			c.writeReply(re.Code, enh, sanitizeText(msg))
		}
		if re.Code == 421 {
			c.closing = true
		}
		return
	}
	c.logger().Error("smtp session error", "err", err)
	c.writeReply(code, enhanced, text)
}

func splitLines(s string) []string {
	lines := strings.Split(strings.TrimRight(s, "\r\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r \t")
	}
	return lines
}

// capabilities returns the session's capabilities, asking the Session
// when none are cached, with the server's own rules applied.
func (c *conn) capabilities() *Capabilities {
	if c.capsValid {
		return &c.caps
	}
	caps := c.sess.Capabilities(c.st)
	if caps.MaxSize <= 0 {
		caps.MaxSize = c.cfg.maxMessage
	}
	if c.st.TLS != nil {
		caps.StartTLS = false
		caps.AnonymousTLS = false
	}
	var mechs []string
	for _, m := range caps.AuthMechanisms {
		switch {
		case equalFold(m, "PLAIN") && !contains(mechs, "PLAIN"):
			mechs = append(mechs, "PLAIN")
		case equalFold(m, "LOGIN") && !contains(mechs, "LOGIN"):
			mechs = append(mechs, "LOGIN")
		}
	}
	caps.AuthMechanisms = mechs
	c.caps = caps
	c.capsValid = true
	return &c.caps
}

// authOffered reports whether AUTH may be used now.
func (caps *Capabilities) authOffered(st *State) bool {
	return len(caps.AuthMechanisms) > 0 && (st.TLS != nil || caps.AuthWithoutTLS)
}

// resetTx ends the current transaction and tells the Session.
func (c *conn) resetTx() {
	if !c.st.InTransaction {
		return
	}
	c.sess.Reset(c.st)
	c.st.InTransaction = false
	c.st.MailFrom = ""
	c.st.Mail = MailOptions{}
	c.st.Rcpts = nil
	c.rcptTried = false
	clear(c.rcptSet)
	c.rcptCapHit = false
}

// startTLS runs the handshake after a 220 reply to STARTTLS or
// X-ANONYMOUSTLS. It reports false when the connection must close.
func (c *conn) startTLS(ctx context.Context, cfg *tls.Config, anonymous bool) bool {
	c.writeReply(220, "2.0.0", "Ready to start TLS")
	if err := c.bw.Flush(); err != nil { // connWriter sets the write deadline
		c.closeHard = true
		return false
	}
	// RFC 3207 5 and CVE-2011-0411: whatever the client sent after the
	// command in plain text must not be read as if it had come over TLS.
	if n := c.br.Buffered() + len(c.pending); n > 0 {
		c.logger().Warn("smtp plaintext after STARTTLS discarded (command injection attempt?)", "bytes", n)
	}
	c.pending = nil
	tc := tls.Server(c.nc, cfg)
	hd := time.Now().Add(c.cfg.tlsHandshakeTimeout)
	if c.sessionEnd.Before(hd) {
		hd = c.sessionEnd
	}
	// The deadline on the connection bounds the handshake: a context
	// with that deadline would add a timer, and a cancellable one a
	// callback registered and removed in every handshake (issue 19); the
	// session's context is not cancelled during one (a graceful stop
	// waits for the command, Close closes the connection).
	c.nc.SetDeadline(hd)
	growStack()
	err := tc.Handshake()
	var cs *tls.ConnectionState // made once: the observer's and the session's
	if err == nil {
		s := tc.ConnectionState()
		cs = &s
	}
	if o, ok := c.sess.(TLSObserver); ok {
		st := c.st
		st.TLS = cs // the new connection's, for the observer
		o.TLSDone(st, anonymous, err)
	}
	if err != nil {
		c.logger().Info("smtp TLS handshake failed", "err", err, "anonymous", anonymous)
		c.closeHard = true
		return false
	}
	c.nc.SetDeadline(time.Time{})
	c.c = tc
	c.br.Reset(&c.rd)
	c.bw.Reset(&c.wr)
	// RFC 3207 4.2: forget everything not obtained from TLS itself.
	c.st.Hello = ""
	c.st.Extended = false
	c.st.AuthMechanism, c.st.AuthUsername, c.st.AuthIdentity = "", "", ""
	c.st.TLS = cs
	c.st.AnonymousTLS = anonymous
	c.capsValid = false
	if c.dbg {
		c.logger().Debug("smtp TLS started", "version", tls.VersionName(cs.Version),
			"cipher", tls.CipherSuiteName(cs.CipherSuite), "anonymous", anonymous)
	}
	return true
}

// emptyNow reads, without waiting, what the peer has sent and not been
// read — up to a few KiB: a TLS client's close_notify and its FIN
// usually, sent once it has read the 221 — and reports whether the
// socket's input is now empty (or at its end), so that closing it sends
// no reset. False when there is more, or when it cannot tell.
func emptyNow(tc *net.TCPConn, scratch []byte) bool {
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	empty := false
	rc.Read(func(fd uintptr) bool {
		for range 4 {
			n, _, err := unix.Recvfrom(int(fd), scratch, unix.MSG_DONTWAIT)
			if err == unix.EAGAIN || (err == nil && n == 0) {
				// Nothing left, or the peer's FIN. A short read
				// is not enough: TCP stops a read at the urgent
				// mark, with the rest of the input still queued
				// (a telnet user's interrupt after QUIT), and
				// closing would then reset the connection
				// (TestEmptyNowLeavesNothingUnread).
				empty = true
				return true
			}
			if err != nil {
				return true
			}
		}
		return true
	})
	return empty
}

// handshakeStack is the stack a server-side TLS handshake needs beyond
// its caller's: crypto/internal/fips140's arithmetic keeps its numbers on
// the stack. Measured with ECDSA P-256 and X25519 (the profile of
// BenchmarkSessionSTARTTLS): with 4 KiB the stack still grew in
// bigmod.(*Nat).Mul, with 6 KiB it no longer grew during the handshake.
// More would only make the stack larger than the handshake leaves it.
const handshakeStack = 6 << 10

// growStack grows the goroutine's stack, while it is shallow, to what the
// TLS handshake will need. A goroutine starts small and would grow during
// the handshake, deep in crypto/tls, where each growth copies and
// adjusts some forty frames (runtime.newstack was 2.5% of the server's
// CPU per STARTTLS session; issue 19); here it copies a few. The stack
// ends the same size as the handshake would have left it, and the
// garbage collector shrinks it again while the session waits.
//
//go:noinline
func growStack() {
	var pad [handshakeStack]byte
	touchStack(pad[:])
}

// touchStack keeps growStack's array from being optimised away.
//
//go:noinline
func touchStack(b []byte) { b[len(b)-1] = 0 }
