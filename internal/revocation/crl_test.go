package revocation

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"testing"
	"time"
)

// idpFullName builds an IssuingDistributionPoint with fullName URIs.
func idpFullName(uris ...string) issuingDistributionPoint {
	var idp issuingDistributionPoint
	for _, u := range uris {
		idp.DistributionPoint.FullName = append(idp.DistributionPoint.FullName,
			asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)})
	}
	return idp
}

func TestCRL(t *testing.T) {
	p := getPKI(t)
	other := leaf(t, p.ca, nil, []string{"http://unused.invalid/"})
	impostor := selfSignedLike(t, p.ca.cert) // same name as the issuer, another key
	noCRLSign := mustCA(t, p.root, "certrelay Test CA without cRLSign", x509.KeyUsageCertSign)

	type env struct {
		leaf   *x509.Certificate
		issuer issued
		dp     string
	}
	cases := []struct {
		name       string
		issuer     func() issued // default p.ca
		body       func(t *testing.T, e env) []byte
		maxSize    int64
		want       Status
		wantResult string
	}{
		{name: "ok/good", want: Good, wantResult: ResultGood,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{revoked: []*x509.Certificate{other}})
			}},
		{name: "ok/revoked", want: Revoked, wantResult: ResultRevoked,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{revoked: []*x509.Certificate{other, e.leaf}})
			}},
		{name: "ok/pem", want: Good, wantResult: ResultGood,
			body: func(t *testing.T, e env) []byte {
				return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: makeCRL(t, e.issuer, crlSpec{})})
			}},
		{name: "ok/idp-names-this-distribution-point", want: Good, wantResult: ResultGood,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{extensions: []pkix.Extension{
					extension(t, oidIssuingDistPoint, true, idpFullName("ldap://elsewhere.invalid/", e.dp))}})
			}},
		{name: "ok/thisupdate-within-skew", want: Good, wantResult: ResultGood,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{thisUpdate: t0.Add(2 * time.Minute)})
			}},
		{name: "fail/malformed", want: Unknown, wantResult: ResultMalformed,
			body: func(t *testing.T, e env) []byte { return []byte("this is not a CRL\n") }},
		{name: "fail/truncated", want: Unknown, wantResult: ResultMalformed,
			body: func(t *testing.T, e env) []byte {
				der := makeCRL(t, e.issuer, crlSpec{})
				return der[:len(der)-10]
			}},
		{name: "fail/pem-without-crl-block", want: Unknown, wantResult: ResultMalformed,
			body: func(t *testing.T, e env) []byte {
				return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.leaf.Raw})
			}},
		{name: "fail/signed-by-wrong-key", want: Unknown, wantResult: ResultUntrusted,
			body: func(t *testing.T, e env) []byte { return makeCRL(t, impostor, crlSpec{}) }},
		{name: "fail/issued-by-another-ca", want: Unknown, wantResult: ResultUntrusted,
			body: func(t *testing.T, e env) []byte { return makeCRL(t, p.root, crlSpec{}) }},
		{name: "fail/issuer-lacks-crlsign", want: Unknown, wantResult: ResultUntrusted,
			issuer: func() issued { return noCRLSign },
			body:   func(t *testing.T, e env) []byte { return makeCRL(t, e.issuer, crlSpec{}) }},
		{name: "fail/expired", want: Unknown, wantResult: ResultExpired,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{thisUpdate: t0.Add(-48 * time.Hour), nextUpdate: t0.Add(-time.Second)})
			}},
		{name: "fail/expired-revoked-still-unknown", want: Unknown, wantResult: ResultExpired,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{revoked: []*x509.Certificate{e.leaf},
					thisUpdate: t0.Add(-48 * time.Hour), nextUpdate: t0.Add(-time.Hour)})
			}},
		{name: "fail/not-yet-valid", want: Unknown, wantResult: ResultNotYetValid,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{thisUpdate: t0.Add(time.Hour)})
			}},
		{name: "fail/delta-crl", want: Unknown, wantResult: ResultNotCovered,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{extensions: []pkix.Extension{
					extension(t, oidDeltaCRLIndicator, true, 1)}})
			}},
		{name: "fail/idp-ca-certificates-only", want: Unknown, wantResult: ResultNotCovered,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{extensions: []pkix.Extension{
					extension(t, oidIssuingDistPoint, true, issuingDistributionPoint{OnlyContainsCACerts: true})}})
			}},
		{name: "fail/idp-some-reasons-only", want: Unknown, wantResult: ResultNotCovered,
			body: func(t *testing.T, e env) []byte {
				idp := issuingDistributionPoint{OnlySomeReasons: asn1.BitString{Bytes: []byte{0x40}, BitLength: 2}}
				return makeCRL(t, e.issuer, crlSpec{extensions: []pkix.Extension{extension(t, oidIssuingDistPoint, true, idp)}})
			}},
		{name: "fail/idp-other-distribution-point", want: Unknown, wantResult: ResultNotCovered,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{extensions: []pkix.Extension{
					extension(t, oidIssuingDistPoint, true, idpFullName("http://crl.example.invalid/other.crl"))}})
			}},
		{name: "fail/unknown-critical-extension", want: Unknown, wantResult: ResultUnsupported,
			body: func(t *testing.T, e env) []byte {
				return makeCRL(t, e.issuer, crlSpec{extensions: []pkix.Extension{
					extension(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, true, true)}})
			}},
		{name: "fail/too-large", want: Unknown, wantResult: ResultTooLarge, maxSize: 64,
			body: func(t *testing.T, e env) []byte { return makeCRL(t, e.issuer, crlSpec{}) }},
		{name: "fail/http-404", want: Unknown, wantResult: ResultUnreachable, body: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newResponder(t)
			e := env{issuer: p.ca, dp: r.url("/ca.crl")}
			if tc.issuer != nil {
				e.issuer = tc.issuer()
			}
			e.leaf = leaf(t, e.issuer, nil, []string{e.dp})
			if tc.body != nil {
				r.setCRL("/ca.crl", static(tc.body(t, e)))
			}
			c := &Checker{Now: newClock().Now, MaxCRLSize: tc.maxSize}
			res := c.Check(t.Context(), e.leaf, e.issuer.cert, false)
			wantResult(t, res, tc.want, tc.wantResult)
			t.Logf("%s %s: %s (%s)", res.Attempts[0].Kind, res.Attempts[0].URL, res.Attempts[0].Result, res.Attempts[0].Error)
			if a := res.Attempts[0]; a.Kind != KindCRL || a.URL != e.dp || a.FromCache {
				t.Errorf("attempt = %+v, want a fresh CRL attempt for %s", a, e.dp)
			}
			if tc.want == Revoked && (res.Reason != 1 || !res.RevokedAt.Equal(t0.Add(-48*time.Hour))) {
				t.Errorf("revoked at %v reason %d, want %v reason 1 (keyCompromise)", res.RevokedAt, res.Reason, t0.Add(-48*time.Hour))
			}
		})
	}
}

// selfSignedLike makes a self-signed CA with the same subject as ca but
// another key: what an attacker without the CA's key can do.
func selfSignedLike(t testing.TB, ca *x509.Certificate) issued {
	t.Helper()
	key := newKey()
	cert, err := createCert(&x509.Certificate{
		RawSubject:            ca.RawSubject,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, key)
	if err != nil {
		t.Fatalf("impostor CA: %v", err)
	}
	if !bytes.Equal(cert.RawSubject, ca.RawSubject) {
		t.Fatalf("impostor subject %q differs from %q", cert.Subject, ca.Subject)
	}
	return issued{cert, key}
}

// TestCRLForCACertificate checks the intermediate against the root: an
// RSA-signed CRL scoped to CA certificates.
func TestCRLForCACertificate(t *testing.T) {
	p := getPKI(t)
	r := newResponder(t)
	ca := issued{}
	var err error
	ca.key = newKey()
	ca.cert, err = createCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "certrelay Test CA with CDP"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		CRLDistributionPoints: []string{r.url("/root.crl")},
	}, &p.root, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		revoked []*x509.Certificate
		want    Status
	}{
		{"ok/ca-good", nil, Good},
		{"ok/ca-revoked", []*x509.Certificate{ca.cert}, Revoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := extension(t, oidIssuingDistPoint, true, issuingDistributionPoint{OnlyContainsCACerts: true})
			r.setCRL("/root.crl", static(makeCRL(t, p.root, crlSpec{revoked: tc.revoked, extensions: []pkix.Extension{idp}})))
			c := &Checker{Now: newClock().Now}
			wantResult(t, c.Check(t.Context(), ca.cert, p.root.cert, false), tc.want, "")
		})
	}
}
