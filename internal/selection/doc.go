// Package selection decides which certificate a TLS session uses (SPEC
// §5): it is a pure function of the candidates (the personal store with
// each certificate's Status), the name to match and the service, and its
// explanation is data — every candidate with the reason it was rejected,
// passed over or chosen — which `certrelay cert explain` prints and the
// Transport\Certificate trace records.
//
// Rules: S1 (the caller supplies the FQDN), S2 (candidates), S3 (name
// match), S4 (ranking, reproducing Exchange's walk), S4a (explicit
// binding by issuer and subject), S9 (the Exchange 2007 RTM POP3/IMAP4
// compatibility switch). Index memoizes decisions so that a handshake
// costs a map lookup; it is rebuilt on every store change. Rank orders
// every candidate by the same walk (the winner, then the winner without
// it, …) for `cert list --domain`, so listings never rank differently
// from sessions; Usability and Decision.LastResort say when a winner is
// one of S4's last resorts, which C9 wants used "always with an event".
package selection
