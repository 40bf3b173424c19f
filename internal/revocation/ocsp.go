package revocation

import (
	"bytes"
	"context"
	"crypto"
	_ "crypto/sha1" // OCSP CertIDs are mostly SHA-1 (RFC 5019)
	"crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

// The outer layers of an OCSP response (RFC 6960 §4.2.1), declared again
// because x/crypto/ocsp matches a SingleResponse by serial number only:
// checkCertID also compares the issuer name and key hashes, so that a
// response about another CA's certificate with the same serial is not
// taken for ours.
type ocspResponseASN1 struct {
	Status   asn1.Enumerated
	Response ocspResponseBytes `asn1:"explicit,tag:0,optional"`
}

type ocspResponseBytes struct {
	ResponseType asn1.ObjectIdentifier
	Response     []byte
}

type ocspBasicResponse struct {
	TBSResponseData    ocspResponseData
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certificates       []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type ocspResponseData struct {
	Raw            asn1.RawContent
	Version        int `asn1:"optional,default:0,explicit,tag:0"`
	RawResponderID asn1.RawValue
	ProducedAt     time.Time `asn1:"generalized"`
	Responses      []ocspSingleResponse
}

type ocspSingleResponse struct {
	CertID           ocspCertID
	Good             asn1.Flag        `asn1:"tag:0,optional"`
	Revoked          ocspRevokedInfo  `asn1:"tag:1,optional"`
	Unknown          asn1.Flag        `asn1:"tag:2,optional"`
	ThisUpdate       time.Time        `asn1:"generalized"`
	NextUpdate       time.Time        `asn1:"generalized,explicit,tag:0,optional"`
	SingleExtensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type ocspRevokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

type ocspCertID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	IssuerKeyHash []byte
	SerialNumber  *big.Int
}

var (
	oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	ocspHashes   = map[string]crypto.Hash{
		"1.3.14.3.2.26":          crypto.SHA1,
		"2.16.840.1.101.3.4.2.1": crypto.SHA256,
		"2.16.840.1.101.3.4.2.2": crypto.SHA384,
		"2.16.840.1.101.3.4.2.3": crypto.SHA512,
	}
)

// certID names cert within the cache: issuer key and serial number.
func certID(cert, issuer *x509.Certificate) string {
	h := sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:]) + "|" + cert.SerialNumber.Text(16)
}

// checkOCSP asks one OCSP responder about cert. Requests are sent by POST
// (RFC 6960 §A.1): it works with every responder and has none of GET's
// URL-escaping pitfalls; GET's advantage, caching by HTTP intermediaries,
// is covered by our own cache. No nonce is sent (most responders serve
// pre-signed responses); freshness comes from thisUpdate/nextUpdate.
func (c *Checker) checkOCSP(ctx context.Context, cert, issuer *x509.Certificate, rawURL string, fresh bool) Attempt {
	key := cacheKeyPrefixOCSP + certID(cert, issuer) + "|" + rawURL
	now := c.now()
	if !fresh {
		if der, next, ok := c.cache.Get(key); ok && now.Before(next) {
			a, _ := c.evalOCSP(der, cert, issuer, now)
			if a.Result == ResultGood || a.Result == ResultRevoked {
				a.Kind, a.URL, a.FromCache = KindOCSP, rawURL, true
				return a
			}
		}
		if a, ok := c.getNegative(key, now); ok {
			return a
		}
	}

	der, err := c.fetchShared(ctx, key, func(ctx context.Context) ([]byte, error) {
		return c.fetchOCSP(ctx, cert, issuer, rawURL)
	})
	now = c.now()
	if err != nil {
		a := fetchFailure(KindOCSP, rawURL, err)
		if ctx.Err() == nil {
			c.putNegative(key, a, now)
		}
		return a
	}
	a, until := c.evalOCSP(der, cert, issuer, now)
	a.Kind, a.URL = KindOCSP, rawURL
	if a.Result == ResultGood || a.Result == ResultRevoked {
		c.cache.Put(key, der, until)
		c.clearNegative(key)
	} else {
		if a.Error != "" {
			a.Error = fmt.Sprintf("OCSP response from %s: %s", rawURL, a.Error)
		}
		c.putNegative(key, a, now)
	}
	return a
}

func (c *Checker) fetchOCSP(ctx context.Context, cert, issuer *x509.Certificate, rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (!strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https")) {
		return nil, fmt.Errorf("query OCSP %s: %w: not an http(s) URL", rawURL, errUnsupportedFeature)
	}
	req, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, fmt.Errorf("query OCSP %s: make request: %w", rawURL, err)
	}
	return c.httpDo(ctx, "POST", rawURL, req, maxOCSPSize)
}

// evalOCSP judges der as an OCSP response about cert from issuer at time
// now. It returns the Attempt (Kind and URL left empty) and, for an answer
// (good or revoked), until when it may be cached.
func (c *Checker) evalOCSP(der []byte, cert, issuer *x509.Certificate, now time.Time) (Attempt, time.Time) {
	fail := func(result string, format string, args ...any) (Attempt, time.Time) {
		return Attempt{Result: result, Error: fmt.Sprintf(format, args...)}, time.Time{}
	}
	if r, err := checkCertID(der, cert, issuer); err != nil {
		return fail(r, "%v", err)
	}
	resp, err := ocsp.ParseResponseForCert(der, cert, nil)
	if err != nil {
		if strings.Contains(err.Error(), "signature") {
			return fail(ResultUntrusted, "%v", err)
		}
		return fail(ResultMalformed, "parse OCSP response: %v", err)
	}
	if err := authorizeSigner(resp, issuer, now); err != nil {
		return fail(ResultUntrusted, "%v", err)
	}
	a := Attempt{ThisUpdate: resp.ThisUpdate, NextUpdate: resp.NextUpdate}
	until, r, err := currentUntil(resp.ThisUpdate, resp.NextUpdate, now)
	if err != nil {
		a.Result, a.Error = r, err.Error()
		return a, time.Time{}
	}
	switch resp.Status {
	case ocsp.Good:
		a.Result = ResultGood
	case ocsp.Revoked:
		a.Result, a.RevokedAt, a.Reason = ResultRevoked, resp.RevokedAt, resp.RevocationReason
	default:
		a.Result, a.Error = ResultUnknown, "the responder does not know the certificate"
		return a, time.Time{}
	}
	return a, until
}

// checkCertID finds, as x/crypto/ocsp does, the first SingleResponse for
// cert's serial number, and checks that its CertID also names cert's
// issuer (name and key hashes).
func checkCertID(der []byte, cert, issuer *x509.Certificate) (string, error) {
	var outer ocspResponseASN1
	if rest, err := asn1.Unmarshal(der, &outer); err != nil || len(rest) > 0 {
		return ResultMalformed, fmt.Errorf("parse OCSP response: %v", errOr(err, "trailing data"))
	}
	if st := ocsp.ResponseStatus(outer.Status); st != ocsp.Success {
		return ResultResponderError, fmt.Errorf("responder answered %q", st.String())
	}
	if !outer.Response.ResponseType.Equal(oidOCSPBasic) {
		return ResultMalformed, fmt.Errorf("OCSP response type %v is not id-pkix-ocsp-basic", outer.Response.ResponseType)
	}
	var basic ocspBasicResponse
	if rest, err := asn1.Unmarshal(outer.Response.Response, &basic); err != nil || len(rest) > 0 {
		return ResultMalformed, fmt.Errorf("parse OCSP basic response: %v", errOr(err, "trailing data"))
	}
	for _, sr := range basic.TBSResponseData.Responses {
		id := sr.CertID
		if id.SerialNumber == nil || id.SerialNumber.Cmp(cert.SerialNumber) != 0 {
			continue
		}
		h, ok := ocspHashes[id.HashAlgorithm.Algorithm.String()]
		if !ok || !h.Available() {
			return ResultUnsupported, fmt.Errorf("OCSP CertID hash %v is not supported", id.HashAlgorithm.Algorithm)
		}
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
			return ResultMalformed, fmt.Errorf("issuer public key: %w", err)
		}
		nh, kh := h.New(), h.New()
		nh.Write(issuer.RawSubject)
		kh.Write(spki.PublicKey.RightAlign())
		if !bytes.Equal(nh.Sum(nil), id.NameHash) || !bytes.Equal(kh.Sum(nil), id.IssuerKeyHash) {
			return ResultNotCovered, errors.New("OCSP response is about a certificate with this serial number from another issuer")
		}
		return "", nil
	}
	return ResultNotCovered, fmt.Errorf("OCSP response is not about serial number %X", cert.SerialNumber)
}

func errOr(err error, text string) error {
	if err != nil {
		return err
	}
	return errors.New(text)
}

// authorizeSigner checks who signed resp (RFC 6960 §4.2.2.2): the issuer
// itself, or a responder certificate issued directly by the issuer, with
// id-kp-OCSPSigning, valid now. x/crypto/ocsp has already checked that
// the signature verifies with the embedded certificate, if any. The
// delegated responder's own revocation is not checked (most carry
// id-pkix-ocsp-nocheck).
func authorizeSigner(resp *ocsp.Response, issuer *x509.Certificate, now time.Time) error {
	rc := resp.Certificate
	if rc == nil {
		if err := resp.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("OCSP response not signed by the issuer %q: %w", issuer.Subject, err)
		}
		return nil
	}
	if bytes.Equal(rc.Raw, issuer.Raw) {
		return nil
	}
	if !bytes.Equal(rc.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("OCSP responder %q is issued by %q, not by the certificate's issuer %q", rc.Subject, rc.Issuer, issuer.Subject)
	}
	if err := rc.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("OCSP responder %q is not issued by %q: %w", rc.Subject, issuer.Subject, err)
	}
	ok := false
	for _, u := range rc.ExtKeyUsage {
		ok = ok || u == x509.ExtKeyUsageOCSPSigning
	}
	if !ok {
		return fmt.Errorf("OCSP responder %q is not authorised: no id-kp-OCSPSigning extended key usage", rc.Subject)
	}
	if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
		return fmt.Errorf("OCSP responder certificate %q is not valid at %s (valid %s to %s)", rc.Subject,
			now.UTC().Format(time.RFC3339), rc.NotBefore.UTC().Format(time.RFC3339), rc.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
