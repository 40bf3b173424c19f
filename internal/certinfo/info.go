package certinfo

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Info holds the certificate fields of SPEC §2 that come from the signed
// certificate itself. Field names are the property names of SPEC I2.
type Info struct {
	Thumbprint         string    // C1: SHA-1 of the DER, 40 upper-case hex digits
	Subject            string    // C2, RFC 4514 form
	Issuer             string    // C2, RFC 4514 form
	CertificateDomains []string  // C3
	NotBefore          time.Time // C4
	NotAfter           time.Time // C4
	IsSelfSigned       bool      // C6
	PublicKeySize      int       // C11, bits
	SerialNumber       string    // C11, upper-case hex
	KeyAlgorithm       string    // "RSA", "ECDSA P-256", "ECDSA P-384", "Ed25519"
	SignatureAlgorithm string
	Version            int
	KeyUsage           []string // names of the Key Usage bits present; empty when the extension is absent
	EnhancedKeyUsage   []string // names of the EKU purposes; empty when the extension is absent
	IsCA               bool
	KeyID              string // SHA-256 of the SubjectPublicKeyInfo, hex: pairs certificates, keys and requests
}

// Thumbprint returns the SHA-1 of der as 40 upper-case hex digits (C1).
func Thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// KeyID returns the identity certrelay gives a public key: the SHA-256 of
// its DER SubjectPublicKeyInfo, in lower-case hex. A private key, the
// request made with it and the certificate issued for it share one KeyID.
func KeyID(spki []byte) string {
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

// NormalizeThumbprint upper-cases t and strips the spaces and colons that
// tools print between byte pairs. It reports false when what is left is not
// 40 hex digits.
func NormalizeThumbprint(t string) (string, bool) {
	t = strings.NewReplacer(" ", "", ":", "", "\u200e", "").Replace(strings.TrimSpace(t))
	t = strings.ToUpper(t)
	if len(t) != 40 {
		return t, false
	}
	if _, err := hex.DecodeString(t); err != nil {
		return t, false
	}
	return t, true
}

// Describe derives Info from a parsed certificate.
func Describe(c *x509.Certificate) Info {
	in := Info{
		Thumbprint:         Thumbprint(c.Raw),
		Subject:            NameString(c.RawSubject),
		CertificateDomains: CertificateDomains(c),
		NotBefore:          c.NotBefore.UTC(),
		NotAfter:           c.NotAfter.UTC(),
		IsSelfSigned:       IsSelfSigned(c),
		PublicKeySize:      PublicKeySize(c.PublicKey),
		SerialNumber:       SerialString(c.SerialNumber),
		KeyAlgorithm:       KeyAlgorithm(c.PublicKey),
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		Version:            c.Version,
		KeyUsage:           keyUsageNames(c.KeyUsage),
		EnhancedKeyUsage:   extKeyUsageNames(c.ExtKeyUsage, len(c.UnknownExtKeyUsage)),
		IsCA:               c.BasicConstraintsValid && c.IsCA,
		KeyID:              KeyID(c.RawSubjectPublicKeyInfo),
	}
	in.Issuer = in.Subject
	if string(c.RawIssuer) != string(c.RawSubject) {
		in.Issuer = NameString(c.RawIssuer)
	}
	return in
}

// SerialString prints a certificate's serial number as Exchange does:
// upper-case hexadecimal in whole bytes (a leading 0 when the first byte
// is below 0x10), so every event, listing and trace shows the same text.
func SerialString(n *big.Int) string {
	s := strings.ToUpper(n.Text(16))
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// NameString prints a DER-encoded X.500 name (a certificate's RawSubject
// or RawIssuer) in RFC 4514 form, exactly as signed: every attribute, in
// the certificate's order (RFC 4514 writes the last RDN first) —
// unlike pkix.Name, which keeps one CommonName and regroups the rest.
func NameString(raw []byte) string {
	rdns, err := parseRDNs(raw)
	if err != nil {
		return fmt.Sprintf("(a name that does not decode: %x)", raw)
	}
	return rdns.String()
}

// CommonNames returns the values of every CN attribute of a DER-encoded
// name, in the order RFC 4514 prints them (the most specific first).
func CommonNames(raw []byte) []string {
	rdns, err := parseRDNs(raw)
	if err != nil {
		return nil
	}
	return commonNames(rdns)
}

func commonNames(rdns pkix.RDNSequence) []string {
	var out []string
	for i := len(rdns) - 1; i >= 0; i-- {
		for _, atv := range rdns[i] {
			if v, ok := atv.Value.(string); ok && atv.Type.Equal(oidCommonName) {
				out = append(out, v)
			}
		}
	}
	return out
}

// CertificateDomains returns C3 for a certificate: every CN of its
// subject, then every DNS name of its Subject Alternative Name.
func CertificateDomains(c *x509.Certificate) []string {
	return Domains(append(CommonNames(c.RawSubject), c.DNSNames...)...)
}

// RequestDomains is CertificateDomains for a certificate request.
func RequestDomains(r *x509.CertificateRequest) []string {
	return Domains(append(CommonNames(r.RawSubject), r.DNSNames...)...)
}

// Domains returns CertificateDomains (C3) from the subject's common
// names followed by the SAN's DNS names: in that order, without
// duplicates (compared case-insensitively). Wildcards are kept.
func Domains(names ...string) []string {
	out := make([]string, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		n = strings.TrimSpace(n)
		k := strings.ToLower(n)
		if n == "" || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, n)
	}
	return out
}

// IsSelfSigned reports C6: the issuer equals the subject and the signature
// verifies with the certificate's own key. Unlike CheckSignatureFrom it does
// not require the CA flag, since Exchange-style self-signed certificates are
// end-entity certificates.
//
// Results are remembered by the certificate's SHA-1, since checking a
// signature is the dearest step of judging a store of many certificates.
func IsSelfSigned(c *x509.Certificate) bool {
	if string(c.RawIssuer) != string(c.RawSubject) {
		return false
	}
	key := sha1.Sum(c.Raw)
	if v, ok := selfSigned.Load(key); ok {
		return v.(bool)
	}
	ok := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
	if selfSignedCount.Add(1) > maxSelfSignedMemo {
		selfSigned.Clear()
		selfSignedCount.Store(0)
	}
	selfSigned.Store(key, ok)
	return ok
}

// RememberSelfSigned records what IsSelfSigned answers for c, as a store
// that checked it when the certificate was added knows, so listing a
// large store does not verify every signature again.
func RememberSelfSigned(c *x509.Certificate, v bool) {
	if string(c.RawIssuer) != string(c.RawSubject) {
		return // IsSelfSigned answers false without a signature check
	}
	if selfSignedCount.Add(1) > maxSelfSignedMemo {
		selfSigned.Clear()
		selfSignedCount.Store(0)
	}
	selfSigned.Store(sha1.Sum(c.Raw), v)
}

// The memo of IsSelfSigned, bounded so a long-running server that sees
// many certificates cannot grow it without limit.
var (
	selfSigned      sync.Map // [20]byte → bool
	selfSignedCount atomic.Int64
)

const maxSelfSignedMemo = 200000

// PublicKeySize returns the key's size in bits: the modulus for RSA, the
// curve's size for ECDSA, 256 for Ed25519, 0 for anything else.
func PublicKeySize(pub any) int {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return k.N.BitLen()
	case *ecdsa.PublicKey:
		return k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return 256
	}
	return 0
}

// KeyAlgorithm names the public key's algorithm as certrelay prints it.
func KeyAlgorithm(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// MinRSABits is the smallest RSA key certrelay accepts (SPEC S2).
const MinRSABits = 1024

// CheckPublicKey refuses keys no service could use: RSA below MinRSABits,
// ECDSA curves other than P-256, P-384 and P-521, and unknown algorithms.
func CheckPublicKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits {
			return fmt.Errorf("the RSA key has %d bits, below the minimum of %d: issue a new certificate with a key of 2048 bits or more", n, MinRSABits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve.Params().Name {
		case "P-256", "P-384", "P-521":
		default:
			return fmt.Errorf("the ECDSA curve %s is not supported: use P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("the public key type %T is not supported: use RSA or ECDSA", pub)
	}
	return nil
}

var keyUsageBits = []struct {
	bit  x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "DigitalSignature"},
	{x509.KeyUsageContentCommitment, "NonRepudiation"},
	{x509.KeyUsageKeyEncipherment, "KeyEncipherment"},
	{x509.KeyUsageDataEncipherment, "DataEncipherment"},
	{x509.KeyUsageKeyAgreement, "KeyAgreement"},
	{x509.KeyUsageCertSign, "KeyCertSign"},
	{x509.KeyUsageCRLSign, "CRLSign"},
	{x509.KeyUsageEncipherOnly, "EncipherOnly"},
	{x509.KeyUsageDecipherOnly, "DecipherOnly"},
}

func keyUsageNames(ku x509.KeyUsage) []string {
	var out []string
	for _, b := range keyUsageBits {
		if ku&b.bit != 0 {
			out = append(out, b.name)
		}
	}
	return out
}

var extKeyUsageName = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:             "Any",
	x509.ExtKeyUsageServerAuth:      "ServerAuthentication",
	x509.ExtKeyUsageClientAuth:      "ClientAuthentication",
	x509.ExtKeyUsageCodeSigning:     "CodeSigning",
	x509.ExtKeyUsageEmailProtection: "SecureEmail",
	x509.ExtKeyUsageTimeStamping:    "TimeStamping",
	x509.ExtKeyUsageOCSPSigning:     "OCSPSigning",
}

func extKeyUsageNames(ekus []x509.ExtKeyUsage, unknown int) []string {
	var out []string
	for _, e := range ekus {
		if n, ok := extKeyUsageName[e]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("EKU(%d)", e))
		}
	}
	for i := 0; i < unknown; i++ {
		out = append(out, "Other")
	}
	return out
}

// UsableForTLSServer reports whether the certificate's Key Usage and
// Enhanced Key Usage allow it to authenticate a TLS server (SPEC S2): Key
// Usage absent or with digitalSignature, EKU absent or with serverAuth or
// anyExtendedKeyUsage. keyEncipherment alone is not enough: it served RSA
// key exchange, which certrelay does not offer — every TLS 1.2 suite it
// offers is ECDHE and TLS 1.3 always signs, so the key must sign the
// handshake, and clients that check Key Usage refuse it otherwise. The
// returned string says why not, and what to do.
func UsableForTLSServer(c *x509.Certificate) (bool, string) {
	if c.Version != 3 {
		return false, fmt.Sprintf("it is an X.509 version %d certificate; TLS needs version 3", c.Version)
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return false, fmt.Sprintf("its Key Usage (%s) lacks digitalSignature, which every TLS suite certrelay offers needs (ECDHE and TLS 1.3 sign the handshake with the key): ask the CA for a certificate whose Key Usage includes digitalSignature",
			strings.Join(keyUsageNames(c.KeyUsage), ", "))
	}
	if len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0 {
		for _, e := range c.ExtKeyUsage {
			if e == x509.ExtKeyUsageServerAuth || e == x509.ExtKeyUsageAny {
				return true, ""
			}
		}
		return false, "its Enhanced Key Usage does not include Server Authentication"
	}
	return true, ""
}
