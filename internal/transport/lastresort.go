package transport

import (
	"time"

	"certrelay/internal/selection"
)

// raiseLastResort raises the event of a last resort a session is about to
// use (SPEC C9, S4): 12016 when the certificate has expired (throttled per
// FQDN, as at each update), 16030 when its revocation could not be
// established (throttled per FQDN and thumbprint). Nothing for any other
// winner. It is called during the handshake, so it only queues the event
// (see eventQueue): a handshake never waits on the event log.
func (r *Receiver) raiseLastResort(d *selection.Decision, fqdn, connector string) {
	if d.Winner == nil {
		return
	}
	w := d.Winner
	switch d.LastResort(r.Now()) {
	case selection.WonExpired:
		r.evq.raise(12016, fqdn, fqdn, w.Thumbprint, w.NotAfter.UTC().Format(time.RFC3339))
	case selection.WonRevocationUnknown:
		r.evq.raise(16030, fqdn+" "+w.Thumbprint, fqdn, w.Thumbprint, string(w.Status), connector)
	}
}
