package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// CRL extensions this package understands (RFC 5280 §5.2, §5.3).
var (
	oidAuthorityKeyID     = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber          = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidIssuingDistPoint   = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidDeltaCRLIndicator  = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidReasonCode         = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate     = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidCertificateIssuer  = asn1.ObjectIdentifier{2, 5, 29, 29}
	errNotCRL             = errors.New("not a CRL")
	errUnsupportedFeature = errors.New("unsupported")
)

// issuingDistributionPoint is the IssuingDistributionPoint extension
// (RFC 5280 §5.2.5). DistributionPointName is a CHOICE under an implicit
// tag, hence the explicit-looking nesting (the same trick crypto/x509
// used for CRLDistributionPoints).
type issuingDistributionPoint struct {
	DistributionPoint          distributionPointName `asn1:"optional,tag:0"`
	OnlyContainsUserCerts      bool                  `asn1:"optional,tag:1"`
	OnlyContainsCACerts        bool                  `asn1:"optional,tag:2"`
	OnlySomeReasons            asn1.BitString        `asn1:"optional,tag:3"`
	IndirectCRL                bool                  `asn1:"optional,tag:4"`
	OnlyContainsAttributeCerts bool                  `asn1:"optional,tag:5"`
}

type distributionPointName struct {
	FullName     []asn1.RawValue `asn1:"optional,tag:0"`
	RelativeName asn1.RawValue   `asn1:"optional,tag:1"`
}

// parsedCRL is a CRL parsed and verified against one issuer; what remains
// to judge depends on the certificate and the clock.
type parsedCRL struct {
	crl     *x509.RevocationList
	revoked map[string]int // hex serial -> index in crl.RevokedCertificateEntries
	idp     *issuingDistributionPoint
	idpURIs []string
	delta   bool
}

// checkCRL tries one CRL distribution point for cert.
func (c *Checker) checkCRL(ctx context.Context, cert, issuer *x509.Certificate, rawURL string, fresh bool) Attempt {
	key := cacheKeyPrefixCRL + rawURL
	negKey := key + "|" + certID(cert, issuer) // evaluation failures depend on the certificate
	now := c.now()
	if !fresh {
		if der, next, ok := c.cache.Get(key); ok && now.Before(next) {
			a, _ := c.evalCRL(der, cert, issuer, now)
			if a.Result == ResultGood || a.Result == ResultRevoked {
				a.Kind, a.URL, a.FromCache = KindCRL, rawURL, true
				return a
			}
		}
		if a, ok := c.getNegative(key, now); ok {
			return a
		}
		if a, ok := c.getNegative(negKey, now); ok {
			return a
		}
	}

	raw, err := c.fetchShared(ctx, key, func(ctx context.Context) ([]byte, error) {
		return c.fetchCRL(ctx, rawURL)
	})
	now = c.now()
	if err != nil {
		a := fetchFailure(KindCRL, rawURL, err)
		if ctx.Err() == nil { // our own cancellation says nothing about the source
			c.putNegative(key, a, now)
		}
		return a
	}
	der, derr := decodeCRL(raw)
	var a Attempt
	var until time.Time
	if derr != nil {
		a = Attempt{Result: ResultMalformed, Error: derr.Error()}
	} else {
		a, until = c.evalCRL(der, cert, issuer, now)
	}
	a.Kind, a.URL = KindCRL, rawURL
	if a.Result == ResultGood || a.Result == ResultRevoked {
		c.cache.Put(key, der, until)
		c.clearNegative(key)
		c.clearNegative(negKey)
	} else {
		a.Error = fmt.Sprintf("CRL from %s: %s", rawURL, a.Error)
		c.putNegative(negKey, a, now)
	}
	return a
}

func (c *Checker) fetchCRL(ctx context.Context, rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("fetch CRL: %w: bad URL: %v", errUnsupportedFeature, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return c.httpDo(ctx, "GET", rawURL, nil, c.maxCRLSize())
	case "ldap":
		return c.ldapFetch(ctx, rawURL, c.maxCRLSize())
	default:
		return nil, fmt.Errorf("fetch CRL %s: %w: scheme %q", rawURL, errUnsupportedFeature, u.Scheme)
	}
}

// decodeCRL accepts a DER CRL or a PEM one ("X509 CRL", also "CRL").
func decodeCRL(raw []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(raw)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		return raw, nil
	}
	for rest := trimmed; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%w: PEM without an X509 CRL block", errNotCRL)
		}
		if b.Type == "X509 CRL" || b.Type == "CRL" {
			return b.Bytes, nil
		}
	}
}

// evalCRL judges der as a CRL about cert from issuer at time now. It
// returns the Attempt (Kind and URL left empty) and, for an answer, until
// when it may be cached.
func (c *Checker) evalCRL(der []byte, cert, issuer *x509.Certificate, now time.Time) (Attempt, time.Time) {
	mk := memoKey(der, issuer.Raw)
	p := c.getMemo(mk, now)
	if p == nil {
		var result string
		var err error
		p, result, err = parseCRL(der, issuer)
		if err != nil {
			return Attempt{Result: result, Error: err.Error()}, time.Time{}
		}
		c.putMemo(mk, p, now)
	}
	crl := p.crl
	a := Attempt{ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate}
	if r, err := p.covers(cert); err != nil {
		a.Result, a.Error = r, err.Error()
		return a, time.Time{}
	}
	until, r, err := currentUntil(crl.ThisUpdate, crl.NextUpdate, now)
	if err != nil {
		a.Result, a.Error = r, err.Error()
		return a, time.Time{}
	}
	if i, ok := p.revoked[cert.SerialNumber.Text(16)]; ok {
		e := crl.RevokedCertificateEntries[i]
		a.Result, a.RevokedAt, a.Reason = ResultRevoked, e.RevocationTime, e.ReasonCode
	} else {
		a.Result = ResultGood
	}
	return a, until
}

// parseCRL parses der and checks what does not depend on the certificate:
// the signature by issuer, the issuer name, the extensions.
func parseCRL(der []byte, issuer *x509.Certificate) (*parsedCRL, string, error) {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, ResultMalformed, fmt.Errorf("parse CRL: %w", err)
	}
	if issuer.KeyUsage != 0 && issuer.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, ResultUntrusted, fmt.Errorf("issuer %q may not sign CRLs (key usage lacks cRLSign)", issuer.Subject)
	}
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		return nil, ResultUntrusted, fmt.Errorf("CRL issued by %q, not by the certificate's issuer %q", crl.Issuer, issuer.Subject)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, ResultUntrusted, fmt.Errorf("CRL signature does not verify with the key of %q: %w", issuer.Subject, err)
	}
	p := &parsedCRL{crl: crl, revoked: make(map[string]int, len(crl.RevokedCertificateEntries))}
	for _, ext := range crl.Extensions {
		switch {
		case ext.Id.Equal(oidIssuingDistPoint):
			var idp issuingDistributionPoint
			if rest, err := asn1.Unmarshal(ext.Value, &idp); err != nil || len(rest) > 0 {
				return nil, ResultMalformed, fmt.Errorf("parse CRL issuing distribution point: %v", err)
			}
			p.idp = &idp
			for _, n := range idp.DistributionPoint.FullName {
				if n.Class == asn1.ClassContextSpecific && n.Tag == 6 { // uniformResourceIdentifier
					p.idpURIs = append(p.idpURIs, string(n.Bytes))
				}
			}
		case ext.Id.Equal(oidDeltaCRLIndicator):
			p.delta = true
		case ext.Id.Equal(oidAuthorityKeyID), ext.Id.Equal(oidCRLNumber):
		default:
			if ext.Critical {
				return nil, ResultUnsupported, fmt.Errorf("CRL has unknown critical extension %v", ext.Id)
			}
		}
	}
	for i, e := range crl.RevokedCertificateEntries {
		for _, ext := range e.Extensions {
			if ext.Id.Equal(oidCertificateIssuer) {
				return nil, ResultUnsupported, errors.New("indirect CRL entries (certificateIssuer) are not supported")
			}
			if ext.Critical && !ext.Id.Equal(oidReasonCode) && !ext.Id.Equal(oidInvalidityDate) {
				return nil, ResultUnsupported, fmt.Errorf("CRL entry has unknown critical extension %v", ext.Id)
			}
		}
		if e.SerialNumber != nil {
			if _, dup := p.revoked[e.SerialNumber.Text(16)]; !dup {
				p.revoked[e.SerialNumber.Text(16)] = i
			}
		}
	}
	return p, "", nil
}

// covers reports whether the CRL's scope includes cert (RFC 5280 §6.3.3
// b): a complete CRL, not a delta; an issuing distribution point, if any,
// that is one of the certificate's and does not restrict the CRL to other
// kinds of certificate or to some reasons only.
func (p *parsedCRL) covers(cert *x509.Certificate) (string, error) {
	if p.delta {
		return ResultNotCovered, errors.New("delta CRL (only complete CRLs are used)")
	}
	idp := p.idp
	if idp == nil {
		return "", nil
	}
	isCA := cert.BasicConstraintsValid && cert.IsCA
	switch {
	case idp.OnlyContainsAttributeCerts:
		return ResultNotCovered, errors.New("CRL covers attribute certificates only")
	case idp.OnlyContainsUserCerts && isCA:
		return ResultNotCovered, errors.New("CRL covers end-entity certificates only")
	case idp.OnlyContainsCACerts && !isCA:
		return ResultNotCovered, errors.New("CRL covers CA certificates only")
	case idp.OnlySomeReasons.BitLength > 0:
		return ResultNotCovered, errors.New("CRL covers some revocation reasons only")
	case idp.IndirectCRL:
		return ResultUnsupported, errors.New("indirect CRLs are not supported")
	}
	if len(p.idpURIs) > 0 && !slices.ContainsFunc(p.idpURIs, func(u string) bool {
		return slices.Contains(cert.CRLDistributionPoints, u)
	}) {
		return ResultNotCovered, fmt.Errorf("CRL is for distribution point %s, not one of the certificate's", strings.Join(p.idpURIs, ", "))
	}
	return "", nil
}

// currentUntil checks thisUpdate/nextUpdate of a CRL or OCSP response
// against now and returns until when the answer may be used and cached.
// thisUpdate may be up to clockSkew in the future; nextUpdate must not be
// past. A response without nextUpdate is current for maxAgeNoNextUpdate
// after thisUpdate, and cached for at most maxCacheNoNext.
func currentUntil(thisUpdate, nextUpdate, now time.Time) (time.Time, string, error) {
	if thisUpdate.After(now.Add(clockSkew)) {
		return time.Time{}, ResultNotYetValid, fmt.Errorf("thisUpdate %s is in the future", thisUpdate.UTC().Format(time.RFC3339))
	}
	if nextUpdate.IsZero() {
		until := thisUpdate.Add(maxAgeNoNextUpdate)
		if !now.Before(until) {
			return time.Time{}, ResultExpired, fmt.Errorf("no nextUpdate, and thisUpdate %s is older than %s", thisUpdate.UTC().Format(time.RFC3339), maxAgeNoNextUpdate)
		}
		if limit := now.Add(maxCacheNoNext); limit.Before(until) {
			until = limit
		}
		return until, "", nil
	}
	if !now.Before(nextUpdate) {
		return time.Time{}, ResultExpired, fmt.Errorf("nextUpdate %s has passed", nextUpdate.UTC().Format(time.RFC3339))
	}
	return nextUpdate, "", nil
}
