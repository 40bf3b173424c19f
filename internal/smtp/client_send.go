package smtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// SendOptions are the ESMTP parameters of a SendMail transaction.
type SendOptions struct {
	// Mail's fields become MAIL FROM parameters: Size as SIZE= when the
	// server offers SIZE; Body "8BITMIME" as BODY=8BITMIME (refused with
	// ErrNotSupported when the server lacks 8BITMIME: convert the message
	// or bounce it); SMTPUTF8 (also set by itself when an address is not
	// ASCII; ErrNotSupported without server support); Ret and EnvID (need
	// DSN); Auth as AUTH= when the server offers AUTH.
	Mail MailOptions
	// Rcpt's fields become the parameters of every RCPT TO (need DSN).
	Rcpt RcptOptions
}

// RcptResult is the outcome of a SendMail transaction for one recipient.
type RcptResult struct {
	Rcpt string
	// Err is nil when the server accepted the message for Rcpt. Otherwise
	// it is the reply that decided (RCPT's, else MAIL's or the final
	// reply after DATA) as a *ReplyError — Temporary: retry later,
	// Permanent: bounce — or the error that stopped the session, which
	// should be treated as temporary.
	Err error
}

// SendMail runs one mail transaction: MAIL FROM, RCPT TO for each
// recipient, DATA with body (dot-stuffed; bare CR and LF become CRLF, and
// a final CRLF is added if missing). When the server offers PIPELINING,
// MAIL, every RCPT and DATA leave in one write (RFC 2920).
//
// It returns one result per recipient, in order, unless the arguments
// are invalid. The error is nil when the message was accepted for at
// least one recipient; otherwise it says why none got it (the MAIL
// reply, the last RCPT reply, the DATA reply or an I/O error). After a
// failed transaction the session is reset with RSET and may be reused,
// unless the error broke the client (see Client).
func (c *Client) SendMail(ctx context.Context, from string, rcpts []string, body io.Reader, opts *SendOptions) ([]RcptResult, error) {
	if opts == nil {
		opts = &SendOptions{}
	}
	if len(rcpts) == 0 {
		return nil, errors.New("smtp: SendMail: no recipients")
	}
	mo := opts.Mail
	if _, ok := parseAddress([]byte(from), true, false); !ok {
		return nil, fmt.Errorf("smtp: SendMail: bad sender address %q", truncate(from, 100))
	}
	utf8Needed := mo.SMTPUTF8 || !isASCII(from)
	for _, r := range rcpts {
		if _, ok := parseAddress([]byte(r), false, true); !ok {
			return nil, fmt.Errorf("smtp: SendMail: bad recipient address %q", truncate(r, 100))
		}
		utf8Needed = utf8Needed || !isASCII(r)
	}
	if err := c.ensureHello(ctx); err != nil {
		return failAll(rcpts, err), err
	}
	mailLine, err := c.mailLine(from, &mo, utf8Needed)
	if err != nil {
		return failAll(rcpts, err), err
	}
	rcptParams, err := c.rcptParams(&opts.Rcpt)
	if err != nil {
		return failAll(rcpts, err), err
	}

	results := make([]RcptResult, len(rcpts))
	for i, r := range rcpts {
		results[i].Rcpt = r
	}
	var txErr error
	err = c.exchange(ctx, "send mail", c.commandTimeout(), func() error {
		var err error
		txErr, err = c.transaction(mailLine, rcpts, rcptParams, body, results)
		return err
	})
	if err != nil {
		// The session broke before the final reply: no recipient got the
		// message, those without a reply of their own get the error.
		for i := range results {
			if results[i].Err == nil {
				results[i].Err = err
			}
		}
		return results, err
	}
	if txErr != nil {
		// Leave the session clean for the next transaction. A refused
		// RSET changes nothing for this one; a broken session shows at
		// the next call.
		c.Reset(ctx)
	}
	return results, txErr
}

func failAll(rcpts []string, err error) []RcptResult {
	res := make([]RcptResult, len(rcpts))
	for i, r := range rcpts {
		res[i] = RcptResult{Rcpt: r, Err: err}
	}
	return res
}

// mailLine builds "MAIL FROM:<from> params".
func (c *Client) mailLine(from string, mo *MailOptions, utf8Needed bool) (string, error) {
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	b.WriteString(from)
	b.WriteByte('>')
	if mo.Size > 0 && c.Supports("SIZE") {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(mo.Size, 10))
	}
	switch mo.Body {
	case "", "7BIT":
	case "8BITMIME":
		if !c.Supports("8BITMIME") {
			return "", fmt.Errorf("smtp: 8BITMIME: %w", ErrNotSupported)
		}
		b.WriteString(" BODY=8BITMIME")
	default:
		return "", fmt.Errorf("smtp: unsupported BODY %q", mo.Body)
	}
	if utf8Needed {
		if !c.Supports("SMTPUTF8") {
			return "", fmt.Errorf("smtp: SMTPUTF8: %w", ErrNotSupported)
		}
		b.WriteString(" SMTPUTF8")
	}
	if mo.Ret != "" || mo.EnvID != "" {
		if !c.Supports("DSN") {
			return "", fmt.Errorf("smtp: DSN: %w", ErrNotSupported)
		}
		if mo.Ret != "" {
			if mo.Ret != "FULL" && mo.Ret != "HDRS" {
				return "", fmt.Errorf("smtp: bad RET %q", mo.Ret)
			}
			b.WriteString(" RET=")
			b.WriteString(mo.Ret)
		}
		if mo.EnvID != "" {
			b.WriteString(" ENVID=")
			b.WriteString(encodeXtext(mo.EnvID))
		}
	}
	if mo.RequireTLS {
		if !c.Supports("REQUIRETLS") {
			return "", fmt.Errorf("smtp: REQUIRETLS: %w", ErrNotSupported)
		}
		b.WriteString(" REQUIRETLS")
	}
	if mo.Auth != "" && c.Supports("AUTH") {
		b.WriteString(" AUTH=")
		if mo.Auth == "<>" {
			b.WriteString("<>")
		} else {
			b.WriteString(encodeXtext(mo.Auth))
		}
	}
	return b.String(), nil
}

// rcptParams builds the parameters appended to every RCPT TO.
func (c *Client) rcptParams(ro *RcptOptions) (string, error) {
	if ro.Notify == 0 && ro.ORcpt == "" {
		return "", nil
	}
	if !c.Supports("DSN") {
		return "", fmt.Errorf("smtp: DSN: %w", ErrNotSupported)
	}
	var b strings.Builder
	if ro.Notify != 0 {
		b.WriteString(" NOTIFY=")
		if ro.Notify&NotifyNever != 0 {
			b.WriteString("NEVER")
		} else {
			var parts []string
			if ro.Notify&NotifySuccess != 0 {
				parts = append(parts, "SUCCESS")
			}
			if ro.Notify&NotifyFailure != 0 {
				parts = append(parts, "FAILURE")
			}
			if ro.Notify&NotifyDelay != 0 {
				parts = append(parts, "DELAY")
			}
			b.WriteString(strings.Join(parts, ","))
		}
	}
	if ro.ORcpt != "" {
		typ := ro.ORcptType
		if typ == "" {
			typ = "rfc822"
		}
		if !validAtomString([]byte(typ)) {
			return "", fmt.Errorf("smtp: bad ORCPT type %q", typ)
		}
		b.WriteString(" ORCPT=")
		b.WriteString(typ)
		b.WriteByte(';')
		b.WriteString(encodeXtext(ro.ORcpt))
	}
	return b.String(), nil
}

// transaction runs MAIL, RCPT, DATA. txErr is the reason no recipient got
// the message (a reply); err is a failure that breaks the session.
func (c *Client) transaction(mailLine string, rcpts []string, rcptParams string, body io.Reader, results []RcptResult) (txErr, err error) {
	pipelining := c.Supports("PIPELINING")
	send := func(line string) error {
		c.bw.WriteString(line)
		c.bw.WriteString("\r\n")
		if pipelining {
			return nil
		}
		return c.bw.Flush()
	}

	if pipelining {
		send(mailLine)
		for _, r := range rcpts {
			send("RCPT TO:<" + r + ">" + rcptParams)
		}
		send("DATA")
		if err := c.bw.Flush(); err != nil {
			return nil, err
		}
	} else if err := send(mailLine); err != nil {
		return nil, err
	}

	// MAIL
	_, mailErr := c.expect(250)
	if mailErr != nil && !isReply(mailErr) {
		return nil, mailErr
	}
	// RCPTs
	accepted := 0
	var lastRcptErr error
	for i, r := range rcpts {
		if !pipelining {
			if mailErr != nil {
				break
			}
			if err := send("RCPT TO:<" + r + ">" + rcptParams); err != nil {
				return nil, err
			}
		}
		_, rerr := c.expect(250)
		if rerr != nil && !isReply(rerr) {
			return nil, rerr
		}
		if mailErr != nil {
			continue // 503s that follow a refused MAIL
		}
		if rerr != nil {
			if re := rerr.(*ReplyError); re.Code == 421 {
				return nil, re
			}
			results[i].Err = rerr
			lastRcptErr = rerr
			continue
		}
		accepted++
	}
	if mailErr != nil {
		if mailErr.(*ReplyError).Code == 421 {
			return nil, mailErr
		}
		for i := range results {
			results[i].Err = mailErr
		}
	}

	// DATA
	if !pipelining {
		if mailErr != nil {
			return mailErr, nil
		}
		if accepted == 0 {
			return lastRcptErr, nil
		}
		if err := send("DATA"); err != nil {
			return nil, err
		}
	}
	_, dataErr := c.expect(354)
	if dataErr != nil && !isReply(dataErr) {
		return nil, dataErr
	}
	if mailErr != nil || accepted == 0 {
		if dataErr == nil {
			// A server that says 354 with no valid recipient: sending
			// anything would deliver something; break the session.
			return nil, errors.New("server accepted DATA without a valid transaction")
		}
		if mailErr != nil {
			return mailErr, nil
		}
		return lastRcptErr, nil
	}
	if dataErr != nil {
		if dataErr.(*ReplyError).Code == 421 {
			return nil, dataErr
		}
		c.decideAccepted(results, dataErr)
		return dataErr, nil
	}

	// Message content, then the final reply.
	c.timeout = c.dataTimeout()
	dw := dotWriter{w: c.bw, bol: true}
	if _, err := io.Copy(&dw, body); err != nil {
		// A read error of body (or a write error): the message cannot be
		// finished without sending a truncated message, so break.
		return nil, fmt.Errorf("message body: %w", err)
	}
	if err := dw.close(); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	_, finalErr := c.expect(250)
	if finalErr != nil && !isReply(finalErr) {
		return nil, finalErr
	}
	if finalErr != nil && finalErr.(*ReplyError).Code == 421 {
		c.decideAccepted(results, finalErr)
		return nil, finalErr
	}
	c.decideAccepted(results, finalErr)
	return finalErr, nil
}

// decideAccepted gives err to the recipients RCPT accepted.
func (c *Client) decideAccepted(results []RcptResult, err error) {
	for i := range results {
		if results[i].Err == nil {
			results[i].Err = err
		}
	}
}

// dotWriter writes message content for DATA: lines end in CRLF (a bare
// CR or LF becomes CRLF) and a line starting with a dot gets another one
// (RFC 5321 4.5.2). It works on runs between line ends, not on bytes.
type dotWriter struct {
	w   *bufio.Writer
	bol bool  // at the beginning of a line
	cr  bool  // the last byte written was a CR whose LF has not come yet
	err error // first write error
}

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && d.err == nil {
		if d.cr {
			d.cr = false
			d.writeByte('\n')
			d.bol = true
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		if d.bol {
			d.bol = false
			if p[0] == '.' {
				d.writeByte('.')
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			d.write(p)
			break
		}
		d.write(p[:i])
		if p[i] == '\n' {
			d.write(crlf)
			d.bol = true
		} else {
			d.writeByte('\r')
			d.cr = true
		}
		p = p[i+1:]
	}
	if d.err != nil {
		return 0, d.err
	}
	return n, nil
}

var (
	crlf      = []byte("\r\n")
	endOfData = []byte(".\r\n")
)

func (d *dotWriter) write(p []byte) {
	if _, err := d.w.Write(p); err != nil && d.err == nil {
		d.err = err
	}
}

func (d *dotWriter) writeByte(b byte) {
	if err := d.w.WriteByte(b); err != nil && d.err == nil {
		d.err = err
	}
}

// close ends the content with CRLF "." CRLF.
func (d *dotWriter) close() error {
	if d.cr {
		d.writeByte('\n')
		d.bol = true
	}
	if !d.bol {
		d.write(crlf)
	}
	d.write(endOfData)
	return d.err
}
