package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"certrelay/internal/queue"
)

// Bouncer sends delivery status notifications (RFC 3464) for recipients
// the queue gave up on: one DSN per message, to its sender, listing each
// failed recipient with its status and the last reply, and carrying the
// original headers (the whole message with RET=FULL). The queue never
// bounces messages from the null sender. Safe for concurrent use.
type Bouncer struct {
	Queue *queue.Queue
	State func() *State
	Now   func() time.Time
}

var _ queue.Bouncer = (*Bouncer)(nil)

// Bounce implements queue.Bouncer.
func (b *Bouncer) Bounce(ctx context.Context, msg *queue.Message, failed []queue.RecipientState) error {
	var notify []queue.RecipientState
	for _, r := range failed {
		if !strings.Contains(strings.ToUpper(r.Notify), "NEVER") {
			notify = append(notify, r)
		}
	}
	if len(notify) == 0 || msg.Sender == "" {
		return nil
	}
	st := b.State()
	body := b.build(st, msg, notify)
	dest := queue.Local
	addr := strings.ToLower(msg.Sender)
	if _, ok := st.Mailboxes[addr]; !ok {
		_, dest, _ = strings.Cut(addr, "@")
	}
	_, err := b.Queue.Enqueue(ctx, &queue.Message{
		ReceivedAt: b.Now(), Sender: "", Body: body,
		Recipients: []queue.Recipient{{Address: msg.Sender, Destination: dest}},
		Meta:       queue.Meta{Connector: "DSN"},
	})
	return err
}

var statusRE = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)
var replyRE = regexp.MustCompile(`^(\d{3}) `)

func (b *Bouncer) build(st *State, msg *queue.Message, failed []queue.RecipientState) []byte {
	fqdn := st.Server.Fqdn
	now := b.Now()
	boundary := randomToken()
	headers, rest := splitHeaders(msg.Body)
	subject := headerValue(headers, "Subject")
	var buf bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&buf, format, args...) }
	w("From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", fqdn)
	w("To: <%s>\r\n", msg.Sender)
	w("Subject: Undeliverable: %s\r\n", oneLine(subject))
	w("Date: %s\r\n", now.Format(time.RFC1123Z))
	w("Message-ID: <%s@%s>\r\n", randomToken(), fqdn)
	w("Auto-Submitted: auto-replied\r\n")
	w("MIME-Version: 1.0\r\n")
	w("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", boundary)
	w("This is a MIME-encapsulated delivery status notification.\r\n\r\n")
	w("--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", boundary)
	w("Your message could not be delivered to these recipients:\r\n\r\n")
	for _, r := range failed {
		w("  <%s>\r\n      %s\r\n", r.Address, oneLine(r.LastError))
	}
	w("\r\nThe message was received by %s on %s. Its headers follow.\r\n\r\n", fqdn, msg.ReceivedAt.Format(time.RFC1123Z))
	w("--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary)
	w("Reporting-MTA: dns; %s\r\n", fqdn)
	w("Arrival-Date: %s\r\n", msg.ReceivedAt.Format(time.RFC1123Z))
	if msg.Meta.EnvelopeID != "" {
		w("Original-Envelope-Id: %s\r\n", oneLine(msg.Meta.EnvelopeID))
	}
	for _, r := range failed {
		w("\r\n")
		if r.ORCPT != "" {
			w("Original-Recipient: %s\r\n", oneLine(r.ORCPT))
		}
		w("Final-Recipient: rfc822; %s\r\n", r.Address)
		w("Action: failed\r\n")
		w("Status: %s\r\n", statusOf(r.LastError))
		if m := replyRE.FindString(r.LastError); m != "" {
			w("Diagnostic-Code: smtp; %s\r\n", oneLine(r.LastError))
		} else {
			w("Diagnostic-Code: X-certrelay; %s\r\n", oneLine(r.LastError))
		}
		if !r.UpdatedAt.IsZero() {
			w("Last-Attempt-Date: %s\r\n", r.UpdatedAt.Format(time.RFC1123Z))
		}
	}
	w("\r\n--%s\r\n", boundary)
	if strings.EqualFold(msg.Meta.Ret, "FULL") {
		w("Content-Type: message/rfc822\r\n\r\n")
		buf.Write(headers)
		buf.Write(rest)
		if !bytes.HasSuffix(rest, []byte("\r\n")) {
			w("\r\n")
		}
	} else {
		w("Content-Type: text/rfc822-headers\r\n\r\n")
		buf.Write(headers)
	}
	w("--%s--\r\n", boundary)
	return buf.Bytes()
}

// statusOf finds the enhanced status code in an error text; 5.0.0 when it
// has none.
func statusOf(text string) string {
	for _, m := range statusRE.FindAllStringSubmatch(text, -1) {
		if m[1] == "5" || m[1] == "4" {
			if m[1] == "4" { // a temporary failure that expired
				return "4." + m[2] + "." + m[3]
			}
			return m[0]
		}
	}
	return "5.0.0"
}

// splitHeaders returns the header block (with its final empty line) and
// the body.
func splitHeaders(msg []byte) ([]byte, []byte) {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+4], msg[i+4:]
	}
	return msg, nil
}

func headerValue(headers []byte, name string) string {
	lines := strings.Split(string(headers), "\r\n")
	for i, l := range lines {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			for j := i + 1; j < len(lines) && (strings.HasPrefix(lines[j], " ") || strings.HasPrefix(lines[j], "\t")); j++ {
				v += " " + strings.TrimSpace(lines[j])
			}
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

func randomToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
