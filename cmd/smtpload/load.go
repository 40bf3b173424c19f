package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load: what Run sends where.
type Config struct {
	Addr        string        // host:port of the SMTP server
	Clients     int           // concurrent connections
	Messages    int           // messages (or sessions) in all; 0: until Duration ends
	Duration    time.Duration // stop starting new work after this; 0: no limit
	Size        int           // message size in octets, headers included
	PerConn     int           // messages per connection (1: a new connection for each)
	TLS         bool          // STARTTLS, a full handshake on every connection
	Pipelining  bool          // send MAIL, RCPT and DATA in one write (RFC 2920) when offered
	SessionOnly bool          // EHLO [STARTTLS EHLO] QUIT, no message: the session cost alone
	From, To    string
	Helo        string
	ServerName  string        // TLS SNI; "" sends none
	Curves      []tls.CurveID // key exchange groups; nil: crypto/tls defaults
	Timeout     time.Duration // bound on each step
	IDPrefix    string        // Message-IDs are <IDPrefix.K@smtpload.invalid>
	// Record, when set, receives the Message-ID (without angle brackets)
	// of every message answered 250, one line each, written before the
	// next command is sent.
	Record io.Writer
}

// message builds the n-th message's header and holds the common body.
type message struct {
	prefix []byte // "Message-ID: <ID."
	tail   []byte // "@smtpload.invalid>\r\nFrom: …\r\n\r\n"
	body   []byte // filler lines and the final ".\r\n"
}

// idDomain is the right-hand side of generated Message-IDs.
const idDomain = "smtpload.invalid"

func newMessage(cfg Config) *message {
	m := &message{
		prefix: []byte("Message-ID: <" + cfg.IDPrefix + "."),
		tail: []byte("@" + idDomain + ">\r\nFrom: <" + cfg.From + ">\r\nTo: <" + cfg.To + ">\r\n" +
			"Subject: smtpload\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\n"),
	}
	header := len(m.prefix) + 10 + len(m.tail) // an index of up to 10 digits
	fill := cfg.Size - header
	var b []byte
	for fill > 0 {
		n := min(fill, 78) - 2 // a line of up to 78 octets with its CRLF
		if n < 1 {
			n = 1
		}
		for i := 0; i < n; i++ {
			b = append(b, 'a'+byte(i%26))
		}
		b = append(b, '\r', '\n')
		fill -= n + 2
	}
	if len(b) == 0 {
		b = append(b, "\r\n"...)
	}
	m.body = append(b, ".\r\n"...)
	return m
}

// ID returns the Message-ID of the k-th message, without brackets.
func (c Config) ID(k int) string { return c.IDPrefix + "." + strconv.Itoa(k) + "@" + idDomain }

// Run runs the load until the messages are sent, Duration passes or ctx
// ends, and reports.
func Run(ctx context.Context, cfg Config) *Report {
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	l := &loader{cfg: cfg, msg: newMessage(cfg)}
	l.tlsConf = &tls.Config{
		InsecureSkipVerify: true, // a load, not a check: the certificate is whatever the server serves
		ServerName:         cfg.ServerName,
		CurvePreferences:   cfg.Curves,
		// No ClientSessionCache: every connection makes a full handshake.
	}
	capacity := cfg.Messages/cfg.Clients + 1
	if cfg.Messages == 0 {
		capacity = 1024
	}
	tallies := make([]*tally, cfg.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range tallies {
		t := newTally(capacity)
		tallies[i] = t
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{l: l, t: t}
			for ctx.Err() == nil && w.session(ctx) {
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := newTally(0)
	for _, t := range tallies {
		all.merge(t)
	}
	r := &Report{
		Addr: cfg.Addr, Clients: cfg.Clients, Requested: cfg.Messages, Size: cfg.Size, TLS: cfg.TLS,
		Pipelining: cfg.Pipelining, PerConn: cfg.PerConn, SessionOnly: cfg.SessionOnly,
		OK: all.ok, Failed: all.failed, Sessions: all.sessions, Elapsed: elapsed.Seconds(),
		Rate: rate(all.ok, elapsed), Latency: summarize(all.lat),
		Errors: all.errors, Replies: all.replies, FirstErrors: all.first,
	}
	if cs := l.tlsSeen.Load(); cs != nil {
		r.TLSVersion = tls.VersionName(cs.Version)
		r.Cipher = tls.CipherSuiteName(cs.CipherSuite)
		if cs.CurveID != 0 {
			r.KeyExchange = cs.CurveID.String()
		}
	}
	return r
}

type loader struct {
	cfg     Config
	msg     *message
	tlsConf *tls.Config
	next    atomic.Int64
	tlsSeen atomic.Pointer[tls.ConnectionState]
	recMu   sync.Mutex
}

// claim takes the next message number, or reports that none is left.
func (l *loader) claim() (int, bool) {
	k := int(l.next.Add(1) - 1)
	if l.cfg.Messages > 0 && k >= l.cfg.Messages {
		return 0, false
	}
	return k, true
}

func (l *loader) record(k int) error {
	if l.cfg.Record == nil {
		return nil
	}
	line := l.cfg.ID(k) + "\n"
	l.recMu.Lock()
	defer l.recMu.Unlock()
	_, err := io.WriteString(l.cfg.Record, line)
	return err
}

// worker is one client: one connection at a time.
type worker struct {
	l    *loader
	t    *tally
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	line []byte
	// what the server offered in its last EHLO reply
	pipelining, starttls bool
}

// connectBackoff keeps a refused connection (server down) from turning
// the load into a busy loop.
const connectBackoff = 20 * time.Millisecond

// session runs one connection with up to PerConn messages. It returns
// false when no work is left.
func (w *worker) session(ctx context.Context) bool {
	cfg := &w.l.cfg
	k, ok := w.l.claim()
	if !ok {
		return false
	}
	start := time.Now()
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		if stopped(ctx) {
			return false // stopped, not failed
		}
		w.t.failure(&stageError{Class: "connect", Stage: "connect", Err: err})
		time.Sleep(connectBackoff)
		return true
	}
	w.t.sessions++
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() { w.conn.Close() }()
	w.setConn(conn)
	conn.SetDeadline(time.Now().Add(cfg.Timeout))
	if err := w.open(); err != nil {
		w.fail(ctx, err)
		return true
	}
	if cfg.SessionOnly {
		w.t.success(time.Since(start))
		w.quit()
		return true
	}
	for i := 0; ; i++ {
		w.conn.SetDeadline(time.Now().Add(cfg.Timeout))
		err := w.send(k)
		if err != nil {
			w.fail(ctx, err)
			var re *replyError
			if !errors.As(err, &re) || re.Code == 421 {
				return true // the connection is unusable
			}
			if w.cmd("RSET", 250) != nil {
				return true
			}
		} else {
			w.t.success(time.Since(start))
			if err := w.l.record(k); err != nil {
				w.t.failure(&stageError{Class: "io", Stage: "record", Err: err})
			}
		}
		if i+1 >= cfg.PerConn {
			break
		}
		if k, ok = w.l.claim(); !ok {
			break
		}
		start = time.Now()
	}
	w.quit()
	return true
}

// stopped reports whether ctx has ended or its deadline has passed (a
// dial bounded by the deadline may return before ctx says so).
func stopped(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// fail counts err unless the load was stopped (ctx) in the middle of the
// exchange.
func (w *worker) fail(ctx context.Context, err error) {
	if stopped(ctx) {
		return
	}
	w.t.failure(err)
}

func (w *worker) setConn(c net.Conn) {
	w.conn = c
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, 4096)
		w.bw = bufio.NewWriterSize(c, 8192)
	} else {
		w.br.Reset(c)
		w.bw.Reset(c)
	}
}

// open reads the greeting, says EHLO and, with -tls, runs STARTTLS and
// says EHLO again.
func (w *worker) open() error {
	if _, err := w.reply("greeting", 220); err != nil {
		return err
	}
	if err := w.ehlo(); err != nil {
		return err
	}
	if !w.l.cfg.TLS {
		return nil
	}
	if !w.starttls {
		return &stageError{Class: "protocol", Stage: "EHLO", Err: errors.New("server does not offer STARTTLS")}
	}
	if err := w.cmd("STARTTLS", 220); err != nil {
		return err
	}
	tc := tls.Client(w.conn, w.l.tlsConf)
	if err := tc.Handshake(); err != nil {
		return &stageError{Class: "tls", Stage: "TLS handshake", Err: err}
	}
	if w.l.tlsSeen.Load() == nil {
		cs := tc.ConnectionState()
		w.l.tlsSeen.CompareAndSwap(nil, &cs)
	}
	w.setConn(tc)
	return w.ehlo()
}

func (w *worker) ehlo() error {
	w.bw.WriteString("EHLO ")
	w.bw.WriteString(w.l.cfg.Helo)
	w.bw.WriteString("\r\n")
	if err := w.flush("EHLO"); err != nil {
		return err
	}
	lines, err := w.reply("EHLO", 250)
	if err != nil {
		return err
	}
	w.pipelining, w.starttls = false, false
	for _, l := range lines[1:] {
		kw, _, _ := strings.Cut(l, " ")
		switch strings.ToUpper(kw) {
		case "PIPELINING":
			w.pipelining = true
		case "STARTTLS":
			w.starttls = true
		}
	}
	return nil
}

// send runs one transaction for message k.
func (w *worker) send(k int) error {
	cfg := &w.l.cfg
	w.bw.WriteString("MAIL FROM:<")
	w.bw.WriteString(cfg.From)
	w.bw.WriteString(">\r\n")
	if cfg.Pipelining && w.pipelining {
		w.bw.WriteString("RCPT TO:<")
		w.bw.WriteString(cfg.To)
		w.bw.WriteString(">\r\nDATA\r\n")
		if err := w.flush("MAIL"); err != nil {
			return err
		}
		_, errMail := w.reply("MAIL", 250)
		_, errRcpt := w.reply("RCPT", 250)
		_, errData := w.reply("DATA", 354)
		if err := firstReal(errMail, errRcpt, errData); err != nil {
			return err // an I/O error: the connection is gone
		}
		if errData != nil {
			return cmp(errMail, errRcpt, errData)
		}
		// 354 came although MAIL or RCPT failed (a broken server): end the
		// data and report the first failure.
		if err := w.data(k); err != nil {
			return err
		}
		return cmp(errMail, errRcpt, nil)
	}
	if err := w.flush("MAIL"); err != nil {
		return err
	}
	if _, err := w.reply("MAIL", 250); err != nil {
		return err
	}
	w.bw.WriteString("RCPT TO:<")
	w.bw.WriteString(cfg.To)
	w.bw.WriteString(">\r\n")
	if err := w.flush("RCPT"); err != nil {
		return err
	}
	if _, err := w.reply("RCPT", 250); err != nil {
		return err
	}
	if err := w.cmd("DATA", 354); err != nil {
		return err
	}
	return w.data(k)
}

// data sends message k and reads the reply to its final dot.
func (w *worker) data(k int) error {
	m := w.l.msg
	w.bw.Write(m.prefix)
	w.line = strconv.AppendInt(w.line[:0], int64(k), 10)
	w.bw.Write(w.line)
	w.bw.Write(m.tail)
	w.bw.Write(m.body)
	if err := w.flush("message data"); err != nil {
		return err
	}
	_, err := w.reply("end of data", 250)
	return err
}

// firstReal returns the first error that is not a reply.
func firstReal(errs ...error) error {
	for _, err := range errs {
		var re *replyError
		if err != nil && !errors.As(err, &re) {
			return err
		}
	}
	return nil
}

// cmp returns the first non-nil error.
func cmp(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *worker) cmd(c string, want int) error {
	w.bw.WriteString(c)
	w.bw.WriteString("\r\n")
	if err := w.flush(c); err != nil {
		return err
	}
	_, err := w.reply(c, want)
	return err
}

func (w *worker) quit() {
	w.conn.SetDeadline(time.Now().Add(w.l.cfg.Timeout))
	_ = w.cmd("QUIT", 221)
}

func (w *worker) flush(stage string) error {
	if err := w.bw.Flush(); err != nil {
		return &stageError{Class: "io", Stage: stage, Err: err}
	}
	return nil
}

// reply reads one (possibly multi-line) reply and checks its code. It
// returns the text of each line.
func (w *worker) reply(stage string, want int) ([]string, error) {
	var lines []string
	code := 0
	for {
		line, err := w.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, &stageError{Class: "protocol", Stage: stage, Err: errors.New("reply line too long")}
			}
			return nil, &stageError{Class: "io", Stage: stage, Err: err}
		}
		c, more, text, ok := parseReplyLine(line)
		if !ok || (code != 0 && c != code) {
			return nil, &stageError{Class: "protocol", Stage: stage, Err: fmt.Errorf("malformed reply %q", strings.TrimSpace(string(line)))}
		}
		code = c
		lines = append(lines, text)
		if !more {
			break
		}
	}
	if code != want {
		re := &replyError{Code: code, Text: lines[0], Stage: stage}
		if f := strings.Fields(lines[0]); len(f) > 0 && isEnhanced(f[0], code) {
			re.Enhanced, re.Text = f[0], strings.TrimSpace(strings.TrimPrefix(lines[0], f[0]))
		}
		return lines, re
	}
	return lines, nil
}

// parseReplyLine splits "250-text\r\n" into 250, more=true, "text".
func parseReplyLine(line []byte) (code int, more bool, text string, ok bool) {
	s := strings.TrimRight(string(line), "\r\n")
	if len(s) < 3 {
		return 0, false, "", false
	}
	c, err := strconv.Atoi(s[:3])
	if err != nil || c < 200 || c > 599 {
		return 0, false, "", false
	}
	if len(s) == 3 {
		return c, false, "", true
	}
	switch s[3] {
	case '-':
		return c, true, s[4:], true
	case ' ':
		return c, false, s[4:], true
	}
	return 0, false, "", false
}

// isEnhanced reports whether s is an enhanced status code (RFC 3463)
// whose class matches the reply code's.
func isEnhanced(s string, code int) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || p[0] != strconv.Itoa(code/100) {
		return false
	}
	for _, x := range p[1:] {
		if _, err := strconv.Atoi(x); err != nil || x == "" {
			return false
		}
	}
	return true
}
