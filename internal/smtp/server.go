package smtp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the Server fields, applied when a field is zero.
const (
	// DefaultMaxLineLength bounds a command line, CRLF included. RFC 5321
	// 4.5.3.1.4 requires at least 512; ESMTP parameters and SMTPUTF8
	// addresses need more, so we are generous.
	DefaultMaxLineLength = 2048
	// DefaultMaxMessageBytes is the SIZE limit when the session's
	// Capabilities give none: 36 MiB, Exchange's receive connector default.
	DefaultMaxMessageBytes = 36 << 20
	// DefaultMaxRecipients: RFC 5321 4.5.3.1.8 requires at least 100; this
	// is Postfix's smtpd_recipient_limit.
	DefaultMaxRecipients = 1000
	// DefaultMaxConnections bounds the sessions of a Server over all its
	// listeners: Exchange's MaxInboundConnection default.
	DefaultMaxConnections = 5000
	// DefaultMaxConnectionsPerClient bounds the sessions of one client IP
	// address: Exchange's MaxInboundConnectionPerSource default.
	DefaultMaxConnectionsPerClient = 20
	// DefaultSessionTimeout bounds a whole session: Exchange's
	// ConnectionTimeout default on a hub.
	DefaultSessionTimeout = 10 * time.Minute
	// DefaultMessageTimeout bounds the transfer of one message, from 354
	// to the final dot; a message also ends with its session.
	DefaultMessageTimeout = 10 * time.Minute
	// DefaultMaxErrors is how many protocol errors (unknown commands,
	// syntax errors, bad sequence, failed AUTH) a client may make before
	// it gets 421 4.7.0 and the connection is closed.
	DefaultMaxErrors = 10
	// DefaultReadTimeout: RFC 5321 4.5.3.2.7, server waiting for a command.
	DefaultReadTimeout = 5 * time.Minute
	// DefaultDataTimeout bounds each read while the message arrives.
	DefaultDataTimeout = 10 * time.Minute
	// DefaultWriteTimeout bounds each write of replies.
	DefaultWriteTimeout = 5 * time.Minute
	// DefaultTLSHandshakeTimeout bounds a STARTTLS/X-ANONYMOUSTLS handshake.
	DefaultTLSHandshakeTimeout = time.Minute
)

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("smtp: server closed")

// Server is an SMTP server: it accepts connections and runs the protocol,
// delegating every policy decision to Handler. Set the fields before the
// first call to Serve or ServeConn and do not change them afterwards; the
// methods are then safe for concurrent use (several listeners may be
// served at once).
type Server struct {
	// Hostname is the greeting domain when the Session gives none.
	// Default: os.Hostname, or "localhost".
	Hostname string
	// Handler creates each connection's Session. Required.
	Handler Handler

	// MaxLineLength bounds a command line, CRLF included; a longer line
	// is discarded up to its LF and answered 500 5.5.2 Line too long, and
	// the session goes on. Default DefaultMaxLineLength.
	MaxLineLength int
	// MaxDataLineLength, when positive, bounds a text line of the message,
	// CRLF included and a stuffed dot not counted (RFC 5321 4.5.3.1.6
	// says 1000). A message with a longer line is read to its end and
	// refused with 554 5.6.0. Default 0: long lines are accepted, as most
	// MTAs do, since real mail breaks the limit and nothing here depends
	// on it.
	MaxDataLineLength int
	// MaxMessageBytes is the SIZE limit for sessions whose Capabilities
	// set none. Default DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// MaxRecipients bounds the recipients of one transaction; the next
	// RCPT gets 452 4.5.3 (RFC 5321 4.5.3.1.10). Default DefaultMaxRecipients.
	MaxRecipients int
	// MaxErrors: the reply to the error that reaches it is 421 4.7.0 and
	// the connection is closed. Default DefaultMaxErrors.
	MaxErrors int

	// MaxConnections bounds the sessions the Server runs at once, over all
	// its listeners and whatever Limits says: it guards the process's
	// file descriptors. A connection beyond it gets 421 4.7.0 Too many
	// connections and is closed. It is also each group's limit when
	// Limits sets none. Default DefaultMaxConnections.
	MaxConnections int
	// MaxConnectionsPerClient bounds the sessions one client IP address
	// runs at once in a group (see Limits); beyond it, 421 4.7.0 Too many
	// connections from your address. Default DefaultMaxConnectionsPerClient.
	MaxConnectionsPerClient int
	// SessionTimeout bounds a whole session, however active: when it is
	// spent the client gets 421 4.4.2 Session time limit reached (at the
	// next command, or at once when waiting or receiving a message) and
	// the connection is closed. Default DefaultSessionTimeout.
	SessionTimeout time.Duration
	// MessageTimeout bounds the transfer of one message, from the 354
	// reply to the final dot, however steadily the data trickles in: when
	// it is spent the message is not accepted, the client gets 421 4.4.2
	// Message time limit reached and the connection is closed.
	// Default DefaultMessageTimeout.
	MessageTimeout time.Duration
	// Limits, when set, returns the limits of a connection accepted on
	// local (the listener's address), such as those of the receive
	// connector listening there. It is called once per connection, before
	// anything is read or written, from the connection's goroutine: it
	// must be quick and safe for concurrent use. Zero fields take the
	// Server's values.
	Limits func(local net.Addr) Limits
	// LimitReached, when set, is told each time a client meets a limit,
	// and of failed accepts (LimitAccept). It is called from the
	// connection's (or the accept loop's) goroutine, so it must not block:
	// record the event and return.
	LimitReached func(LimitEvent)

	// ReadTimeout bounds the wait for each command line. On expiry the
	// client gets 421 4.4.2 and the connection is closed.
	// Default DefaultReadTimeout.
	ReadTimeout time.Duration
	// DataTimeout bounds each read of message data (an inactivity limit,
	// not a limit on the whole transfer). On expiry the message is not
	// delivered (Data sees the error), the client gets 421 4.4.2 and the
	// connection is closed. Default DefaultDataTimeout.
	DataTimeout time.Duration
	// WriteTimeout bounds each write of replies. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake after STARTTLS.
	// Default DefaultTLSHandshakeTimeout.
	TLSHandshakeTimeout time.Duration

	// Logger receives debug and error logs, with stable keys ("conn",
	// "remote", "cmd", "err", …). Client input is logged only quoted and
	// truncated, AUTH data never. Default: discard.
	Logger *slog.Logger

	initOnce sync.Once
	cfg      config
	bufs     bufferPool // buffers of sessions waiting for a command

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    atomic.Bool
	shutdown  atomic.Bool
	nextID    atomic.Uint64
	counts    connCounter
	sleep     func(time.Duration) // time.Sleep; tests record the back-off
	wg        sync.WaitGroup
	done      chan struct{} // closed when the last session ends after shutdown
}

// config is the Server's fields with defaults applied.
type config struct {
	hostname            string
	maxLine             int
	maxDataLine         int
	maxMessage          int64
	maxRcpts            int
	maxErrors           int
	maxConns            int
	maxPerClient        int
	sessionTimeout      time.Duration
	messageTimeout      time.Duration
	readTimeout         time.Duration
	dataTimeout         time.Duration
	writeTimeout        time.Duration
	tlsHandshakeTimeout time.Duration
	log                 *slog.Logger
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		c := config{
			hostname:            s.Hostname,
			maxLine:             s.MaxLineLength,
			maxDataLine:         s.MaxDataLineLength,
			maxMessage:          s.MaxMessageBytes,
			maxRcpts:            s.MaxRecipients,
			maxErrors:           s.MaxErrors,
			maxConns:            s.MaxConnections,
			maxPerClient:        s.MaxConnectionsPerClient,
			sessionTimeout:      s.SessionTimeout,
			messageTimeout:      s.MessageTimeout,
			readTimeout:         s.ReadTimeout,
			dataTimeout:         s.DataTimeout,
			writeTimeout:        s.WriteTimeout,
			tlsHandshakeTimeout: s.TLSHandshakeTimeout,
			log:                 s.Logger,
		}
		if c.hostname == "" {
			if h, err := os.Hostname(); err == nil && h != "" {
				c.hostname = h
			} else {
				c.hostname = "localhost"
			}
		}
		c.hostname = sanitizeText(c.hostname)
		if c.maxLine <= 0 {
			c.maxLine = DefaultMaxLineLength
		}
		if c.maxMessage <= 0 {
			c.maxMessage = DefaultMaxMessageBytes
		}
		if c.maxRcpts <= 0 {
			c.maxRcpts = DefaultMaxRecipients
		}
		if c.maxErrors <= 0 {
			c.maxErrors = DefaultMaxErrors
		}
		if c.maxConns <= 0 {
			c.maxConns = DefaultMaxConnections
		}
		if c.maxPerClient <= 0 {
			c.maxPerClient = DefaultMaxConnectionsPerClient
		}
		if c.sessionTimeout <= 0 {
			c.sessionTimeout = DefaultSessionTimeout
		}
		if c.messageTimeout <= 0 {
			c.messageTimeout = DefaultMessageTimeout
		}
		if c.readTimeout <= 0 {
			c.readTimeout = DefaultReadTimeout
		}
		if c.dataTimeout <= 0 {
			c.dataTimeout = DefaultDataTimeout
		}
		if c.writeTimeout <= 0 {
			c.writeTimeout = DefaultWriteTimeout
		}
		if c.tlsHandshakeTimeout <= 0 {
			c.tlsHandshakeTimeout = DefaultTLSHandshakeTimeout
		}
		if c.log == nil {
			c.log = slog.New(slog.DiscardHandler)
		}
		s.cfg = c
		if s.sleep == nil {
			s.sleep = time.Sleep
		}
		s.listeners = make(map[*net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
		s.done = make(chan struct{})
	})
}

// Serve accepts connections on l and runs a session for each in its own
// goroutine. It returns ErrServerClosed after Close or Shutdown, or the
// listener's error. Temporary accept errors (such as running out of file
// descriptors) are retried with a back-off. Serve closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	if s.Handler == nil {
		l.Close()
		return errors.New("smtp: Server.Handler is nil")
	}
	if !s.trackListener(&l, true) {
		l.Close()
		return ErrServerClosed
	}
	defer s.trackListener(&l, false)
	defer l.Close()

	// Accept failures (EMFILE, ENFILE: out of file descriptors) back off,
	// doubling from 5 ms to 1 s, so the loop never spins while the
	// connection that could not be accepted waits in the backlog. The log
	// gets one warning per streak; LimitReached hears of each failure.
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.closed.Load() || s.shutdown.Load() {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				if delay == 0 {
					s.cfg.log.Warn("smtp accept failed; backing off until it succeeds", "listener", l.Addr().String(), "err", err)
				}
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.limitReached(LimitEvent{Limit: LimitAccept, Group: s.limitsFor(l.Addr()).group,
					Conn: ConnInfo{LocalAddr: l.Addr()}, Value: delay.String(), Err: err})
				s.sleep(delay)
				continue
			}
			return err
		}
		if delay > 0 {
			s.cfg.log.Info("smtp accept works again", "listener", l.Addr().String())
		}
		delay = 0
		// Admission happens here, not in the session's goroutine: a
		// refused connection is answered and closed before the next
		// accept, so a burst beyond the limits never holds more than one
		// extra file descriptor.
		lim, ok := s.admit(c)
		if !ok {
			continue
		}
		if !s.addSession() {
			s.release(&lim, c.RemoteAddr())
			c.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			s.serve(context.Background(), c, &lim)
		}()
	}
}

// ServeConn runs one session on c and returns when it ends; it closes c.
// It suits callers that accept connections themselves, and tests.
//
// Cancelling ctx ends the session gracefully, as Shutdown does: a session
// waiting for a command gets 421 4.3.2 and is closed; a command in
// progress (such as a message being stored) is completed first. The
// Session's context (see Handler) is derived from ctx.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	s.init()
	if !s.addSession() {
		c.Close()
		return
	}
	defer s.wg.Done()
	if s.Handler == nil {
		c.Close()
		s.cfg.log.Error("smtp: Server.Handler is nil")
		return
	}
	if lim, ok := s.admit(c); ok {
		s.serve(ctx, c, &lim)
	}
}

// admit counts a new connection against the limits of its listener, or
// refuses it (421 4.7.0, closed) and reports false.
func (s *Server) admit(nc net.Conn) (connLimits, bool) {
	lim := s.limitsFor(nc.LocalAddr())
	if l, ok := s.acquire(&lim, nc.RemoteAddr()); !ok {
		s.refuse(nc, &lim, l)
		return lim, false
	}
	return lim, true
}

// serve runs the session of a connection admit counted.
func (s *Server) serve(ctx context.Context, nc net.Conn, lim *connLimits) {
	defer s.release(lim, nc.RemoteAddr())
	c := s.track(nc, lim)
	if c == nil {
		return
	}
	defer s.trackConn(c, false)
	c.run(ctx)
}

// track makes the conn of nc and tracks it; nil (nc closed) when the
// server is closing. Not inlined: serve's frame stays small while the
// session runs (see conn.run).
//
//go:noinline
func (s *Server) track(nc net.Conn, lim *connLimits) *conn {
	c := newConn(s, nc, *lim)
	if !s.trackConn(c, true) {
		nc.Close()
		return nil
	}
	return c
}

// addSession counts a session goroutine in s.wg, unless the server is
// closing: Shutdown's Wait must not race with an Add.
func (s *Server) addSession() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() || s.shutdown.Load() {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed.Load() || s.shutdown.Load() {
			return false
		}
		s.listeners[l] = struct{}{}
	} else {
		delete(s.listeners, l)
	}
	return true
}

func (s *Server) trackConn(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed.Load() || s.shutdown.Load() {
			return false
		}
		s.conns[c] = struct{}{}
		return true
	}
	delete(s.conns, c)
	if len(s.conns) == 0 && s.shutdown.Load() {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
	return true
}

// Close stops the server at once: listeners and connections are closed,
// sessions in progress end with an I/O error (a message being received is
// not delivered). Close does not wait for the sessions' goroutines.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed.Store(true)
	var err error
	for l := range s.listeners {
		if cerr := (*l).Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return err
}

// Shutdown stops the server gracefully: it closes the listeners, sends
// 421 4.3.2 to every session waiting for a command and closes it, lets
// sessions busy with a command (receiving or storing a message) finish
// that command and then closes them the same way, and waits for all
// sessions to end. If ctx ends first, the remaining connections are closed
// as by Close and Shutdown returns ctx.Err() without waiting further.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.shutdown.Store(true)
	var err error
	for l := range s.listeners {
		if cerr := (*l).Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	for c := range s.conns {
		c.stop()
	}
	if len(s.conns) == 0 {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
	s.mu.Unlock()

	select {
	case <-s.done:
		s.wg.Wait()
		return err
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}
