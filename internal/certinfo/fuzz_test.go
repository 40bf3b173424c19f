package certinfo

import (
	"crypto/rand"
	"strings"
	"testing"

	"certrelay/internal/testpki"
)

// FuzzParseBundle feeds arbitrary files to the import parser: it must
// never panic, and whatever it accepts must be self-consistent.
func FuzzParseBundle(f *testing.F) {
	root := testpki.NewRoot(f, testpki.Options{CommonName: "Fuzz Root"})
	leaf := root.Issue(f, testpki.Options{CommonName: "a.example", DNSNames: []string{"a.example"}})
	f.Add(leaf.Cert.Raw)
	f.Add(testpki.PEM(leaf.Cert, root.Cert))
	f.Add(append(testpki.PEM(leaf.Cert), testpki.KeyPEM(f, leaf.Key)...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("MIIBAAAA"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pw := "pw"
		b, err := ParseBundle(data, &pw)
		if err != nil {
			return
		}
		if len(b.Certificates) == 0 && b.Request == nil {
			t.Fatalf("accepted a %s file with nothing in it", b.Format)
		}
		for _, c := range b.Certificates {
			_ = Describe(c)
		}
	})
}

// FuzzParsePKCS12 feeds arbitrary bytes and passwords to the PKCS#12 path.
func FuzzParsePKCS12(f *testing.F) {
	leaf := testpki.SelfSigned(f, testpki.Options{CommonName: "p12.example"})
	pfx, err := EncodePKCS12(leaf.Key, leaf.Cert, nil, "pw", rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pfx, "pw")
	f.Add(pfx, "wrong")
	f.Add(pfx[:len(pfx)/2], "pw")
	f.Fuzz(func(t *testing.T, data []byte, pw string) {
		b, err := parsePKCS12(data, &pw)
		if err != nil {
			return
		}
		if len(b.Certificates) == 0 {
			t.Fatal("accepted a PKCS#12 file without certificates")
		}
		for _, c := range b.Certificates {
			_ = Describe(c)
		}
	})
}

// FuzzParseSubject: never panic; an accepted subject round-trips through
// DER.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"c=us,o=contoso corp, cn=popserver.fourthcoffee.com", `o="a,b",cn=x`, `cn=a\,b`, "CN=x, O=y, C=US", "=", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sub, err := ParseSubject(s)
		if err != nil {
			if !strings.Contains(err.Error(), "invalid subject") {
				t.Fatalf("error without ErrSubject: %v", err)
			}
			return
		}
		der, err := sub.DER()
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", s, err)
		}
		if len(der) == 0 {
			t.Fatal("empty DER")
		}
	})
}
