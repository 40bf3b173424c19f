package revocation

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"slices"
	"testing"

	"golang.org/x/crypto/ocsp"
)

// bodyTransport answers every request with body, without a network.
type bodyTransport []byte

func (b bodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(b)), ContentLength: int64(len(b)), Request: req}, nil
}

// fuzzCheck runs a fresh Check of l against the PKI's CA with body as the
// answer of every source.
func fuzzCheck(t *testing.T, l *x509.Certificate, body []byte) Result {
	c := &Checker{Now: newClock().Now, HTTP: &http.Client{Transport: bodyTransport(body)}}
	return c.Check(t.Context(), l, getPKI(t).ca.cert, true)
}

// FuzzCRL: arbitrary bytes as a CRL body must never yield Good unless they
// are a CRL that really is signed by the issuer, current, and does not
// list the certificate (which a fuzzer cannot forge; the seeds are such).
func FuzzCRL(f *testing.F) {
	p := getPKI(f)
	l := leaf(f, p.ca, nil, []string{"http://crl.example.invalid/ca.crl"})
	good := makeCRL(f, p.ca, crlSpec{})
	f.Add(good)
	f.Add(makeCRL(f, p.ca, crlSpec{revoked: []*x509.Certificate{l}}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: good}))
	f.Add(makeCRL(f, selfSignedLike(f, p.ca.cert), crlSpec{}))
	f.Add([]byte("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, body []byte) {
		res := fuzzCheck(t, l, body)
		if res.Status != Good {
			return
		}
		der, err := decodeCRL(body)
		if err != nil {
			t.Fatalf("Good from a body that does not decode: %v", err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatalf("Good from a body that does not parse: %v", err)
		}
		if err := crl.CheckSignatureFrom(p.ca.cert); err != nil {
			t.Fatalf("Good from a CRL the issuer did not sign: %v", err)
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(l.SerialNumber) == 0 {
				t.Fatalf("Good from a CRL that lists the certificate")
			}
		}
		if now := newClock().Now(); !now.Before(crl.NextUpdate) {
			t.Fatalf("Good from an expired CRL")
		}
	})
}

// FuzzOCSP: arbitrary bytes as an OCSP response must never yield Good
// unless they are a response signed by the issuer saying good about this
// certificate.
func FuzzOCSP(f *testing.F) {
	p := getPKI(f)
	l := leaf(f, p.ca, []string{"http://ocsp.example.invalid/"}, nil)
	f.Add(makeOCSP(f, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert}))
	f.Add(makeOCSP(f, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert, embed: true}))
	f.Add(makeOCSP(f, p.ca, ocspSpec{status: ocsp.Revoked, serial: l.SerialNumber, issuer: p.ca.cert}))
	f.Add(makeOCSP(f, selfSignedLike(f, p.ca.cert), ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert}))
	f.Add(ocsp.UnauthorizedErrorResponse)
	f.Fuzz(func(t *testing.T, body []byte) {
		res := fuzzCheck(t, l, body)
		if res.Status != Good {
			return
		}
		resp, err := ocsp.ParseResponseForCert(body, l, nil)
		if err != nil {
			t.Fatalf("Good from a response that does not parse: %v", err)
		}
		signer := p.ca.cert
		if resp.Certificate != nil {
			signer = resp.Certificate
		}
		if err := resp.CheckSignatureFrom(signer); err != nil {
			t.Fatalf("Good from a response whose signature does not verify: %v", err)
		}
		if !bytes.Equal(signer.Raw, p.ca.cert.Raw) &&
			(signer.CheckSignatureFrom(p.ca.cert) != nil || !slices.Contains(signer.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning)) {
			t.Fatalf("Good from a response signed by %q, not authorised by the issuer", signer.Subject)
		}
		if resp.Status != ocsp.Good {
			t.Fatalf("Good from a response with status %d", resp.Status)
		}
		if _, err := checkCertID(body, l, p.ca.cert); err != nil {
			t.Fatalf("Good from a response about another certificate: %v", err)
		}
	})
}
