package certinfo

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
)

// TestFastNameDecodingAgrees: the direct decoder of names prints every
// name as encoding/asn1 decodes it — string types, several attributes in
// one RDN, a BMPString — and gives way to encoding/asn1 for other types.
func TestFastNameDecodingAgrees(t *testing.T) {
	bmp := asn1.RawValue{Tag: 30, Class: asn1.ClassUniversal, Bytes: []byte{0x00, 'M', 0x00, 0xFC, 0x00, 'n'}}
	integer := asn1.RawValue{Tag: asn1.TagInteger, Class: asn1.ClassUniversal, Bytes: []byte{5}}
	for _, c := range []struct {
		name string
		rdns pkix.RDNSequence
	}{
		{"printable-and-utf8", pkix.RDNSequence{{{Type: oidCountry, Value: "US"}}, {{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Contoso Corp, Inc."}}, {{Type: oidCommonName, Value: "mail.contoso.com"}}}},
		{"multi-valued-rdn", pkix.RDNSequence{{{Type: oidCommonName, Value: "a"}, {Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "Mail"}}}},
		{"two-cns", pkix.RDNSequence{{{Type: oidCommonName, Value: "b.example"}}, {{Type: oidCommonName, Value: "a.example"}}}},
		{"email-ia5", pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: "postmaster@contoso.com"}}}},
		{"bmp", pkix.RDNSequence{{{Type: oidCommonName, Value: bmp}}}},
		{"not-a-string", pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: integer}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, err := asn1.Marshal(c.rdns)
			if err != nil {
				t.Fatal(err)
			}
			var want pkix.RDNSequence
			if _, err := asn1.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if got := NameString(raw); got != want.String() {
				t.Errorf("NameString = %q, encoding/asn1 reads %q", got, want.String())
			}
		})
	}
}
