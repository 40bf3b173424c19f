// Package revocation establishes whether one certificate has been revoked
// by its issuer, as SPEC T4 asks: it asks the OCSP responders the
// certificate names (RFC 6960, with the lightweight profile of RFC 5019 in
// mind) and then fetches the CRLs of its distribution points (RFC 5280
// §5 and §6.3), over http:// or ldap:// (RFC 4516 URLs), through the
// configured HTTP proxy, and caches what it learnt until the responses'
// nextUpdate.
//
// A response counts only when it can be trusted: signed by the issuer (or,
// for OCSP, by a responder the issuer delegated with id-kp-OCSPSigning),
// about this very certificate, and current. Anything else — a bad
// signature, another issuer, an expired or malformed response, a CRL whose
// scope leaves the certificate out — is recorded as a failed Attempt and
// never turns into Good; with no trusted answer at all the Result is
// Unknown, which internal/trust reports as RevocationCheckFailure (SPEC C9).
//
// Every URL tried is recorded, with what it answered, so that
// `certrelay cert verify` can print them the way `certutil -verify
// -urlfetch` does (SPEC T5).
//
// The package does not build chains or decide trust in the issuer itself:
// internal/trust does that, and calls Check once per chain element.
package revocation
