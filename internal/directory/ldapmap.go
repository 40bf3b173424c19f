package directory

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"certrelay/internal/certinfo"
)

// How objects live in LDAP (schema/certrelay.schema, docs/DIRECTORY.md):
//
//	BASE
//	├── ou=Servers      cn=NAME (certrelayServer)
//	│                   └── cn=CONNECTOR (certrelayReceiveConnector)
//	├── ou=Connectors   cn=NAME (certrelaySendConnector)
//	├── ou=Domains      cn=DOMAIN (certrelayAcceptedDomain)
//	├── ou=Mailboxes    cn=ADDRESS (certrelayMailbox)
//	└── ou=Trust        cn=THUMBPRINT (certrelayTrustedRoot)
//
// Each kind has a codec: its container, object class, RDN, and one
// attribute per field. Put writes every attribute of the kind (absent
// values delete the attribute), so an object in LDAP is exactly what the
// last Put wrote, plus whatever other object classes an administrator
// adds.

// Containers under the base DN.
var containers = []string{"Servers", "Connectors", "Domains", "Mailboxes", "Trust"}

// fieldOf maps one attribute to a field of T.
type fieldOf[T any] struct {
	attr string
	enc  func(*T) []string
	dec  func(*T, []string) error
}

// codec maps objects of one kind to entries.
type codec[T any] struct {
	kind      string
	class     string
	container string           // ou=… under the base; "" for receive connectors (under their server)
	name      func(*T) string  // the cn value
	parent    func(*T) string  // receive connectors: the server's cn
	fromDN    func(*T, string) // receive connectors: set the server from the parent RDN
	fields    []fieldOf[T]
	check     func(*T) error // after decoding: the object makes sense
}

func str[T any](attr string, f func(*T) *string) fieldOf[T] {
	return fieldOf[T]{attr,
		func(v *T) []string {
			if s := *f(v); s != "" {
				return []string{s}
			}
			return nil
		},
		func(v *T, vals []string) error {
			if len(vals) > 0 {
				*f(v) = vals[0]
			}
			return nil
		}}
}

func strs[T any](attr string, f func(*T) *[]string) fieldOf[T] {
	return fieldOf[T]{attr,
		func(v *T) []string { return *f(v) },
		func(v *T, vals []string) error {
			if len(vals) > 0 {
				*f(v) = append([]string(nil), vals...)
			}
			return nil
		}}
}

func boolean[T any](attr string, f func(*T) *bool) fieldOf[T] {
	return fieldOf[T]{attr,
		func(v *T) []string {
			if *f(v) {
				return []string{"TRUE"}
			}
			return []string{"FALSE"}
		},
		func(v *T, vals []string) error {
			if len(vals) == 0 {
				return nil
			}
			switch strings.ToUpper(vals[0]) {
			case "TRUE":
				*f(v) = true
			case "FALSE":
				*f(v) = false
			default:
				return fmt.Errorf("%s is %q, not TRUE or FALSE", attr, vals[0])
			}
			return nil
		}}
}

func integer[T any, N int | int64](attr string, f func(*T) *N) fieldOf[T] {
	return fieldOf[T]{attr,
		func(v *T) []string {
			if n := *f(v); n != 0 {
				return []string{strconv.FormatInt(int64(n), 10)}
			}
			return nil
		},
		func(v *T, vals []string) error {
			if len(vals) == 0 {
				return nil
			}
			n, err := strconv.ParseInt(vals[0], 10, 64)
			if err != nil {
				return fmt.Errorf("%s is %q, not a number", attr, vals[0])
			}
			*f(v) = N(n)
			return nil
		}}
}

func duration[T any](attr string, f func(*T) *Duration) fieldOf[T] {
	return fieldOf[T]{attr,
		func(v *T) []string {
			if d := *f(v); d != 0 {
				return []string{d.String()}
			}
			return nil
		},
		func(v *T, vals []string) error {
			if len(vals) == 0 {
				return nil
			}
			d, err := ParseDuration(vals[0])
			if err != nil {
				return fmt.Errorf("%s: %v", attr, err)
			}
			*f(v) = Duration(d)
			return nil
		}}
}

func binary[T any](attr string, f func(*T) *[]byte) fieldOf[T] {
	return fieldOf[T]{attr,
		func(v *T) []string {
			if b := *f(v); len(b) > 0 {
				return []string{string(b)}
			}
			return nil
		},
		func(v *T, vals []string) error {
			if len(vals) > 0 {
				*f(v) = []byte(vals[0])
			}
			return nil
		}}
}

var serverCodec = codec[Server]{
	kind: kindServer, class: "certrelayServer", container: "Servers",
	name: func(s *Server) string { return s.Name },
	fields: []fieldOf[Server]{
		str("certrelayFqdn", func(s *Server) *string { return &s.Fqdn }),
		str("certrelayPhysicalHostName", func(s *Server) *string { return &s.PhysicalHostName }),
		str("certrelayPhysicalFqdn", func(s *Server) *string { return &s.PhysicalFqdn }),
		strs("certrelayNLBName", func(s *Server) *[]string { return &s.NLBNames }),
		str("certrelayRole", func(s *Server) *string { return &s.Role }),
		str("certrelayInternalCertThumbprint", func(s *Server) *string { return &s.InternalTransportCertificateThumbprint }),
		binary("certrelayInternalCert", func(s *Server) *[]byte { return &s.InternalTransportCertificate }),
		binary("certrelayServerCredential", func(s *Server) *[]byte { return &s.ServerCredential }),
		str("certrelayEdgeSyncAddress", func(s *Server) *string { return &s.EdgeSyncAddress }),
		str("certrelayEdgeSyncBootstrap", func(s *Server) *string { return &s.EdgeSyncBootstrap }),
	},
	check: func(s *Server) error { return s.Check() },
}

// Check reports what makes a server object unusable for direct trust: a
// role certrelay does not know, an internal transport certificate that
// is not a certificate or does not have the thumbprint published with it.
func (s *Server) Check() error {
	if !ValidRole(s.Role) {
		return fmt.Errorf("its role is %q, not hub or edge", s.Role)
	}
	if len(s.InternalTransportCertificate) > 0 {
		c, err := x509.ParseCertificate(s.InternalTransportCertificate)
		if err != nil {
			return fmt.Errorf("its internal transport certificate (certrelayInternalCert) is not a certificate: %v", err)
		}
		if t := certinfo.Thumbprint(c.Raw); !strings.EqualFold(t, s.InternalTransportCertificateThumbprint) {
			return fmt.Errorf("its internal transport certificate has thumbprint %s, but certrelayInternalCertThumbprint says %s", t, s.InternalTransportCertificateThumbprint)
		}
	}
	return nil
}

var receiveCodec = codec[ReceiveConnector]{
	kind: kindReceive, class: "certrelayReceiveConnector",
	name:   func(c *ReceiveConnector) string { return c.Name },
	parent: func(c *ReceiveConnector) string { return c.Server },
	fromDN: func(c *ReceiveConnector, server string) {
		c.Server = server
		c.Identity = server + `\` + c.Name
	},
	fields: []fieldOf[ReceiveConnector]{
		strs("certrelayBinding", func(c *ReceiveConnector) *[]string { return &c.Bindings }),
		str("certrelayFqdn", func(c *ReceiveConnector) *string { return &c.Fqdn }),
		strs("certrelayPermissionGroup", func(c *ReceiveConnector) *[]string { return &c.PermissionGroups }),
		strs("certrelayAuthMechanism", func(c *ReceiveConnector) *[]string { return &c.AuthMechanism }),
		boolean("certrelayRequireTLS", func(c *ReceiveConnector) *bool { return &c.RequireTLS }),
		integer("certrelayMaxMessageSize", func(c *ReceiveConnector) *int64 { return &c.MaxMessageSize }),
		integer("certrelayMaxInboundConnection", func(c *ReceiveConnector) *int { return &c.MaxInboundConnection }),
		integer("certrelayMaxInboundConnectionPerSource", func(c *ReceiveConnector) *int { return &c.MaxInboundConnectionPerSource }),
		duration("certrelayConnectionTimeout", func(c *ReceiveConnector) *Duration { return &c.ConnectionTimeout }),
		duration("certrelayConnectionInactivityTimeout", func(c *ReceiveConnector) *Duration { return &c.ConnectionInactivityTimeout }),
		duration("certrelayMessageTimeout", func(c *ReceiveConnector) *Duration { return &c.MessageTimeout }),
		integer("certrelayMaxRecipientsPerMessage", func(c *ReceiveConnector) *int { return &c.MaxRecipientsPerMessage }),
		str("certrelayTlsCertificateName", func(c *ReceiveConnector) *string { return &c.TlsCertificateName }),
		boolean("certrelayTlsWildcardOneLabel", func(c *ReceiveConnector) *bool { return &c.TlsWildcardOneLabel }),
		boolean("certrelayDomainSecureEnabled", func(c *ReceiveConnector) *bool { return &c.DomainSecureEnabled }),
		boolean("certrelayEnabled", func(c *ReceiveConnector) *bool { return &c.Enabled }),
	},
	check: func(c *ReceiveConnector) error { c.ApplyLimitDefaults(); return nil },
}

var sendCodec = codec[SendConnector]{
	kind: kindSend, class: "certrelaySendConnector", container: "Connectors",
	name: func(c *SendConnector) string { return c.Name },
	fields: []fieldOf[SendConnector]{
		{"certrelayAddressSpace",
			func(c *SendConnector) []string {
				out := make([]string, len(c.AddressSpaces))
				for i, a := range c.AddressSpaces {
					out[i] = a.Domain + ";" + strconv.Itoa(a.Cost)
				}
				return out
			},
			func(c *SendConnector, vals []string) error {
				for _, v := range vals {
					d, cost, ok := strings.Cut(v, ";")
					n, err := strconv.Atoi(cost)
					if !ok || err != nil {
						return fmt.Errorf("certrelayAddressSpace is %q, not DOMAIN;COST", v)
					}
					c.AddressSpaces = append(c.AddressSpaces, AddressSpace{Domain: d, Cost: n})
				}
				return nil
			}},
		strs("certrelaySmartHost", func(c *SendConnector) *[]string { return &c.SmartHosts }),
		str("certrelayFqdn", func(c *SendConnector) *string { return &c.Fqdn }),
		boolean("certrelayRequireTLS", func(c *SendConnector) *bool { return &c.RequireTLS }),
		boolean("certrelayDomainSecureEnabled", func(c *SendConnector) *bool { return &c.DomainSecureEnabled }),
		str("certrelayTlsCertificateName", func(c *SendConnector) *string { return &c.TlsCertificateName }),
		strs("certrelaySourceServer", func(c *SendConnector) *[]string { return &c.SourceTransportServers }),
		integer("certrelayPort", func(c *SendConnector) *int { return &c.Port }),
		integer("certrelayMaxMessageSize", func(c *SendConnector) *int64 { return &c.MaxMessageSize }),
		boolean("certrelayEnabled", func(c *SendConnector) *bool { return &c.Enabled }),
	},
}

var domainCodec = codec[AcceptedDomain]{
	kind: kindDomain, class: "certrelayAcceptedDomain", container: "Domains",
	name: func(d *AcceptedDomain) string { return d.DomainName },
	fields: []fieldOf[AcceptedDomain]{
		str("certrelayDomainName", func(d *AcceptedDomain) *string { return &d.DomainName }),
		str("certrelayDomainType", func(d *AcceptedDomain) *string { return &d.DomainType }),
		boolean("certrelayDefault", func(d *AcceptedDomain) *bool { return &d.Default }),
	},
}

var mailboxCodec = codec[Mailbox]{
	kind: kindMailbox, class: "certrelayMailbox", container: "Mailboxes",
	name: func(m *Mailbox) string { return m.Address },
	fields: []fieldOf[Mailbox]{
		str("certrelayAddress", func(m *Mailbox) *string { return &m.Address }),
		str("certrelayPasswordHash", func(m *Mailbox) *string { return &m.PasswordHash }),
		str("certrelayHomeServer", func(m *Mailbox) *string { return &m.Server }),
		str("certrelayMaildir", func(m *Mailbox) *string { return &m.Maildir }),
	},
	check: func(m *Mailbox) error {
		// POP3 and IMAP4 open it under the home server's data directory.
		if m.Maildir != "" && !filepath.IsLocal(m.Maildir) {
			return fmt.Errorf("its Maildir (certrelayMaildir) %q is not a path inside its home server's data directory", m.Maildir)
		}
		return nil
	},
}

var rootCodec = codec[TrustedRoot]{
	kind: kindRoot, class: "certrelayTrustedRoot", container: "Trust",
	name: func(r *TrustedRoot) string { return r.Thumbprint },
	fields: []fieldOf[TrustedRoot]{
		str("certrelayThumbprint", func(r *TrustedRoot) *string { return &r.Thumbprint }),
		str("certrelayRootSource", func(r *TrustedRoot) *string { return &r.Source }),
		binary("certrelayCertificate", func(r *TrustedRoot) *[]byte { return &r.Certificate }),
	},
	check: func(r *TrustedRoot) error {
		c, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			return fmt.Errorf("its certificate (certrelayCertificate) is not a certificate: %v", err)
		}
		if t := certinfo.Thumbprint(c.Raw); !strings.EqualFold(t, r.Thumbprint) {
			return fmt.Errorf("its certificate has thumbprint %s, not %s", t, r.Thumbprint)
		}
		if r.Source != SourceGroupPolicy && r.Source != SourceEnterprise {
			return fmt.Errorf("its source is %q, not GroupPolicy or Enterprise", r.Source)
		}
		return nil
	},
}

// rdn is "cn=VALUE" with VALUE escaped.
func rdn(v string) string { return "cn=" + ldap.EscapeDN(v) }

// dn returns the DN of v under base.
func (c *codec[T]) dn(base string, v *T) string {
	if c.parent != nil {
		return rdn(c.name(v)) + "," + rdn(c.parent(v)) + ",ou=Servers," + base
	}
	return rdn(c.name(v)) + ",ou=" + c.container + "," + base
}

// attrs returns the entry's attributes for an add: only those with values.
func (c *codec[T]) attrs(v *T) []ldap.Attribute {
	out := []ldap.Attribute{{Type: "objectClass", Vals: []string{"top", c.class}}, {Type: "cn", Vals: []string{c.name(v)}}}
	for _, f := range c.fields {
		if vals := f.enc(v); len(vals) > 0 {
			out = append(out, ldap.Attribute{Type: f.attr, Vals: vals})
		}
	}
	return out
}

// changes returns the modifications that make an existing entry hold v:
// every attribute of the kind replaced (an empty replace deletes it).
func (c *codec[T]) changes(dn string, v *T) *ldap.ModifyRequest {
	m := ldap.NewModifyRequest(dn, nil)
	for _, f := range c.fields {
		m.Replace(f.attr, f.enc(v))
	}
	return m
}

// attrNames lists the attributes a search asks for.
func (c *codec[T]) attrNames() []string {
	out := []string{"cn", "objectClass", "entryUUID"}
	for _, f := range c.fields {
		out = append(out, f.attr)
	}
	return out
}

// decode reads an entry; the error names what is wrong with it.
func (c *codec[T]) decode(e *ldap.Entry) (T, error) {
	var v T
	for _, f := range c.fields {
		if err := f.dec(&v, e.GetAttributeValues(f.attr)); err != nil {
			return v, err
		}
	}
	// The name is the RDN's value (whatever other cn values the entry
	// has); a connector's server, its parent's.
	cn, rest, ok := rdnValue(e.DN)
	parent := ""
	if ok && c.fromDN != nil {
		parent, _, ok = rdnValue(rest)
	}
	if !ok { // an unusual DN: the full parser
		dn, err := ldap.ParseDN(e.DN)
		if err != nil || len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) == 0 {
			return v, fmt.Errorf("its DN %q cannot be read", e.DN)
		}
		cn = dn.RDNs[0].Attributes[0].Value
		if len(dn.RDNs) > 1 && len(dn.RDNs[1].Attributes) > 0 {
			parent = dn.RDNs[1].Attributes[0].Value
		}
	}
	if c.fromDN != nil {
		if parent == "" {
			return v, fmt.Errorf("it is not under a server object")
		}
		c.fromDN(&v, parent)
	}
	if cn == "" {
		return v, fmt.Errorf("it has no name (cn)")
	}
	c.setName(&v, cn)
	if c.check != nil {
		if err := c.check(&v); err != nil {
			return v, err
		}
	}
	return v, nil
}

// setName sets the field the RDN holds.
func (c *codec[T]) setName(v *T, name string) {
	switch o := any(v).(type) {
	case *Server:
		o.Name = name
	case *ReceiveConnector:
		o.Name = name
		if o.Server != "" {
			o.Identity = o.Server + `\` + name
		}
	case *SendConnector:
		o.Name = name
	case *AcceptedDomain:
		if o.DomainName == "" {
			o.DomainName = name
		}
	case *Mailbox:
		if o.Address == "" {
			o.Address = name
		}
	case *TrustedRoot:
		if o.Thumbprint == "" {
			o.Thumbprint = name
		}
	}
}

// rdnValue reads the value of a DN's first RDN when it is a single
// "cn=VALUE" (escapes of RFC 4514 decoded), and returns the rest of the
// DN after its comma; ok is false for anything else (the caller then
// uses ldap.ParseDN).
func rdnValue(dn string) (value, rest string, ok bool) {
	if len(dn) < 4 || !strings.EqualFold(dn[:3], "cn=") {
		return "", "", false
	}
	var b []byte
	for i := 3; i < len(dn); i++ {
		c := dn[i]
		switch {
		case c == ',':
			if b == nil {
				return dn[3:i], dn[i+1:], i > 3
			}
			return string(b), dn[i+1:], len(b) > 0
		case c == '+' || c == '"' || c == '#' && i == 3:
			return "", "", false // several values, or a quoted or hex value
		case c == '\\':
			if b == nil {
				b = append([]byte(nil), dn[3:i]...)
			}
			if i+1 >= len(dn) {
				return "", "", false
			}
			if h, err := strconv.ParseUint(dn[i+1:min(i+3, len(dn))], 16, 8); err == nil && i+2 < len(dn) {
				b = append(b, byte(h))
				i += 2
			} else {
				b = append(b, dn[i+1])
				i++
			}
		default:
			if b != nil {
				b = append(b, c)
			}
		}
	}
	return "", "", false // a DN of one RDN: not under a container
}

// kindOf returns the kind of an entry by its object classes, "" when it
// is none of certrelay's.
func kindOf(e *ldap.Entry) string {
	for _, oc := range e.GetAttributeValues("objectClass") {
		switch strings.ToLower(oc) {
		case "certrelayserver":
			return kindServer
		case "certrelayreceiveconnector":
			return kindReceive
		case "certrelaysendconnector":
			return kindSend
		case "certrelayaccepteddomain":
			return kindDomain
		case "certrelaymailbox":
			return kindMailbox
		case "certrelaytrustedroot":
			return kindRoot
		}
	}
	return ""
}
