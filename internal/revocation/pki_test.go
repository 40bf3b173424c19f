package revocation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// t0 is the injected "now" of every test (STYLE.md 7): certificates,
// CRLs and OCSP responses are dated around it, never around the wall clock.
var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is an injected clock the test can move.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// issued is a certificate with its key.
type issued struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// testPKI is root (RSA) → intermediate CA (ECDSA), built at run time and
// shared by the tests of one binary; leaves are issued per test.
type testPKI struct {
	root, ca issued
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
	pkiErr  error
)

func getPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		rootKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			pkiErr = err
			return
		}
		p := &testPKI{}
		p.root.key = rootKey
		p.root.cert, pkiErr = createCert(&x509.Certificate{
			Subject:               pkix.Name{CommonName: "certrelay Test Root", Organization: []string{"certrelay tests"}},
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}, nil, rootKey)
		if pkiErr != nil {
			return
		}
		p.ca, pkiErr = newCA(p.root, "certrelay Test Issuing CA", x509.KeyUsageCertSign|x509.KeyUsageCRLSign)
		pkiVal = p
	})
	if pkiErr != nil {
		t.Fatalf("build test PKI: %v", pkiErr)
	}
	return pkiVal
}

func newKey() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// createCert signs tmpl with parent (nil: self-signed with key) for a new
// certificate holding pub's key, valid a year around t0.
func createCert(tmpl *x509.Certificate, parent *issued, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = t0.Add(-180 * 24 * time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = t0.Add(180 * 24 * time.Hour)
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func newCA(parent issued, cn string, ku x509.KeyUsage) (issued, error) {
	key := newKey()
	cert, err := createCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"certrelay tests"}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              ku,
	}, &parent, key)
	return issued{cert, key}, err
}

func mustCA(t testing.TB, parent issued, cn string, ku x509.KeyUsage) issued {
	t.Helper()
	ca, err := newCA(parent, cn, ku)
	if err != nil {
		t.Fatalf("issue CA %q: %v", cn, err)
	}
	return ca
}

// leaf issues an end-entity certificate from parent naming the given OCSP
// responders and CRL distribution points.
func leaf(t testing.TB, parent issued, ocspURLs, crlURLs []string) *x509.Certificate {
	t.Helper()
	cert, err := createCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "mail.example.test"},
		DNSNames:              []string{"mail.example.test"},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		OCSPServer:            ocspURLs,
		CRLDistributionPoints: crlURLs,
	}, &parent, newKey())
	if err != nil {
		t.Fatalf("issue leaf: %v", err)
	}
	return cert
}

// responderCert issues a delegated OCSP responder certificate from parent.
func responderCert(t testing.TB, parent issued, withEKU bool, notAfter time.Time) issued {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "certrelay Test OCSP Responder"},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		NotAfter:              notAfter,
	}
	if withEKU {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
	}
	key := newKey()
	cert, err := createCert(tmpl, &parent, key)
	if err != nil {
		t.Fatalf("issue OCSP responder: %v", err)
	}
	return issued{cert, key}
}

// crlSpec describes a CRL to sign.
type crlSpec struct {
	revoked    []*x509.Certificate // listed with reason keyCompromise
	thisUpdate time.Time           // zero: t0 - 1h
	nextUpdate time.Time           // zero: t0 + 24h
	extensions []pkix.Extension
}

// makeCRL signs spec as signer. signer's certificate may lack cRLSign:
// CreateRevocationList insists on it, so it is given a copy that has it.
func makeCRL(t testing.TB, signer issued, spec crlSpec) []byte {
	t.Helper()
	if spec.thisUpdate.IsZero() {
		spec.thisUpdate = t0.Add(-time.Hour)
	}
	if spec.nextUpdate.IsZero() {
		spec.nextUpdate = spec.thisUpdate.Add(25 * time.Hour)
	}
	tmpl := &x509.RevocationList{
		Number:          big.NewInt(spec.thisUpdate.Unix()),
		ThisUpdate:      spec.thisUpdate,
		NextUpdate:      spec.nextUpdate,
		ExtraExtensions: spec.extensions,
	}
	for _, c := range spec.revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: c.SerialNumber, RevocationTime: t0.Add(-48 * time.Hour), ReasonCode: 1,
		})
	}
	issuer := *signer.cert
	issuer.KeyUsage |= x509.KeyUsageCRLSign
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, &issuer, signer.key)
	if err != nil {
		t.Fatalf("make CRL: %v", err)
	}
	return der
}

// ocspSpec describes an OCSP response to sign.
type ocspSpec struct {
	status     int               // ocsp.Good, ocsp.Revoked, ocsp.Unknown
	serial     *big.Int          // the certificate it is about
	issuer     *x509.Certificate // for the CertID hashes
	thisUpdate time.Time         // zero: t0 - 1h
	nextUpdate time.Time         // zero: thisUpdate + 25h
	embed      bool              // include the signer's certificate
	noNext     bool              // omit nextUpdate
}

func makeOCSP(t testing.TB, signer issued, spec ocspSpec) []byte {
	t.Helper()
	if spec.thisUpdate.IsZero() {
		spec.thisUpdate = t0.Add(-time.Hour)
	}
	if spec.nextUpdate.IsZero() && !spec.noNext {
		spec.nextUpdate = spec.thisUpdate.Add(25 * time.Hour)
	}
	tmpl := ocsp.Response{
		Status:       spec.status,
		SerialNumber: spec.serial,
		ThisUpdate:   spec.thisUpdate,
		NextUpdate:   spec.nextUpdate,
	}
	if spec.status == ocsp.Revoked {
		tmpl.RevokedAt, tmpl.RevocationReason = t0.Add(-48*time.Hour), ocsp.KeyCompromise
	}
	if spec.embed {
		tmpl.Certificate = signer.cert
	}
	der, err := ocsp.CreateResponse(spec.issuer, signer.cert, tmpl, signer.key)
	if err != nil {
		t.Fatalf("make OCSP response: %v", err)
	}
	return der
}

// responder is a CRL and OCSP server on httptest that counts requests.
type responder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	crl  map[string]func() []byte   // path -> body
	ocsp func(*ocsp.Request) []byte // nil: 404
	hits map[string]int             // path -> requests
}

func newResponder(t testing.TB) *responder {
	r := &responder{crl: make(map[string]func() []byte), hits: make(map[string]int)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *responder) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.hits[req.URL.Path]++
	crl, okCRL := r.crl[req.URL.Path]
	ocspFn := r.ocsp
	r.mu.Unlock()
	switch {
	case req.Method == http.MethodGet && okCRL:
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(crl())
	case req.Method == http.MethodPost && req.URL.Path == "/ocsp" && ocspFn != nil:
		body, _ := io.ReadAll(req.Body)
		oreq, err := ocsp.ParseRequest(body)
		if err != nil {
			w.Write(ocsp.MalformedRequestErrorResponse)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(ocspFn(oreq))
	default:
		http.NotFound(w, req)
	}
}

func (r *responder) url(path string) string { return r.srv.URL + path }

func (r *responder) setCRL(path string, body func() []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.crl[path] = body
}

func (r *responder) setOCSP(fn func(*ocsp.Request) []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ocsp = fn
}

func (r *responder) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[path]
}

func static(b []byte) func() []byte { return func() []byte { return b } }

// extension wraps v as a CRL extension.
func extension(t testing.TB, id asn1.ObjectIdentifier, critical bool, v any) pkix.Extension {
	t.Helper()
	der, err := asn1.Marshal(v)
	if err != nil {
		t.Fatalf("marshal extension %v: %v", id, err)
	}
	return pkix.Extension{Id: id, Critical: critical, Value: der}
}

// wantResult checks the Status of a Check and the Result of its first attempt.
func wantResult(t *testing.T, res Result, status Status, attemptResult string) {
	t.Helper()
	if res.Status != status {
		t.Errorf("Status = %v, want %v; attempts: %+v; error: %s", res.Status, status, res.Attempts, res.Error)
	}
	if attemptResult == "" {
		return
	}
	if len(res.Attempts) == 0 {
		t.Fatalf("no attempts, want one with result %q", attemptResult)
	}
	if got := res.Attempts[0].Result; got != attemptResult {
		t.Errorf("Attempts[0].Result = %q (%s), want %q", got, res.Attempts[0].Error, attemptResult)
	}
	if status != Good && status != Revoked && res.Attempts[0].Error == "" {
		t.Errorf("Attempts[0].Error is empty for a failed attempt")
	}
}
