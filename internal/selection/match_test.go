package selection

import "testing"

func TestMatchName(t *testing.T) {
	domains := []string{"mail.contoso.com", "*.fourthcoffee.com", "server1"}
	cases := []struct {
		name     string
		fqdn     string
		oneLabel bool
		want     bool
	}{
		{"ok/exact", "mail.contoso.com", false, true},
		{"ok/case-insensitive", "MAIL.Contoso.COM", false, true},
		{"ok/trailing-dot", "mail.contoso.com.", false, true},
		{"ok/single-label-host", "server1", false, true},
		{"ok/wildcard-one-level", "pop.fourthcoffee.com", true, true},
		{"ok/wildcard-several-levels", "a.b.fourthcoffee.com", false, true},
		{"fail/wildcard-several-levels-when-restricted", "a.b.fourthcoffee.com", true, false},
		{"fail/wildcard-needs-a-label", "fourthcoffee.com", false, false},
		{"fail/wildcard-suffix-only", "xfourthcoffee.com", false, false},
		{"fail/other-name", "smtp.contoso.com", false, false},
		{"fail/empty", "", false, false},
		{"fail/search-is-wildcard", "*.fourthcoffee.com", false, false},
	}
	// A certificate name with a trailing dot is matched by no TLS client
	// (crypto/x509 and OpenSSL refuse it as a pattern), so selection must
	// not choose it (issue 9 item 7).
	dotted := []string{"trail.example.com.", "*.dotted.example."}
	for _, fqdn := range []string{"trail.example.com", "trail.example.com.", "a.dotted.example"} {
		if MatchName(dotted, fqdn, false) {
			t.Errorf("fail/certificate-name-with-trailing-dot: %q matched %v", fqdn, dotted)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := MatchName(domains, c.fqdn, c.oneLabel); got != c.want {
				t.Errorf("MatchName(%q, oneLabel=%v) = %v, want %v", c.fqdn, c.oneLabel, got, c.want)
			}
		})
	}
}
