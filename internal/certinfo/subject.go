package certinfo

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// subjectAttributes maps the attribute keys accepted in a subject string
// (case-insensitive) to their OIDs. The seeds list C, ST, L, O, OU and CN;
// the rest are the usual extras CAs ask for.
var subjectAttributes = map[string]asn1.ObjectIdentifier{
	"c":            {2, 5, 4, 6},
	"st":           {2, 5, 4, 8},
	"s":            {2, 5, 4, 8},
	"l":            {2, 5, 4, 7},
	"o":            {2, 5, 4, 10},
	"ou":           {2, 5, 4, 11},
	"cn":           {2, 5, 4, 3},
	"street":       {2, 5, 4, 9},
	"postalcode":   {2, 5, 4, 17},
	"serialnumber": {2, 5, 4, 5},
	"title":        {2, 5, 4, 12},
	"dc":           {0, 9, 2342, 19200300, 100, 1, 25},
	"e":            {1, 2, 840, 113549, 1, 9, 1},
	"email":        {1, 2, 840, 113549, 1, 9, 1},
	"emailaddress": {1, 2, 840, 113549, 1, 9, 1},
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}
var oidCountry = asn1.ObjectIdentifier{2, 5, 4, 6}

// SubjectKeys lists the attribute keys ParseSubject accepts, for messages.
func SubjectKeys() []string {
	keys := make([]string, 0, len(subjectAttributes))
	for k := range subjectAttributes {
		keys = append(keys, strings.ToUpper(k))
	}
	sort.Strings(keys)
	return keys
}

// Subject is a parsed X.500 name, kept in the order its attributes will
// take in the certificate (most significant first, as DER encodes them).
type Subject struct {
	RDNs pkix.RDNSequence
}

// CommonName returns the last CN attribute's value, or "".
func (s Subject) CommonName() string {
	cn := ""
	for _, rdn := range s.RDNs {
		for _, atv := range rdn {
			if atv.Type.Equal(oidCommonName) {
				cn, _ = atv.Value.(string)
			}
		}
	}
	return cn
}

// String returns the name in RFC 4514 form (least significant first), as
// certificates print it.
func (s Subject) String() string { return s.RDNs.String() }

// DER returns the DER encoding of the name, for RawSubject.
func (s Subject) DER() ([]byte, error) { return asn1.Marshal(s.RDNs) }

// CommonNameSubject returns the subject "CN=name".
func CommonNameSubject(name string) Subject {
	return Subject{RDNs: pkix.RDNSequence{{{Type: oidCommonName, Value: name}}}}
}

// ErrSubject is wrapped by every error ParseSubject returns.
var ErrSubject = errors.New("invalid subject")

// ParseSubject reads an X.500 subject such as
// "c=us,o=contoso corp, cn=popserver.fourthcoffee.com" (SPEC C2): keys are
// case-insensitive, spaces around commas and equal signs are tolerated,
// values may be double-quoted or use backslash escapes to hold commas.
//
// Order: a string that starts with CN (or E) is read as RFC 4514 writes
// names, least significant first, and reversed; any other string is read
// as written, most significant first, as in the seeds' example. Either way
// the certificate carries C before O before CN.
func ParseSubject(s string) (Subject, error) {
	if strings.TrimSpace(s) == "" {
		return Subject{}, fmt.Errorf("%w: it is empty: write it as c=US,o=Organisation,cn=host.example.com", ErrSubject)
	}
	parts, err := splitUnescaped(s, ',')
	if err != nil {
		return Subject{}, err
	}
	var seq pkix.RDNSequence
	var firstKey string
	for i, part := range parts {
		key, value, ok := strings.Cut(part, "=")
		if !ok {
			return Subject{}, fmt.Errorf("%w: %q has no '=': each part is KEY=value, such as o=Contoso", ErrSubject, strings.TrimSpace(part))
		}
		key = strings.ToLower(strings.TrimSpace(key))
		oid, known := subjectAttributes[key]
		if !known {
			return Subject{}, fmt.Errorf("%w: unknown attribute %q: use one of %s", ErrSubject, strings.TrimSpace(part[:strings.Index(part, "=")]), strings.Join(SubjectKeys(), ", "))
		}
		v, err := unquote(strings.TrimSpace(value))
		if err != nil {
			return Subject{}, fmt.Errorf("%w: attribute %s: %v", ErrSubject, strings.ToUpper(key), err)
		}
		if v == "" {
			return Subject{}, fmt.Errorf("%w: attribute %s has an empty value", ErrSubject, strings.ToUpper(key))
		}
		if oid.Equal(oidCountry) && len(v) != 2 {
			return Subject{}, fmt.Errorf("%w: the country C=%s must be a two-letter code such as US", ErrSubject, v)
		}
		if i == 0 {
			firstKey = key
		}
		seq = append(seq, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: v}})
	}
	if len(seq) > 1 && (firstKey == "cn" || firstKey == "e" || firstKey == "email" || firstKey == "emailaddress") {
		for i, j := 0, len(seq)-1; i < j; i, j = i+1, j-1 {
			seq[i], seq[j] = seq[j], seq[i]
		}
	}
	return Subject{RDNs: seq}, nil
}

// splitUnescaped splits s at sep, honouring double quotes and backslash
// escapes.
func splitUnescaped(s string, sep rune) ([]string, error) {
	var parts []string
	var cur strings.Builder
	inQuote, escaped := false, false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune('\\')
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case r == '"':
			inQuote = !inQuote
			cur.WriteRune(r)
		case r == sep && !inQuote:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	if inQuote {
		return nil, fmt.Errorf("%w: a double quote is not closed", ErrSubject)
	}
	if escaped {
		return nil, fmt.Errorf("%w: it ends with a lone backslash", ErrSubject)
	}
	return append(parts, cur.String()), nil
}

// unquote removes surrounding double quotes and resolves backslash escapes.
func unquote(v string) (string, error) {
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("it is not valid UTF-8")
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	} else if strings.Contains(v, `"`) {
		return "", fmt.Errorf("a double quote may only surround the whole value")
	}
	var b strings.Builder
	escaped := false
	for _, r := range v {
		if escaped {
			b.WriteRune(r)
			escaped = false
			continue
		}
		if r == '\\' {
			escaped = true
			continue
		}
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("it holds a control character")
		}
		b.WriteRune(r)
	}
	return b.String(), nil
}
