package serving

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"
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
}

// Binding is one address a protocol listens on.
type Binding struct {
	Addr  string // "ip:port"
	Owner string // what the binding belongs to (a connector's name), for logs and events
	// Serve runs the protocol on the listener until it is closed: a
	// protocol engine's own accept loop (smtp.Server.Serve), or one made
	// by Layer.Accept from a handler per connection. It returns nil (or
	// net.ErrClosed) when the listener or the protocol was shut down; any
	// other error is logged.
	Serve func(net.Listener) error
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
	listeners map[string]net.Listener // by address
	failed    map[string]*bindFailure // addresses waiting for a retry
	wake      chan struct{}           // failed changed
	done      chan struct{}           // closed by Close
	closed    bool
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
	s := &Listeners{l: l, o: o, listeners: map[string]net.Listener{}, failed: map[string]*bindFailure{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.retryLoop()
	return s
}

// Set makes the set listen on exactly want (by address; the first binding
// of an address wins). It returns the errors of the bindings that could
// not be opened; each raises FailedEvent and is retried.
func (s *Listeners) Set(ctx context.Context, want []Binding) []error {
	byAddr := map[string]Binding{}
	for _, b := range want {
		if _, dup := byAddr[b.Addr]; !dup {
			byAddr[b.Addr] = b
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	for a, ln := range s.listeners {
		if _, ok := byAddr[a]; !ok {
			ln.Close()
			delete(s.listeners, a)
			s.l.o.Log.Info("stopped listening", "binding", a)
		}
	}
	for a, f := range s.failed {
		if b, ok := byAddr[a]; !ok {
			delete(s.failed, a)
		} else {
			f.b = b
		}
	}
	var errs []error
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
	ln, err := net.Listen("tcp", b.Addr)
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
	s.listeners[b.Addr] = ln
	log.Info("listening", s.o.LogKey, b.Owner, "binding", b.Addr)
	go func() {
		if err := b.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
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
	if ln, ok := s.listeners[binding]; ok {
		return ln.Addr().String()
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
	for a, ln := range s.listeners {
		ln.Close()
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
