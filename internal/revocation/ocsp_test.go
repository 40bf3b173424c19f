package revocation

import (
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

func TestOCSP(t *testing.T) {
	p := getPKI(t)
	otherCA := mustCA(t, p.root, "certrelay Test Other CA", x509.KeyUsageCertSign|x509.KeyUsageCRLSign)
	impostor := selfSignedLike(t, p.ca.cert)
	delegated := responderCert(t, p.ca, true, time.Time{})
	delegatedNoEKU := responderCert(t, p.ca, false, time.Time{})
	delegatedByOther := responderCert(t, otherCA, true, time.Time{})
	delegatedExpired := responderCert(t, p.ca, true, t0.Add(-time.Hour))

	cases := []struct {
		name       string
		respond    func(t *testing.T, leaf *x509.Certificate) []byte // nil: HTTP 404
		want       Status
		wantResult string
	}{
		{name: "ok/good-signed-by-issuer", want: Good, wantResult: ResultGood,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert})
			}},
		{name: "ok/good-issuer-embeds-itself", want: Good, wantResult: ResultGood,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert, embed: true})
			}},
		{name: "ok/good-delegated-responder", want: Good, wantResult: ResultGood,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, delegated, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert, embed: true})
			}},
		{name: "ok/revoked", want: Revoked, wantResult: ResultRevoked,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Revoked, serial: l.SerialNumber, issuer: p.ca.cert})
			}},
		{name: "ok/revoked-delegated-responder", want: Revoked, wantResult: ResultRevoked,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, delegated, ocspSpec{status: ocsp.Revoked, serial: l.SerialNumber, issuer: p.ca.cert, embed: true})
			}},
		{name: "ok/no-nextupdate-recent", want: Good, wantResult: ResultGood,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert,
					thisUpdate: t0.Add(-10 * time.Minute), noNext: true})
			}},
		{name: "fail/no-nextupdate-stale", want: Unknown, wantResult: ResultExpired,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert,
					thisUpdate: t0.Add(-25 * time.Hour), noNext: true})
			}},
		{name: "fail/response-for-another-certificate", want: Unknown, wantResult: ResultNotCovered,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				serial := new(big.Int).Add(l.SerialNumber, big.NewInt(1))
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: serial, issuer: p.ca.cert})
			}},
		{name: "fail/same-serial-other-issuer", want: Unknown, wantResult: ResultNotCovered,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				// Signed by our issuer, but the CertID names another CA.
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: otherCA.cert})
			}},
		{name: "fail/signed-by-unauthorised-key", want: Unknown, wantResult: ResultUntrusted,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, impostor, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert})
			}},
		{name: "fail/signed-by-embedded-impostor", want: Unknown, wantResult: ResultUntrusted,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, impostor, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert, embed: true})
			}},
		{name: "fail/delegated-without-ocspsigning", want: Unknown, wantResult: ResultUntrusted,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, delegatedNoEKU, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert, embed: true})
			}},
		{name: "fail/delegated-by-another-ca", want: Unknown, wantResult: ResultUntrusted,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, delegatedByOther, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert, embed: true})
			}},
		{name: "fail/delegated-responder-expired", want: Unknown, wantResult: ResultUntrusted,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, delegatedExpired, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert, embed: true})
			}},
		{name: "fail/delegated-not-embedded", want: Unknown, wantResult: ResultUntrusted,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, delegated, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert})
			}},
		{name: "fail/expired", want: Unknown, wantResult: ResultExpired,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert,
					thisUpdate: t0.Add(-72 * time.Hour), nextUpdate: t0.Add(-time.Minute)})
			}},
		{name: "fail/thisupdate-in-future", want: Unknown, wantResult: ResultNotYetValid,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert,
					thisUpdate: t0.Add(10 * time.Minute)})
			}},
		{name: "fail/status-unknown", want: Unknown, wantResult: ResultUnknown,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Unknown, serial: l.SerialNumber, issuer: p.ca.cert})
			}},
		{name: "fail/try-later", want: Unknown, wantResult: ResultResponderError,
			respond: func(t *testing.T, l *x509.Certificate) []byte { return ocsp.TryLaterErrorResponse }},
		{name: "fail/malformed", want: Unknown, wantResult: ResultMalformed,
			respond: func(t *testing.T, l *x509.Certificate) []byte { return []byte("<html>proxy login</html>") }},
		{name: "fail/truncated", want: Unknown, wantResult: ResultMalformed,
			respond: func(t *testing.T, l *x509.Certificate) []byte {
				der := makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert})
				return der[:len(der)-1]
			}},
		{name: "fail/http-404", want: Unknown, wantResult: ResultUnreachable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newResponder(t)
			l := leaf(t, p.ca, []string{r.url("/ocsp")}, nil)
			if tc.respond != nil {
				body := tc.respond(t, l)
				r.setOCSP(func(req *ocsp.Request) []byte {
					if req.SerialNumber.Cmp(l.SerialNumber) != 0 {
						t.Errorf("OCSP request for serial %X, want %X", req.SerialNumber, l.SerialNumber)
					}
					return body
				})
			}
			c := &Checker{Now: newClock().Now}
			res := c.Check(t.Context(), l, p.ca.cert, false)
			wantResult(t, res, tc.want, tc.wantResult)
			a := res.Attempts[0]
			t.Logf("%s: %s (%s)", a.Kind, a.Result, a.Error)
			if a.Kind != KindOCSP || len(res.Attempts) != 1 {
				t.Errorf("attempts = %+v, want one OCSP attempt", res.Attempts)
			}
			if tc.want == Revoked && (res.Reason != ocsp.KeyCompromise || !res.RevokedAt.Equal(t0.Add(-48*time.Hour))) {
				t.Errorf("revoked at %v reason %d, want %v keyCompromise", res.RevokedAt, res.Reason, t0.Add(-48*time.Hour))
			}
			if tc.want == Good && strings.HasPrefix(tc.name, "ok/good") && (!a.ThisUpdate.Equal(t0.Add(-time.Hour)) || !a.NextUpdate.Equal(t0.Add(24*time.Hour))) {
				t.Errorf("thisUpdate %v nextUpdate %v not reported", a.ThisUpdate, a.NextUpdate)
			}
		})
	}
}

// TestCurrentUntil pins the time rules shared by CRLs and OCSP responses.
func TestCurrentUntil(t *testing.T) {
	cases := []struct {
		name           string
		this, next     time.Time
		wantResult     string // "" for current
		wantCacheUntil time.Time
	}{
		{"ok/current", t0.Add(-time.Hour), t0.Add(time.Hour), "", t0.Add(time.Hour)},
		{"ok/thisupdate-within-skew", t0.Add(clockSkew), t0.Add(time.Hour), "", t0.Add(time.Hour)},
		{"ok/no-nextupdate-cached-an-hour", t0.Add(-time.Hour), time.Time{}, "", t0.Add(maxCacheNoNext)},
		{"ok/no-nextupdate-cached-until-stale", t0.Add(-maxAgeNoNextUpdate + time.Minute), time.Time{}, "", t0.Add(time.Minute)},
		{"fail/thisupdate-beyond-skew", t0.Add(clockSkew + time.Second), t0.Add(time.Hour), ResultNotYetValid, time.Time{}},
		{"fail/nextupdate-now", t0.Add(-time.Hour), t0, ResultExpired, time.Time{}},
		{"fail/no-nextupdate-stale", t0.Add(-maxAgeNoNextUpdate), time.Time{}, ResultExpired, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			until, result, err := currentUntil(tc.this, tc.next, t0)
			if result != tc.wantResult || (err == nil) != (tc.wantResult == "") || !until.Equal(tc.wantCacheUntil) {
				t.Errorf("currentUntil = %v, %q, %v; want %v, %q", until, result, err, tc.wantCacheUntil, tc.wantResult)
			}
		})
	}
}
