package smtp

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// dispatch runs one command line.
func (c *conn) dispatch(ctx context.Context, line []byte) {
	verb, arg := splitVerb(line)
	if c.dbg {
		c.logCommand(verb, arg)
	}
	switch {
	case equalFold(verb, "MAIL"):
		c.cmdMail(arg)
	case equalFold(verb, "RCPT"):
		c.cmdRcpt(arg)
	case equalFold(verb, "DATA"):
		c.cmdData(arg)
	case equalFold(verb, "EHLO"):
		c.cmdHello(arg, true)
	case equalFold(verb, "HELO"):
		c.cmdHello(arg, false)
	case equalFold(verb, "RSET"):
		if len(arg) > 0 {
			c.fail(501, "5.5.4", "Syntax: RSET")
			return
		}
		c.resetTx()
		c.writeReply(250, "2.0.0", "OK")
	case equalFold(verb, "NOOP"):
		c.writeReply(250, "2.0.0", "OK")
	case equalFold(verb, "QUIT"):
		c.writeReply(221, "2.0.0", c.domain+" closing connection")
		c.closing = true
		c.quit = true
	case equalFold(verb, "STARTTLS"):
		c.cmdStartTLS(ctx, arg, false)
	case equalFold(verb, "X-ANONYMOUSTLS"):
		c.cmdStartTLS(ctx, arg, true)
	case equalFold(verb, "AUTH"):
		c.cmdAuth(arg)
	case equalFold(verb, "X-EXPS"):
		c.cmdServerAuth(arg)
	case equalFold(verb, "VRFY"):
		if len(arg) == 0 {
			c.fail(501, "5.5.4", "Syntax: VRFY address")
			return
		}
		c.writeReply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
	case equalFold(verb, "HELP"):
		c.writeReply(214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH")
	case equalFold(verb, "EXPN"), equalFold(verb, "BDAT"), equalFold(verb, "ETRN"),
		equalFold(verb, "TURN"), equalFold(verb, "SEND"), equalFold(verb, "SOML"), equalFold(verb, "SAML"):
		c.writeReply(502, "5.5.1", "Command not implemented")
	case equalFold(verb, "GET"), equalFold(verb, "POST"), equalFold(verb, "CONNECT"),
		equalFold(verb, "HEAD"), equalFold(verb, "PUT"):
		// A web browser or proxy talking to us (cross-protocol attack):
		// end at once, as Postfix does.
		c.logger().Info("smtp HTTP request on SMTP port, closing")
		c.writeReply(421, "4.7.0", "HTTP requests not accepted, closing connection")
		c.closing = true
	default:
		c.fail(500, "5.5.2", "Command unrecognized")
	}
}

// logCommand logs a command at debug level, quoted and truncated; only
// the mechanism of AUTH.
func (c *conn) logCommand(verb, arg []byte) {
	if equalFold(verb, "AUTH") {
		if i := strings.IndexByte(string(arg), ' '); i >= 0 {
			arg = arg[:i]
		}
	}
	const max = 200
	if len(arg) > max {
		arg = arg[:max]
	}
	c.logger().Debug("smtp command", "cmd", logSafe(verb), "arg", logSafe(arg))
}

// logSafe escapes control and non-ASCII bytes of client input, Go style
// ("\x1b"), so nothing the client sends can forge a log line or a
// terminal escape.
func logSafe(b []byte) string {
	q := strconv.QuoteToASCII(string(b))
	return q[1 : len(q)-1]
}

func (c *conn) cmdHello(arg []byte, extended bool) {
	name, _ := splitVerb(arg) // the first word; some clients add more
	if len(name) == 0 {
		if extended {
			c.fail(501, "5.5.4", "Syntax: EHLO hostname")
		} else {
			c.fail(501, "5.5.4", "Syntax: HELO hostname")
		}
		return
	}
	for _, b := range name {
		if b < 0x21 || b == 0x7f {
			c.fail(501, "5.5.4", "Invalid host name")
			return
		}
	}
	if !utf8.Valid(name) {
		c.fail(501, "5.5.4", "Invalid host name")
		return
	}
	// RFC 5321 4.1.4: a new HELO/EHLO ends any transaction.
	c.resetTx()
	c.st.Hello = string(name)
	c.st.Extended = extended
	c.capsValid = false
	if err := c.sess.Hello(c.st); err != nil {
		c.st.Hello = ""
		c.st.Extended = false
		c.replyError(err, 451, "4.3.0", "Temporary local error, try again later")
		return
	}
	caps := c.capabilities()
	if !extended {
		c.writeReply(250, "", c.domain)
		return
	}
	lines := make([]string, 0, 10)
	lines = append(lines, c.domain, "PIPELINING", "SIZE "+strconv.FormatInt(caps.MaxSize, 10),
		"8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8")
	if caps.DSN {
		lines = append(lines, "DSN")
	}
	if caps.StartTLS {
		lines = append(lines, "STARTTLS")
	}
	if caps.RequireTLS && c.st.TLS != nil {
		lines = append(lines, "REQUIRETLS")
	}
	if caps.AnonymousTLS {
		lines = append(lines, "X-ANONYMOUSTLS")
	}
	if caps.authOffered(&c.st) {
		lines = append(lines, "AUTH "+strings.Join(caps.AuthMechanisms, " "))
	}
	if _, ok := c.sess.(ServerAuthenticator); ok && len(caps.ServerAuth) > 0 && c.st.AnonymousTLS && c.st.AuthMechanism == "" {
		lines = append(lines, "X-EXPS "+strings.Join(caps.ServerAuth, " "))
	}
	c.writeMultiline(250, "", lines)
}

func (c *conn) cmdMail(arg []byte) {
	if c.st.Hello == "" {
		c.fail(503, "5.5.1", "Send HELO/EHLO first")
		return
	}
	if c.st.InTransaction {
		c.fail(503, "5.5.1", "Nested MAIL command")
		return
	}
	if !hasPrefixFold(arg, "FROM:") {
		c.fail(501, "5.5.4", "Syntax: MAIL FROM:<address>")
		return
	}
	path, params, ok := splitPath(arg[len("FROM:"):])
	if !ok {
		c.fail(501, "5.5.4", "Syntax: MAIL FROM:<address>")
		return
	}
	from, ok := parseAddress(path, true, false)
	if !ok {
		c.fail(501, "5.1.7", "Bad sender address syntax")
		return
	}
	caps := c.capabilities()
	opts, perr := parseMailParams(params, caps.DSN, caps.RequireTLS)
	if perr == nil && opts.RequireTLS && c.st.TLS == nil {
		perr = Reply(530, "5.7.10", "REQUIRETLS needs TLS: run STARTTLS first")
	}
	if perr != nil {
		c.fail(perr.Code, perr.Enhanced, perr.Message)
		return
	}
	if !opts.SMTPUTF8 && !isASCII(from) {
		c.fail(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
		return
	}
	if opts.Size > caps.MaxSize {
		c.writeReply(552, "5.3.4", "Message size exceeds fixed maximum message size")
		c.limitReached(LimitMessageSize, strconv.FormatInt(caps.MaxSize, 10))
		return
	}
	if err := c.sess.Mail(c.st, from, opts); err != nil {
		c.replyError(err, 451, "4.3.0", "Temporary local error, try again later")
		return
	}
	c.st.InTransaction = true
	c.st.MailFrom = from
	c.st.Mail = opts
	c.st.Rcpts = nil
	c.rcptTried = false
	clear(c.rcptSet)
	c.rcptCapHit = false
	c.maxSize = caps.MaxSize
	c.writeReply(250, "2.1.0", "OK")
}

func (c *conn) cmdRcpt(arg []byte) {
	if !c.st.InTransaction {
		c.fail(503, "5.5.1", "Need MAIL before RCPT")
		return
	}
	c.rcptTried = true
	if !hasPrefixFold(arg, "TO:") {
		c.fail(501, "5.5.4", "Syntax: RCPT TO:<address>")
		return
	}
	path, params, ok := splitPath(arg[len("TO:"):])
	if !ok {
		c.fail(501, "5.5.4", "Syntax: RCPT TO:<address>")
		return
	}
	to, ok := parseAddress(path, false, true)
	if !ok {
		c.fail(501, "5.1.3", "Bad recipient address syntax")
		return
	}
	opts, perr := parseRcptParams(params, c.capabilities().DSN)
	if perr != nil {
		c.fail(perr.Code, perr.Enhanced, perr.Message)
		return
	}
	if !c.st.Mail.SMTPUTF8 && !isASCII(to) {
		c.fail(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
		return
	}
	// A recipient given twice is accepted once: it neither makes a
	// second copy nor counts twice towards the limit.
	key := rcptKey(to)
	if _, dup := c.rcptSet[key]; dup {
		c.writeReply(250, "2.1.5", "OK, duplicate recipient, delivered once")
		return
	}
	if len(c.st.Rcpts) >= c.lim.maxRcpts {
		// RFC 5321 4.5.3.1.10: 452, and the client sends the rest in
		// another transaction.
		c.writeReply(452, "4.5.3", "Too many recipients, at most "+strconv.Itoa(c.lim.maxRcpts)+" per message; send the others in another message")
		if !c.rcptCapHit {
			c.rcptCapHit = true
			c.limitReached(LimitRecipients, strconv.Itoa(c.lim.maxRcpts))
		}
		return
	}
	if err := c.sess.Rcpt(c.st, to, opts); err != nil {
		if errors.Is(err, ErrDuplicateRecipient) {
			c.writeReply(250, "2.1.5", "OK, duplicate recipient, delivered once")
			return
		}
		c.replyError(err, 451, "4.3.0", "Temporary local error, try again later")
		return
	}
	c.st.Rcpts = append(c.st.Rcpts, to)
	if c.rcptSet == nil {
		c.rcptSet = make(map[string]struct{})
	}
	c.rcptSet[key] = struct{}{}
	c.writeReply(250, "2.1.5", "OK")
}

func (c *conn) cmdData(arg []byte) {
	if len(arg) > 0 {
		c.fail(501, "5.5.4", "Syntax: DATA")
		return
	}
	if !c.st.InTransaction {
		c.fail(503, "5.5.1", "Need MAIL command")
		return
	}
	if len(c.st.Rcpts) == 0 {
		if c.rcptTried {
			// RFC 2920 3.1: the client pipelined DATA after RCPTs that
			// all failed.
			c.writeReply(554, "5.5.1", "No valid recipients")
		} else {
			c.fail(503, "5.5.1", "Need RCPT command")
		}
		return
	}
	c.writeReply(354, "", "End data with <CR><LF>.<CR><LF>")

	c.dr.reset(c.br, c.maxSize, c.cfg.maxDataLine)
	c.dataMode = true
	c.messageEnd = time.Now().Add(c.lim.messageTimeout)
	id, err := c.sess.Data(c.st, &c.dr)
	readAll := c.dr.done
	contentErr, ioErr := c.dr.finish()
	c.dataMode = false
	c.dr.br = nil

	switch {
	case ioErr != nil:
		c.closing = true
		if isTimeout(ioErr) {
			c.timeLimit(c.readCause, true) // the message is discarded
		} else {
			c.logger().Info("smtp connection lost during DATA, message discarded", "err", ioErr)
			c.closeHard = true
		}
		if err == nil {
			c.logger().Error("smtp Session.Data ignored a reader error", "err", ioErr)
		}
	case contentErr != nil:
		if err == nil {
			c.logger().Error("smtp Session.Data ignored a reader error", "err", contentErr)
		}
		switch {
		case errors.Is(contentErr, ErrMessageTooLarge):
			c.writeReply(552, "5.3.4", "Message size exceeds fixed maximum message size")
			c.limitReached(LimitMessageSize, strconv.FormatInt(c.maxSize, 10))
		case errors.Is(contentErr, ErrBareNewline):
			c.writeReply(550, "5.6.0", "Message contains bare CR or LF; lines must end with CRLF")
		case errors.Is(contentErr, ErrDataLineTooLong):
			c.writeReply(554, "5.6.0", "Message contains a line longer than "+strconv.Itoa(c.cfg.maxDataLine)+" octets")
		default:
			c.writeReply(451, "4.3.0", "Temporary local error, try again later")
		}
	case err != nil:
		c.replyError(err, 451, "4.3.0", "Temporary local error, try again later")
	case !readAll:
		c.logger().Error("smtp Session.Data returned success without reading the message to its end")
		c.writeReply(451, "4.3.0", "Temporary local error, try again later")
	case id != "":
		c.writeReply(250, "2.0.0", "OK queued as "+sanitizeText(id))
	default:
		c.writeReply(250, "2.0.0", "OK")
	}
	c.resetTx()
}

func (c *conn) cmdStartTLS(ctx context.Context, arg []byte, anonymous bool) {
	verb := "STARTTLS"
	if anonymous {
		verb = "X-ANONYMOUSTLS"
	}
	if len(arg) > 0 {
		c.fail(501, "5.5.4", "Syntax: "+verb)
		return
	}
	if c.st.TLS != nil {
		c.fail(503, "5.5.1", "TLS already active")
		return
	}
	caps := c.capabilities()
	if (!anonymous && !caps.StartTLS) || (anonymous && !caps.AnonymousTLS) {
		c.fail(502, "5.5.1", "Command not implemented")
		return
	}
	if c.st.InTransaction {
		c.fail(503, "5.5.1", "Mail transaction in progress")
		return
	}
	cfg, err := c.sess.TLSConfig(c.st, anonymous)
	if err != nil || cfg == nil {
		if err != nil {
			var re *ReplyError
			if errors.As(err, &re) {
				c.replyError(err, 454, "4.7.0", "TLS not available")
				return
			}
			c.logger().Warn("smtp no TLS configuration", "err", err, "anonymous", anonymous)
		}
		c.writeReply(454, "4.7.0", "TLS not available")
		return
	}
	if !c.startTLS(ctx, cfg, anonymous) {
		c.closing = true
	}
}
