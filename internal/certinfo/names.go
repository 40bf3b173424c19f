package certinfo

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// parseRDNs decodes a DER-encoded X.500 name. It reads the usual string
// attribute values directly (as crypto/x509 does), which is several times
// faster than encoding/asn1's reflection — names are decoded for every
// certificate of a listing — and falls back to encoding/asn1 for
// anything else.
func parseRDNs(raw []byte) (pkix.RDNSequence, error) {
	if rdns, ok := parseRDNsFast(raw); ok {
		return rdns, nil
	}
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &rdns); err != nil {
		return nil, err
	} else if len(rest) > 0 {
		return nil, fmt.Errorf("%d bytes after the name", len(rest))
	}
	return rdns, nil
}

func parseRDNsFast(raw []byte) (pkix.RDNSequence, bool) {
	in := cryptobyte.String(raw)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, false
	}
	var rdns pkix.RDNSequence
	for !seq.Empty() {
		var set cryptobyte.String
		if !seq.ReadASN1(&set, cbasn1.SET) {
			return nil, false
		}
		var rdn pkix.RelativeDistinguishedNameSET
		for !set.Empty() {
			var atv cryptobyte.String
			var oid asn1.ObjectIdentifier
			var tag cbasn1.Tag
			var value cryptobyte.String
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&oid) ||
				!atv.ReadAnyASN1(&value, &tag) || !atv.Empty() {
				return nil, false
			}
			v, ok := decodeString(tag, value)
			if !ok {
				return nil, false
			}
			rdn = append(rdn, pkix.AttributeTypeAndValue{Type: oid, Value: v})
		}
		rdns = append(rdns, rdn)
	}
	return rdns, true
}

// decodeString decodes the string types names use; ok is false for any
// other (the caller falls back to encoding/asn1).
func decodeString(tag cbasn1.Tag, v []byte) (string, bool) {
	switch tag {
	case cbasn1.PrintableString, cbasn1.UTF8String, cbasn1.IA5String, cbasn1.T61String, 18 /* NumericString */ :
		return string(v), true
	case 30: // BMPString: UTF-16 big-endian
		if len(v)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(v)/2)
		for i := range u {
			u[i] = uint16(v[2*i])<<8 | uint16(v[2*i+1])
		}
		return string(utf16.Decode(u)), true
	}
	return "", false
}
