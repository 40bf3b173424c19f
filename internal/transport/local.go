package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"syscall"

	"certrelay/internal/maildir"
	"certrelay/internal/queue"
)

// LocalDeliverer delivers the queue's Local recipients into Maildir
// mailboxes under Root (the final delivery agent, RFC 5321 4.4): it adds
// Return-Path, maps Maildir's errors to SMTP's (5.1.1 unknown mailbox,
// 4.2.2 full), and lets maildir make the delivery exactly-once. Register it
// with q.Handle(queue.Local, d).
//
// The body is written as the queue holds it (the SMTP layer has added
// Received), after the Return-Path line final delivery adds (RFC 5321
// 4.4), with the body's own line ending. With DeliveredTo set, a
// "Delivered-To: <address>" line (RFC 9228) is written first, with the
// body's own line ending; it is off by default so a mailbox holds exactly
// the accepted bytes.
type LocalDeliverer struct {
	// Root is the directory holding the mailboxes (the data directory's
	// mail/).
	Root string
	// Lookup maps a recipient address to its mailbox, a path relative to
	// Root; ok false means no such mailbox (a permanent failure,
	// "5.1.1 mailbox unavailable"). It must be safe for concurrent use.
	Lookup func(address string) (mailbox string, ok bool)
	// DeliveredTo adds a Delivered-To header line (see above).
	DeliveredTo bool
	// Delivered, when set, is given each message delivered to at least
	// one mailbox (TLS reports are recognised there); it must not block
	// for long, and its errors are its own to log.
	Delivered func(ctx context.Context, body []byte)
}

var _ queue.Deliverer = (*LocalDeliverer)(nil)

// Deliver delivers d to each recipient's mailbox, one file per recipient.
// Unknown recipients fail permanently; file system errors are temporary
// (the queue retries them), including a full disk or quota.
func (dv *LocalDeliverer) Deliver(ctx context.Context, d queue.Delivery) []queue.Outcome {
	out := make([]queue.Outcome, 0, len(d.Recipients))
	delivered := false
	for _, r := range d.Recipients {
		if err := ctx.Err(); err != nil {
			out = append(out, queue.Outcome{Idx: r.Idx, Err: err})
			continue
		}
		err := dv.deliverOne(d, r)
		delivered = delivered || err == nil
		out = append(out, queue.Outcome{Idx: r.Idx, Err: err})
	}
	if delivered && dv.Delivered != nil {
		dv.Delivered(ctx, d.Body)
	}
	return out
}

func (dv *LocalDeliverer) deliverOne(d queue.Delivery, r queue.Recipient) error {
	mailbox, ok := dv.Lookup(r.Address)
	if !ok {
		return queue.Permanent(fmt.Errorf("5.1.1 mailbox unavailable: no mailbox for <%s>", r.Address))
	}
	k := maildir.Key{MsgID: d.MsgID, Idx: r.Idx, Received: d.ReceivedAt, Fresh: !d.MaybeDelivered}
	eol := "\n"
	if i := bytes.IndexByte(d.Body, '\n'); i > 0 && d.Body[i-1] == '\r' {
		eol = "\r\n"
	}
	// The final delivery agent records the reverse-path (RFC 5321 4.4).
	prefix := []byte("Return-Path: <" + d.Sender + ">" + eol)
	if dv.DeliveredTo {
		prefix = append(prefix, "Delivered-To: "+r.Address+eol...)
	}
	_, err := maildir.DeliverWithPrefix(dv.Root, mailbox, k, prefix, d.Body)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("4.2.2 mailbox full: <%s>: %w", r.Address, err)
	default:
		return fmt.Errorf("4.2.0 mailbox delivery to <%s> failed: %w", r.Address, err)
	}
}
