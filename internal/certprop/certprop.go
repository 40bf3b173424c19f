// Package certprop holds the certificate properties of SPEC §2 that
// several layers share — Services (C8), Status (C9) and RootCAType (C7) —
// as plain values with no behaviour beyond naming and parsing them. It is
// a leaf: it imports nothing of certrelay, so the pure selection engine
// can use these types without pulling in the store (SQLite) or trust
// (LDAP, revocation) that compute them.
package certprop

import (
	"fmt"
	"strings"
)

// Services is the set of services a certificate is enabled for (SPEC C8).
// The bit values are Exchange's AllowedServices flags.
type Services uint8

// The services of SPEC §1.
const (
	IMAP Services = 1
	POP  Services = 2
	UM   Services = 4
	IIS  Services = 8
	SMTP Services = 16

	None Services = 0
	all           = IMAP | POP | UM | IIS | SMTP
)

var serviceNames = []struct {
	s    Services
	name string
}{{IMAP, "IMAP"}, {POP, "POP"}, {UM, "UM"}, {IIS, "IIS"}, {SMTP, "SMTP"}}

// String lists the services as Exchange prints them: "IMAP, POP, SMTP",
// or "None".
func (s Services) String() string {
	if s&all == 0 {
		return "None"
	}
	return strings.Join(s.Names(), ", ")
}

// Names returns the names of the services in s.
func (s Services) Names() []string {
	var out []string
	for _, n := range serviceNames {
		if s&n.s != 0 {
			out = append(out, n.name)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// Has reports whether every service of o is in s.
func (s Services) Has(o Services) bool { return s&o == o }

// ParseServices reads a list such as "SMTP,POP" or "IMAP, POP, SMTP"
// (case-insensitive; "None" alone is the empty set; "HTTPS" and "WEB" are
// accepted for IIS).
func ParseServices(list string) (Services, error) {
	var s Services
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
		switch strings.ToUpper(strings.Trim(f, `"'`)) {
		case "SMTP":
			s |= SMTP
		case "POP", "POP3":
			s |= POP
		case "IMAP", "IMAP4":
			s |= IMAP
		case "UM":
			s |= UM
		case "IIS", "HTTPS", "WEB":
			s |= IIS
		case "NONE":
		case "":
		default:
			return 0, fmt.Errorf("unknown service %q: use SMTP, POP, IMAP, UM or IIS, separated by commas", f)
		}
	}
	return s, nil
}

// Status is a certificate's state as SPEC C9 names it.
type Status string

// The statuses of C9.
const (
	Valid                  Status = "Valid"
	Unknown                Status = "Unknown"
	RevocationCheckFailure Status = "RevocationCheckFailure"
	Revoked                Status = "Revoked"
	DateInvalid            Status = "DateInvalid"
	Untrusted              Status = "Untrusted"
	Invalid                Status = "Invalid"
	PendingRequest         Status = "PendingRequest"
)

// RootCAType says where the root of a certificate's chain comes from (C7).
type RootCAType string

// The values of C7.
const (
	RootNone        RootCAType = "None"
	RootThirdParty  RootCAType = "ThirdParty"
	RootRegistry    RootCAType = "Registry"
	RootGroupPolicy RootCAType = "GroupPolicy"
	RootEnterprise  RootCAType = "Enterprise"
	RootUnknown     RootCAType = "Unknown"
)
