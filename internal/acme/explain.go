package acme

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mholt/acmez/v3/acme"
)

// OrderError is a failure the CA explained with a problem document (RFC
// 7807, RFC 8555 §6.7), put in an administrator's terms.
type OrderError struct {
	Stage      string // "account" or "order"
	CA         string // the directory URL
	Identifier string // the name whose validation failed, "" when not one name's
	Challenge  string // the challenge type that failed, "" when none did
	Type       string // the problem type without its URN prefix ("connection", "unauthorized", …)
	Detail     string // what the CA said it saw
	Status     int    // the HTTP status of the CA's answer
	Fix        string // the likely fix
	Err        error
}

func (e *OrderError) Error() string {
	var b strings.Builder
	b.WriteString("the ACME CA refused")
	if e.Stage == "account" {
		b.WriteString(" the account")
	} else {
		b.WriteString(" the order")
	}
	if e.Challenge != "" {
		fmt.Fprintf(&b, ": the %s challenge for %s failed", e.Challenge, e.Identifier)
	} else if e.Identifier != "" {
		fmt.Fprintf(&b, " for %s", e.Identifier)
	}
	fmt.Fprintf(&b, " (%s", e.Type)
	if e.Status != 0 {
		fmt.Fprintf(&b, ", HTTP %d", e.Status)
	}
	b.WriteString(")")
	if e.Detail != "" {
		fmt.Fprintf(&b, "; the CA says: %s", e.Detail)
	}
	return b.String()
}

func (e *OrderError) Unwrap() error { return e.Err }

// explain turns an error from acmez into an *OrderError when the CA
// answered a problem document; other errors (the network, a hook) are
// returned wrapped with what was being done.
func explain(err error, stage, ca string) error {
	var p acme.Problem
	if !errors.As(err, &p) {
		var he *HookError
		if errors.As(err, &he) {
			return fmt.Errorf("%s at %s: %w; fix the hook (it must publish the TXT record %s and exit 0)", stage, ca, err, he.Name)
		}
		return fmt.Errorf("%s at %s: %w", stage, ca, err)
	}
	e := &OrderError{Stage: stage, CA: ca, Type: strings.TrimPrefix(p.Type, "urn:ietf:params:acme:error:"), Detail: p.Detail, Status: p.Status, Err: err}
	if authz, ok := p.Resource.(acme.Authorization); ok {
		e.Identifier = authz.IdentifierValue()
		for _, c := range authz.Challenges {
			if c.Error != nil {
				e.Challenge = c.Type
				break
			}
		}
	}
	for _, sp := range p.Subproblems {
		if e.Identifier == "" && sp.Identifier.Value != "" {
			e.Identifier = sp.Identifier.Value
		}
		if sp.Detail != "" && !strings.Contains(e.Detail, sp.Detail) {
			e.Detail += "; " + sp.Detail
		}
	}
	e.Fix = fixFor(e)
	return e
}

// fixFor is the likely fix of a problem, by its type and the challenge.
func fixFor(e *OrderError) string {
	port := map[string]string{acme.ChallengeTypeHTTP01: "80", acme.ChallengeTypeTLSALPN01: "443"}[e.Challenge]
	name := e.Identifier
	if name == "" {
		name = "each name"
	}
	switch e.Type {
	case "connection":
		if port != "" {
			return fmt.Sprintf("the CA could not reach %s on port %s: make sure %s resolves (A/AAAA) to this server, that port %s is open in the firewall and forwarded to where certrelay answers the challenge; or use dns-01", name, port, name, port)
		}
		return "the CA could not connect: check the name's DNS records and the firewall"
	case "unauthorized":
		switch e.Challenge {
		case acme.ChallengeTypeHTTP01:
			return fmt.Sprintf("the CA reached a server on port 80 for %s that did not answer the challenge: another web server (or a proxy) answers there; point port 80 at certrelay's challenge address, or use tls-alpn-01 or dns-01", name)
		case acme.ChallengeTypeTLSALPN01:
			return fmt.Sprintf("the CA reached a TLS server on port 443 for %s that did not answer the challenge: forward port 443 to certrelay's challenge address, or use http-01 or dns-01", name)
		case acme.ChallengeTypeDNS01:
			return fmt.Sprintf("the CA read a TXT record at _acme-challenge.%s that is not this order's: check that the hook publishes the value it is given and removes old ones, and wait for the DNS servers to agree", name)
		}
		return "the CA does not allow this account to do that: check the account (acme account) and the CA's terms"
	case "dns":
		if e.Challenge == acme.ChallengeTypeDNS01 {
			return fmt.Sprintf("the CA could not read the TXT record _acme-challenge.%s: check that the hook published it in the zone's authoritative servers", name)
		}
		return fmt.Sprintf("the CA could not resolve %s: publish its A/AAAA record (or use dns-01)", name)
	case "caa":
		return fmt.Sprintf("a CAA record of %s does not allow this CA: add one that names it, or use a CA it names", name)
	case "rejectedIdentifier":
		return "the CA will not issue for this name (an internal name, an IP address or a blocked domain): use public DNS names the CA accepts"
	case "rateLimited":
		return "the CA's rate limit was reached: wait (the detail says until when), and test against the CA's staging directory"
	case "externalAccountRequired":
		return "this CA needs an external account binding: register the account again with the key ID and MAC key the CA gave (EAB)"
	case "accountDoesNotExist", "unauthorized-account":
		return "the CA does not know this account: register it again"
	case "tls":
		return fmt.Sprintf("the TLS handshake the CA made with %s failed: for tls-alpn-01, port 443 must reach certrelay's challenge address directly (no TLS-terminating proxy)", name)
	case "malformed":
		return "the CA refused the request as malformed: the detail says which field"
	case "badNonce":
		return "a transient protocol error: try again"
	case "serverInternal":
		return "the CA failed internally: try again later"
	}
	return "read the CA's detail above; " + "try again, or another challenge type"
}
