package main

import (
	"strconv"
	"time"
	"unicode/utf8"

	"certrelay/internal/admin"
	"certrelay/internal/store"
)

// appendCertificateJSON appends c as encoding/json writes it with
// SetEscapeHTML(false) and SetIndent(prefix, "  "), without reflection:
// a listing of 10,000 certificates spent most of its time in
// encoding/json. TestCertificateJSONIsEncodingJSONs holds it to
// encoding/json's bytes, for every field; a field added to
// certview.Certificate fails that test until it is written here.
func appendCertificateJSON(b []byte, c *admin.Certificate, prefix string) []byte {
	o := jsonObject{b: b, prefix: prefix, depth: 1}
	o.b = append(o.b, '{')
	o.str("Thumbprint", c.Thumbprint)
	o.str("Subject", c.Subject)
	o.str("Issuer", c.Issuer)
	o.strs("CertificateDomains", c.CertificateDomains)
	o.time("NotBefore", c.NotBefore)
	o.time("NotAfter", c.NotAfter)
	o.bool("IsSelfSigned", c.IsSelfSigned)
	o.str("RootCAType", string(c.RootCAType))
	o.strs("Services", c.Services)
	o.str("Status", string(c.Status))
	o.bool("HasPrivateKey", c.HasPrivateKey)
	o.int("PublicKeySize", c.PublicKeySize)
	o.str("SerialNumber", c.SerialNumber)
	o.str("FriendlyName", c.FriendlyName)
	o.bool("PrivateKeyExportable", c.PrivateKeyExportable)
	o.rules("AccessRules", c.AccessRules)
	o.str("CertificateRequest", c.CertificateRequest)
	o.str("KeyAlgorithm", c.KeyAlgorithm)
	o.bool("IsInternalTransportCertificate", c.IsInternalTransportCertificate)
	if c.StatusDetail != "" {
		o.str("StatusDetail", c.StatusDetail)
	}
	if c.Fix != "" {
		o.str("Fix", c.Fix)
	}
	o.depth--
	o.newline()
	return append(o.b, '}')
}

// jsonObject writes the members of an indented JSON object.
type jsonObject struct {
	b      []byte
	prefix string
	depth  int
	n      int // members written at this depth
}

func (o *jsonObject) newline() {
	o.b = append(o.b, '\n')
	o.b = append(o.b, o.prefix...)
	for i := 0; i < o.depth; i++ {
		o.b = append(o.b, "  "...)
	}
}

func (o *jsonObject) key(k string) {
	if o.n > 0 {
		o.b = append(o.b, ',')
	}
	o.n++
	o.newline()
	o.b = appendJSONString(o.b, k)
	o.b = append(o.b, ": "...)
}

func (o *jsonObject) str(k, v string) { o.key(k); o.b = appendJSONString(o.b, v) }

func (o *jsonObject) bool(k string, v bool) { o.key(k); o.b = strconv.AppendBool(o.b, v) }

func (o *jsonObject) int(k string, v int) { o.key(k); o.b = strconv.AppendInt(o.b, int64(v), 10) }

func (o *jsonObject) time(k string, t *time.Time) {
	o.key(k)
	if t == nil {
		o.b = append(o.b, "null"...)
		return
	}
	o.b = append(o.b, '"')
	o.b = t.AppendFormat(o.b, time.RFC3339Nano)
	o.b = append(o.b, '"')
}

func (o *jsonObject) strs(k string, vs []string) {
	o.key(k)
	switch {
	case vs == nil:
		o.b = append(o.b, "null"...)
		return
	case len(vs) == 0:
		o.b = append(o.b, "[]"...)
		return
	}
	o.b = append(o.b, '[')
	o.depth++
	for i, v := range vs {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.newline()
		o.b = appendJSONString(o.b, v)
	}
	o.depth--
	o.newline()
	o.b = append(o.b, ']')
}

func (o *jsonObject) rules(k string, rs []store.AccessRule) {
	o.key(k)
	switch {
	case rs == nil:
		o.b = append(o.b, "null"...)
		return
	case len(rs) == 0:
		o.b = append(o.b, "[]"...)
		return
	}
	o.b = append(o.b, '[')
	o.depth++
	for i, r := range rs {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.newline()
		in := jsonObject{b: append(o.b, '{'), prefix: o.prefix, depth: o.depth + 1}
		in.str("Account", r.Account)
		in.str("Kind", r.Kind)
		in.str("Rights", r.Rights)
		in.depth--
		in.newline()
		o.b = append(in.b, '}')
	}
	o.depth--
	o.newline()
	o.b = append(o.b, ']')
}

// appendJSONString appends s as encoding/json quotes a string without
// HTML escaping: '"', '\\' and control characters escaped, invalid UTF-8
// as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
