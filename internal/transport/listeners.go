package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"certrelay/internal/smtp"
)

// Retrying a binding that cannot be opened (SPEC P1, issue 9 item 17): the
// first retry after DefaultBindRetry, then twice as long each time, up to
// DefaultBindRetryMax, for as long as an enabled connector has the binding.
const (
	DefaultBindRetry    = time.Second
	DefaultBindRetryMax = time.Minute
)

// bindFailure is a binding that could not be opened, waiting for a retry.
type bindFailure struct {
	connector string
	attempts  int
	delay     time.Duration // until next
	next      time.Time
	err       error
}

// pendingEvent is an event decided under r.mu, raised after it.
type pendingEvent struct {
	id     int
	key    string
	params []string
}

// syncListeners opens and closes listeners to match want (binding →
// connector name) and returns the errors of the bindings that could not
// be opened, and the events to raise. Bindings that failed are retried
// by retryLoop. The caller holds r.mu.
func (r *Receiver) syncListeners(want map[string]string) ([]error, []pendingEvent) {
	for b, l := range r.listeners {
		if _, ok := want[b]; !ok {
			l.Close()
			delete(r.listeners, b)
			r.Log.Info("stopped listening", "binding", b)
		}
	}
	for b := range r.failed {
		if _, ok := want[b]; !ok {
			delete(r.failed, b)
		}
	}
	var errs []error
	var evs []pendingEvent
	for _, b := range sortedKeys(want) {
		if _, ok := r.listeners[b]; ok {
			continue
		}
		err, ev := r.listen(b, want[b])
		if err != nil {
			errs = append(errs, err)
		}
		evs = append(evs, ev...)
	}
	r.wakeRetry()
	return errs, evs
}

// listen opens binding b for connector name and serves it, or records
// the failure for a retry. The caller holds r.mu.
func (r *Receiver) listen(b, name string) (error, []pendingEvent) {
	l, err := net.Listen("tcp", b)
	f := r.failed[b]
	if err != nil {
		if f == nil {
			f = &bindFailure{}
			r.failed[b] = f
		}
		f.connector, f.err = name, err
		f.attempts++
		f.delay = min(max(2*f.delay, r.retryBase()), r.retryMax())
		f.next = time.Now().Add(f.delay)
		if f.attempts == 1 {
			r.Log.Error("cannot listen; retrying", "connector", name, "binding", b, "err", err, "retry", f.delay)
		} else {
			r.Log.Debug("still cannot listen", "connector", name, "binding", b, "err", err, "attempts", f.attempts, "retry", f.delay)
		}
		return fmt.Errorf("receive connector %q cannot listen on %s: %w", name, b, err),
			[]pendingEvent{{16027, b, []string{name, b, bindError(err), f.delay.String()}}}
	}
	r.listeners[b] = l
	r.Log.Info("listening", "connector", name, "binding", b)
	go func() {
		if err := r.srv.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			r.Log.Error("listener stopped", "binding", b, "err", err)
		}
	}()
	if f != nil {
		delete(r.failed, b)
		return nil, []pendingEvent{{16028, b, []string{name, b, strconv.Itoa(f.attempts)}}}
	}
	return nil, nil
}

// bindError is the cause of a failed listen without the repetition of
// the address ("bind: address already in use").
func bindError(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

func (r *Receiver) retryBase() time.Duration {
	if r.BindRetry > 0 {
		return r.BindRetry
	}
	return DefaultBindRetry
}

func (r *Receiver) retryMax() time.Duration {
	if r.BindRetryMax > 0 {
		return r.BindRetryMax
	}
	return DefaultBindRetryMax
}

// wakeRetry tells retryLoop that the failures changed.
func (r *Receiver) wakeRetry() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// retryLoop retries the bindings that failed, each when its back-off
// ends, until Shutdown.
func (r *Receiver) retryLoop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.mu.Lock()
		var next time.Time
		for _, f := range r.failed {
			if next.IsZero() || f.next.Before(next) {
				next = f.next
			}
		}
		r.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-r.done:
			return
		case <-r.wake:
			continue
		case <-timer.C:
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return
		}
		now := time.Now()
		var evs []pendingEvent
		for _, b := range sortedKeys(r.failed) {
			if f := r.failed[b]; !f.next.After(now) {
				_, ev := r.listen(b, f.connector)
				evs = append(evs, ev...)
			}
		}
		r.mu.Unlock()
		r.raiseAll(context.Background(), evs)
	}
}

// raiseAll raises events decided under the lock.
func (r *Receiver) raiseAll(ctx context.Context, evs []pendingEvent) {
	if r.Events == nil {
		return
	}
	for _, e := range evs {
		if _, err := r.Events.Raise(ctx, e.id, e.key, e.params...); err != nil {
			r.Log.Warn("cannot log event", "event", e.id, "err", err)
		}
	}
}

// Listening returns the bindings that have a listener, sorted.
func (r *Receiver) Listening() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedKeys(r.listeners)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
