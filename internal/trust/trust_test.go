package trust

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"certrelay/internal/db"
	"certrelay/internal/revocation"
	"certrelay/internal/testpki"
)

var ctx = context.Background()

// world is a test PKI and a trust store: a public root (in the system
// bundle), a private root added by hand (Registry), one pushed by policy
// (GroupPolicy), an enterprise root, an untrusted root, and a responder
// serving their CRLs and OCSP.
type world struct {
	t          *testing.T
	store      *Store
	now        time.Time
	resp       *testpki.Responder
	public     *testpki.CA
	private    *testpki.CA
	policy     *testpki.CA
	enterprise *testpki.CA
	untrusted  *testpki.CA
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, now: time.Now(), resp: testpki.NewResponder(t)}
	w.public = testpki.NewRoot(t, testpki.Options{CommonName: "Public Root"})
	w.private = testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Private Root"})
	w.policy = testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Policy Root"})
	w.enterprise = testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Enterprise Root"})
	w.untrusted = testpki.NewRoot(t, testpki.Options{CommonName: "Nobody's Root"})
	dir := t.TempDir()
	bundle := testpki.WriteFile(t, dir, "system.pem", testpki.PEM(w.public.Cert))
	d, err := db.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if w.store, err = Open(ctx, d, []string{bundle}); err != nil {
		t.Fatal(err)
	}
	for ca, src := range map[*testpki.CA]Source{w.private: RootRegistry, w.policy: RootGroupPolicy, w.enterprise: RootEnterprise} {
		if err := w.store.AddRoot(ctx, ca.Cert, src, w.now); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *world) verifier(timeout time.Duration) *Verifier {
	return &Verifier{Store: w.store, Checker: &revocation.Checker{Timeout: timeout, Cache: w.store.RevocationCache(), Now: func() time.Time { return w.now }}, Now: func() time.Time { return w.now }}
}

// judge returns the status cert list would show (no network).
func (w *world) judge(c *x509.Certificate) Result {
	w.t.Helper()
	snap, err := w.store.Snapshot(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	recs, err := w.store.RevocationRecords(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	return snap.Judge(c, nil, w.now, recs)
}

func (w *world) verify(c *x509.Certificate) Result {
	w.t.Helper()
	r, err := w.verifier(2*time.Second).Verify(ctx, c, nil, true)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func leafOpts(name string, crl ...string) testpki.Options {
	return testpki.Options{CommonName: name, DNSNames: []string{name}, CRL: crl}
}

// TestStatuses provokes every Status of SPEC C9 that trust decides.
func TestStatuses(t *testing.T) {
	w := newWorld(t)
	crlURL := w.resp.URL("/private.crl")
	good := w.private.Issue(t, leafOpts("good.contoso.com", crlURL))
	revoked := w.private.Issue(t, leafOpts("revoked.contoso.com", crlURL))
	w.resp.SetCRL("/private.crl", w.private.CRL(t, []*x509.Certificate{revoked.Cert}, w.now.Add(-time.Hour), w.now.Add(24*time.Hour)))

	t.Run("Valid/crl-good", func(t *testing.T) {
		if r := w.verify(good.Cert); r.Status != Valid || r.RootCAType != RootRegistry {
			t.Fatalf("%s %s: %s", r.Status, r.RootCAType, r.Problem)
		}
		// and cert list shows it from the stored record, without the network
		if r := w.judge(good.Cert); r.Status != Valid {
			t.Fatalf("judged %s after verify: %s", r.Status, r.Problem)
		}
	})
	t.Run("Revoked/crl", func(t *testing.T) {
		r := w.verify(revoked.Cert)
		if r.Status != Revoked || !strings.Contains(r.Problem, "revoked") || !strings.Contains(r.Fix, "cert request") {
			t.Fatalf("%s: %s / %s", r.Status, r.Problem, r.Fix)
		}
		if w.judge(revoked.Cert).Status != Revoked {
			t.Fatal("the revocation was not stored")
		}
	})
	t.Run("Revoked/ocsp", func(t *testing.T) {
		l := w.private.Issue(t, testpki.Options{CommonName: "ocsp.contoso.com", OCSP: []string{w.resp.URL("/ocsp")}})
		w.resp.SetOCSP(func(*ocsp.Request) []byte {
			return w.private.OCSPResponse(t, l.Cert, ocsp.Revoked, w.now.Add(-time.Minute), w.now.Add(time.Hour), nil)
		})
		if r := w.verify(l.Cert); r.Status != Revoked {
			t.Fatalf("%s: %s", r.Status, r.Problem)
		}
	})
	t.Run("Unknown/never-checked", func(t *testing.T) {
		l := w.private.Issue(t, leafOpts("new.contoso.com", crlURL))
		r := w.judge(l.Cert)
		if r.Status != Unknown || !strings.Contains(r.Fix, "cert verify") {
			t.Fatalf("%s: %s / %s", r.Status, r.Problem, r.Fix)
		}
	})
	t.Run("RevocationCheckFailure/unreachable", func(t *testing.T) {
		l := w.private.Issue(t, leafOpts("down.contoso.com", "http://"+testpki.FreePort(t)+"/down.crl"))
		r := w.verify(l.Cert)
		if r.Status != RevocationCheckFailure || !strings.Contains(r.Fix, "--proxy") {
			t.Fatalf("%s: %s / %s", r.Status, r.Problem, r.Fix)
		}
	})
	t.Run("RevocationCheckFailure/silent-responder-within-timeout", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		l := w.private.Issue(t, leafOpts("silent.contoso.com", "http://"+ln.Addr().String()+"/x.crl"))
		r, err := w.verifier(300*time.Millisecond).Verify(ctx, l.Cert, nil, true)
		if err != nil || r.Status != RevocationCheckFailure {
			t.Fatalf("%v %s: %s", err, r.Status, r.Problem)
		}
	})
	t.Run("RevocationCheckFailure/stale-record", func(t *testing.T) {
		saved := w.now
		defer func() { w.now = saved }()
		w.now = w.now.Add(48 * time.Hour) // past the CRL's nextUpdate, no refresh
		if r := w.judge(good.Cert); r.Status != RevocationCheckFailure || !strings.Contains(r.Problem, "expired") {
			t.Fatalf("%s: %s", r.Status, r.Problem)
		}
	})
	t.Run("DateInvalid/expired", func(t *testing.T) {
		l := w.private.Issue(t, testpki.Options{CommonName: "old.contoso.com", NotBefore: w.now.Add(-400 * 24 * time.Hour), NotAfter: w.now.Add(-24 * time.Hour)})
		r := w.judge(l.Cert)
		if r.Status != DateInvalid || r.RootCAType != RootRegistry || !strings.Contains(r.Problem, "expired") {
			t.Fatalf("%s %s: %s", r.Status, r.RootCAType, r.Problem)
		}
	})
	t.Run("DateInvalid/not-yet-valid", func(t *testing.T) {
		l := w.private.Issue(t, testpki.Options{CommonName: "future.contoso.com", NotBefore: w.now.Add(24 * time.Hour)})
		if r := w.judge(l.Cert); r.Status != DateInvalid || !strings.Contains(r.Problem, "clock") {
			t.Fatalf("%s: %s", r.Status, r.Problem)
		}
	})
	t.Run("DateInvalid/expired-self-signed", func(t *testing.T) {
		l := testpki.SelfSigned(t, testpki.Options{CommonName: "hub1", NotBefore: w.now.Add(-400 * 24 * time.Hour), NotAfter: w.now.Add(-time.Hour)})
		if r := w.judge(l.Cert); r.Status != DateInvalid || r.RootCAType != RootNone || !strings.Contains(r.Fix, "cert new --from") {
			t.Fatalf("%s %s: %s", r.Status, r.RootCAType, r.Fix)
		}
	})
	t.Run("Untrusted/unknown-root", func(t *testing.T) {
		l := w.untrusted.Issue(t, leafOpts("x.example"))
		r := w.judge(l.Cert)
		if r.Status != Untrusted || r.RootCAType != RootUnknown || !strings.Contains(r.Fix, "trust add") {
			t.Fatalf("%s %s: %s", r.Status, r.RootCAType, r.Fix)
		}
	})
	t.Run("Untrusted/missing-intermediate", func(t *testing.T) {
		inter := w.private.NewIntermediate(t, testpki.Options{CommonName: "Contoso Issuing CA"})
		l := inter.Issue(t, leafOpts("i.contoso.com"))
		if r := w.judge(l.Cert); r.Status != Untrusted || !strings.Contains(r.Fix, "--intermediate") {
			t.Fatalf("%s: %s", r.Status, r.Fix)
		}
		if _, err := w.store.AddIntermediate(ctx, inter.Cert, w.now); err != nil {
			t.Fatal(err)
		}
		if r := w.judge(l.Cert); r.Status != Valid || len(r.Chain) != 3 || r.RootCAType != RootRegistry {
			t.Fatalf("with the intermediate: %s, chain of %d", r.Status, len(r.Chain))
		}
	})
	t.Run("Invalid/name-constraints-violated", func(t *testing.T) {
		inter := w.private.NewIntermediate(t, testpki.Options{CommonName: "Contoso-only CA", PermittedDNS: []string{"contoso.com"}})
		l := inter.Issue(t, leafOpts("mail.fabrikam.example"))
		r := w.store.mustSnapshot(t).Evaluate(l.Cert, []*x509.Certificate{inter.Cert}, w.now)
		if r.Status != Invalid || r.RootCAType != RootUnknown {
			t.Fatalf("%s %s: %s", r.Status, r.RootCAType, r.Problem)
		}
	})
	t.Run("Invalid/revoked-intermediate", func(t *testing.T) {
		inter := w.private.NewIntermediate(t, testpki.Options{CommonName: "Revoked Issuing CA", CRL: []string{w.resp.URL("/root.crl")}})
		l := inter.Issue(t, leafOpts("r.contoso.com"))
		w.resp.SetCRL("/root.crl", w.private.CRL(t, []*x509.Certificate{inter.Cert}, w.now.Add(-time.Hour), w.now.Add(time.Hour)))
		if _, err := w.store.AddIntermediate(ctx, inter.Cert, w.now); err != nil {
			t.Fatal(err)
		}
		r := w.verify(l.Cert)
		if r.Status != Invalid || r.Chain[1].Status != Revoked || !strings.Contains(r.Problem, "Revoked Issuing CA") {
			t.Fatalf("%s (%s): %s", r.Status, r.Chain[1].Status, r.Problem)
		}
	})
}

func (s *Store) mustSnapshot(t *testing.T) *Snapshot {
	sn, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

// TestRootCATypes provokes every RootCAType of SPEC C7.
func TestRootCATypes(t *testing.T) {
	w := newWorld(t)
	selfSigned := testpki.SelfSigned(t, testpki.Options{CommonName: "hub1"})
	cases := []struct {
		name string
		cert *x509.Certificate
		want RootCAType
	}{
		{"None/self-signed", selfSigned.Cert, RootNone},
		{"ThirdParty/system-bundle", w.public.Issue(t, leafOpts("p.example")).Cert, RootThirdParty},
		{"Registry/added-by-hand", w.private.Issue(t, leafOpts("r.example")).Cert, RootRegistry},
		{"GroupPolicy/pushed-by-policy", w.policy.Issue(t, leafOpts("g.example")).Cert, RootGroupPolicy},
		{"Enterprise/organisation-ca", w.enterprise.Issue(t, leafOpts("e.example")).Cert, RootEnterprise},
		{"Unknown/untrusted", w.untrusted.Issue(t, leafOpts("u.example")).Cert, RootUnknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := w.judge(c.cert).RootCAType; got != c.want {
				t.Errorf("RootCAType = %s, want %s", got, c.want)
			}
		})
	}
	t.Run("Registry/self-signed-added-as-root-is-a-misconfiguration", func(t *testing.T) {
		// Q7: a self-signed certificate whose RootCAType is not None.
		ca := testpki.NewRoot(t, testpki.Options{CommonName: "self.example"})
		if err := w.store.AddRoot(ctx, ca.Cert, RootRegistry, w.now); err != nil {
			t.Fatal(err)
		}
		if got := w.judge(ca.Cert).RootCAType; got != RootRegistry {
			t.Errorf("RootCAType = %s", got)
		}
	})
}

// TestCrossCertificate: a chain through a cross-certificate, issued by a
// trusted root for an untrusted CA's key, ends at the trusted root (T3).
func TestCrossCertificate(t *testing.T) {
	w := newWorld(t)
	partner := testpki.NewRoot(t, testpki.Options{CommonName: "Partner Root"})
	leaf := partner.Issue(t, leafOpts("mail.partner.example"))
	if r := w.judge(leaf.Cert); r.Status != Untrusted {
		t.Fatalf("before cross-certification: %s", r.Status)
	}
	cross := w.policy.CrossSign(t, partner)
	if _, err := w.store.AddIntermediate(ctx, cross, w.now); err != nil {
		t.Fatal(err)
	}
	r := w.judge(leaf.Cert)
	if r.Status != Valid || r.RootCAType != RootGroupPolicy || len(r.Chain) != 3 || r.Chain[2].Subject != "CN=Contoso Policy Root" {
		t.Fatalf("through the cross-certificate: %s %s %+v", r.Status, r.RootCAType, r.Chain)
	}
}

// TestUntrustworthyAnswers: answers that cannot be trusted count as
// "revocation unknown" (RevocationCheckFailure), never as good (T4).
func TestUntrustworthyAnswers(t *testing.T) {
	w := newWorld(t)
	otherKey := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Private Root", Key: testpki.RSAKey(t, 11)})
	if otherKey.Key == w.private.Key {
		otherKey = testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Private Root", Key: testpki.ECKey(t)})
	}
	cases := []struct {
		name  string
		setup func(l *testpki.Leaf) []string // returns the CRL DPs / OCSP to use
	}{
		{"malformed-crl", func(l *testpki.Leaf) []string {
			w.resp.SetCRL("/malformed.crl", []byte("this is not a CRL"))
			return []string{"/malformed.crl"}
		}},
		{"crl-signed-by-wrong-key", func(l *testpki.Leaf) []string {
			w.resp.SetCRL("/wrongkey.crl", otherKey.CRL(t, nil, w.now.Add(-time.Hour), w.now.Add(time.Hour)))
			return []string{"/wrongkey.crl"}
		}},
		{"expired-crl", func(l *testpki.Leaf) []string {
			w.resp.SetCRL("/expired.crl", w.private.CRL(t, nil, w.now.Add(-48*time.Hour), w.now.Add(-24*time.Hour)))
			return []string{"/expired.crl"}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			paths := c.setup(nil)
			l := w.private.Issue(t, leafOpts(c.name+".contoso.com", w.resp.URL(paths[0])))
			if r := w.verify(l.Cert); r.Status != RevocationCheckFailure {
				t.Fatalf("%s: %s", r.Status, r.Problem)
			}
		})
	}
	ocspCases := []struct {
		name   string
		answer func(l, other *testpki.Leaf) []byte
	}{
		{"ocsp-for-another-certificate", func(l, other *testpki.Leaf) []byte {
			return w.private.OCSPResponse(t, other.Cert, ocsp.Good, w.now.Add(-time.Minute), w.now.Add(time.Hour), nil)
		}},
		{"ocsp-signed-by-unauthorised-key", func(l, other *testpki.Leaf) []byte {
			rogue := w.untrusted.Issue(t, testpki.Options{CommonName: "Rogue Responder", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}})
			return w.private.OCSPResponse(t, l.Cert, ocsp.Good, w.now.Add(-time.Minute), w.now.Add(time.Hour), rogue)
		}},
	}
	for _, c := range ocspCases {
		t.Run(c.name, func(t *testing.T) {
			l := w.private.Issue(t, testpki.Options{Subject: &pkix.Name{CommonName: c.name}, OCSP: []string{w.resp.URL("/ocsp")}})
			other := w.private.Issue(t, testpki.Options{CommonName: "other"})
			w.resp.SetOCSP(func(*ocsp.Request) []byte { return c.answer(l, other) })
			if r := w.verify(l.Cert); r.Status != RevocationCheckFailure {
				t.Fatalf("%s: %s", r.Status, r.Problem)
			}
		})
	}
}

// TestLDAPDistributionPoint: a CRL published in OpenLDAP, as private PKIs
// often do, is fetched from its ldap:// distribution point.
func TestLDAPDistributionPoint(t *testing.T) {
	w := newWorld(t)
	slapd := testpki.StartSlapd(t)
	dn := "cn=Contoso Private Root," + slapd.Suffix
	url := "ldap://" + slapd.Addr + "/" + strings.ReplaceAll(dn, " ", "%20") + "?certificateRevocationList;binary"
	good := w.private.Issue(t, leafOpts("ldap-good.contoso.com", url))
	bad := w.private.Issue(t, leafOpts("ldap-revoked.contoso.com", url))
	crl := w.private.CRL(t, []*x509.Certificate{bad.Cert}, w.now.Add(-time.Hour), w.now.Add(time.Hour))
	slapd.Add(t, dn, map[string][]string{
		"objectClass":                      {"cRLDistributionPoint"},
		"cn":                               {"Contoso Private Root"},
		"certificateRevocationList;binary": {string(crl)},
	})
	if r := w.verify(good.Cert); r.Status != Valid {
		t.Errorf("good via ldap: %s: %s", r.Status, r.Problem)
	}
	if r := w.verify(bad.Cert); r.Status != Revoked {
		t.Errorf("revoked via ldap: %s: %s", r.Status, r.Problem)
	}
}
