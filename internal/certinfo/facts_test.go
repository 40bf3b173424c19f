package certinfo

import (
	"reflect"
	"testing"
)

// TestFactsRoundTrip: what a store keeps of a certificate reads back as
// Describe gives it, so a listing from stored facts equals one from the
// certificates.
func TestFactsRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name, subject string
		domains       []string
	}{
		{"ok/plain", "", []string{"mail.contoso.com", "*.contoso.com"}},
		{"ok/subject-with-commas", `c=us,o="Contoso, Inc.",cn=mail.contoso.com`, nil},
		{"ok/two-cns", "CN=a.example,CN=b.example", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cert := newSelfSigned(t, c.subject, c.domains...)
			want := Describe(cert)
			s, ok := MarshalFacts(want)
			if !ok {
				t.Fatal("not encoded")
			}
			got, err := UnmarshalFacts(s)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("facts read back\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	if _, ok := MarshalFacts(Info{Subject: "CN=a\x1fb"}); ok {
		t.Error("a field holding the separator was encoded")
	}
	if _, err := UnmarshalFacts("f0\x1fx"); err == nil {
		t.Error("another version was read")
	}
}
