package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/selection"
	"certrelay/internal/settings"

	"github.com/miekg/dns"
)

// tlsaRefusals checks, for each receive connector whose certificate the
// activation changes, the TLSA records published for its FQDN and ports
// (RFC 6698, RFC 7672: _25._tcp.mail.example.com): a record that matches
// the certificate served today and none that matches the new one means
// DANE senders would refuse the new one, so the activation is refused
// until a record for the new one is published. Records of a trust anchor
// (usages 0 and 2) are not judged here, only reported. A lookup that fails
// is a warning: the check could not be made.
func (a *Admin) tlsaRefusals(ctx context.Context, now []SelectionMapEntry, changes []RolloverChange, cert *x509.Certificate, extra []*x509.Certificate) (refusals, warnings []string) {
	server, _ := a.Settings.Get(ctx, settings.DNSResolver)
	if server == "" {
		if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil && len(cc.Servers) > 0 {
			server = net.JoinHostPort(cc.Servers[0], cc.Port)
		}
	}
	if server == "" {
		return nil, []string{"no DNS resolver to read TLSA records with: the TLSA check was not made"}
	}
	checked := map[string]bool{}
	for _, ch := range changes {
		if ch.Listener != "ReceiveConnector" || ch.Fqdn == "" {
			continue
		}
		var bindings []string
		for _, e := range now {
			if e.Listener == ch.Listener && e.Name == ch.Name {
				bindings = e.Bindings
			}
		}
		var old *x509.Certificate
		if ch.From != "" {
			if e, err := a.Store.Get(ctx, ch.From); err == nil {
				old = e.Cert
			}
		}
		for _, b := range bindings {
			_, port, err := net.SplitHostPort(b)
			if err != nil {
				continue
			}
			name := fmt.Sprintf("_%s._tcp.%s.", port, strings.TrimSuffix(ch.Fqdn, "."))
			if checked[name] {
				continue
			}
			checked[name] = true
			recs, err := lookupTLSA(ctx, server, name)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("the TLSA records of %s could not be read (%v): the TLSA check was not made", name, err))
				continue
			}
			if len(recs) == 0 {
				continue
			}
			oldMatch, newMatch := false, false
			for _, r := range recs {
				if r.Usage == 0 || r.Usage == 2 {
					warnings = append(warnings, fmt.Sprintf("%s has a trust-anchor TLSA record (%d %d %d): check that it names the new certificate's CA", name, r.Usage, r.Selector, r.MatchingType))
					newMatch = true // not judged: never refuse on it
					continue
				}
				if old != nil && tlsaMatches(r, old) {
					oldMatch = true
				}
				if tlsaMatches(r, cert) {
					newMatch = true
				}
			}
			if oldMatch && !newMatch {
				refusals = append(refusals, fmt.Sprintf("the TLSA records of %s match the certificate served today (%s) and not the new one: DANE senders would refuse it; publish a record for the new one first (%s), wait for the records' TTL, then activate",
					name, ch.From, Render("{Get-CertrelayCertificateTlsa}", nil, nil)))
			}
		}
	}
	return refusals, warnings
}

func lookupTLSA(ctx context.Context, server, name string) ([]*dns.TLSA, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTLSA)
	m.SetEdns0(4096, true)
	c := &dns.Client{Timeout: 3 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, err
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("DNS answered %s", dns.RcodeToString[in.Rcode])
	}
	var out []*dns.TLSA
	for _, rr := range in.Answer {
		if t, ok := rr.(*dns.TLSA); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// tlsaData is a certificate's association data for a selector and
// matching type (RFC 6698 §2.1).
func tlsaData(c *x509.Certificate, selector, matching uint8) []byte {
	data := c.Raw
	if selector == 1 {
		data = c.RawSubjectPublicKeyInfo
	}
	switch matching {
	case 1:
		s := sha256.Sum256(data)
		return s[:]
	case 2:
		s := sha512.Sum512(data)
		return s[:]
	}
	return data
}

func tlsaMatches(r *dns.TLSA, c *x509.Certificate) bool {
	want, err := hex.DecodeString(strings.TrimSpace(r.Certificate))
	if err != nil {
		return false
	}
	return bytes.Equal(tlsaData(c, r.Selector, r.MatchingType), want)
}

// TlsaRecord is a TLSA record for a certificate (cert tlsa).
type TlsaRecord struct {
	Name   string // _PORT._tcp.FQDN
	Record string // "3 1 1 HEX", the RDATA to publish
}

// TlsaRecords are the DANE-EE records (3 1 1: the SHA-256 of the public
// key) to publish for a certificate on each receive connector binding
// whose FQDN it holds.
func (a *Admin) TlsaRecords(ctx context.Context, thumbprint string) ([]TlsaRecord, error) {
	const op = "TLSA records"
	e, err := a.Store.Get(ctx, thumbprint)
	if err != nil {
		return nil, errorf(op, asError(err).field("Thumbprint", thumbprint))
	}
	if e.Pending() {
		return nil, errorf(op, invalid("Thumbprint", thumbprint, "a pending request has no certificate yet"))
	}
	m, err := a.SelectionMap(ctx)
	if err != nil {
		return nil, err
	}
	out := []TlsaRecord{}
	seen := map[string]bool{}
	for _, en := range m {
		if en.Listener != "ReceiveConnector" {
			continue
		}
		for _, b := range en.Bindings {
			_, port, err := net.SplitHostPort(b)
			if err != nil || !selection.MatchName(certinfo.CertificateDomains(e.Cert), en.Fqdn, false) {
				continue
			}
			name := fmt.Sprintf("_%s._tcp.%s", port, en.Fqdn)
			if seen[name] {
				continue
			}
			seen[name] = true
			out = append(out, TlsaRecord{Name: name, Record: fmt.Sprintf("3 1 1 %X", tlsaData(e.Cert, 1, 1))})
		}
	}
	return out, nil
}
