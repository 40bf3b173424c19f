package admin

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"certrelay/internal/acme"
	"certrelay/internal/events"
	"certrelay/internal/testpki"
)

// TestRenewInternalBeforeExpiry: with the clock moved to 29 days before
// the internal transport certificate expires, the periodic check renews
// it (C12, L1): the new one becomes the internal certificate, published
// in the directory, takes over its services, and the old one is not
// renewed twice. Before that moment nothing is renewed.
func TestRenewInternalBeforeExpiry(t *testing.T) {
	clock := time.Now()
	a := newAdminAt(t, &clock)
	srv, _ := a.LocalServer(ctx)
	old, _ := a.Store.Get(ctx, srv.InternalTransportCertificateThumbprint)

	list, err := a.ListRenewals(ctx)
	if err != nil || len(list) != 1 || list[0].Thumbprint != old.Thumbprint || list[0].NextRenewal == nil {
		t.Fatalf("renewals %+v %v", list, err)
	}
	if want := old.Cert.NotAfter.Add(-InternalRenewBefore); !list[0].NextRenewal.Equal(want.UTC()) {
		t.Errorf("next renewal %v, want %v", list[0].NextRenewal, want)
	}
	if out, err := a.RenewDue(ctx); err != nil || len(out) != 0 {
		t.Fatalf("renewed before it was due: %+v %v", out, err)
	}

	clock = old.Cert.NotAfter.Add(-29 * 24 * time.Hour)
	out, err := a.RenewDue(ctx)
	if err != nil || len(out) != 1 || out[0].Err != nil {
		t.Fatalf("RenewDue: %+v %v", out, err)
	}
	srv, _ = a.LocalServer(ctx)
	if srv.InternalTransportCertificateThumbprint != out[0].New || out[0].New == old.Thumbprint {
		t.Fatalf("internal certificate %s, renewed as %s", srv.InternalTransportCertificateThumbprint, out[0].New)
	}
	pub, err := a.Dir.Server(ctx, srv.Name)
	if err != nil || pub.InternalTransportCertificateThumbprint != out[0].New {
		t.Fatalf("the directory publishes %s (%v), want %s", pub.InternalTransportCertificateThumbprint, err, out[0].New)
	}
	nw, _ := a.Store.Get(ctx, out[0].New)
	if nw.Services != old.Services || !nw.Cert.NotAfter.After(old.Cert.NotAfter) {
		t.Errorf("new certificate: services %v (old %v), until %v", nw.Services, old.Services, nw.Cert.NotAfter)
	}
	evs, _ := a.Events.List(ctx, events.Filter{ID: 16103})
	if len(evs) != 1 || !strings.Contains(evs[0].Message, old.Thumbprint) {
		t.Errorf("CertificateRenewed: %+v", evs)
	}
	if out, _ := a.RenewDue(ctx); len(out) != 0 {
		t.Fatalf("renewed again: %+v", out)
	}
	list, _ = a.ListRenewals(ctx)
	for _, r := range list {
		if r.Thumbprint == old.Thumbprint && (r.RenewedBy != nw.Thumbprint || r.NextRenewal != nil) {
			t.Errorf("old certificate's renewal %+v", r)
		}
	}
}

// TestRenewRefusesOutsideCA: a CA's certificate imported from outside
// cannot be renewed by certrelay, and the error says how instead; a
// failure of an ACME renewal is recorded with its back-off, and gives up
// after RenewMaxAttempts.
func TestRenewRefusesOutsideCA(t *testing.T) {
	clock := time.Now()
	a := newAdminAt(t, &clock)
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "Outside CA"})
	th := importLeaf(t, a, ca.Issue(t, testpki.Options{CommonName: "mail.contoso.com", DNSNames: []string{"mail.contoso.com"}}))
	_, err := a.RenewCertificate(ctx, th)
	var e *Error
	if !errors.As(err, &e) || e.Kind != Conflict || !strings.Contains(e.Error(), "Outside CA") || !strings.Contains(e.Fix, "GenerateRequest") {
		t.Fatalf("want a refusal naming the CA and the way, got %v", err)
	}
}

// TestRenewACMEBackoff: an ACME certificate (from pebble) is due at two
// thirds of its life; a renewal that fails is recorded with its error and
// the next try, tried again only after it, and certrelay gives up (16105)
// after RenewMaxAttempts; cert renew then still works, and renews.
func TestRenewACMEBackoff(t *testing.T) {
	p := testpki.StartPebble(t)
	clock := time.Now()
	a := newAdminAt(t, &clock)
	if _, err := a.AddAcmeAccount(ctx, AcmeAccountOptions{Directory: p.Directory, CAPEM: p.CAPEM}); err != nil {
		t.Fatal(err)
	}
	res, err := a.NewAcmeCertificate(ctx, AcmeOptions{Domains: []string{"hub1.contoso.com"}, Challenges: acmeHTTP(p)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Certificate
	due := c.NotBefore.Add(c.NotAfter.Sub(*c.NotBefore) * 2 / 3)
	list, _ := a.ListRenewals(ctx)
	found := false
	for _, r := range list {
		if r.Thumbprint == c.Thumbprint {
			found = true
			if r.NextRenewal == nil || !r.NextRenewal.Equal(due.UTC()) {
				t.Errorf("next renewal %v, want %v", r.NextRenewal, due)
			}
		}
	}
	if !found {
		t.Fatalf("the ACME certificate is not in the renewals: %+v", list)
	}
	// Something else takes the challenge's port: every attempt fails.
	busy, err := net.Listen("tcp", "127.0.0.1:"+p.HTTPPort)
	if err != nil {
		t.Fatal(err)
	}
	clock = due.Add(time.Minute)
	for i := 1; i <= RenewMaxAttempts; i++ {
		out, _ := a.RenewDue(ctx)
		if len(out) != 1 || out[0].Err == nil {
			t.Fatalf("attempt %d: %+v", i, out)
		}
		st, _ := a.ACME.Renewal(ctx, c.Thumbprint)
		if st.Failures != i || !strings.Contains(st.LastError, "already listens") {
			t.Fatalf("attempt %d recorded as %+v", i, st)
		}
		if out, _ := a.RenewDue(ctx); len(out) != 0 {
			t.Fatalf("attempt %d: tried again before its back-off", i)
		}
		clock = st.NextTry.Add(time.Second)
	}
	if out, _ := a.RenewDue(ctx); len(out) != 0 {
		t.Fatal("still trying after giving up")
	}
	if evs, _ := a.Events.List(ctx, events.Filter{ID: 16105}); len(evs) != 1 {
		t.Errorf("CertificateRenewalGivingUp logged %d times", len(evs))
	}
	if evs, _ := a.Events.List(ctx, events.Filter{ID: 16104}); len(evs) == 0 {
		t.Error("no CertificateRenewalFailed")
	}
	busy.Close()
	r, err := a.RenewCertificate(ctx, c.Thumbprint)
	if err != nil {
		t.Fatalf("cert renew after the cause was fixed: %v", err)
	}
	if r.Certificate.Thumbprint == c.Thumbprint || strings.Join(r.Certificate.Services, ",") != strings.Join(c.Services, ",") {
		t.Errorf("renewed as %+v", r.Certificate)
	}
}

func acmeHTTP(p *testpki.Pebble) acme.Challenges {
	return acme.Challenges{HTTPAddr: "127.0.0.1:" + p.HTTPPort}
}

// TestRenewTwiceRefused: a certificate renewed already is not renewed
// again (one successor only); the error names the successor to renew.
func TestRenewTwiceRefused(t *testing.T) {
	a := newAdmin(t)
	srv, _ := a.LocalServer(ctx)
	old := srv.InternalTransportCertificateThumbprint
	r, err := a.RenewCertificate(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.RenewCertificate(ctx, old)
	var e *Error
	if !errors.As(err, &e) || e.Kind != Conflict || !strings.Contains(e.Error(), r.Certificate.Thumbprint) {
		t.Fatalf("second renewal: %v", err)
	}
	list, _ := a.ListCertificates(ctx, ListOptions{})
	if len(list) != 2 {
		t.Fatalf("%d certificates after a refused second renewal", len(list))
	}
}
