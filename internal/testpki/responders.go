package testpki

import (
	"crypto/rand"
	"crypto/x509"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// CRL issues a CRL from ca listing revoked, valid from thisUpdate to
// nextUpdate.
func (ca *CA) CRL(t testing.TB, revoked []*x509.Certificate, thisUpdate, nextUpdate time.Time) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate.Add(-time.Minute), ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(serial.Add(1)), ThisUpdate: thisUpdate, NextUpdate: nextUpdate, RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// OCSPResponse signs an OCSP response about cert with ca's key (or with
// signer's, a delegated or unauthorised responder, when given).
func (ca *CA) OCSPResponse(t testing.TB, cert *x509.Certificate, status int, thisUpdate, nextUpdate time.Time, signer *Leaf) []byte {
	t.Helper()
	tmpl := ocsp.Response{Status: status, SerialNumber: cert.SerialNumber, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	if status == ocsp.Revoked {
		tmpl.RevokedAt, tmpl.RevocationReason = thisUpdate.Add(-time.Hour), ocsp.KeyCompromise
	}
	respCert, key := ca.Cert, ca.Key
	if signer != nil {
		tmpl.Certificate = signer.Cert
		respCert, key = signer.Cert, signer.Key
	}
	der, err := ocsp.CreateResponse(ca.Cert, respCert, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Responder is an HTTP server on 127.0.0.1 serving CRLs and OCSP
// responses that tests set and change, counting requests per path.
type Responder struct {
	*httptest.Server
	mu     sync.Mutex
	crls   map[string][]byte
	ocsp   func(req *ocsp.Request) []byte
	counts map[string]*atomic.Int64
}

// NewResponder starts a responder, closed when the test ends.
func NewResponder(t testing.TB) *Responder {
	r := &Responder{crls: map[string][]byte{}, counts: map[string]*atomic.Int64{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *Responder) count(path string) {
	r.mu.Lock()
	c, ok := r.counts[path]
	if !ok {
		c = &atomic.Int64{}
		r.counts[path] = c
	}
	r.mu.Unlock()
	c.Add(1)
}

// Requests returns how many requests reached path.
func (r *Responder) Requests(path string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.counts[path]; ok {
		return c.Load()
	}
	return 0
}

// SetCRL serves data at path (such as "/ca.crl").
func (r *Responder) SetCRL(path string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.crls[path] = data
}

// SetOCSP answers OCSP requests at /ocsp with what fn returns.
func (r *Responder) SetOCSP(fn func(req *ocsp.Request) []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ocsp = fn
}

// URL returns the responder's URL for path.
func (r *Responder) URL(path string) string { return r.Server.URL + path }

func (r *Responder) serve(w http.ResponseWriter, req *http.Request) {
	r.count(req.URL.Path)
	r.mu.Lock()
	crl, okCRL := r.crls[req.URL.Path]
	fn := r.ocsp
	r.mu.Unlock()
	if req.URL.Path == "/ocsp" && fn != nil {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<16))
		oreq, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(fn(oreq))
		return
	}
	if !okCRL {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Write(crl)
}
