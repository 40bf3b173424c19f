package edgesync

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

var t0 = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

// edgeCert makes a self-signed certificate and key, as an edge's internal
// transport certificate.
func edgeCert(t testing.TB, name string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	l := testpki.SelfSigned(t, testpki.Options{CommonName: name, DNSNames: []string{name}, Key: testpki.ECKey(t)})
	return l.Cert, l.Key
}

func validFile(t testing.TB) []byte {
	t.Helper()
	c, k := edgeCert(t, "edge1.contoso.test")
	s, err := New("edge1", "edge1.contoso.test", c, k, "ESRA.edge1.x", "p4ss", t0, 50636, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return s.Marshal()
}

func TestParseSubscription(t *testing.T) {
	good := validFile(t)
	other, _ := edgeCert(t, "other.contoso.test")
	replace := func(old, new string) []byte { return bytes.Replace(good, []byte(old), []byte(new), 1) }
	field := func(name string) string {
		s := string(good)
		i := strings.Index(s, "<"+name+">")
		j := strings.Index(s, "</"+name+">")
		return s[i : j+len(name)+3]
	}
	bomb := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><EdgeSubscriptionData><EdgeServerName>&lol2;</EdgeServerName></EdgeSubscriptionData>`
	for _, c := range []struct {
		name    string
		data    []byte
		now     time.Time
		want    string // "" for success
		expired bool
	}{
		{"ok/valid", good, t0.Add(time.Hour), "", false},
		{"ok/just-before-expiry", good, t0.Add(Lifetime - time.Second), "", false},
		{"fail/expired", good, t0.Add(Lifetime + time.Minute), "expired at 2026-12-01T08:00:00Z", true},
		{"fail/from-the-future", good, t0.Add(-time.Hour), "later than now", false},
		{"fail/truncated", good[:len(good)/2], t0, "truncated", false},
		{"fail/empty", nil, t0, "empty", false},
		{"fail/entity-bomb", []byte(bomb), t0, "entity bomb", false},
		{"fail/oversized", append(bytes.Repeat([]byte(" "), 50<<20), good...), t0, "this is not one", false},
		{"fail/incomplete", replace(field("ESRAPassword"), ""), t0, "has no <ESRAPassword>", false},
		{"fail/not-xml", []byte("hello"), t0, "not a subscription file", false},
		{"fail/fqdn-changed", replace("<EdgeServerFQDN>edge1.contoso.test", "<EdgeServerFQDN>evil.contoso.test"), t0, "signature does not match", false},
		{"fail/certificate-changed", replace(field("EdgeCertificateBlob"), "<EdgeCertificateBlob>"+base64.StdEncoding.EncodeToString(other.Raw)+"</EdgeCertificateBlob>"), t0, "signature does not match", false},
		{"fail/certificate-garbage", replace(field("EdgeCertificateBlob"), "<EdgeCertificateBlob>AAAA</EdgeCertificateBlob>"), t0, "not a certificate", false},
		{"fail/lifetime-stretched", replace("<Duration>86400", "<Duration>8640000"), t0, "signature does not match", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse(c.data, c.now)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if s.EdgeServerName != "edge1" || s.Address() != "127.0.0.1:50636" || s.ESRAPassword != "p4ss" || !s.Expires().Equal(t0.Add(Lifetime)) {
					t.Errorf("parsed %+v", s)
				}
				return
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is no FileError", err)
			}
			if !strings.Contains(fe.Problem, c.want) || fe.Expired != c.expired {
				t.Errorf("refused with %q (expired %v), want %q (expired %v)", fe.Problem, fe.Expired, c.want, c.expired)
			}
		})
	}
}

func FuzzParseSubscription(f *testing.F) {
	good := validFile(f)
	f.Add(good)
	f.Add(good[:100])
	f.Add([]byte(`<EdgeSubscriptionData><VersionNumber>1</VersionNumber></EdgeSubscriptionData>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, t0)
		if err == nil && (s.Certificate == nil || s.Port <= 0 || s.EdgeServerName == "") {
			t.Fatalf("accepted an incomplete subscription: %+v", s)
		}
	})
}
