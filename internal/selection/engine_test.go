package selection

import (
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certprop"
	"certrelay/internal/testpki"
)

var now = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// cand builds a usable candidate for mail.contoso.com; opts adjust it.
func cand(name string, ageDays int, opts ...func(*Candidate)) Candidate {
	c := Candidate{
		Thumbprint: fmt.Sprintf("%040X", len(name)*1000+ageDays) + "",
		Subject:    "CN=" + name,
		Issuer:     "CN=Contoso CA",
		Domains:    []string{"mail.contoso.com"},
		NotBefore:  now.Add(-time.Duration(ageDays) * 24 * time.Hour),
		NotAfter:   now.Add(time.Duration(365-ageDays) * 24 * time.Hour),
		Services:   certprop.SMTP,
		Status:     certprop.Valid,
		HasKey:     true, KeyReadable: true,
	}
	c.Thumbprint = fmt.Sprintf("%-40s", strings.ToUpper(name))[:40]
	for _, o := range opts {
		o(&c)
	}
	return c
}

func selfSigned(c *Candidate)                   { c.IsSelfSigned, c.Issuer = true, c.Subject }
func status(s certprop.Status) func(*Candidate) { return func(c *Candidate) { c.Status = s } }
func expired(c *Candidate) {
	c.NotAfter = now.Add(-24 * time.Hour)
	c.Status = certprop.DateInvalid
}
func domains(d ...string) func(*Candidate) { return func(c *Candidate) { c.Domains = d } }

var smtpFor = Request{FQDN: "mail.contoso.com", Service: certprop.SMTP}

// TestWalk covers each branch of SPEC S4's walk.
func TestWalk(t *testing.T) {
	cases := []struct {
		name   string
		cands  []Candidate
		req    Request
		winner string // "" for none
		how    string
	}{
		{"ok/ca-issued-beats-newer-self-signed", []Candidate{cand("SELF", 1, selfSigned), cand("CA", 100)}, smtpFor, "CA", WonTrusted},
		{"ok/newest-ca-issued-wins", []Candidate{cand("OLDCA", 100), cand("NEWCA", 10)}, smtpFor, "NEWCA", WonTrusted},
		{"ok/tie-broken-by-thumbprint", []Candidate{cand("BBB", 5), cand("AAA", 5)}, smtpFor, "AAA", WonTrusted},
		{"ok/newest-self-signed-when-no-ca", []Candidate{cand("SELFOLD", 50, selfSigned), cand("SELFNEW", 5, selfSigned)}, smtpFor, "SELFNEW", WonSelfSigned},
		{"ok/revocation-fallback-beats-self-signed-at-end", []Candidate{cand("SELF", 1, selfSigned), cand("REVUNK", 10, status(certprop.RevocationCheckFailure))}, smtpFor, "REVUNK", WonRevocationUnknown},
		{"ok/valid-ca-after-revocation-unknown-wins", []Candidate{cand("REVUNK", 1, status(certprop.RevocationCheckFailure)), cand("GOOD", 10)}, smtpFor, "GOOD", WonTrusted},
		{"ok/expired-ends-walk-revocation-fallback-wins", []Candidate{cand("REVUNK", 1, status(certprop.Unknown)), cand("EXP", 20, expired), cand("GOODOLD", 300)}, smtpFor, "REVUNK", WonRevocationUnknown},
		{"ok/expired-ends-walk-expired-ca-wins", []Candidate{cand("SELF", 1, selfSigned), cand("EXP", 20, expired), cand("GOODOLD", 300)}, smtpFor, "EXP", WonExpired},
		{"ok/expired-self-signed-ends-walk-self-signed-seen-wins", []Candidate{cand("SELF", 1, selfSigned), cand("EXPSELF", 20, selfSigned, expired), cand("GOODOLD", 300)}, smtpFor, "SELF", WonSelfSigned},
		{"ok/expired-self-signed-last-resort", []Candidate{cand("EXPSELF", 20, selfSigned, expired)}, smtpFor, "EXPSELF", WonExpired},
		{"none/no-candidate", []Candidate{cand("OTHER", 1, domains("other.contoso.com"))}, smtpFor, "", ""},
		{"none/only-revoked-and-untrusted", []Candidate{cand("REV", 1, status(certprop.Revoked)), cand("UNT", 2, status(certprop.Untrusted))}, smtpFor, "", ""},
		{"reject/not-enabled-for-smtp", []Candidate{cand("POPONLY", 1, func(c *Candidate) { c.Services = certprop.POP }), cand("SELF", 5, selfSigned)}, smtpFor, "SELF", WonSelfSigned},
		{"reject/no-private-key", []Candidate{cand("NOKEY", 1, func(c *Candidate) { c.HasKey = false })}, smtpFor, "", ""},
		{"reject/key-unreadable", []Candidate{cand("NOREAD", 1, func(c *Candidate) { c.KeyReadable = false })}, smtpFor, "", ""},
		{"reject/pending-request", []Candidate{cand("PEND", 1, func(c *Candidate) { c.Pending = true })}, smtpFor, "", ""},
		{"ok/wildcard-several-levels", []Candidate{cand("WILD", 1, domains("*.contoso.com"))}, Request{FQDN: "a.mail.contoso.com", Service: certprop.SMTP}, "WILD", WonTrusted},
		{"none/wildcard-one-label-switch", []Candidate{cand("WILD", 1, domains("*.contoso.com"))}, Request{FQDN: "a.mail.contoso.com", Service: certprop.SMTP, OneLabel: true}, "", ""},
		{"none/search-name-is-wildcard", []Candidate{cand("WILD", 1, domains("*.contoso.com"))}, Request{FQDN: "*.contoso.com", Service: certprop.SMTP}, "", ""},
		{"ok/explicit-binding", []Candidate{cand("NEWER", 1), cand("NAMED", 30, func(c *Candidate) { c.Issuer, c.Subject = "CN=Fabrikam CA,O=Fabrikam", "CN=named.contoso.com" })},
			Request{Service: certprop.SMTP, Explicit: "<I>o=fabrikam, cn=fabrikam ca<S>CN=named.contoso.com"}, "NAMED", WonExplicit},
		{"none/explicit-binding-missing", []Candidate{cand("NEWER", 1)}, Request{Service: certprop.SMTP, Explicit: "<I>CN=Gone CA<S>CN=gone.contoso.com"}, "", ""},
		{"ok/compat-2007-newest-wins-whatever-issuer", []Candidate{cand("CA", 30), cand("SELF", 1, selfSigned)}, Request{FQDN: "mail.contoso.com", Service: certprop.SMTP, Compat2007: true}, "SELF", WonNewest},
		{"none/compat-2007-no-wildcards", []Candidate{cand("WILD", 1, domains("*.contoso.com"))}, Request{FQDN: "mail.contoso.com", Service: certprop.SMTP, Compat2007: true}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Select(c.cands, c.req, now)
			got := ""
			if d.Winner != nil {
				got = strings.TrimSpace(d.Winner.Thumbprint)
			}
			if got != c.winner || d.How != c.how {
				t.Fatalf("winner %q (%s), want %q (%s); why: %s\n%+v", got, d.How, c.winner, c.how, d.Why, d.Considered)
			}
			if len(d.Considered) != len(c.cands) {
				t.Fatalf("%d considerations for %d candidates", len(d.Considered), len(c.cands))
			}
			for _, con := range d.Considered {
				if con.Verdict == "" || con.Reason == "" {
					t.Errorf("unexplained: %+v", con)
				}
				if (con.Verdict == Chosen) != (strings.TrimSpace(con.Thumbprint) == c.winner) {
					t.Errorf("verdict %s for %s", con.Verdict, con.Thumbprint)
				}
			}
			if d.Why == "" {
				t.Error("no why")
			}
		})
	}
}

// TestDeterministic: the store's order never changes the choice.
func TestDeterministic(t *testing.T) {
	cs := []Candidate{cand("A", 5), cand("B", 5), cand("C", 5, selfSigned), cand("D", 1, selfSigned)}
	first := Select(cs, smtpFor, now).Winner.Thumbprint
	for i := 0; i < 10; i++ {
		cs[0], cs[i%4] = cs[i%4], cs[0]
		if got := Select(cs, smtpFor, now).Winner.Thumbprint; got != first {
			t.Fatalf("order %d chose %s, first %s", i, got, first)
		}
	}
}

// TestRealCertificateUsage: S2's checks on the certificate itself, with
// the reason explain shows.
func TestRealCertificateUsage(t *testing.T) {
	mk := func(o testpki.Options) Candidate {
		o.CommonName, o.DNSNames = "mail.contoso.com", []string{"mail.contoso.com"}
		l := testpki.SelfSigned(t, o)
		c := cand("REAL", 1, selfSigned)
		c.Cert = l.Cert
		return c
	}
	cases := []struct {
		name   string
		o      testpki.Options
		reason string // "" when the certificate must be chosen
	}{
		{"fail/eku-client-auth-only", testpki.Options{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, "Server Authentication"},
		{"ok/no-eku", testpki.Options{NoEKU: true}, ""},
		{"ok/ecdsa", testpki.Options{Key: testpki.ECKey(t)}, ""},
		{"ok/keyusage-digitalsignature-only", testpki.Options{KeyUsage: x509.KeyUsageDigitalSignature}, ""},
		{"ok/keyusage-digitalsignature-and-keyencipherment", testpki.Options{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}, ""},
		{"fail/keyusage-keyencipherment-only", testpki.Options{KeyUsage: x509.KeyUsageKeyEncipherment}, "digitalSignature"},
		{"fail/keyusage-cert-sign-only", testpki.Options{KeyUsage: x509.KeyUsageCertSign}, "digitalSignature"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Select([]Candidate{mk(c.o)}, smtpFor, now)
			if c.reason == "" {
				if d.Winner == nil {
					t.Fatalf("not chosen: %+v", d.Considered)
				}
				return
			}
			if d.Winner != nil {
				t.Fatalf("chosen (%s), want rejected for %q", d.Why, c.reason)
			}
			if con := d.Considered[0]; con.Verdict != Rejected || !strings.Contains(con.Reason, c.reason) {
				t.Errorf("explanation %+v, want rejected with a reason naming %q", con, c.reason)
			}
		})
	}
}

func TestEqualNames(t *testing.T) {
	if !EqualNames("CN=mail.contoso.com, O=Contoso, C=US", "c=us,o=contoso,cn=MAIL.contoso.com") {
		t.Error("same name in two orders")
	}
	if EqualNames("CN=a", "CN=b") {
		t.Error("different names equal")
	}
	if _, _, err := ParseTLSCertificateName("CN=x"); err == nil {
		t.Error("TlsCertificateName without <I> accepted")
	}
}

func TestIndexMemoizes(t *testing.T) {
	cs := []Candidate{cand("A", 5), cand("B", 1, selfSigned)}
	ix := NewIndex(cs, now)
	d1 := ix.Select(smtpFor)
	d2 := ix.Select(smtpFor)
	if d1 != d2 || d1.Winner == nil {
		t.Fatal("not memoized")
	}
	if upper := ix.Select(Request{FQDN: "MAIL.CONTOSO.COM", Service: certprop.SMTP}); upper != d1 {
		t.Error("case changed the decision")
	}
	if allocs := testing.AllocsPerRun(100, func() { ix.Select(smtpFor) }); allocs != 0 {
		t.Errorf("%v allocations per memoized lookup", allocs)
	}
	if !ix.ValidUntil().Equal(cs[1].NotAfter) && !ix.ValidUntil().Equal(cs[0].NotAfter) {
		t.Errorf("ValidUntil %v", ix.ValidUntil())
	}
}
