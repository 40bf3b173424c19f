// Package testpki builds the certificates tests need, at run time: roots,
// intermediates, cross-certificates and leaves, with the options each test
// wants (dates, keys, CRL and OCSP URLs, usages). Nothing here is ever
// committed as a file (STYLE.md 6). It also finds the external tools
// end-to-end tests drive, failing — never skipping — when one is missing.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority that can issue certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Options describe a certificate to issue. Zero values take defaults:
// valid from an hour ago for a year, RSA 2048 (from a shared cache, since
// generation is slow), serverAuth.
type Options struct {
	CommonName   string
	Subject      *pkix.Name // overrides CommonName
	DNSNames     []string
	NotBefore    time.Time
	NotAfter     time.Time
	Key          crypto.Signer // default: a cached RSA-2048 key
	KeyUsage     x509.KeyUsage
	ExtKeyUsage  []x509.ExtKeyUsage // nil: serverAuth, clientAuth; use NoEKU for none
	NoEKU        bool
	CRL          []string // CRL distribution points
	OCSP         []string // OCSP servers
	IsCA         bool
	PermittedDNS []string // name constraints of a CA
}

var serial atomic.Int64

func init() { serial.Store(time.Now().UnixNano()) }

var (
	keyMu    sync.Mutex
	rsaCache []crypto.Signer
)

// RSAKey returns the i-th cached RSA-2048 key (generated once per test
// binary). Different i give different keys.
func RSAKey(t testing.TB, i int) crypto.Signer {
	keyMu.Lock()
	defer keyMu.Unlock()
	for len(rsaCache) <= i {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rsaCache = append(rsaCache, k)
	}
	return rsaCache[i]
}

// ECKey returns a new P-256 key.
func ECKey(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var keyIndex atomic.Int64

func (o *Options) defaults(t testing.TB) {
	if o.Key == nil {
		o.Key = RSAKey(t, int(keyIndex.Add(1)%12))
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
		if o.IsCA { // CAs outlive what they issue, in the past as in the future
			o.NotBefore = time.Now().Add(-5 * 365 * 24 * time.Hour)
		}
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = o.NotBefore.Add(365 * 24 * time.Hour)
		if o.IsCA {
			o.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
		}
	}
	if o.ExtKeyUsage == nil && !o.NoEKU && !o.IsCA {
		o.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	if o.KeyUsage == 0 {
		if o.IsCA {
			o.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
		} else {
			o.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		}
	}
}

func (o *Options) template() *x509.Certificate {
	name := pkix.Name{CommonName: o.CommonName}
	if o.Subject != nil {
		name = *o.Subject
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               name,
		DNSNames:              o.DNSNames,
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              o.KeyUsage,
		ExtKeyUsage:           o.ExtKeyUsage,
		CRLDistributionPoints: o.CRL,
		OCSPServer:            o.OCSP,
		BasicConstraintsValid: true,
		IsCA:                  o.IsCA,
		PermittedDNSDomains:   o.PermittedDNS,
	}
	return tmpl
}

// NewRoot makes a self-signed root CA.
func NewRoot(t testing.TB, o Options) *CA {
	t.Helper()
	o.IsCA = true
	o.defaults(t)
	tmpl := o.template()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, o.Key.Public(), o.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: c, Key: o.Key}
}

// Issue makes a certificate signed by ca.
func (ca *CA) Issue(t testing.TB, o Options) *Leaf {
	t.Helper()
	o.defaults(t)
	tmpl := o.template()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, o.Key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Leaf{Cert: c, Key: o.Key}
}

// NewIntermediate makes a CA signed by ca.
func (ca *CA) NewIntermediate(t testing.TB, o Options) *CA {
	t.Helper()
	o.IsCA = true
	l := ca.Issue(t, o)
	return &CA{Cert: l.Cert, Key: l.Key}
}

// CrossSign issues, under ca, a certificate for other's subject and key:
// the cross-certificate of SPEC T3.
func (ca *CA) CrossSign(t testing.TB, other *CA) *x509.Certificate {
	t.Helper()
	o := Options{Subject: &other.Cert.Subject, Key: other.Key, IsCA: true}
	o.defaults(t)
	tmpl := o.template()
	tmpl.RawSubject = other.Cert.RawSubject
	tmpl.SubjectKeyId = other.Cert.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, other.Key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// SelfSigned makes a self-signed end-entity certificate.
func SelfSigned(t testing.TB, o Options) *Leaf {
	t.Helper()
	o.defaults(t)
	tmpl := o.template()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, o.Key.Public(), o.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Leaf{Cert: c, Key: o.Key}
}

// PEM encodes certificates as PEM.
func PEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a key as PKCS#8 PEM.
func KeyPEM(t testing.TB, k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFile writes data to name in dir and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Tool returns the path of an external program end-to-end tests need. A
// missing tool fails the test (never skips it): `make test` installs them.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		t.Fatalf("%s is not installed; run make deps (make test installs what the tests need)", name)
	}
	return p
}
