package smtp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ReplyError is an SMTP reply used as a Go error, in both directions:
//
//   - on the server side, a Session method returns a *ReplyError to choose
//     the exact reply the client gets (for example 550 5.1.1 for an unknown
//     recipient); any other error becomes 451 4.3.0 with a generic text and
//     is logged in full, never shown to the client;
//   - on the client side, every negative reply of the peer comes back as a
//     *ReplyError, so callers can tell a retry (Temporary) from a bounce
//     (Permanent).
//
// Err, when set, is the cause for logs: it is never sent on the wire. The
// Message is sent as is after sanitising (CR, LF and other control
// characters cannot reach the wire; a "\n" in Message makes a multi-line
// reply).
type ReplyError struct {
	Code     int    // three-digit reply code, 400-599 for errors
	Enhanced string // RFC 3463 enhanced status code such as "5.1.1"; derived from Code when empty
	Message  string // human-readable text, without code; "\n" separates lines
	Err      error  // optional cause, for logs only
}

// Error returns "smtp: 550 5.1.1 No such user" followed by the cause, if
// any. It is meant for logs: the client sees only Code, Enhanced and
// Message.
func (e *ReplyError) Error() string {
	var b strings.Builder
	b.WriteString("smtp: ")
	b.WriteString(strconv.Itoa(e.Code))
	if enh := e.enhanced(); enh != "" {
		b.WriteByte(' ')
		b.WriteString(enh)
	}
	if e.Message != "" {
		b.WriteByte(' ')
		b.WriteString(strings.ReplaceAll(e.Message, "\n", " / "))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause, so errors.Is and errors.As see through the reply.
func (e *ReplyError) Unwrap() error { return e.Err }

// Temporary reports whether the reply is a transient negative completion
// (4xx): the transaction may succeed if retried later.
func (e *ReplyError) Temporary() bool { return e.Code >= 400 && e.Code < 500 }

// Permanent reports whether the reply is a permanent negative completion
// (5xx): retrying the same transaction will fail again; bounce.
func (e *ReplyError) Permanent() bool { return e.Code >= 500 && e.Code < 600 }

// enhanced returns the enhanced code to send: e.Enhanced when it is well
// formed and of the same class as Code, otherwise "c.0.0".
func (e *ReplyError) enhanced() string {
	if validEnhanced(e.Enhanced) && e.Code/100 == int(e.Enhanced[0]-'0') {
		return e.Enhanced
	}
	switch e.Code / 100 {
	case 2:
		return "2.0.0"
	case 4:
		return "4.0.0"
	case 5:
		return "5.0.0"
	}
	return ""
}

// Reply returns a *ReplyError with the given code, enhanced code and text.
func Reply(code int, enhanced, message string) *ReplyError {
	return &ReplyError{Code: code, Enhanced: enhanced, Message: message}
}

// Replyf is Reply with a formatted message. To keep a cause for the logs
// without showing it to the peer, set Err on the result.
func Replyf(code int, enhanced, format string, args ...any) *ReplyError {
	return &ReplyError{Code: code, Enhanced: enhanced, Message: fmt.Sprintf(format, args...)}
}

// Errors a Session commonly returns. They are values shared by every
// caller: do not modify them; wrap a cause with Replyf or a new ReplyError.
var (
	// ErrAuthFailed is the RFC 4954 reply for wrong credentials.
	ErrAuthFailed = Reply(535, "5.7.8", "Authentication credentials invalid")
	// ErrMailboxUnavailable rejects an unknown recipient.
	ErrMailboxUnavailable = Reply(550, "5.1.1", "Mailbox unavailable")
	// ErrRelayDenied rejects a recipient the server will not relay for.
	ErrRelayDenied = Reply(550, "5.7.1", "Relaying denied")
	// ErrTLSRequired rejects a command that needs TLS first.
	ErrTLSRequired = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
	// ErrTemporary is a generic transient local failure.
	ErrTemporary = Reply(451, "4.3.0", "Temporary local error, try again later")
)

// Errors the data reader passed to Session.Data returns. Data must return
// them (or any error wrapping them) unchanged; the server picks the reply.
var (
	// ErrMessageTooLarge: the message grew past the session's SIZE limit.
	// The server reads on to the end of the data and replies 552 5.3.4.
	ErrMessageTooLarge = errors.New("smtp: message exceeds the maximum message size")
	// ErrBareNewline: the message contains a CR or LF that is not part of
	// a CRLF pair. The server reads on to the real CRLF.CRLF and replies
	// 550 5.6.0 (see the package documentation on SMTP smuggling).
	ErrBareNewline = errors.New("smtp: message contains a bare CR or LF")
	// ErrDataLineTooLong: a text line is longer than Server.MaxDataLineLength.
	// The server reads on to the end of the data and replies 554 5.6.0.
	ErrDataLineTooLong = errors.New("smtp: message line too long")
)

// validEnhanced reports whether s looks like "c.sss.ddd" with c in 2, 4, 5
// (RFC 3463: subject and detail of 1 to 3 digits).
func validEnhanced(s string) bool {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return false
	}
	parts := 0
	digits := 0
	for i := 2; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			if digits > 3 {
				return false
			}
		case c == '.':
			if digits == 0 {
				return false
			}
			parts++
			digits = 0
		default:
			return false
		}
	}
	return parts == 1 && digits > 0
}

// sanitizeText makes s safe to put on a reply line: control characters
// (including CR and LF) become spaces and non-ASCII bytes become '?', since
// reply text is ASCII (RFC 5321 4.2).
func sanitizeText(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c < 0x20 || c == 0x7f:
			b[i] = ' '
		case c >= 0x80:
			b[i] = '?'
		}
	}
	return string(b)
}

// parseReplyLine splits one reply line "250-text" into code, continuation
// flag and text. ok is false when the line is not a reply line.
func parseReplyLine(line string) (code int, more bool, text string, ok bool) {
	if len(line) < 3 {
		return 0, false, "", false
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, false, "", false
		}
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if code < 200 || code > 599 {
		return 0, false, "", false
	}
	if len(line) == 3 {
		return code, false, "", true
	}
	switch line[3] {
	case ' ':
	case '-':
		more = true
	default:
		return 0, false, "", false
	}
	return code, more, line[4:], true
}

// splitEnhanced separates a leading enhanced status code of the same class
// as code from text.
func splitEnhanced(code int, text string) (enhanced, rest string) {
	end := strings.IndexByte(text, ' ')
	cand := text
	if end >= 0 {
		cand = text[:end]
	}
	if validEnhanced(cand) && int(cand[0]-'0') == code/100 {
		if end < 0 {
			return cand, ""
		}
		return cand, text[end+1:]
	}
	return "", text
}
