// Package serving is certrelay's one TLS serving layer (STYLE 16): every
// listener of every protocol — SMTP today; POP3, IMAP4, UM and the HTTPS
// console next — gets its certificates, its tls.Config and its sockets
// here, and never builds them itself.
//
// It owns:
//
//   - the published selection snapshot (a selection.Index over the
//     personal store's candidates), swapped atomically on every change so
//     the next handshake uses it (SPEC S7) while handshakes in flight
//     finish with the old one;
//   - Config: the ready server tls.Config for a request (service and
//     name, SPEC S1–S4), one per certificate, with TLS 1.2 limited to
//     ECDHE with AEAD suites and the intermediates sent after the
//     certificate (RFC 8446 4.4.2); ClientCertificate for outbound TLS;
//   - the private keys of the certificates it serves, loaded on first use
//     and cached by key ID with a bound (selection itself only sees facts
//     about keys, so `cert explain` never reads one); a key that cannot be
//     loaded is reported and its certificate passed over;
//   - session-ticket keys shared by every configuration, so a client can
//     resume after a certificate change or on another listener;
//   - listeners for any protocol (Listeners): opened, kept and closed to
//     match the configuration, a busy address retried with back-off, with
//     the protocol's events; a protocol either runs its own accept loop on
//     the listener (Binding.Serve: SMTP's engine admits connections there)
//     or gives a handler per connection (Binding.Handle), with TLS from
//     the first byte (Binding.TLS: implicit TLS, RFC 8314) or upgraded
//     later (Layer.StartTLS: RFC 3207's STARTTLS, RFC 2595's STLS).
//
// Arrows point down: serving knows selection and certinfo, and no
// protocol; transport (and later access) use it.
package serving
