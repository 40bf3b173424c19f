package certinfo

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/smallstep/pkcs7"
	"software.sslmate.com/src/go-pkcs12"
)

// Bundle is what one file held: certificates (in file order), at most one
// private key, or a certificate request.
type Bundle struct {
	Format       string // "DER", "PEM", "base64", "PKCS#7", "PKCS#12"
	Certificates []*x509.Certificate
	Key          crypto.Signer
	Request      *x509.CertificateRequest
}

// Errors callers test for. Every error ParseBundle returns wraps one of
// these or ErrNotCertificate.
var (
	ErrNotCertificate = errors.New("not a certificate file")
	ErrNeedPassword   = errors.New("the file is PKCS#12 (.pfx) and needs its password")
	ErrWrongPassword  = errors.New("the PKCS#12 password is wrong")
)

// ParseBundle reads a certificate file in any encoding SPEC M4 names: DER
// (one or more certificates back to back), PEM (certificates, PKCS#7,
// private keys and requests in any order), bare base64 of DER (Windows'
// "Base-64 encoded X.509"), PKCS#7 certificate bundles (.p7b, DER or PEM),
// and PKCS#12 (.pfx/.p12), which needs password non-nil.
func ParseBundle(data []byte, password *string) (*Bundle, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrNotCertificate)
	}
	if bytes.Contains(trimmed, []byte("-----BEGIN ")) {
		return parsePEM(trimmed)
	}
	if isBase64Text(trimmed) {
		der, err := base64.StdEncoding.DecodeString(string(stripSpace(trimmed)))
		if err == nil {
			b, err := parseDER(der, password)
			if err != nil {
				return nil, err
			}
			if b.Format == "DER" {
				b.Format = "base64"
			}
			return b, nil
		}
	}
	return parseDER(data, password)
}

func parsePEM(data []byte) (*Bundle, error) {
	b := &Bundle{Format: "PEM"}
	var kinds []string
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		kinds = append(kinds, block.Type)
		switch block.Type {
		case "CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil && block.Type == "TRUSTED CERTIFICATE" {
				// OpenSSL's trusted form appends trust settings after the certificate.
				var raw asn1.RawValue
				if _, e := asn1.Unmarshal(block.Bytes, &raw); e == nil {
					c, err = x509.ParseCertificate(raw.FullBytes)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%w: certificate %d of the PEM file is damaged: %v", ErrNotCertificate, len(b.Certificates)+1, err)
			}
			b.Certificates = append(b.Certificates, c)
		case "PKCS7":
			p7, err := pkcs7.Parse(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: the PKCS7 block is damaged: %v", ErrNotCertificate, err)
			}
			b.Certificates = append(b.Certificates, p7.Certificates...)
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if b.Key != nil {
				return nil, fmt.Errorf("%w: the PEM file holds more than one private key; keep only the certificate's own", ErrNotCertificate)
			}
			k, err := ParsePrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: the %s block: %v", ErrNotCertificate, block.Type, err)
			}
			b.Key = k
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: encrypted PEM keys are not read: bundle key and certificate as PKCS#12 (openssl pkcs12 -export -inkey KEY -in CERT -out FILE.pfx) and import that with its password", ErrNotCertificate)
		case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
			r, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: the certificate request is damaged: %v", ErrNotCertificate, err)
			}
			b.Request = r
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("%w: it has a -----BEGIN line but no complete PEM block (is it cut short?)", ErrNotCertificate)
	}
	if len(b.Certificates) == 0 && b.Request == nil {
		return nil, fmt.Errorf("%w: the PEM file holds %s but no CERTIFICATE block: import the certificate the CA returned (with its chain), not only the key", ErrNotCertificate, strings.Join(kinds, ", "))
	}
	return b, nil
}

func parseDER(der []byte, password *string) (*Bundle, error) {
	if certs, err := x509.ParseCertificates(der); err == nil && len(certs) > 0 {
		return &Bundle{Format: "DER", Certificates: certs}, nil
	}
	if p7, err := pkcs7.Parse(der); err == nil && len(p7.Certificates) > 0 {
		return &Bundle{Format: "PKCS#7", Certificates: p7.Certificates}, nil
	}
	if looksLikePFX(der) {
		return parsePKCS12(der, password)
	}
	if r, err := x509.ParseCertificateRequest(der); err == nil {
		return &Bundle{Format: "DER", Request: r}, nil
	}
	if len(der) > 0 && der[0] == 0x30 {
		_, err := x509.ParseCertificate(der)
		return nil, fmt.Errorf("%w: it starts like DER but does not parse (damaged or cut short): %v", ErrNotCertificate, err)
	}
	return nil, fmt.Errorf("%w: expected DER, PEM, base64, PKCS#7 (.p7b) or PKCS#12 (.pfx)", ErrNotCertificate)
}

// looksLikePFX reports whether der starts as a PFX PDU does: a SEQUENCE
// whose first element is INTEGER 3 (RFC 7292 §4).
func looksLikePFX(der []byte) bool {
	var pfx struct {
		Version  int
		AuthSafe asn1.RawValue
		Rest     asn1.RawValue `asn1:"optional"`
	}
	_, err := asn1.Unmarshal(der, &pfx)
	return err == nil && pfx.Version == 3
}

func parsePKCS12(der []byte, password *string) (*Bundle, error) {
	if password == nil {
		return nil, ErrNeedPassword
	}
	key, leaf, cas, err := pkcs12.DecodeChain(der, *password)
	if err != nil {
		if errors.Is(err, pkcs12.ErrIncorrectPassword) || errors.Is(err, pkcs12.ErrDecryption) {
			return nil, ErrWrongPassword
		}
		if strings.Contains(err.Error(), "private key missing") {
			certs, err2 := pkcs12.DecodeTrustStore(der, *password)
			if err2 == nil {
				return &Bundle{Format: "PKCS#12", Certificates: certs}, nil
			}
		}
		return nil, fmt.Errorf("%w: the PKCS#12 file could not be read: %v", ErrNotCertificate, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: the PKCS#12 key of type %T cannot sign", ErrNotCertificate, key)
	}
	return &Bundle{Format: "PKCS#12", Certificates: append([]*x509.Certificate{leaf}, cas...), Key: signer}, nil
}

// ParsePrivateKey reads a DER private key in PKCS#8, PKCS#1 (RSA) or SEC 1
// (EC) form.
func ParsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#8, PKCS#1 or SEC 1 private key")
}

// MarshalPrivateKeyPEM encodes key as a PKCS#8 PEM block.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM reads the first private key block of a PEM file.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no private key block in the PEM data")
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			return ParsePrivateKey(block.Bytes)
		}
	}
}

// CertificatePEM encodes DER certificates as PEM.
func CertificatePEM(ders ...[]byte) []byte {
	var buf bytes.Buffer
	for _, d := range ders {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	return buf.Bytes()
}

// RequestPEM encodes a DER PKCS#10 request as PEM ("CERTIFICATE REQUEST").
func RequestPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// EncodePKCS12 writes key, certificate and chain as PKCS#12 protected by
// password, with AES-256-CBC and PBKDF2 (the "modern" profile OpenSSL 3 and
// Windows read).
func EncodePKCS12(key crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate, password string, rand io.Reader) ([]byte, error) {
	enc := pkcs12.Modern.WithRand(rand)
	out, err := enc.Encode(key, cert, chain, password)
	if err != nil {
		return nil, fmt.Errorf("encode PKCS#12: %w", err)
	}
	return out, nil
}

func isBase64Text(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=', c == '\r', c == '\n', c == ' ', c == '\t':
		default:
			return false
		}
	}
	return true
}

func stripSpace(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
			out = append(out, c)
		}
	}
	return out
}
