// Package smtp is certrelay's SMTP protocol engine: a server that runs the
// protocol and delegates every decision to a per-connection policy
// (Handler, Session), and a client for the send connectors.
//
// certrelay writes its own engine because the transport must decide, per
// session and at the moment the client asks, whether to offer STARTTLS and
// with which certificate (SPEC S1–S7), and must speak Exchange's
// X-ANONYMOUSTLS between servers of an organisation (S6, X2); go-smtp
// offers neither. The package knows nothing of connectors, queues or
// certificate stores: the transport package plugs them in through Session.
//
// Implemented:
//   - RFC 5321 SMTP (commands, replies, limits and timeouts of 4.5.3);
//   - RFC 3207 STARTTLS, and X-ANONYMOUSTLS (same protocol, Exchange's verb);
//   - RFC 1870 SIZE, RFC 2920 PIPELINING, RFC 6152 8BITMIME;
//   - RFC 2034 and RFC 3463 enhanced status codes, on every reply except the
//     greeting and the HELO/EHLO replies (as RFC 2034 3 says);
//   - RFC 6531 SMTPUTF8;
//   - RFC 4954 AUTH with RFC 4616 PLAIN and LOGIN
//     (draft-murchison-sasl-login);
//   - RFC 3461 DSN parameters, when a session offers DSN (the queue does
//     the notifications).
//
// # Behaviour chosen where the RFCs leave room
//
// Line ends and SMTP smuggling (CVE-2023-51764, -51765, -51766). Message
// data must use CRLF line ends. The end of data is exactly CRLF "." CRLF:
// a dot line is recognised only after a real CRLF, so "\n.\n", "\n.\r\n",
// "\r\n.\n" and "\r.\r\n" never end a message. A message containing a CR
// or LF that is not part of a CRLF pair is read on to the real end of data
// and refused with 550 5.6.0, as Postfix does with
// smtpd_forbid_bare_newline; nothing after a fake end marker is ever read
// as a command, and nothing is normalised and passed on to a next hop that
// might read it differently. A client that ends its data with a bare LF
// waits until DataTimeout and gets 421 4.4.2. Command lines, which are
// never relayed, may end in a bare LF (the CR is optional there), for the
// sake of hand-typed sessions.
//
// Line lengths. A command line may be Server.MaxLineLength octets (default
// 2048, RFC 5321 requires at least 512); a longer one is consumed up to its
// LF, answered 500 5.5.2 and counted as an error, and the session goes on.
// Message text lines are not limited unless Server.MaxDataLineLength is set
// (RFC 5321 4.5.3.1.6 says 1000; real mail exceeds it and nothing here
// depends on it); with the limit, an offending message is read to its end
// and refused with 554 5.6.0.
//
// Size. The SIZE limit (Capabilities.MaxSize, else Server.MaxMessageBytes)
// is advertised, checked against MAIL's SIZE= (552 5.3.4) and counted on the
// dot-unstuffed content as it arrives: past it, Data's reader fails with
// ErrMessageTooLarge, the rest is read and discarded up to the end of data
// so the session stays in step, and the reply is 552 5.3.4.
//
// Timeouts (SPEC P1). Each command must arrive within ReadTimeout (5 min,
// RFC 5321 4.5.3.2.7) and each read of message data must complete within
// DataTimeout (10 min): "421 4.4.2 Timeout waiting for command/data".
// Inactivity limits alone let a client that sends a NOOP, or one byte of
// its message, every few seconds hold a connection for ever, so a session
// also has a budget, SessionTimeout (10 min, Exchange's ConnectionTimeout):
// "421 4.4.2 Session time limit reached"; and a message, from 354 to its
// final dot, MessageTimeout (10 min): "421 4.4.2 Message time limit
// reached, message not accepted". Each read's deadline is the soonest of
// the three, so a budget ends a trickle at once, not at the next command.
// On any of them the connection closes. A message cut short is never
// acknowledged: Data's reader fails, and the server does not send 250
// whatever Data returns.
//
// Connections (SPEC P1). The Server counts its sessions in total
// (MaxConnections, 5000, which guards the process's file descriptors), per
// group of listeners (Limits.Group, such as one receive connector) and per
// client IP address in a group (MaxConnectionsPerClient, 20). A connection
// beyond a limit gets "421 4.7.0 Too many connections to this server" or
// "... from your address" at once, with no Session, and is closed, so
// clients are told rather than left waiting in the backlog. When accept
// itself fails (EMFILE, ENFILE), Serve backs off from 5 ms to 1 s and logs
// one warning per streak.
//
// Per listener and reports. Server.Limits gives each listener its own
// limits (a receive connector's settings); Server.LimitReached hears of
// every limit a client meets, and of failed accepts, so the caller can
// raise a throttled event.
//
// Addresses. Paths are <local@domain>, <> (MAIL only) or <postmaster>
// (RCPT only); source routes <@a,@b:u@d> are accepted and dropped; blanks
// after "FROM:"/"TO:" and a missing pair of angle brackets are tolerated.
// Non-ASCII addresses need MAIL's SMTPUTF8 parameter, else 553 5.6.7
// (RFC 6531 3.7.4.1); they must be valid UTF-8. Unknown ESMTP parameters
// get 555 5.5.4, malformed ones 501 5.5.4.
//
// STARTTLS. Whatever the client sent after STARTTLS in the same packet is
// discarded before the handshake (CVE-2011-0411) and logged. After TLS the
// session is back to its state after the greeting: EHLO again, AUTH and
// HELO forgotten, Capabilities asked anew. STARTTLS after TLS gets 503
// 5.5.1, STARTTLS not offered 502 5.5.1, a handshake failure closes the
// connection.
//
// Errors and limits. Protocol errors (unknown command 500 5.5.2, syntax
// 501, bad sequence 503 5.5.1, failed AUTH) are counted; the one that
// reaches Server.MaxErrors (default 10) is answered 421 4.7.0 and the
// connection closes. Policy refusals from the Session are not counted.
// Recipients are deduplicated within a transaction: the same address
// again (the domain in any case) gets 250 and is neither passed to the
// Session nor counted; a Session that knows other equivalences returns
// ErrDuplicateRecipient. At most Server.MaxRecipients (default 1000, RFC
// 5321 4.5.3.1.8 requires 100) distinct recipients per transaction; then
// "452 4.5.3 Too many recipients, at most N per message" (4.5.3.1.10).
// When every RCPT of a pipelined transaction failed, DATA gets 554 5.5.1
// No valid recipients (RFC 2920 3.1).
//
// Pipelining. Commands are read from a buffer and answered in order; the
// replies are flushed when the server needs more input from the network,
// so a pipelined group gets its replies in one write, and the server never
// blocks on a read with replies still unsent.
//
// Logging. Client input is logged only at debug level, quoted and
// truncated; AUTH data never. Session errors are logged in full; the
// client sees a generic reply (STYLE.md 5: errors for two readers).
package smtp
