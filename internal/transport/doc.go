// Package transport is certrelay's SMTP transport on top of internal/smtp
// (the protocol), internal/selection (which certificate) and the queue:
// receive connectors with their listeners, permissions, STARTTLS on the
// certificate selection chooses at each handshake (SPEC S1–S5, S7), the
// events of E3 (12014), E5 (12016, 12018) and of a last resort in use
// (12016, 16030: raised by the session that uses it), and the hand-over of each
// accepted message to durable storage before 250.
//
// Configuration arrives as immutable State snapshots (Update); sessions
// read the snapshot current when they need it, so a certificate or
// connector change takes effect on the next handshake or connection while
// sessions in flight keep what they started with.
package transport
