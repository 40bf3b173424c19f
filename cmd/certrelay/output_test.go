package main

import (
	"bytes"
	"certrelay/internal/admin"
	"certrelay/internal/store"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParallelJSONIsByteForByte: a long list printed in parallel is the
// same text encoding/json prints.
func TestParallelJSONIsByteForByte(t *testing.T) {
	type item struct {
		Thumbprint string
		Domains    []string
		Note       string `json:",omitempty"`
		Nested     map[string]int
	}
	list := make([]item, parallelJSON+7)
	for i := range list {
		list[i] = item{Thumbprint: fmt.Sprintf("%040X", i), Domains: []string{"a.example", "<b>&c"}, Nested: map[string]int{"x": i}}
		if i%3 == 0 {
			list[i].Note = "note"
		}
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(list); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := printJSON(&got, list); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("parallel JSON differs from encoding/json's:\n%.300s\nwant:\n%.300s", got.String(), want.String())
	}
}

// TestCertificateJSONIsEncodingJSONs: the listing's own encoder of
// certificates writes exactly what encoding/json writes, for every field
// and for the strings that need escaping; and it knows every JSON field of
// the type, so a field added later fails here until it is written.
func TestCertificateJSONIsEncodingJSONs(t *testing.T) {
	nb := time.Date(2026, 11, 30, 7, 30, 0, 123456789, time.UTC)
	na := nb.Add(365 * 24 * time.Hour).In(time.FixedZone("X", 3600))
	odd := "quote\" back\\ ctl\x01\x1f tab\t nl\n cr\r bs\b ff\f <html>&amp; é 中 \u2028\u2029 bad\xff end"
	full := admin.Certificate{
		Thumbprint: strings.Repeat("AB", 20), Subject: "CN=" + odd, Issuer: "CN=x,O=" + odd,
		CertificateDomains: []string{"a.example", odd}, NotBefore: &nb, NotAfter: &na, IsSelfSigned: true,
		RootCAType: "None", Services: []string{"SMTP", "POP"}, Status: "Valid", HasPrivateKey: true, PublicKeySize: 2048,
		SerialNumber: "0A", FriendlyName: odd, PrivateKeyExportable: true,
		AccessRules:        []store.AccessRule{{Account: "root", Kind: "owner", Rights: "Read, Write"}, {Account: odd, Kind: "other", Rights: "Read"}},
		CertificateRequest: "-----BEGIN CERTIFICATE REQUEST-----\nMII\n-----END CERTIFICATE REQUEST-----\n", KeyAlgorithm: "RSA",
		IsInternalTransportCertificate: true, StatusDetail: odd, Fix: "run " + odd,
	}
	cases := []admin.Certificate{
		full,
		{Thumbprint: "T", Services: []string{}, AccessRules: []store.AccessRule{}}, // a pending request's shape
		{}, // nil slices and times
		{CertificateDomains: []string{}, Services: nil, AccessRules: nil, StatusDetail: "only detail"},
	}
	for i, c := range cases {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("  ", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(c); err != nil {
			t.Fatal(err)
		}
		got := appendCertificateJSON(nil, &c, "  ")
		if w := strings.TrimSuffix(want.String(), "\n"); string(got) != w {
			t.Errorf("case %d:\n%s\nencoding/json:\n%s", i, got, w)
		}
	}
	// Every JSON field of the type is set in full, so the comparison above
	// covers it: a new field fails here until the encoder writes it.
	rv := reflect.ValueOf(full)
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		if f.IsExported() && f.Tag.Get("json") != "-" && rv.Field(i).IsZero() {
			t.Errorf("field %s is zero in the full case: set it, and write it in appendCertificateJSON", f.Name)
		}
	}
}

// TestStreamedListingIsEncodingJSONs: a long list is encoded in parallel
// and written a chunk at a time (printJSONSlice), and the bytes are
// exactly those encoding/json writes for the whole slice at once — for
// certificates (the hand-written encoder) and for any other type, at
// chunk boundaries and between them, and for lists shorter than a chunk.
func TestStreamedListingIsEncodingJSONs(t *testing.T) {
	nb := time.Date(2026, 11, 30, 7, 30, 0, 0, time.UTC)
	for _, n := range []int{parallelJSON, jsonChunk, jsonChunk + 1, 2*jsonChunk + 37} {
		certs := make([]admin.Certificate, n)
		type other struct {
			N    int
			Name string
		}
		others := make([]other, n)
		for i := range certs {
			at := nb.Add(time.Duration(i) * time.Second)
			certs[i] = admin.Certificate{Thumbprint: fmt.Sprintf("%040X", i), Subject: fmt.Sprintf("CN=host%05d.example <&>", i),
				CertificateDomains: []string{fmt.Sprintf("host%05d.example", i)}, NotBefore: &at, Services: []string{"SMTP"}, AccessRules: []store.AccessRule{}}
			others[i] = other{i, fmt.Sprintf("n\"%d\u2028", i)}
		}
		for _, v := range []any{certs, others} {
			var want, got bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			if err := enc.Encode(v); err != nil {
				t.Fatal(err)
			}
			if err := printJSON(&got, v); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("%d elements of %T: the streamed listing differs from encoding/json's (%d and %d bytes)", n, v, got.Len(), want.Len())
			}
		}
	}
}
