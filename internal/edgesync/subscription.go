// Package edgesync joins an edge to its organisation and keeps it filled
// (SPEC X3, X4): the subscription file an edge writes and a hub imports,
// and EdgeSync, the replication from the hubs to the edge's own embedded
// directory over TLS with direct trust.
//
// Written by hand: Exchange's EdgeSync is LDAP replication into ADAM,
// which no Go library provides; what certrelay needs is small — the hub
// sends whole sets of objects of two kinds (configuration, recipients)
// and the edge answers with its own objects — so the wire format is
// length-prefixed JSON over a TLS connection whose two certificates are
// checked by direct trust (wire.go). The subscription file is XML with
// Exchange's element names (EdgeSubscriptionData), read by encoding/xml
// with the limits a file from another machine needs: its size, no
// document type declaration (so no entity can expand), every field
// present, and a signature by the edge's internal transport key.
package edgesync

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Lifetime is how long a subscription file's bootstrap account is valid
// (Exchange's default, 24 hours).
const Lifetime = 24 * time.Hour

// MaxFileSize bounds a subscription file: a real one is a few kilobytes.
const MaxFileSize = 1 << 20

// clockSkew is how far in the future a file's creation time may be (the
// edge's clock ahead of the hub's).
const clockSkew = 5 * time.Minute

// Subscription is the content of a subscription file.
type Subscription struct {
	XMLName        xml.Name `xml:"EdgeSubscriptionData"`
	Version        string   `xml:"VersionNumber"`
	EdgeServerName string   `xml:"EdgeServerName"`
	EdgeServerFQDN string   `xml:"EdgeServerFQDN"`
	// EdgeCertificateBlob is the edge's internal transport certificate,
	// DER in base64.
	EdgeCertificateBlob string `xml:"EdgeCertificateBlob"`
	ESRAUsername        string `xml:"ESRAUsername"` // the bootstrap account
	ESRAPassword        string `xml:"ESRAPassword"`
	EffectiveDate       string `xml:"EffectiveDate"` // RFC 3339, UTC
	Duration            string `xml:"Duration"`      // seconds the bootstrap account is valid
	AdamSslPort         string `xml:"AdamSslPort"`   // the EdgeSync endpoint's port
	// SyncAddress is the endpoint's IP address when it listens on one
	// address only; empty: the edge's FQDN.
	SyncAddress string `xml:"SyncAddress,omitempty"`
	// Signature is the edge's signature, with the key of
	// EdgeCertificateBlob, over the fields above (signedBytes), base64.
	Signature string `xml:"Signature"`

	// Read from the fields by Parse.
	Certificate *x509.Certificate `xml:"-"`
	Created     time.Time         `xml:"-"`
	Valid       time.Duration     `xml:"-"`
	Port        int               `xml:"-"`
}

// Expires is when the bootstrap account stops being valid.
func (s *Subscription) Expires() time.Time { return s.Created.Add(s.Valid) }

// Address is where the hubs reach the edge's EdgeSync endpoint.
func (s *Subscription) Address() string {
	host := s.SyncAddress
	if host == "" {
		host = s.EdgeServerFQDN
	}
	return net.JoinHostPort(host, strconv.Itoa(s.Port))
}

const signLabel = "certrelay edge subscription v1"

// signedBytes is what the signature covers: a label and every field, one
// per line (no field may hold a line break: Parse refuses them).
func (s *Subscription) signedBytes() []byte {
	return []byte(strings.Join([]string{signLabel, s.Version, s.EdgeServerName, s.EdgeServerFQDN, s.EdgeCertificateBlob,
		s.ESRAUsername, s.ESRAPassword, s.EffectiveDate, s.Duration, s.AdamSslPort, s.SyncAddress}, "\n"))
}

// New makes the subscription of an edge, signed with key (the private key
// of cert, its internal transport certificate).
func New(name, fqdn string, cert *x509.Certificate, key crypto.Signer, account, password string, created time.Time, port int, addr string) (*Subscription, error) {
	s := &Subscription{Version: "1", EdgeServerName: name, EdgeServerFQDN: fqdn,
		EdgeCertificateBlob: base64.StdEncoding.EncodeToString(cert.Raw), ESRAUsername: account, ESRAPassword: password,
		EffectiveDate: created.UTC().Format(time.RFC3339), Duration: strconv.Itoa(int(Lifetime / time.Second)),
		AdamSslPort: strconv.Itoa(port), SyncAddress: addr,
		Certificate: cert, Created: created.UTC().Truncate(time.Second), Valid: Lifetime, Port: port}
	sig, err := sign(key, s.signedBytes())
	if err != nil {
		return nil, fmt.Errorf("sign the subscription with the internal transport certificate's key: %w", err)
	}
	s.Signature = base64.StdEncoding.EncodeToString(sig)
	return s, nil
}

// Marshal writes the file.
func (s *Subscription) Marshal() []byte {
	out, _ := xml.MarshalIndent(s, "", "  ")
	return append([]byte(xml.Header), append(out, '\n')...)
}

func sign(key crypto.Signer, data []byte) ([]byte, error) {
	switch key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, data, crypto.Hash(0))
	case *rsa.PublicKey, *ecdsa.PublicKey:
		h := sha256.Sum256(data)
		return key.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	return nil, fmt.Errorf("a %T key cannot sign a subscription", key.Public())
}

func signatureAlgorithm(c *x509.Certificate) x509.SignatureAlgorithm {
	switch c.PublicKey.(type) {
	case ed25519.PublicKey:
		return x509.PureEd25519
	case *ecdsa.PublicKey:
		return x509.ECDSAWithSHA256
	}
	return x509.SHA256WithRSA
}

// FileError is why a subscription file is refused. Problem says what is
// wrong in words a person can act on.
type FileError struct {
	Problem string
	Expired bool // the file was fine, but its time is over
}

func (e *FileError) Error() string { return e.Problem }

func refuse(format string, args ...any) error {
	return &FileError{Problem: fmt.Sprintf(format, args...)}
}

// Parse reads and checks a subscription file against the time now: its
// size, that it holds no document type declaration (entity expansion),
// that it is complete, well-formed XML with every field, that its
// certificate parses and its signature verifies with that certificate's
// key, and that it has not expired. Every refusal is a *FileError.
func Parse(data []byte, now time.Time) (*Subscription, error) {
	if len(data) > MaxFileSize {
		return nil, refuse("the file is %d bytes; a subscription file is a few kilobytes (at most %d bytes): this is not one", len(data), MaxFileSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, refuse("the file is empty")
	}
	if bytes.Contains(data, []byte("<!")) {
		// <!DOCTYPE, <!ENTITY, <![CDATA[: a subscription file has none,
		// and an entity declaration can expand without bound.
		return nil, refuse("the file holds a declaration (<!…>, such as <!DOCTYPE> or <!ENTITY>), which a subscription file never has; entity declarations can expand without bound (an XML entity bomb)")
	}
	var s Subscription
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	if err := dec.Decode(&s); err != nil {
		truncated := errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "unexpected EOF")
		if truncated && bytes.HasPrefix(bytes.TrimSpace(data), []byte("<")) {
			return nil, refuse("the file ends before its XML does (truncated?): %v", err)
		}
		return nil, refuse("the file is not a subscription file's XML: %v", err)
	}
	for _, f := range []struct{ name, v string }{
		{"VersionNumber", s.Version}, {"EdgeServerName", s.EdgeServerName}, {"EdgeServerFQDN", s.EdgeServerFQDN},
		{"EdgeCertificateBlob", s.EdgeCertificateBlob}, {"ESRAUsername", s.ESRAUsername}, {"ESRAPassword", s.ESRAPassword},
		{"EffectiveDate", s.EffectiveDate}, {"Duration", s.Duration}, {"AdamSslPort", s.AdamSslPort}, {"Signature", s.Signature},
	} {
		if strings.TrimSpace(f.v) == "" {
			return nil, refuse("the file is incomplete: it has no <%s>", f.name)
		}
		if strings.ContainsAny(f.v, "\r\n") && f.name != "EdgeCertificateBlob" && f.name != "Signature" {
			return nil, refuse("<%s> holds a line break", f.name)
		}
	}
	if strings.ContainsAny(s.SyncAddress, "\r\n") {
		return nil, refuse("<SyncAddress> holds a line break")
	}
	if s.Version != "1" {
		return nil, refuse("the file is of version %q; this certrelay reads version 1", s.Version)
	}
	der, err := base64.StdEncoding.DecodeString(compact(s.EdgeCertificateBlob))
	if err != nil {
		return nil, refuse("<EdgeCertificateBlob> is not base64: %v", err)
	}
	if s.Certificate, err = x509.ParseCertificate(der); err != nil {
		return nil, refuse("<EdgeCertificateBlob> is not a certificate: %v", err)
	}
	sig, err := base64.StdEncoding.DecodeString(compact(s.Signature))
	if err != nil {
		return nil, refuse("<Signature> is not base64: %v", err)
	}
	if err := s.Certificate.CheckSignature(signatureAlgorithm(s.Certificate), s.signedBytes(), sig); err != nil {
		return nil, refuse("the file was changed after the edge wrote it: its signature does not match its contents and certificate (%v)", err)
	}
	if s.Created, err = time.Parse(time.RFC3339, s.EffectiveDate); err != nil {
		return nil, refuse("<EffectiveDate> %q is not a time (RFC 3339)", s.EffectiveDate)
	}
	secs, err := strconv.Atoi(s.Duration)
	if err != nil || secs <= 0 || time.Duration(secs)*time.Second > Lifetime {
		return nil, refuse("<Duration> %q is not a number of seconds up to %d", s.Duration, int(Lifetime/time.Second))
	}
	s.Valid = time.Duration(secs) * time.Second
	if s.Port, err = strconv.Atoi(s.AdamSslPort); err != nil || s.Port <= 0 || s.Port > 65535 {
		return nil, refuse("<AdamSslPort> %q is not a port", s.AdamSslPort)
	}
	if s.SyncAddress != "" && net.ParseIP(s.SyncAddress) == nil {
		return nil, refuse("<SyncAddress> %q is not an IP address", s.SyncAddress)
	}
	if s.Created.After(now.Add(clockSkew)) {
		return nil, refuse("the file was made at %s, later than now (%s): check both servers' clocks", s.EffectiveDate, now.UTC().Format(time.RFC3339))
	}
	if !now.Before(s.Expires()) {
		return &s, &FileError{Expired: true, Problem: fmt.Sprintf("the subscription expired at %s (made at %s, valid %v)", s.Expires().UTC().Format(time.RFC3339), s.EffectiveDate, s.Valid)}
	}
	return &s, nil
}

// compact drops the white space a base64 field may be wrapped with.
func compact(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, s)
}
