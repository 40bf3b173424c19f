package selection

import "strings"

// MatchName reports whether fqdn matches one of domains (SPEC S3):
// case-insensitively, exactly, or through a wildcard "*.d" that matches any
// host ending in ".d" with at least one character before it. A search
// name that is itself a wildcard matches nothing. With
// oneLabel, the wildcard covers a single label only ("a.d", not "a.b.d"),
// as RFC 6125 and most TLS clients read it; without it, several levels
// match, as Exchange's transport does. A trailing dot on the search name
// is ignored; a certificate name with a trailing dot matches nothing, as
// no TLS client matches it (crypto/x509 and OpenSSL refuse it).
func MatchName(domains []string, fqdn string, oneLabel bool) bool {
	_, ok := MatchingDomain(domains, fqdn, oneLabel)
	return ok
}

// MatchingDomain is MatchName that also returns the domain that matched.
func MatchingDomain(domains []string, fqdn string, oneLabel bool) (string, bool) {
	fqdn = strings.TrimSuffix(fqdn, ".")
	if fqdn == "" || IsWildcard(fqdn) {
		return "", false
	}
	for _, d := range domains {
		if strings.EqualFold(d, fqdn) {
			return d, true
		}
	}
	for _, d := range domains {
		if !strings.HasPrefix(d, "*.") {
			continue
		}
		suffix := d[1:] // ".contoso.com"
		if strings.HasSuffix(suffix, ".") {
			continue
		}
		if len(fqdn) <= len(suffix) || !strings.EqualFold(fqdn[len(fqdn)-len(suffix):], suffix) {
			continue
		}
		head := fqdn[:len(fqdn)-len(suffix)]
		if head == "" || strings.HasPrefix(head, "*") {
			continue
		}
		if oneLabel && strings.Contains(head, ".") {
			continue
		}
		return d, true
	}
	return "", false
}

// IsWildcard reports whether a search name is itself a wildcard, which S3
// refuses.
func IsWildcard(name string) bool { return strings.Contains(name, "*") }
