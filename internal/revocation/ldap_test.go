package revocation

import (
	"certrelay/internal/testpki"

	"context"
	"crypto/x509"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// TestLDAPCRL fetches CRLs from ldap:// distribution points served by a
// real slapd, as Active Directory Certificate Services publishes them.
func TestLDAPCRL(t *testing.T) {
	p := getPKI(t)
	s := testpki.StartSlapd(t)
	other := leaf(t, p.ca, nil, []string{"http://unused.invalid/"})

	cases := []struct {
		name     string
		cn       string // entry cn=... under the suffix; empty: no entry
		revoked  func(l *x509.Certificate) []*x509.Certificate
		noBinary bool // URL asks for certificateRevocationList without ;binary
		want     Status
		result   string
	}{
		{name: "ok/good", cn: "Good CA CRL", want: Good, result: ResultGood,
			revoked: func(*x509.Certificate) []*x509.Certificate { return []*x509.Certificate{other} }},
		{name: "ok/revoked", cn: "Revoked CA CRL", want: Revoked, result: ResultRevoked,
			revoked: func(l *x509.Certificate) []*x509.Certificate { return []*x509.Certificate{other, l} }},
		{name: "ok/attribute-without-binary-option", cn: "Plain CA CRL", noBinary: true, want: Good, result: ResultGood,
			revoked: func(*x509.Certificate) []*x509.Certificate { return nil }},
		{name: "fail/no-such-entry", want: Unknown, result: ResultUnreachable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cn := tc.cn
			if cn == "" {
				cn = "Missing CRL"
			}
			attr := "certificateRevocationList;binary"
			if tc.noBinary {
				attr = "certificateRevocationList"
			}
			dp := "ldap://" + s.Addr + "/cn=" + strings.ReplaceAll(cn, " ", "%20") + "," + s.Suffix +
				"?" + attr + "?base?objectClass=cRLDistributionPoint"
			l := leaf(t, p.ca, nil, []string{dp})
			if tc.cn != "" {
				crl := makeCRL(t, p.ca, crlSpec{revoked: tc.revoked(l)})
				s.Add(t, "cn="+tc.cn+","+s.Suffix, map[string][]string{
					"objectClass":                      {"cRLDistributionPoint"},
					"cn":                               {tc.cn},
					"certificateRevocationList;binary": {string(crl)},
				})
			}
			var dials atomic.Int32
			c := &Checker{Now: newClock().Now, Timeout: 5 * time.Second,
				LDAPDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
					dials.Add(1)
					return (&net.Dialer{}).DialContext(ctx, network, addr)
				}}
			res := c.Check(t.Context(), l, p.ca.cert, false)
			wantResult(t, res, tc.want, tc.result)
			t.Logf("%s %s: %s (%s)", res.Attempts[0].Kind, res.Attempts[0].URL, res.Attempts[0].Result, res.Attempts[0].Error)
			if dials.Load() != 1 {
				t.Errorf("LDAPDial called %d times, want 1", dials.Load())
			}
			// A second check is answered from the cache (or negative cache).
			if res := c.Check(t.Context(), l, p.ca.cert, false); res.Status != tc.want || !res.Attempts[0].FromCache || dials.Load() != 1 {
				t.Errorf("second check = %+v after %d dials, want %v from the cache", res, dials.Load(), tc.want)
			}
		})
	}
}

func TestParseLDAPURL(t *testing.T) {
	cases := []struct {
		name, url   string
		addr, dn    string
		attrs       string
		scope       int
		filter      string
		unsupported bool
	}{
		{name: "ok/windows-style-with-host",
			url:  "ldap://dc1.example.test/CN=Example%20CA,CN=dc1,CN=CDP,CN=Public%20Key%20Services,CN=Services,CN=Configuration,DC=example,DC=test?certificateRevocationList?base?objectClass=cRLDistributionPoint",
			addr: "dc1.example.test:389", dn: "CN=Example CA,CN=dc1,CN=CDP,CN=Public Key Services,CN=Services,CN=Configuration,DC=example,DC=test",
			attrs: "certificateRevocationList", scope: ldap.ScopeBaseObject, filter: "(objectClass=cRLDistributionPoint)"},
		{name: "ok/defaults", url: "ldap://127.0.0.1:3890/cn=CA,dc=example,dc=test",
			addr: "127.0.0.1:3890", dn: "cn=CA,dc=example,dc=test", attrs: "certificateRevocationList;binary",
			scope: ldap.ScopeBaseObject, filter: "(objectClass=*)"},
		{name: "ok/ipv6-sub-scope", url: "ldap://[::1]/dc=test?certificateRevocationList;binary,authorityRevocationList?sub?(cn=CA)",
			addr: "[::1]:389", dn: "dc=test", attrs: "certificateRevocationList;binary,authorityRevocationList",
			scope: ldap.ScopeWholeSubtree, filter: "(cn=CA)"},
		{name: "fail/no-host", url: "ldap:///CN=Example%20CA,CN=CDP,DC=example,DC=test?certificateRevocationList?base", unsupported: true},
		{name: "fail/bad-scope", url: "ldap://h/dc=test?a?everything", unsupported: true},
		{name: "fail/critical-extension", url: "ldap://h/dc=test?a?base??!bindname=cn=x", unsupported: true},
		{name: "fail/ldaps", url: "ldaps://h/dc=test", unsupported: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLDAPURL(tc.url)
			if tc.unsupported {
				if err == nil {
					t.Fatalf("parseLDAPURL = %+v, want an error", got)
				}
				if a := fetchFailure(KindCRL, tc.url, err); a.Result != ResultUnsupported {
					t.Errorf("result %q, want %q", a.Result, ResultUnsupported)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.addr != tc.addr || got.dn != tc.dn || strings.Join(got.attrs, ",") != tc.attrs ||
				got.scope != tc.scope || got.filter != tc.filter {
				t.Errorf("parseLDAPURL = %+v", got)
			}
		})
	}
}
