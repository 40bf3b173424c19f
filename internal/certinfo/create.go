package certinfo

import (
	"certrelay/internal/dnsname"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"
)

// KeySpec says which key to generate. The zero value is RSA 2048, the
// seeds' default.
type KeySpec struct {
	Type string // "rsa" (default) or "ecdsa"
	Size int    // RSA: 1024, 2048 (default), 3072 or 4096; ECDSA: 256 (default) or 384
}

// Normalize fills defaults and refuses sizes certrelay does not make.
func (k KeySpec) Normalize() (KeySpec, error) {
	k.Type = strings.ToLower(strings.TrimSpace(k.Type))
	switch k.Type {
	case "", "rsa":
		k.Type = "rsa"
		if k.Size == 0 {
			k.Size = 2048
		}
		switch k.Size {
		case 1024, 2048, 3072, 4096:
		default:
			return k, fmt.Errorf("an RSA key of %d bits is not offered: use 2048 (the default), 3072 or 4096 (1024 only for old peers)", k.Size)
		}
	case "ecdsa", "ec":
		k.Type = "ecdsa"
		if k.Size == 0 {
			k.Size = 256
		}
		if k.Size != 256 && k.Size != 384 {
			return k, fmt.Errorf("an ECDSA key of %d bits is not offered: use 256 (P-256, the default) or 384 (P-384)", k.Size)
		}
	default:
		return k, fmt.Errorf("unknown key type %q: use rsa or ecdsa", k.Type)
	}
	return k, nil
}

// GenerateKey makes a new private key as spec says.
func GenerateKey(spec KeySpec, rand io.Reader) (crypto.Signer, error) {
	spec, err := spec.Normalize()
	if err != nil {
		return nil, err
	}
	if spec.Type == "ecdsa" {
		curve := elliptic.P256()
		if spec.Size == 384 {
			curve = elliptic.P384()
		}
		return ecdsa.GenerateKey(curve, rand)
	}
	return rsa.GenerateKey(rand, spec.Size)
}

// DefaultValidity is how long certrelay's self-signed certificates last
// (SPEC C4: one year, as Exchange makes them).
const DefaultValidity = 365 * 24 * time.Hour

// SelfSignedOptions describe a self-signed certificate (SPEC M1).
type SelfSignedOptions struct {
	Subject  Subject       // empty: CN = the first domain
	Domains  []string      // SAN DNS names; at least one, or a subject with a CN
	Key      crypto.Signer // the certificate's key
	Now      time.Time     // NotBefore
	Validity time.Duration // 0: DefaultValidity
}

// NewSelfSigned makes a self-signed end-entity certificate for TLS: the
// subject and SAN of opts, Key Usage digitalSignature (and keyEncipherment
// for RSA), EKU serverAuth and clientAuth (transport servers are TLS
// clients too, and direct trust presents the same certificate both ways),
// a random 128-bit serial number. It returns the DER certificate.
func NewSelfSigned(opts SelfSignedOptions, rand io.Reader) ([]byte, error) {
	subject, domains, err := subjectAndDomains(opts.Subject, opts.Domains)
	if err != nil {
		return nil, err
	}
	rawSubject, err := subject.DER()
	if err != nil {
		return nil, fmt.Errorf("encode subject: %w", err)
	}
	serial, err := randomSerial(rand)
	if err != nil {
		return nil, err
	}
	validity := opts.Validity
	if validity <= 0 {
		validity = DefaultValidity
	}
	notBefore := opts.Now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            rawSubject,
		DNSNames:              domains,
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if _, ok := opts.Key.Public().(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	tmpl.RawIssuer = rawSubject
	der, err := x509.CreateCertificate(rand, tmpl, tmpl, opts.Key.Public(), opts.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return der, nil
}

// RequestOptions describe a PKCS#10 certificate request (SPEC M3).
type RequestOptions struct {
	Subject Subject
	Domains []string
	Key     crypto.Signer
}

// NewRequest makes a PKCS#10 request for opts and returns its DER.
func NewRequest(opts RequestOptions, rand io.Reader) ([]byte, error) {
	subject, domains, err := subjectAndDomains(opts.Subject, opts.Domains)
	if err != nil {
		return nil, err
	}
	rawSubject, err := subject.DER()
	if err != nil {
		return nil, fmt.Errorf("encode subject: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand, &x509.CertificateRequest{RawSubject: rawSubject, DNSNames: domains}, opts.Key)
	if err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	return der, nil
}

// subjectAndDomains applies SPEC C2 and C3 to what a certificate or
// request will hold: without a subject, CN = the first domain; every
// common name of the subject that is a DNS name goes into the SAN too
// (clients match names against the SAN only, RFC 6125); names are
// normalised (dnsname: lower case, no trailing dot, IDN as A-labels) and
// de-duplicated, the subject's CNs included.
func subjectAndDomains(subject Subject, domains []string) (Subject, []string, error) {
	names, err := dnsname.ParseList(domains, true)
	if err != nil {
		return Subject{}, nil, err
	}
	if len(subject.RDNs) == 0 {
		if len(names) == 0 {
			return Subject{}, nil, errors.New("no domain name and no subject: give at least one domain name")
		}
		return CommonNameSubject(string(names[0])), dnsname.Strings(names), nil
	}
	subject, cns := normalizeCommonNames(subject)
	all, _ := dnsname.ParseList(append(cns, dnsname.Strings(names)...), true)
	return subject, dnsname.Strings(all), nil
}

// normalizeCommonNames rewrites every CN of s that is a DNS name in its
// normal form, and returns those names (most specific first, as
// CommonNames orders them). A CN that is not a DNS name ("Contoso Mail")
// is kept as written and is not a domain.
func normalizeCommonNames(s Subject) (Subject, []string) {
	out := Subject{RDNs: make(pkix.RDNSequence, len(s.RDNs))}
	var cns []string
	for i, rdn := range s.RDNs {
		out.RDNs[i] = append([]pkix.AttributeTypeAndValue(nil), rdn...)
		for j, atv := range rdn {
			v, ok := atv.Value.(string)
			if !ok || !atv.Type.Equal(oidCommonName) {
				continue
			}
			if n, err := dnsname.Parse(v); err == nil {
				out.RDNs[i][j].Value = string(n)
				cns = append([]string{string(n)}, cns...)
			}
		}
	}
	return out, cns
}

func randomSerial(rand io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(rand, b); err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	b[0] &= 0x7f // positive
	if b[0] == 0 {
		b[0] = 1 // keep 16 significant bytes
	}
	return new(big.Int).SetBytes(b), nil
}

// KeyMatches reports whether priv is the private key of pub.
func KeyMatches(priv crypto.Signer, pub any) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	p, ok := priv.Public().(equaler)
	return ok && p.Equal(pub)
}
