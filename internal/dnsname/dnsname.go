// Package dnsname normalises the DNS names that enter certrelay — the
// domains of certificates and requests, server FQDNs and load-balancer
// names, connector FQDNs, accepted domains, the names administrators
// search for — once, where they enter (SPEC P3): compared
// case-insensitively, written lower-case, without a trailing dot, and
// internationalised names as A-labels (IDNA 2008 with the UTS #46 lookup
// mapping, RFC 5891). Everything past an entry point holds a Name and can
// compare names as plain strings.
//
// A wildcard is allowed only as the whole leftmost label of a name that
// has at least two labels ("*.contoso.com"), and only where the caller
// asks for it (certificate domains). Single-label names (a NetBIOS-style
// host name such as the seeds' "server1") are allowed.
package dnsname

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Name is a normalised DNS name.
type Name string

// String returns the name.
func (n Name) String() string { return string(n) }

// IsWildcard reports whether the name's leftmost label is "*".
func (n Name) IsWildcard() bool { return strings.HasPrefix(string(n), "*.") }

// ErrInvalid is wrapped by every error of Parse and ParseHost.
var ErrInvalid = errors.New("invalid domain name")

var profile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false))

// Parse normalises a name that may be a wildcard (a certificate's
// domain). The error names the problem and what a valid name looks like.
func Parse(s string) (Name, error) { return parse(s, true) }

// ParseHost normalises a host or domain name; wildcards are refused.
func ParseHost(s string) (Name, error) { return parse(s, false) }

func parse(s string, wildcard bool) (Name, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: a name is empty (a stray comma, or an empty value?)", ErrInvalid)
	}
	if strings.HasSuffix(s, "..") {
		return "", fmt.Errorf("%w: %q has an empty label (two dots in a row)", ErrInvalid, orig)
	}
	s = strings.TrimSuffix(s, ".") // the root label: mail.contoso.com. is mail.contoso.com
	prefix := ""
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		if !wildcard {
			return "", fmt.Errorf("%w: %q is a wildcard, and a host name is needed here", ErrInvalid, orig)
		}
		prefix, s = "*.", rest
	}
	ascii := strings.ToLower(s)
	if !isASCII(s) {
		a, err := profile.ToASCII(s)
		if err != nil {
			return "", fmt.Errorf("%w: %q is not a valid internationalised name: %v", ErrInvalid, orig, err)
		}
		ascii = a
	}
	if err := checkLDH(ascii); err != nil {
		return "", fmt.Errorf("%w: %q %v", ErrInvalid, orig, err)
	}
	if prefix != "" && !strings.Contains(ascii, ".") {
		return "", fmt.Errorf("%w: %q: a wildcard needs at least two labels after it, as in *.contoso.com", ErrInvalid, orig)
	}
	n := prefix + ascii
	if len(n) > 253 {
		return "", fmt.Errorf("%w: %q is longer than 253 characters", ErrInvalid, orig)
	}
	return Name(n), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// checkLDH checks letters, digits and hyphens in labels of 1 to 63
// characters, no label starting or ending with a hyphen.
func checkLDH(s string) error {
	for _, l := range strings.Split(s, ".") {
		if l == "" {
			return errors.New("has an empty label (two dots in a row, or a leading dot)")
		}
		if len(l) > 63 {
			return errors.New("has a label longer than 63 characters")
		}
		for _, r := range l {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z') {
				if r == '*' {
					return errors.New("has a '*' that is not the whole leftmost label: a wildcard is written *.contoso.com")
				}
				return fmt.Errorf("contains %q: use only letters, digits, hyphens and dots", r)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("has a label that starts or ends with a hyphen")
		}
	}
	return nil
}

// ParseList normalises every name of list, in order, without duplicates.
// The first bad name fails the whole list.
func ParseList(list []string, wildcard bool) ([]Name, error) {
	out := make([]Name, 0, len(list))
	seen := make(map[Name]bool, len(list))
	for _, s := range list {
		n, err := parse(s, wildcard)
		if err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// Strings returns the names as strings.
func Strings(names []Name) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = string(n)
	}
	return out
}
