package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"certrelay/internal/selection"
)

// Retrying a binding that cannot be opened (SPEC P1, issue 9 item 17): the
// first retry after DefaultBindRetry, then twice as long each time, up to
// DefaultBindRetryMax, for as long as the configuration has the binding.
const (
	DefaultBindRetry    = time.Second
	DefaultBindRetryMax = time.Minute
)

// ListenOptions describe one protocol's set of listeners.
type ListenOptions struct {
	// Kind names what owns a binding in errors ("receive connector"); the
	// log key of the owner is LogKey (default "owner").
	Kind, LogKey string
	// FailedEvent is raised when a binding cannot be opened, with the
	// parameters owner, binding, error and the time to the next try;
	// RestoredEvent when it opens after failures, with owner, binding and
	// the attempts it took. 0: no event.
	FailedEvent, RestoredEvent int
	// Retry and RetryMax space the retries of a binding that cannot be
	// opened; defaults DefaultBindRetry, DefaultBindRetryMax.
	Retry, RetryMax time.Duration
	// Events receives the events; nil: the layer's.
	Events EventSink
	// KeepAlive is the TCP keep-alive period of accepted connections: 0
	// is Go's default (keep-alive on, 15 s); negative turns keep-alive
	// off. A protocol with its own inactivity timeouts (SMTP's) turns it
	// off: Go sets it with four setsockopt calls on every accepted
	// connection, and the timeouts already close a silent peer.
	KeepAlive time.Duration
}

// Binding is one address a protocol listens on, and how it serves the
// connections: either Serve (the protocol's own accept loop) or Handle
// (one call per connection, the set accepting).
type Binding struct {
	Addr  string // "ip:port"
	Owner string // what the binding belongs to (a connector's name), for logs and events
	// Serve runs the protocol on the listener until it is closed — a
	// protocol engine's own accept loop, such as smtp.Server.Serve, which
	// admits connections there. It returns nil (or net.ErrClosed) when the
	// listener or the protocol was shut down; any other error is logged.
	// It is kept for the listener's life: a later Set with the same
	// address changes only Owner.
	Serve func(net.Listener) error
	// Handle, when Serve is nil, is called in its own goroutine for each
	// connection the set accepts, and owns it. With TLS set, the
	// connection is TLS from its first byte (implicit TLS, RFC 8314:
	// HTTPS, IMAPS, POP3S, SMTPS), with the certificate the published
	// snapshot selects for the request TLS returns — it may use the
	// client's server name (SNI) — at each handshake; a connection no
	// certificate serves fails its handshake. Handle and TLS are read
	// from the binding current at each connection, so a later Set with
	// the same address changes them without a new socket. A plain
	// protocol upgrades later with Layer.StartTLS.
	Handle func(net.Conn)
	TLS    func(hello *tls.ClientHelloInfo) selection.Request
	// Challenge, with TLS, may answer a handshake with a configuration of
	// its own instead of the selected certificate: a validation that
	// proves control of a name at the TLS level, such as ACME's
	// tls-alpn-01 (RFC 8737). nil, or a nil answer: the selection's.
	Challenge func(hello *tls.ClientHelloInfo) *tls.Config
	// Wrap, with TLS, wraps the accepted connection before TLS is layered
	// on it: what the protocol needs to see underneath its TLS (IMAP4's
	// imapd.Conn, which knows when the connection waits for input).
	Wrap func(net.Conn) net.Conn
}

// Listeners keeps one protocol's listeners matching its configuration:
// Set opens what is new, keeps what is unchanged (connections in flight
// are never touched) and closes what is gone; a binding that cannot be
// opened (the address is busy) is retried with back-off until it opens or
// leaves the configuration. Safe for concurrent use.
type Listeners struct {
	l *Layer
	o ListenOptions

	mu        sync.Mutex
	listeners map[string]*listener    // by address
	failed    map[string]*bindFailure // addresses waiting for a retry
	wake      chan struct{}           // failed changed
	done      chan struct{}           // closed by Close
	closed    bool
}

// listener is an open binding.
type listener struct {
	ln  net.Listener
	cur atomic.Pointer[Binding] // the binding as last Set
}

// bindFailure is a binding that could not be opened, waiting for a retry.
type bindFailure struct {
	b        Binding
	attempts int
	delay    time.Duration // until next
	next     time.Time
}

// pendingEvent is an event decided under the lock, raised after it.
type pendingEvent struct {
	id     int
	key    string
	params []string
}

// Listeners returns a new, empty set of listeners for one protocol.
func (l *Layer) Listeners(o ListenOptions) *Listeners {
	if o.LogKey == "" {
		o.LogKey = "owner"
	}
	if o.Kind == "" {
		o.Kind = "listener"
	}
	s := &Listeners{l: l, o: o, listeners: map[string]*listener{}, failed: map[string]*bindFailure{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.retryLoop()
	return s
}

// Set makes the set listen on exactly want (by address; the first binding
// of an address wins). It returns the errors of the bindings that could
// not be opened; each raises FailedEvent and is retried.
func (s *Listeners) Set(ctx context.Context, want []Binding) []error {
	byAddr := map[string]Binding{}
	var errs []error
	for _, b := range want {
		if b.Serve == nil && b.Handle == nil {
			errs = append(errs, fmt.Errorf("%s %q on %s: neither Serve nor Handle", s.o.Kind, b.Owner, b.Addr))
			continue
		}
		if _, dup := byAddr[b.Addr]; !dup {
			byAddr[b.Addr] = b
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	for a, l := range s.listeners {
		if b, ok := byAddr[a]; !ok {
			l.ln.Close()
			delete(s.listeners, a)
			s.l.o.Log.Info("stopped listening", "binding", a)
		} else {
			l.cur.Store(&b)
		}
	}
	for a, f := range s.failed {
		if b, ok := byAddr[a]; !ok {
			delete(s.failed, a)
		} else {
			f.b = b
		}
	}
	var evs []pendingEvent
	for _, a := range sortedKeys(byAddr) {
		if _, ok := s.listeners[a]; ok {
			continue
		}
		err, ev := s.listen(byAddr[a])
		if err != nil {
			errs = append(errs, err)
		}
		evs = append(evs, ev...)
	}
	s.wakeRetry()
	s.mu.Unlock()
	s.raise(ctx, evs)
	return errs
}

// listen opens b and serves it, or records the failure for a retry. The
// caller holds s.mu.
func (s *Listeners) listen(b Binding) (error, []pendingEvent) {
	log := s.l.o.Log
	lc := net.ListenConfig{KeepAlive: s.o.KeepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", b.Addr)
	f := s.failed[b.Addr]
	if err != nil {
		if f == nil {
			f = &bindFailure{}
			s.failed[b.Addr] = f
		}
		f.b = b
		f.attempts++
		f.delay = min(max(2*f.delay, s.retryBase()), s.retryMax())
		f.next = time.Now().Add(f.delay)
		if f.attempts == 1 {
			log.Error("cannot listen; retrying", s.o.LogKey, b.Owner, "binding", b.Addr, "err", err, "retry", f.delay)
		} else {
			log.Debug("still cannot listen", s.o.LogKey, b.Owner, "binding", b.Addr, "err", err, "attempts", f.attempts, "retry", f.delay)
		}
		var evs []pendingEvent
		if s.o.FailedEvent != 0 {
			evs = append(evs, pendingEvent{s.o.FailedEvent, b.Addr, []string{b.Owner, b.Addr, BindError(err), f.delay.String()}})
		}
		return fmt.Errorf("%s %q cannot listen on %s: %w", s.o.Kind, b.Owner, b.Addr, err), evs
	}
	l := &listener{ln: ln}
	l.cur.Store(&b)
	s.listeners[b.Addr] = l
	log.Info("listening", s.o.LogKey, b.Owner, "binding", b.Addr)
	serve := b.Serve
	if serve == nil {
		serve = s.l.acceptLoop(l)
	}
	go func() {
		if err := serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("listener stopped", "binding", b.Addr, "err", err)
		}
	}()
	if f == nil {
		return nil, nil
	}
	delete(s.failed, b.Addr)
	if s.o.RestoredEvent == 0 {
		return nil, nil
	}
	return nil, []pendingEvent{{s.o.RestoredEvent, b.Addr, []string{b.Owner, b.Addr, strconv.Itoa(f.attempts)}}}
}

// BindError is the cause of a failed listen or accept without the
// repetition of the address ("bind: address already in use").
func BindError(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

func (s *Listeners) retryBase() time.Duration {
	if s.o.Retry > 0 {
		return s.o.Retry
	}
	return DefaultBindRetry
}

func (s *Listeners) retryMax() time.Duration {
	if s.o.RetryMax > 0 {
		return s.o.RetryMax
	}
	return DefaultBindRetryMax
}

// wakeRetry tells retryLoop that the failures changed.
func (s *Listeners) wakeRetry() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// retryLoop retries the bindings that failed, each when its back-off
// ends, until Close.
func (s *Listeners) retryLoop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var next time.Time
		for _, f := range s.failed {
			if next.IsZero() || f.next.Before(next) {
				next = f.next
			}
		}
		s.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-s.done:
			return
		case <-s.wake:
			continue
		case <-timer.C:
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		now := time.Now()
		var evs []pendingEvent
		for _, a := range sortedKeys(s.failed) {
			if f := s.failed[a]; !f.next.After(now) {
				_, ev := s.listen(f.b)
				evs = append(evs, ev...)
			}
		}
		s.mu.Unlock()
		s.raise(context.Background(), evs)
	}
}

// raise raises events decided under the lock.
func (s *Listeners) raise(ctx context.Context, evs []pendingEvent) {
	sink := s.o.Events
	if sink == nil {
		sink = s.l.o.Events
	}
	if sink == nil {
		return
	}
	for _, e := range evs {
		if _, err := sink.Raise(ctx, e.id, e.key, e.params...); err != nil {
			s.l.o.Log.Warn("cannot log event", "event", e.id, "err", err)
		}
	}
}

// Addr returns the address a binding actually listens on (useful with
// port 0 in tests), or "".
func (s *Listeners) Addr(binding string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.listeners[binding]; ok {
		return l.ln.Addr().String()
	}
	return ""
}

// Listening returns the bindings that have a listener, sorted.
func (s *Listeners) Listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedKeys(s.listeners)
}

// Close closes every listener and stops retrying. Connections already
// accepted are the protocol's to end.
func (s *Listeners) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.done)
	for a, l := range s.listeners {
		l.ln.Close()
		delete(s.listeners, a)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
