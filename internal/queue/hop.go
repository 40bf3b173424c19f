package queue

import (
	"sync"
	"time"
)

// PromoteInterval is how often, at most, one destination's deferred
// recipients are made due together because a delivery to it succeeded
// after failures (see "Retry schedule" in the package doc).
const PromoteInterval = time.Minute

// maxHops bounds the destinations hopState remembers.
const maxHops = 10000

// hopState remembers, per remote destination, whether the last delivery
// to it reached it. When a delivery succeeds after a temporary failure
// (or is the first success since this process started), the recipients
// deferred for that destination are made due at once: a peer that comes
// back gets its waiting mail within a dispatcher scan, not after each
// recipient's own back-off, as Exchange resumes a next-hop queue in Retry
// once a connection succeeds. At most once per PromoteInterval per
// destination, so a peer that defers some recipients (greylisting, a
// full mailbox) while accepting others does not have them retried at
// every success.
type hopState struct {
	mu       sync.Mutex
	up       map[string]bool      // destination → the last delivery reached it
	promoted map[string]time.Time // destination → when its deferred mail was last made due
}

// reached records a delivery that reached dest and reports whether its
// deferred recipients should be made due now.
func (h *hopState) reached(dest string, now time.Time) bool {
	if dest == Local {
		return false // local failures are per mailbox, not per hop
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up[dest] {
		return false
	}
	if len(h.up) >= maxHops {
		clear(h.up) // bounded: the cost is one extra promotion per destination
	}
	h.up[dest] = true
	if last, ok := h.promoted[dest]; ok && now.Sub(last) < PromoteInterval && now.After(last) {
		return false
	}
	h.promoted[dest] = now
	if len(h.promoted) > maxHops { // bounded: forget the times that no longer matter
		for d, t := range h.promoted {
			if now.Sub(t) >= PromoteInterval {
				delete(h.promoted, d)
			}
		}
	}
	return true
}

// failed records a temporary failure of a delivery to dest.
func (h *hopState) failed(dest string) {
	h.mu.Lock()
	delete(h.up, dest)
	h.mu.Unlock()
}
