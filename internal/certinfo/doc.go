// Package certinfo is certrelay's pure X.509 layer: it reads certificates,
// keys and requests in the encodings administrators meet (DER, PEM, bare
// base64, PKCS#7 and PKCS#12), derives the certificate fields and facts of
// SPEC §2 (Thumbprint, Subject, Issuer, CertificateDomains, NotBefore,
// NotAfter, IsSelfSigned, PublicKeySize, SerialNumber), parses X.500
// subject strings as the seeds write them, and makes self-signed
// certificates and PKCS#10 requests (RFC 5280, RFC 2986, RFC 7292).
//
// It does no I/O and reads no clock: callers pass the time and the source
// of randomness, so every result is reproducible in tests.
package certinfo
