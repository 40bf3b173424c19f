package queue

import (
	"errors"
	"sync"
	"time"
)

// UnreachableError marks a temporary failure that says the destination
// itself could not be reached: no connection to any of its hosts. The
// queue then holds the destination's other due recipients without trying
// them until this recipient's next attempt (see "Retry schedule" in the
// package doc).
type UnreachableError struct{ Err error }

// Error returns the wrapped error's text.
func (e *UnreachableError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Unreachable wraps err (which must not be nil) as an UnreachableError.
func Unreachable(err error) error { return &UnreachableError{Err: err} }

// IsUnreachable reports whether err is, or wraps, an UnreachableError.
func IsUnreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

// heldError is the last_error of a recipient held with its destination.
func heldError(dest, why string, until time.Time) string {
	return truncate("not tried: " + dest + " could not be reached (" + why + "); tried again with it at " + until.UTC().Format(time.RFC3339))
}

// holdOp defers, in the writer's transaction, the recipients of dest
// that are due now to until (their expiry if sooner), without counting
// an attempt. The scans hold the ones that fall due later.
type holdOp struct {
	dest    string
	until   int64 // Unix ms
	lastErr string
	expiry  int64 // Options.Expiry in ms
}

// holdSQL is holdOp's statement (arguments: until, expiry, last_error,
// now, destination, now). It reads the recipients_hop index.
const holdSQL = `UPDATE recipients SET
	next_attempt = min(?, coalesce((SELECT m.received_at FROM messages m WHERE m.id = recipients.msg_id), 0) + ?),
	last_error = ?, updated_at = ?
	WHERE destination = ? AND status = 'pending' AND next_attempt <= ?`

// PromoteInterval is how often, at most, one destination's deferred
// recipients are made due together because a delivery to it succeeded
// after failures (see "Retry schedule" in the package doc).
const PromoteInterval = time.Minute

// MaxHold is the longest a destination is held after a delivery could
// not reach it, however late that recipient's own next attempt: the
// destination's other mail is tried again by then, and one success makes
// all of it due. Exchange retries a next-hop queue in Retry after
// OutboundConnectionFailureRetryInterval, 10 minutes on a hub server.
const MaxHold = 10 * time.Minute

// maxHops bounds the destinations hopState remembers.
const maxHops = 10000

// hopState remembers, per remote destination, whether it could be
// reached. When a delivery succeeds after deliveries found the
// destination unreachable (UnreachableError), the recipients deferred for
// it are made due at once: a peer that comes back gets its waiting mail
// within a dispatcher scan, not after each recipient's own back-off, as
// Exchange resumes a next-hop queue in Retry once a connection succeeds.
// The first success since the server started makes due the recipients
// held with the destination by an earlier process. Recipients deferred
// by a peer that answered (greylisting, a full mailbox, a DANE mismatch)
// keep their schedule, and a destination is promoted at most once per
// PromoteInterval.
//
// The other way round, a delivery that could not reach its destination at
// all (UnreachableError: no connection to any host) holds the
// destination: until that recipient's next attempt, the dispatcher defers
// the destination's other due recipients without handing them to a
// worker, as Exchange leaves the messages of a next-hop queue in Retry
// alone and retries the queue. Without it, every message tried its own
// connection to a host that was down: 100,000 connection attempts on
// every round of the retry schedule, each holding a worker for the dial
// timeout (30 s) when the host drops packets instead of refusing them.
// The hold is lifted by a success, when its time comes, and by any change
// an administrator makes to the queue (Retry-Queue must try at once).
type hopState struct {
	mu       sync.Mutex
	up       map[string]bool      // destination → reached since its last promotion
	down     map[string]bool      // destination → found unreachable since it was last reached
	promoted map[string]time.Time // destination → when its deferred mail was last made due
	holds    map[string]hopHold   // destination → held until
	gen      int64                // the queue's generation when the holds were last checked
}

type hopHold struct {
	until time.Time
	why   string
}

// hold holds dest until the given time, with the error that says why.
func (h *hopState) hold(dest string, until time.Time, why string) {
	if dest == Local {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holds == nil || len(h.holds) >= maxHops {
		h.holds = map[string]hopHold{}
	}
	h.holds[dest] = hopHold{until: until, why: why}
}

// held reports whether dest is held at now, until when and why.
func (h *hopState) held(dest string, now time.Time) (time.Time, string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hd, ok := h.holds[dest]
	if !ok {
		return time.Time{}, "", false
	}
	if !now.Before(hd.until) {
		delete(h.holds, dest)
		return time.Time{}, "", false
	}
	return hd.until, hd.why, true
}

// holding reports whether any destination is held.
func (h *hopState) holding() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.holds) > 0
}

// generation records the queue's generation counter; a change (an
// administrator's Retry-Queue, Remove-Message, … in any process) lifts
// every hold, so `queue retry` tries at once.
func (h *hopState) generation(g int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if g != h.gen {
		h.gen = g
		clear(h.holds)
	}
}

// promotion says which deferred recipients of a destination a delivery
// that reached it makes due.
type promotion int

const (
	promoteNone promotion = iota
	// promoteHeld: the recipients held with the destination (their
	// last_error begins "not tried: "), after the first success since
	// the server started — the holds of a previous process are not
	// remembered, their rows are.
	promoteHeld
	// promoteAll: every deferred recipient; the destination had been
	// unreachable, which is why they failed.
	promoteAll
)

// reached records a delivery that reached dest and says which of its
// deferred recipients to make due now. Recipients deferred for another
// reason (a 4xx from a peer that answers, a DANE or MTA-STS failure)
// keep their schedule.
func (h *hopState) reached(dest string, now time.Time) promotion {
	if dest == Local {
		return promoteNone // local failures are per mailbox, not per hop
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.holds, dest)
	kind := promoteHeld
	switch {
	case h.down[dest]:
		kind = promoteAll
	case h.up[dest]:
		return promoteNone
	}
	if last, ok := h.promoted[dest]; ok && now.Sub(last) < PromoteInterval && now.After(last) {
		return promoteNone // down stays set: a success after the interval promotes
	}
	delete(h.down, dest)
	if len(h.up) >= maxHops {
		clear(h.up) // bounded: the cost is one extra promotion per destination
	}
	h.up[dest] = true
	h.promoted[dest] = now
	if len(h.promoted) > maxHops { // bounded: forget the times that no longer matter
		for d, t := range h.promoted {
			if now.Sub(t) >= PromoteInterval {
				delete(h.promoted, d)
			}
		}
	}
	return kind
}

// unreachable records a delivery that could not reach dest at all.
func (h *hopState) unreachable(dest string) {
	if dest == Local {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.up, dest)
	if len(h.down) >= maxHops {
		clear(h.down)
	}
	h.down[dest] = true
}
