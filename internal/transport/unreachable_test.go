package transport

import (
	"context"
	"testing"

	"certrelay/internal/queue"
	"certrelay/internal/testpki"
)

// TestSendMarksUnreachableHops: a delivery whose smart hosts all refuse
// the connection is deferred with a queue.UnreachableError (the queue then
// holds the destination's other mail instead of trying each message); when
// a host took the connection, the deferral is an ordinary one, whatever
// the other hosts did.
func TestSendMarksUnreachableHops(t *testing.T) {
	p := newDSPKI(t)
	ours := p.leaf(t, false, false, "mail.contoso.test", "contoso.test")
	closed := testpki.FreePort(t) // nothing listens there
	// A partner without STARTTLS: reachable, but domain security defers.
	plain, _, _ := startReceiver(t, p, nil, false, "mail.partner.test", "partner.test")
	for _, c := range []struct {
		name        string
		hosts       []string
		unreachable bool
	}{
		{"fail/every-host-refuses", []string{closed}, true},
		{"fail/reachable-host-defers", []string{plain}, false},
		{"fail/one-refuses-one-reachable", []string{closed, plain}, false},
		{"fail/one-reachable-one-refuses", []string{plain, closed}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, _, _ := newSender(p, ours, closed)
			s.State().Send[0].SmartHosts = c.hosts
			out := s.Deliver(context.Background(), delivery())
			if len(out) != 1 || out[0].Err == nil || queue.IsPermanent(out[0].Err) {
				t.Fatalf("outcomes %+v, want one temporary failure", out)
			}
			if got := queue.IsUnreachable(out[0].Err); got != c.unreachable {
				t.Errorf("IsUnreachable(%v) = %v, want %v", out[0].Err, got, c.unreachable)
			}
		})
	}
}
