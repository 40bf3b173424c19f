package admin

import (
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/store"
	"certrelay/internal/testpki"
	"certrelay/internal/trust"
)

// newAdminAt is newAdmin with a clock the test moves.
func newAdminAt(t *testing.T, clock *time.Time) *Admin {
	t.Helper()
	a, err := Open(ctx, Options{DataDir: t.TempDir(), Now: func() time.Time { return *clock }, Hostname: func() (string, error) { return "hub1", nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Setup(ctx, SetupOptions{Fqdn: "hub1.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	return a
}

// importLeaf imports a test-PKI certificate with its key and returns its
// thumbprint.
func importLeaf(t *testing.T, a *Admin, l *testpki.Leaf) string {
	t.Helper()
	pw := "pw"
	pfx, err := certinfo.EncodePKCS12(l.Key, l.Cert, nil, pw, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.ImportCertificate(ctx, ImportOptions{Data: pfx, Password: &pw})
	if err != nil {
		t.Fatal(err)
	}
	return res.Certificate.Thumbprint
}

// revocationUnknown makes a trusted CA and, for hub1.contoso.com, a
// certificate whose CRL cannot be fetched (404): RevocationCheckFailure.
func revocationUnknown(t *testing.T, a *Admin, notBefore time.Time) string {
	t.Helper()
	resp := testpki.NewResponder(t)
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Root"})
	if _, err := a.TrustAdd(ctx, testpki.PEM(root.Cert), trust.RootEnterprise, false); err != nil {
		t.Fatal(err)
	}
	leaf := root.Issue(t, testpki.Options{CommonName: "hub1.contoso.com", DNSNames: []string{"hub1.contoso.com"},
		NotBefore: notBefore, NotAfter: notBefore.Add(365 * 24 * time.Hour), CRL: []string{resp.URL("/not-published.crl")}})
	tp := importLeaf(t, a, leaf)
	if c, _ := a.GetCertificate(ctx, tp); c.Status != trust.RevocationCheckFailure {
		t.Fatalf("the CA-issued certificate is %s (%s), want RevocationCheckFailure", c.Status, c.StatusDetail)
	}
	return tp
}

// TestListByDomainIsSelectionsOrder: cert list --domain orders the
// certificates as selection uses them (one ranking, C9/S4): a CA-issued
// certificate whose revocation is unknown is the fallback that beats the
// self-signed one, and a certificate not enabled for SMTP is not used at
// all, however new.
func TestListByDomainIsSelectionsOrder(t *testing.T) {
	real := time.Now()
	clock := real.Add(-2 * time.Hour)
	a := newAdminAt(t, &clock) // the internal certificate: self-signed, SMTP, NotBefore now-2h
	srv, _ := a.LocalServer(ctx)
	self := srv.InternalTransportCertificateThumbprint
	clock = real
	revUnk := revocationUnknown(t, a, real.Add(-3*time.Hour))
	if _, err := a.EnableCertificate(ctx, revUnk, store.SMTP, &answer{}); err != nil {
		t.Fatal(err)
	}
	popOnly := importLeaf(t, a, testpki.SelfSigned(t, testpki.Options{CommonName: "hub1.contoso.com", DNSNames: []string{"hub1.contoso.com"},
		NotBefore: real.Add(-time.Hour), NotAfter: real.Add(300 * 24 * time.Hour)}))
	if _, err := a.EnableCertificate(ctx, popOnly, store.POP, &answer{}); err != nil {
		t.Fatal(err)
	}

	ex, err := a.Explain(ctx, ExplainOptions{Fqdn: "hub1.contoso.com"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := a.ListCertificates(ctx, ListOptions{Domain: "hub1.contoso.com"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range list {
		got = append(got, c.Thumbprint)
	}
	want := []string{revUnk, self, popOnly}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("cert list --domain order:\n got %v\nwant %v (the fallback, the self-signed one, then the one not enabled for SMTP)", got, want)
	}
	if len(got) == 0 || got[0] != ex.Winner {
		t.Errorf("cert list --domain puts %v first, selection chooses %s (%s)", got, ex.Winner, ex.Why)
	}
}

// TestEnableSaysWhatSelectionDoes: M5's warning about a certificate that
// is not Valid agrees with selection: a revocation-unknown one is used as
// a last resort with event 16030 (and is, here, for hub1.contoso.com);
// an untrusted one is not used.
func TestEnableSaysWhatSelectionDoes(t *testing.T) {
	a := newAdmin(t)
	revUnk := revocationUnknown(t, a, time.Now().Add(-3*time.Hour))
	res, err := a.EnableCertificate(ctx, revUnk, store.SMTP, &answer{})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(res.Warnings, "\n")
	for _, want := range []string{"RevocationCheckFailure", "last resort", "16030", "FQDN of 'hub1.contoso.com'"} {
		if !strings.Contains(all, want) {
			t.Errorf("enable's warnings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "will not use it") {
		t.Errorf("enable says services will not use a certificate selection uses:\n%s", all)
	}

	stranger := testpki.NewRoot(t, testpki.Options{CommonName: "Stranger Root"})
	untrusted := importLeaf(t, a, stranger.Issue(t, testpki.Options{CommonName: "hub1.contoso.com", DNSNames: []string{"hub1.contoso.com"}}))
	res, err = a.EnableCertificate(ctx, untrusted, store.SMTP, &answer{})
	if err != nil {
		t.Fatal(err)
	}
	if all := strings.Join(res.Warnings, "\n"); !strings.Contains(all, "Untrusted") || !strings.Contains(all, "will not use it") || strings.Contains(all, "last resort") {
		t.Errorf("enable of an untrusted certificate:\n%s", all)
	}
}

// TestKeyFileTroubleIsShown: a key file other accounts can read, and a
// missing one, are named where administrators look: cert show's
// StatusDetail and Fix, explain's reasons and its "why".
func TestKeyFileTroubleIsShown(t *testing.T) {
	a := newAdmin(t)
	srv, _ := a.LocalServer(ctx)
	tp := srv.InternalTransportCertificateThumbprint
	e, err := a.Store.Get(ctx, tp)
	if err != nil {
		t.Fatal(err)
	}
	path := a.Store.KeyInfo(e).Path

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := a.GetCertificate(ctx, tp)
	if !c.HasPrivateKey || !strings.Contains(c.StatusDetail, path) || !strings.Contains(c.StatusDetail, "0644") || !strings.Contains(c.Fix, "chmod 600 "+path) {
		t.Errorf("a key readable by everyone: HasPrivateKey %v, StatusDetail %q, Fix %q", c.HasPrivateKey, c.StatusDetail, c.Fix)
	}
	ex, _ := a.Explain(ctx, ExplainOptions{Fqdn: "hub1.contoso.com"})
	if ex.Winner != tp || !strings.Contains(ex.Why, "0644") {
		t.Errorf("explain with a loose key: winner %s, why %q", ex.Winner, ex.Why)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c, _ = a.GetCertificate(ctx, tp)
	if c.HasPrivateKey || !strings.Contains(c.StatusDetail, path+" is missing") || !strings.Contains(c.Fix, "certrelay cert new --from "+tp) {
		t.Errorf("a missing key: HasPrivateKey %v, StatusDetail %q, Fix %q", c.HasPrivateKey, c.StatusDetail, c.Fix)
	}
	ex, _ = a.Explain(ctx, ExplainOptions{Fqdn: "hub1.contoso.com"})
	if ex.Winner != "" || !strings.Contains(ex.Why, "none has a usable private key") || !strings.Contains(ex.Why, path) {
		t.Errorf("explain with the key gone: winner %q, why %q", ex.Winner, ex.Why)
	}
	if len(ex.Candidates) != 1 || !strings.Contains(ex.Candidates[0].Reason, "is missing") {
		t.Errorf("explain's reason: %+v", ex.Candidates)
	}
}
