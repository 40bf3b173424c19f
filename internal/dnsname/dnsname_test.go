package dnsname

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		name, in, want string
		wildcard       bool
	}{
		{"ok/lower-case", "Mail.Contoso.COM", "mail.contoso.com", false},
		{"ok/trailing-dot", "trail.example.com.", "trail.example.com", false},
		{"ok/spaces", "  mail.contoso.com ", "mail.contoso.com", false},
		{"ok/single-label", "Server1", "server1", false},
		{"ok/idn-to-a-label", "Bücher.example", "xn--bcher-kva.example", false},
		{"ok/idn-a-label-kept", "xn--bcher-kva.example", "xn--bcher-kva.example", false},
		{"ok/wildcard", "*.Contoso.com.", "*.contoso.com", true},
		{"ok/wildcard-idn", "*.bücher.example", "*.xn--bcher-kva.example", true},
		{"fail/empty", "", "", false},
		{"fail/blank", "   ", "", false},
		{"fail/only-dot", ".", "", false},
		{"fail/two-trailing-dots", "a.example..", "", false},
		{"fail/double-dot", "a..example", "", false},
		{"fail/leading-dot", ".a.example", "", false},
		{"fail/underscore", "mail_server.example", "", false},
		{"fail/hyphen-edge", "-a.example", "", false},
		{"fail/wildcard-not-allowed", "*.contoso.com", "", false},
		{"fail/wildcard-inside", "a.*.contoso.com", "", true},
		{"fail/wildcard-partial", "w*.contoso.com", "", true},
		{"fail/wildcard-one-label", "*.com", "", true},
		{"fail/star-alone", "*", "", true},
		{"fail/space", "a b.example", "", false},
		{"fail/wildcard-glued", "*mail.contoso.com", "", true},
		{"fail/long-label", "a123456789012345678901234567890123456789012345678901234567890123.example", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parse(c.in, c.wildcard)
			if c.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%q) = %q, %v; want an error", c.in, got, err)
				}
				return
			}
			if err != nil || string(got) != c.want {
				t.Fatalf("Parse(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
}

func TestParseListDeduplicates(t *testing.T) {
	got, err := ParseList([]string{"A.example", "a.example.", "b.example"}, false)
	if err != nil || len(got) != 2 || got[0] != "a.example" || got[1] != "b.example" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ParseList([]string{"a.example", ""}, false); err == nil {
		t.Error("an empty name in a list was accepted")
	}
}
