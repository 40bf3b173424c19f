package revocation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"
)

// TestSources covers how Check combines sources: order, fallback,
// revoked-wins, and what happens with no usable source.
func TestSources(t *testing.T) {
	p := getPKI(t)
	goodOCSP := func(l *x509.Certificate) func(*ocsp.Request) []byte {
		body := makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert})
		return func(*ocsp.Request) []byte { return body }
	}
	cases := []struct {
		name      string
		fresh     bool
		ocsp      bool // the leaf names the responder's /ocsp
		ocspFn    func(l *x509.Certificate) func(*ocsp.Request) []byte
		crl       func(l *x509.Certificate) []byte // nil: /ca.crl answers 404
		extraURLs []string                         // more CRL DPs, before /ca.crl
		want      Status
		results   []string // Result of each attempt, in order
		crlHits   int
	}{
		{name: "ok/ocsp-good-spares-the-crl", ocsp: true, ocspFn: goodOCSP,
			crl:  func(l *x509.Certificate) []byte { return makeCRL(t, p.ca, crlSpec{}) },
			want: Good, results: []string{ResultGood}, crlHits: 0},
		{name: "ok/ocsp-down-crl-good", ocsp: true,
			crl:  func(l *x509.Certificate) []byte { return makeCRL(t, p.ca, crlSpec{}) },
			want: Good, results: []string{ResultUnreachable, ResultGood}, crlHits: 1},
		{name: "ok/fresh-tries-every-source", fresh: true, ocsp: true, ocspFn: goodOCSP,
			crl:  func(l *x509.Certificate) []byte { return makeCRL(t, p.ca, crlSpec{}) },
			want: Good, results: []string{ResultGood, ResultGood}, crlHits: 1},
		{name: "ok/revoked-wins-over-good", fresh: true, ocsp: true, ocspFn: goodOCSP,
			crl: func(l *x509.Certificate) []byte {
				return makeCRL(t, p.ca, crlSpec{revoked: []*x509.Certificate{l}})
			},
			want: Revoked, results: []string{ResultGood, ResultRevoked}, crlHits: 1},
		{name: "ok/unsupported-scheme-then-good", extraURLs: []string{"ftp://crl.example.invalid/ca.crl"},
			crl:  func(l *x509.Certificate) []byte { return makeCRL(t, p.ca, crlSpec{}) },
			want: Good, results: []string{ResultUnsupported, ResultGood}, crlHits: 1},
		{name: "fail/every-source-fails", fresh: true, ocsp: true,
			extraURLs: []string{"ldap:///CN=CA,CN=CDP,DC=example,DC=test?certificateRevocationList?base"},
			crl:       func(l *x509.Certificate) []byte { return []byte("garbage") },
			want:      Unknown, results: []string{ResultUnreachable, ResultUnsupported, ResultMalformed}, crlHits: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newResponder(t)
			var ocspURLs []string
			if tc.ocsp {
				ocspURLs = []string{r.url("/ocsp")}
			}
			l := leaf(t, p.ca, ocspURLs, append(tc.extraURLs, r.url("/ca.crl")))
			if tc.ocspFn != nil {
				r.setOCSP(tc.ocspFn(l))
			}
			if tc.crl != nil {
				r.setCRL("/ca.crl", static(tc.crl(l)))
			}
			c := &Checker{Now: newClock().Now}
			res := c.Check(t.Context(), l, p.ca.cert, tc.fresh)
			wantResult(t, res, tc.want, "")
			var got []string
			for _, a := range res.Attempts {
				got = append(got, a.Result)
			}
			if strings.Join(got, ",") != strings.Join(tc.results, ",") {
				t.Errorf("attempt results = %q, want %q; %+v", got, tc.results, res.Attempts)
			}
			if n := r.count("/ca.crl"); n != tc.crlHits {
				t.Errorf("CRL fetched %d times, want %d", n, tc.crlHits)
			}
		})
	}
}

func TestNoSources(t *testing.T) {
	p := getPKI(t)
	res := (&Checker{Now: newClock().Now}).Check(t.Context(), leaf(t, p.ca, nil, nil), p.ca.cert, false)
	if res.Status != NoSources || len(res.Attempts) != 0 {
		t.Errorf("Check = %+v, want NoSources and no attempts", res)
	}
}

// TestWrongIssuer: a status vouched for by a CA that did not issue the
// certificate means nothing, whatever its responders say.
func TestWrongIssuer(t *testing.T) {
	p := getPKI(t)
	r := newResponder(t)
	l := leaf(t, p.ca, nil, []string{r.url("/ca.crl")})
	r.setCRL("/ca.crl", static(makeCRL(t, p.root, crlSpec{})))
	for _, tc := range []struct {
		name   string
		issuer *x509.Certificate
	}{
		{"fail/root-instead-of-issuer", p.root.cert},
		{"fail/impostor-with-issuer-name", selfSignedLike(t, p.ca.cert).cert},
		{"fail/nil-issuer", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := (&Checker{Now: newClock().Now}).Check(t.Context(), l, tc.issuer, false)
			if res.Status != Unknown || res.Error == "" || len(res.Attempts) != 0 {
				t.Errorf("Check = %+v, want Unknown with an Error and no attempts", res)
			}
			if r.count("/ca.crl") != 0 {
				t.Errorf("CRL fetched for a certificate checked against the wrong issuer")
			}
		})
	}
}

// TestCancelled: a cancelled context stops the check; nothing is Good.
func TestCancelled(t *testing.T) {
	p := getPKI(t)
	r := newResponder(t)
	l := leaf(t, p.ca, nil, []string{r.url("/ca.crl")})
	r.setCRL("/ca.crl", static(makeCRL(t, p.ca, crlSpec{})))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := &Checker{Now: newClock().Now}
	res := c.Check(ctx, l, p.ca.cert, false)
	wantResult(t, res, Unknown, ResultUnreachable)
	// The cancellation was ours: the source is not negative-cached.
	if res = c.Check(t.Context(), l, p.ca.cert, false); res.Status != Good {
		t.Errorf("after a cancelled check, Check = %+v, want Good", res)
	}
}

func TestStatusText(t *testing.T) {
	b, err := json.Marshal(Result{Status: Revoked, Reason: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"Status":"Revoked"`) {
		t.Errorf("JSON %s does not name the status", b)
	}
	for code, want := range map[int]string{0: "unspecified", 1: "keyCompromise", 6: "certificateHold", 7: "reason 7", 11: "reason 11", -1: "reason -1"} {
		if got := ReasonText(code); got != want {
			t.Errorf("ReasonText(%d) = %q, want %q", code, got, want)
		}
	}
}
