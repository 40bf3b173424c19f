package transport

import (
	"context"
	"sync"
	"time"

	"certrelay/internal/selection"
)

// lastResortRecheck is how often one process asks the event log to raise
// a given last-resort event: the log throttles per key (a day for 12016
// and 16030), this only keeps every handshake from writing to it.
const lastResortRecheck = time.Minute

// lastResortGuard remembers when this process last raised each
// last-resort event. Safe for concurrent use.
type lastResortGuard struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// due reports whether key's event should be raised now, and if so
// records it.
func (g *lastResortGuard) due(key string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.last[key]; ok && now.Sub(t) < lastResortRecheck && !now.Before(t) {
		return false
	}
	if g.last == nil {
		g.last = map[string]time.Time{}
	}
	if len(g.last) > 10000 { // a bound for many FQDNs over a long life
		clear(g.last)
	}
	g.last[key] = now
	return true
}

// raiseLastResort raises the event of a last resort a session is about to
// use (SPEC C9, S4): 12016 when the certificate has expired (throttled per
// FQDN, as at each update), 16030 when its revocation could not be
// established (throttled per FQDN and thumbprint). Nothing for any other
// winner.
func (r *Receiver) raiseLastResort(ctx context.Context, d *selection.Decision, fqdn, connector string) {
	if r.Events == nil || d.Winner == nil {
		return
	}
	now := r.Now()
	w := d.Winner
	switch d.LastResort(now) {
	case selection.WonExpired:
		if r.lastResort.due("12016 "+fqdn, now) {
			_, _ = r.Events.Raise(ctx, 12016, fqdn, fqdn, w.Thumbprint, w.NotAfter.UTC().Format(time.RFC3339))
		}
	case selection.WonRevocationUnknown:
		key := fqdn + " " + w.Thumbprint
		if r.lastResort.due("16030 "+key, now) {
			_, _ = r.Events.Raise(ctx, 16030, key, fqdn, w.Thumbprint, string(w.Status), connector)
		}
	}
}
