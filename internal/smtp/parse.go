package smtp

import (
	"bytes"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// Parsers for command arguments. They work on the line's bytes and
// allocate only for the strings they return.

// equalFold reports whether s equals t, ASCII case-insensitively.
func equalFold[S ~string | ~[]byte](s S, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(t); i++ {
		a, b := s[i], t[i]
		if a == b {
			continue
		}
		if 'a' <= a && a <= 'z' {
			a -= 'a' - 'A'
		}
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// hasPrefixFold reports whether b starts with prefix, ASCII case-insensitively.
func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && equalFold(b[:len(prefix)], prefix)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// splitVerb splits a command line into its verb and its argument, with the
// blanks between them removed.
func splitVerb(line []byte) (verb, arg []byte) {
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return line, nil
	}
	arg = line[i+1:]
	for len(arg) > 0 && (arg[0] == ' ' || arg[0] == '\t') {
		arg = arg[1:]
	}
	return line[:i], arg
}

// splitPath takes the argument of MAIL or RCPT after "FROM:" or "TO:" and
// returns the path (without angle brackets) and the parameters. Blanks
// after the colon and a path without brackets are tolerated, as most MTAs
// do (RFC 5321 4.1.2 allows neither).
func splitPath(arg []byte) (path, params []byte, ok bool) {
	for len(arg) > 0 && arg[0] == ' ' {
		arg = arg[1:]
	}
	if len(arg) == 0 {
		return nil, nil, false
	}
	if arg[0] != '<' {
		if i := bytes.IndexByte(arg, ' '); i >= 0 {
			return arg[:i], arg[i+1:], len(arg[:i]) > 0 && bytes.IndexByte(arg[:i], '>') < 0
		}
		return arg, nil, bytes.IndexByte(arg, '>') < 0
	}
	// Find the closing bracket, skipping quoted strings, where '>' may occur.
	inQuote := false
	for i := 1; i < len(arg); i++ {
		switch c := arg[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '<':
			return nil, nil, false
		case !inQuote && c == '>':
			rest := arg[i+1:]
			if len(rest) > 0 && rest[0] != ' ' {
				return nil, nil, false
			}
			return arg[1:i], rest, true
		}
	}
	return nil, nil, false
}

// parseAddress checks a path (without brackets) and returns the mailbox,
// source route removed. "" is the null path, allowed only when allowNull;
// a bare "postmaster" only when allowPostmaster. Non-ASCII must be valid
// UTF-8; whether it is allowed at all is the caller's business (SMTPUTF8).
func parseAddress(path []byte, allowNull, allowPostmaster bool) (string, bool) {
	if len(path) > 0 && path[0] == '@' {
		// Source route "@a,@b:" (RFC 5321 4.1.2, C.6): ignored.
		i := bytes.IndexByte(path, ':')
		if i < 0 || !validRoute(path[:i]) {
			return "", false
		}
		path = path[i+1:]
	}
	if len(path) == 0 {
		return "", allowNull
	}
	if allowPostmaster && equalFold(path, "postmaster") {
		return string(path), true
	}
	if !utf8.Valid(path) {
		return "", false
	}
	var at int
	if path[0] == '"' {
		end := quotedEnd(path)
		if end < 0 || end >= len(path) || path[end] != '@' {
			return "", false
		}
		at = end
	} else {
		at = bytes.IndexByte(path, '@')
		if at <= 0 || !validDotString(path[:at]) {
			return "", false
		}
	}
	if !validDomainOrLiteral(path[at+1:]) {
		return "", false
	}
	return string(path), true
}

// validRoute checks "@a,@b".
func validRoute(r []byte) bool {
	for _, hop := range bytes.Split(r, []byte{','}) {
		if len(hop) < 2 || hop[0] != '@' || !validDomain(hop[1:]) {
			return false
		}
	}
	return true
}

// quotedEnd returns the index just after the quoted string that starts
// path, or -1.
func quotedEnd(path []byte) int {
	for i := 1; i < len(path); i++ {
		switch c := path[i]; {
		case c == '\\':
			if i+1 >= len(path) || path[i+1] < 0x20 || path[i+1] == 0x7f {
				return -1
			}
			i++
		case c == '"':
			if i == 1 {
				return -1 // empty local part
			}
			return i + 1
		case c < 0x20 || c == 0x7f:
			return -1
		}
	}
	return -1
}

// validDotString accepts atext, dots and UTF-8. Dots are not checked for
// placement: addresses such as "a..b" and "a." exist in the wild (old
// mobile carriers) and refusing them helps no one.
func validDotString(s []byte) bool {
	for _, c := range s {
		if c >= 0x80 || c == '.' || isAtext(c) {
			continue
		}
		return false
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '/', '=', '?', '^', '_', '`', '{', '|', '}', '~':
		return true
	}
	return false
}

func validDomainOrLiteral(d []byte) bool {
	if len(d) > 0 && d[0] == '[' {
		return validLiteral(d)
	}
	return validDomain(d)
}

// validDomain accepts dot-separated labels of letters, digits, '-', '_'
// (seen in real host names) and UTF-8 (U-labels, RFC 6531).
func validDomain(d []byte) bool {
	if len(d) == 0 || len(d) > 255 {
		return false
	}
	label := 0
	for _, c := range d {
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case c >= 0x80, c == '-', c == '_',
			'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

// validLiteral accepts "[192.0.2.1]" and "[IPv6:2001:db8::1]" (RFC 5321
// 4.1.3). General literals "[tag:content]" are refused: IPv6 is the only
// registered tag, and "[2001:db8::1]" is a common mistake.
func validLiteral(d []byte) bool {
	if len(d) < 3 || d[len(d)-1] != ']' {
		return false
	}
	in := d[1 : len(d)-1]
	if hasPrefixFold(in, "IPv6:") {
		a, err := netip.ParseAddr(string(in[5:]))
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(string(in))
	return err == nil && a.Is4()
}

// isASCII reports whether s has no byte >= 0x80.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// nextParam returns the first KEY[=VALUE] of params, which must not start
// with a blank, and the rest.
func nextParam(params []byte) (key, value, rest []byte, hasValue bool) {
	end := bytes.IndexByte(params, ' ')
	if end < 0 {
		end = len(params)
	}
	tok := params[:end]
	rest = params[end:]
	if i := bytes.IndexByte(tok, '='); i >= 0 {
		return tok[:i], tok[i+1:], rest, true
	}
	return tok, nil, rest, false
}

// Replies for parameter errors.
var (
	errParamSyntax      = Reply(501, "5.5.4", "Syntax error in parameters")
	errParamUnsupported = Reply(555, "5.5.4", "Unsupported parameter")
)

// parseMailParams parses MAIL FROM's parameters (RFC 1870, 6152, 6531,
// 3461, 4954, 8689). DSN parameters are accepted only when dsn is set,
// REQUIRETLS only when requireTLS is.
func parseMailParams(params []byte, dsn, requireTLS bool) (MailOptions, *ReplyError) {
	var o MailOptions
	for {
		params = bytes.TrimLeft(params, " ")
		if len(params) == 0 {
			return o, nil
		}
		key, val, rest, hasVal := nextParam(params)
		params = rest
		if len(key) == 0 {
			return o, errParamSyntax
		}
		switch {
		case equalFold(key, "SIZE"):
			n, err := strconv.ParseInt(string(val), 10, 64)
			if !hasVal || len(val) > 20 || err != nil || n < 0 {
				return o, Reply(501, "5.5.4", "Bad SIZE parameter")
			}
			o.Size = n
		case equalFold(key, "BODY"):
			switch {
			case equalFold(val, "7BIT"):
				o.Body = "7BIT"
			case equalFold(val, "8BITMIME"):
				o.Body = "8BITMIME"
			case equalFold(val, "BINARYMIME"):
				return o, Reply(555, "5.5.4", "BODY=BINARYMIME not supported")
			default:
				return o, Reply(501, "5.5.4", "Bad BODY parameter")
			}
		case equalFold(key, "SMTPUTF8"):
			if hasVal {
				return o, errParamSyntax
			}
			o.SMTPUTF8 = true
		case requireTLS && equalFold(key, "REQUIRETLS"):
			if hasVal {
				return o, errParamSyntax
			}
			o.RequireTLS = true
		case equalFold(key, "AUTH"):
			if string(val) == "<>" {
				o.Auth = "<>"
				break
			}
			s, ok := decodeXtext(val)
			if !hasVal || !ok || s == "" {
				return o, Reply(501, "5.5.4", "Bad AUTH parameter")
			}
			o.Auth = s
		case dsn && equalFold(key, "RET"):
			switch {
			case equalFold(val, "FULL"):
				o.Ret = "FULL"
			case equalFold(val, "HDRS"):
				o.Ret = "HDRS"
			default:
				return o, Reply(501, "5.5.4", "Bad RET parameter")
			}
		case dsn && equalFold(key, "ENVID"):
			s, ok := decodeXtext(val)
			if !hasVal || !ok || s == "" || len(val) > 100 {
				return o, Reply(501, "5.5.4", "Bad ENVID parameter")
			}
			o.EnvID = s
		default:
			return o, errParamUnsupported
		}
	}
}

// parseRcptParams parses RCPT TO's parameters (RFC 3461).
func parseRcptParams(params []byte, dsn bool) (RcptOptions, *ReplyError) {
	var o RcptOptions
	for {
		params = bytes.TrimLeft(params, " ")
		if len(params) == 0 {
			return o, nil
		}
		key, val, rest, hasVal := nextParam(params)
		params = rest
		if len(key) == 0 {
			return o, errParamSyntax
		}
		switch {
		case dsn && equalFold(key, "NOTIFY"):
			n, ok := parseNotify(val)
			if !hasVal || !ok {
				return o, Reply(501, "5.5.4", "Bad NOTIFY parameter")
			}
			o.Notify = n
		case dsn && equalFold(key, "ORCPT"):
			i := bytes.IndexByte(val, ';')
			if !hasVal || i <= 0 {
				return o, Reply(501, "5.5.4", "Bad ORCPT parameter")
			}
			s, ok := decodeXtext(val[i+1:])
			if !ok || s == "" || !validAtomString(val[:i]) {
				return o, Reply(501, "5.5.4", "Bad ORCPT parameter")
			}
			o.ORcptType = string(val[:i])
			o.ORcpt = s
		default:
			return o, errParamUnsupported
		}
	}
}

func validAtomString(b []byte) bool {
	for _, c := range b {
		if !isAtext(c) {
			return false
		}
	}
	return len(b) > 0
}

func parseNotify(v []byte) (Notify, bool) {
	if equalFold(v, "NEVER") {
		return NotifyNever, true
	}
	var n Notify
	for _, part := range bytes.Split(v, []byte{','}) {
		switch {
		case equalFold(part, "SUCCESS"):
			n |= NotifySuccess
		case equalFold(part, "FAILURE"):
			n |= NotifyFailure
		case equalFold(part, "DELAY"):
			n |= NotifyDelay
		default:
			return 0, false
		}
	}
	return n, true
}

// decodeXtext decodes RFC 3461 4 xtext ("+2B" for '+').
func decodeXtext(b []byte) (string, bool) {
	if bytes.IndexByte(b, '+') < 0 {
		for _, c := range b {
			if c < 33 || c > 126 || c == '=' {
				return "", false
			}
		}
		return string(b), true
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '+':
			if i+2 >= len(b) {
				return "", false
			}
			h, ok1 := unhex(b[i+1])
			l, ok2 := unhex(b[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			out = append(out, h<<4|l)
			i += 2
		case c < 33 || c > 126 || c == '=':
			return "", false
		default:
			out = append(out, c)
		}
	}
	return string(out), true
}

// encodeXtext is the inverse of decodeXtext.
func encodeXtext(s string) string {
	const hexdigits = "0123456789ABCDEF"
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '+' || c == '=' {
			out = append(out, '+', hexdigits[c>>4], hexdigits[c&15])
			continue
		}
		out = append(out, c)
	}
	return string(out)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
