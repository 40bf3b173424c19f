package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestEdgeInternalCertificateRenewed (issue 18 with the edge, X4): `cert
// renew` of the internal transport certificate — what the renewal
// scheduler runs 30 days before it expires — on the edge and on hub1
// reaches the other side through EdgeSync, and mail keeps flowing both
// ways with the renewed certificates, with no failed session.
func TestEdgeInternalCertificateRenewed(t *testing.T) {
	x := newEdgeOrg(t)
	x.fromInternet(t, "bob@contoso.test", "before the renewals")
	x.h2.waitMail("contoso.test", "bob", 1, 30*time.Second)

	// The edge renews its internal certificate.
	oldEdge := x.edge.internal()
	out := x.edge.e.ok("cert", "renew", oldEdge)
	newEdge := x.edge.internal()
	if newEdge == oldEdge || !strings.Contains(out, newEdge) {
		t.Fatalf("cert renew on the edge: internal %s → %s\n%s", oldEdge, newEdge, out)
	}
	x.h2.waitServerThumb("edge1", newEdge, 30*time.Second)
	x.fromInternet(t, "bob@contoso.test", "after the edge renewed")
	var after string
	for deadline := time.Now().Add(30 * time.Second); after == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, m := range x.h2.mail("contoso.test", "bob") {
			if strings.Contains(m, "after the edge renewed") {
				after = m
			}
		}
	}
	if after == "" {
		t.Fatal("the message after the edge's renewal did not arrive")
	}
	if _, sender, senderCert, _ := hop(t, after); sender != "edge1" || senderCert != newEdge {
		t.Errorf("after the edge's renewal, the edge presented %s (%s), want %s", senderCert, sender, newEdge)
	}

	// hub1 renews its internal certificate.
	oldHub := x.h1.internal()
	out = x.h1.e.ok("cert", "renew", oldHub)
	newHub := x.h1.internal()
	if newHub == oldHub || !strings.Contains(out, newHub) {
		t.Fatalf("cert renew on hub1: internal %s → %s\n%s", oldHub, newHub, out)
	}
	x.edge.waitServerThumb("hub1", newHub, 30*time.Second)
	x.fromInternet(t, "alice@contoso.test", "after hub1 renewed")
	msgs := x.h1.waitMail("contoso.test", "alice", 1, 30*time.Second)
	if _, sender, _, receiverCert := hop(t, msgs[0]); sender != "edge1" || receiverCert != newHub {
		t.Errorf("after hub1's renewal, hub1 presented %s to %s, want %s", receiverCert, sender, newHub)
	}
	x.toInternet(t, "after both renewed")
	for _, h := range []*hub{x.h1, x.h2} {
		if evs := h.events(16091); len(evs) > 0 {
			t.Errorf("%s: EdgeSync failed: %+v", h.name, evs)
		}
	}
	noTrustFailures(t, x.h1, x.h2, x.edge)
}
