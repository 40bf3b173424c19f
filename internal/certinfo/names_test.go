package certinfo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSelfSigned(t *testing.T, subject string, domains ...string) *x509.Certificate {
	t.Helper()
	var s Subject
	if subject != "" {
		var err error
		if s, err = ParseSubject(subject); err != nil {
			t.Fatal(err)
		}
	}
	der, err := NewSelfSigned(SelfSignedOptions{Subject: s, Domains: domains, Key: ecKey(t), Now: time.Now()}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNamesOfNewCertificates protects issue 9 items 7 and 8: the names a
// new certificate holds are normalised, and its subject's CN is always in
// the SAN, so clients that match only the SAN (Go, browsers) accept it.
func TestNamesOfNewCertificates(t *testing.T) {
	for _, c := range []struct {
		name, subject string
		domains       []string
		wantSAN       []string
		wantSubject   string
	}{
		{"ok/cn-only-goes-into-san", "cn=only.example.com", nil, []string{"only.example.com"}, "CN=only.example.com"},
		{"ok/cn-added-before-domains", "c=us,o=Contoso,cn=mail.contoso.com", []string{"smtp.contoso.com"}, []string{"mail.contoso.com", "smtp.contoso.com"}, "CN=mail.contoso.com,O=Contoso,C=us"},
		{"ok/cn-already-a-domain", "cn=Mail.Contoso.com", []string{"mail.contoso.com"}, []string{"mail.contoso.com"}, "CN=mail.contoso.com"},
		{"ok/trailing-dots-dropped", "cn=trail.example.com.", []string{"Other.Example.", "*.wild.example."}, []string{"trail.example.com", "other.example", "*.wild.example"}, "CN=trail.example.com"},
		{"ok/idn-as-a-label", "", []string{"bücher.example"}, []string{"xn--bcher-kva.example"}, "CN=xn--bcher-kva.example"},
		{"ok/cn-not-a-name-stays-out-of-san", "cn=Contoso Mail Server", []string{"mail.contoso.com"}, []string{"mail.contoso.com"}, "CN=Contoso Mail Server"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cert := newSelfSigned(t, c.subject, c.domains...)
			if !reflect.DeepEqual(cert.DNSNames, c.wantSAN) {
				t.Errorf("SAN %v, want %v", cert.DNSNames, c.wantSAN)
			}
			if got := NameString(cert.RawSubject); got != c.wantSubject {
				t.Errorf("subject %q, want %q", got, c.wantSubject)
			}
			for _, n := range c.wantSAN {
				if !strings.HasPrefix(n, "*") {
					if err := cert.VerifyHostname(n); err != nil {
						t.Errorf("a TLS client refuses %s: %v", n, err)
					}
				}
			}
		})
	}
}

// TestSubjectShowsWhatIsSigned protects issue 9 item 9: a subject with two
// CNs is shown with both, in the certificate's order, and both are
// certificate domains.
func TestSubjectShowsWhatIsSigned(t *testing.T) {
	cert := newSelfSigned(t, "CN=a.example,CN=b.example")
	got := NameString(cert.RawSubject)
	if strings.Count(got, "CN=") != 2 {
		t.Fatalf("subject %q does not show both common names", got)
	}
	if d := Describe(cert); d.Subject != got || !reflect.DeepEqual(d.CertificateDomains[:2], CommonNames(cert.RawSubject)) || len(d.CertificateDomains) != 2 {
		t.Errorf("Describe: subject %q, domains %v (common names %v)", d.Subject, d.CertificateDomains, CommonNames(cert.RawSubject))
	}
	if cert.Subject.CommonName != CommonNames(cert.RawSubject)[0] {
		t.Errorf("the first of CommonNames (%v) is not the CN Go's crypto/x509 matches (%q)", CommonNames(cert.RawSubject), cert.Subject.CommonName)
	}
}
