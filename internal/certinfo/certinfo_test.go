package certinfo

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"certrelay/internal/testpki"
)

var now = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

func TestParseSubject(t *testing.T) {
	cases := []struct {
		name, in, want, cn, err string
	}{
		{name: "ok/seed-example", in: "c=us,o=contoso corp, cn=popserver.fourthcoffee.com", want: "CN=popserver.fourthcoffee.com,O=contoso corp,C=us", cn: "popserver.fourthcoffee.com"},
		{name: "ok/rfc4514-order-reversed", in: "CN=mail.contoso.com, OU=IT, O=Contoso, C=US", want: "CN=mail.contoso.com,OU=IT,O=Contoso,C=US", cn: "mail.contoso.com"},
		{name: "ok/case-insensitive-keys", in: "C=US,O=x,Cn=a.b", want: "CN=a.b,O=x,C=US", cn: "a.b"},
		{name: "ok/spaces-around-equals", in: " c = us , o = Org ,cn = h.example ", want: "CN=h.example,O=Org,C=us", cn: "h.example"},
		{name: "ok/quoted-comma", in: `c=us,o="Contoso, Ltd",cn=h.example`, want: `CN=h.example,O=Contoso\, Ltd,C=us`, cn: "h.example"},
		{name: "ok/escaped-comma", in: `o=Contoso\, Ltd,cn=h.example`, want: `CN=h.example,O=Contoso\, Ltd`, cn: "h.example"},
		{name: "ok/all-attributes", in: "c=us,st=WA,l=Redmond,o=Contoso,ou=Mail,cn=m.contoso.com", want: "CN=m.contoso.com,OU=Mail,O=Contoso,L=Redmond,ST=WA,C=us", cn: "m.contoso.com"},
		{name: "ok/cn-only", in: "cn=server1", want: "CN=server1", cn: "server1"},
		{name: "fail/unknown-attribute", in: "c=us,xx=foo,cn=a", err: `unknown attribute "xx"`},
		{name: "fail/no-equals", in: "c=us,contoso", err: "has no '='"},
		{name: "fail/empty", in: "  ", err: "empty"},
		{name: "fail/empty-value", in: "c=us,o=,cn=a", err: "empty value"},
		{name: "fail/long-country", in: "c=usa,cn=a", err: "two-letter"},
		{name: "fail/unclosed-quote", in: `o="abc,cn=a`, err: "not closed"},
		{name: "fail/control-character", in: "cn=a\x01b", err: "control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSubject(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrSubject) {
					t.Fatalf("ParseSubject(%q) error = %v, want one containing %q", c.in, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.String(); got != c.want {
				t.Errorf("String() = %q, want %q", got, c.want)
			}
			if got := s.CommonName(); got != c.cn {
				t.Errorf("CommonName() = %q, want %q", got, c.cn)
			}
		})
	}
}

func TestDomains(t *testing.T) {
	got := Domains("popserver.fourthcoffee.com", "PopServer.fourthcoffee.com", "fourthcoffee.com", "*.fourthcoffee.com", "fourthcoffee.com")
	want := []string{"popserver.fourthcoffee.com", "fourthcoffee.com", "*.fourthcoffee.com"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("Domains = %v, want %v", got, want)
	}
}

func TestNewSelfSigned(t *testing.T) {
	cases := []struct {
		name string
		spec KeySpec
		bits int
		alg  string
	}{
		{"ok/rsa-1024", KeySpec{Type: "rsa", Size: 1024}, 1024, "RSA"},
		{"ok/rsa-2048-default", KeySpec{}, 2048, "RSA"},
		{"ok/rsa-4096", KeySpec{Type: "rsa", Size: 4096}, 4096, "RSA"},
		{"ok/ecdsa-p256", KeySpec{Type: "ecdsa"}, 256, "ECDSA P-256"},
		{"ok/ecdsa-p384", KeySpec{Type: "ecdsa", Size: 384}, 384, "ECDSA P-384"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.bits == 4096 {
				t.Log("4096-bit generation is slow; still run in full mode")
			}
			key, err := GenerateKey(c.spec, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			der, err := NewSelfSigned(SelfSignedOptions{Domains: []string{"server1.fourthcoffee.com", "server1"}, Key: key, Now: now}, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			in := Describe(cert)
			if in.Subject != "CN=server1.fourthcoffee.com" || in.Issuer != in.Subject {
				t.Errorf("subject %q issuer %q", in.Subject, in.Issuer)
			}
			if !in.IsSelfSigned {
				t.Error("IsSelfSigned = false")
			}
			if in.PublicKeySize != c.bits || in.KeyAlgorithm != c.alg {
				t.Errorf("key %s %d bits, want %s %d", in.KeyAlgorithm, in.PublicKeySize, c.alg, c.bits)
			}
			if !in.NotBefore.Equal(now) || !in.NotAfter.Equal(now.Add(DefaultValidity)) {
				t.Errorf("validity %v – %v", in.NotBefore, in.NotAfter)
			}
			if strings.Join(in.CertificateDomains, ",") != "server1.fourthcoffee.com,server1" {
				t.Errorf("CertificateDomains = %v", in.CertificateDomains)
			}
			if len(in.Thumbprint) != 40 || strings.ToUpper(in.Thumbprint) != in.Thumbprint {
				t.Errorf("Thumbprint %q", in.Thumbprint)
			}
			if ok, why := UsableForTLSServer(cert); !ok {
				t.Errorf("not usable for TLS: %s", why)
			}
			if !KeyMatches(key, cert.PublicKey) {
				t.Error("key does not match")
			}
		})
	}
}

func TestKeySpecRejects(t *testing.T) {
	for _, k := range []KeySpec{{Type: "rsa", Size: 512}, {Type: "rsa", Size: 1000}, {Type: "ecdsa", Size: 521}, {Type: "dsa"}} {
		if _, err := k.Normalize(); err == nil {
			t.Errorf("%+v accepted", k)
		}
	}
}

func TestNewRequest(t *testing.T) {
	subject, err := ParseSubject("c=us,o=contoso corp, cn=popserver.fourthcoffee.com")
	if err != nil {
		t.Fatal(err)
	}
	key := testpki.ECKey(t)
	der, err := NewRequest(RequestOptions{Subject: subject, Domains: []string{"popserver.fourthcoffee.com", "fourthcoffee.com"}, Key: key}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if r.Subject.String() != "CN=popserver.fourthcoffee.com,O=contoso corp,C=us" {
		t.Errorf("subject %q", r.Subject)
	}
	if strings.Join(r.DNSNames, ",") != "popserver.fourthcoffee.com,fourthcoffee.com" {
		t.Errorf("SAN %v", r.DNSNames)
	}
	b, err := ParseBundle(RequestPEM(der), nil)
	if err != nil || b.Request == nil {
		t.Fatalf("ParseBundle(request) = %v, %v", b, err)
	}
}

func TestParseBundle(t *testing.T) {
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Test Root"})
	leaf := root.Issue(t, testpki.Options{CommonName: "mail.contoso.com", DNSNames: []string{"mail.contoso.com"}})
	p7, err := pkcs7.DegenerateCertificate(append(append([]byte{}, leaf.Cert.Raw...), root.Cert.Raw...))
	if err != nil {
		t.Fatal(err)
	}
	pw := "s3cret"
	wrong := "nope"
	pfx, err := EncodePKCS12(leaf.Key, leaf.Cert, []*x509.Certificate{root.Cert}, pw, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(leaf.Cert.Raw)
	var wrapped strings.Builder
	for i := 0; i < len(b64); i += 64 {
		wrapped.WriteString(b64[i:min(i+64, len(b64))] + "\r\n")
	}
	pemWithKey := append(testpki.PEM(leaf.Cert, root.Cert), testpki.KeyPEM(t, leaf.Key)...)
	cases := []struct {
		name    string
		data    []byte
		pw      *string
		format  string
		certs   int
		key     bool
		err     error
		errText string
	}{
		{name: "ok/der", data: leaf.Cert.Raw, format: "DER", certs: 1},
		{name: "ok/der-concatenated", data: append(append([]byte{}, leaf.Cert.Raw...), root.Cert.Raw...), format: "DER", certs: 2},
		{name: "ok/pem-chain", data: testpki.PEM(leaf.Cert, root.Cert), format: "PEM", certs: 2},
		{name: "ok/pem-with-key", data: pemWithKey, format: "PEM", certs: 2, key: true},
		{name: "ok/base64-windows", data: []byte(wrapped.String()), format: "base64", certs: 1},
		{name: "ok/pkcs7-der", data: p7, format: "PKCS#7", certs: 2},
		{name: "ok/pkcs7-pem", data: pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: p7}), format: "PEM", certs: 2},
		{name: "ok/pkcs12", data: pfx, pw: &pw, format: "PKCS#12", certs: 2, key: true},
		{name: "fail/pkcs12-wrong-password", data: pfx, pw: &wrong, err: ErrWrongPassword},
		{name: "fail/pkcs12-no-password", data: pfx, err: ErrNeedPassword},
		{name: "fail/garbage", data: []byte("this is not a certificate at all\x00\x01"), err: ErrNotCertificate, errText: "expected DER, PEM"},
		{name: "fail/empty", data: []byte("\n\n"), err: ErrNotCertificate, errText: "empty"},
		{name: "fail/truncated-der", data: leaf.Cert.Raw[:len(leaf.Cert.Raw)/2], err: ErrNotCertificate, errText: "damaged or cut short"},
		{name: "fail/pem-without-certificate", data: testpki.KeyPEM(t, leaf.Key), err: ErrNotCertificate, errText: "no CERTIFICATE block"},
		{name: "fail/pem-cut-short", data: []byte("-----BEGIN CERTIFICATE-----\nMIIB"), err: ErrNotCertificate, errText: "no complete PEM block"},
		{name: "fail/encrypted-pem-key", data: []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), err: ErrNotCertificate, errText: "PKCS#12"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := ParseBundle(c.data, c.pw)
			if c.err != nil {
				if !errors.Is(err, c.err) || (c.errText != "" && !strings.Contains(err.Error(), c.errText)) {
					t.Fatalf("error = %v, want %v containing %q", err, c.err, c.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Format != c.format || len(b.Certificates) != c.certs || (b.Key != nil) != c.key {
				t.Fatalf("got format %s, %d certs, key %v; want %s, %d, %v", b.Format, len(b.Certificates), b.Key != nil, c.format, c.certs, c.key)
			}
			if Thumbprint(b.Certificates[0].Raw) != Thumbprint(leaf.Cert.Raw) {
				t.Error("first certificate is not the leaf")
			}
		})
	}
}

func TestNormalizeThumbprint(t *testing.T) {
	if got, ok := NormalizeThumbprint("c7:9f:7f:29:3e:09:f7:e8:8b:34:99:8c:e0:a4:c9:ce:8e:69:b9:c3"); !ok || got != "C79F7F293E09F7E88B34998CE0A4C9CE8E69B9C3" {
		t.Errorf("got %q %v", got, ok)
	}
	for _, bad := range []string{"", "XYZ", strings.Repeat("G", 40), strings.Repeat("A", 39)} {
		if _, ok := NormalizeThumbprint(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCheckPublicKey(t *testing.T) {
	k512 := testpki.SelfSigned(t, testpki.Options{CommonName: "x", Key: weakRSA(t)})
	if err := CheckPublicKey(k512.Cert.PublicKey); err == nil || !strings.Contains(err.Error(), "512 bits") {
		t.Errorf("512-bit key: %v", err)
	}
	if err := CheckPublicKey(testpki.ECKey(t).Public()); err != nil {
		t.Errorf("P-256: %v", err)
	}
}

func TestUsableForTLSServer(t *testing.T) {
	cases := []struct {
		name string
		o    testpki.Options
		ok   bool
	}{
		{"ok/no-eku", testpki.Options{CommonName: "a", NoEKU: true}, true},
		{"ok/server-auth", testpki.Options{CommonName: "a", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, true},
		{"fail/client-auth-only", testpki.Options{CommonName: "a", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, false},
		{"fail/key-usage-cert-sign-only", testpki.Options{CommonName: "a", KeyUsage: x509.KeyUsageCertSign}, false},
		{"ok/keyusage-digitalsignature-only", testpki.Options{CommonName: "a", KeyUsage: x509.KeyUsageDigitalSignature}, true},
		// Every suite certrelay offers is ECDHE (and TLS 1.3 always
		// signs): the key must sign the handshake, so keyEncipherment
		// alone, which only RSA key exchange used, is not enough.
		{"fail/keyusage-keyencipherment-only", testpki.Options{CommonName: "a", KeyUsage: x509.KeyUsageKeyEncipherment}, false},
		{"fail/keyusage-keyagreement-only-ecdsa", testpki.Options{CommonName: "a", Key: testpki.ECKey(t), KeyUsage: x509.KeyUsageKeyAgreement}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := testpki.SelfSigned(t, c.o)
			ok, why := UsableForTLSServer(l.Cert)
			if ok != c.ok {
				t.Fatalf("UsableForTLSServer = %v (%s), want %v", ok, why, c.ok)
			}
			if !ok && why == "" {
				t.Error("refused without saying why")
			}
			if c.o.KeyUsage != 0 && c.o.KeyUsage&x509.KeyUsageDigitalSignature == 0 && !strings.Contains(why, "digitalSignature") {
				t.Errorf("the reason does not name the missing digitalSignature: %s", why)
			}
		})
	}
}

// TestIsSelfSigned: C6 needs both halves — the issuer equals the subject
// AND the signature verifies with the certificate's own key. A CA that
// gives a leaf its own name (same issuer and subject, another key) does
// not make the leaf self-signed.
func TestIsSelfSigned(t *testing.T) {
	twin := testpki.NewRoot(t, testpki.Options{CommonName: "twin.contoso.com", Key: testpki.RSAKey(t, 0)})
	other := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Root", Key: testpki.RSAKey(t, 1)})
	cases := []struct {
		name string
		cert *x509.Certificate
		want bool
	}{
		{"ok/self-signed-leaf", testpki.SelfSigned(t, testpki.Options{CommonName: "mail.contoso.com", Key: testpki.ECKey(t)}).Cert, true},
		{"ok/root-ca", twin.Cert, true},
		{"fail/ca-issued", other.Issue(t, testpki.Options{CommonName: "mail.contoso.com", Key: testpki.ECKey(t)}).Cert, false},
		{"fail/issuer-equals-subject-signed-by-another-key", twin.Issue(t, testpki.Options{CommonName: "twin.contoso.com", Key: testpki.ECKey(t)}).Cert, false},
		{"fail/signed-by-own-key-issuer-differs", ownKeyOtherIssuer(t), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "fail/issuer-equals-subject-signed-by-another-key" && string(c.cert.RawIssuer) != string(c.cert.RawSubject) {
				t.Fatal("the test certificate's issuer is not its subject")
			}
			for round := 0; round < 2; round++ { // the second answer comes from the memo
				if got := IsSelfSigned(c.cert); got != c.want {
					t.Fatalf("round %d: IsSelfSigned = %v, want %v", round, got, c.want)
				}
			}
			if got := Describe(c.cert).IsSelfSigned; got != c.want {
				t.Errorf("Describe().IsSelfSigned = %v, want %v", got, c.want)
			}
		})
	}
}

// ownKeyOtherIssuer makes a certificate signed with its own key whose
// issuer names someone else: the signature verifies, the names differ.
func ownKeyOtherIssuer(t *testing.T) *x509.Certificate {
	key := testpki.ECKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "mail.contoso.com"},
		NotBefore: now, NotAfter: now.Add(time.Hour), DNSNames: []string{"mail.contoso.com"}}
	issuer := &x509.Certificate{Subject: pkix.Name{CommonName: "Someone Else CA"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) != nil {
		t.Fatal("the test certificate does not verify with its own key")
	}
	return c
}

// TestSerialStringWholeBytes: a serial number whose first byte is below
// 0x10 keeps its leading zero, everywhere it is printed (the UM event
// 16065 once printed 2B45… while the listing said 02B45…).
func TestSerialStringWholeBytes(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{{7, "07"}, {0x2b45, "2B45"}, {0x2b456, "02B456"}, {0xabc, "0ABC"}} {
		if got := SerialString(big.NewInt(c.n)); got != c.want {
			t.Errorf("SerialString(%#x) = %q, want %q", c.n, got, c.want)
		}
	}
}
