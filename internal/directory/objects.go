package directory

// ReceiveConnector is an SMTP listener of one server (Get-ReceiveConnector).
type ReceiveConnector struct {
	Name     string
	Server   string
	Identity string   // "SERVER\Name", as Exchange prints it
	Bindings []string // ip:port
	// Fqdn is the name the connector gives in its greeting and EHLO, and
	// matches certificates against for STARTTLS (S1); "" uses the
	// server's FQDN.
	Fqdn             string
	PermissionGroups []string // AnonymousUsers, ExchangeUsers, ExchangeServers, Partners
	AuthMechanism    []string // Tls, BasicAuth, BasicAuthRequireTLS, ExchangeServer
	RequireTLS       bool
	MaxMessageSize   int64 // bytes

	// Limits (SPEC P1), with Exchange's names; defaults in limits.go. A
	// connector stored before they existed reads with the defaults.
	MaxInboundConnection          int      // sessions at once
	MaxInboundConnectionPerSource int      // sessions at once from one client IP address
	ConnectionTimeout             Duration // a whole session
	ConnectionInactivityTimeout   Duration // waiting for a command or for message data
	MessageTimeout                Duration // one message, from 354 to the final dot
	MaxRecipientsPerMessage       int      // distinct recipients of one message

	TlsCertificateName string `json:",omitempty"` // "<I>issuer<S>subject" (S4a)
	// TlsWildcardOneLabel restricts wildcard certificates to one label (S3).
	TlsWildcardOneLabel bool
	// DomainSecureEnabled makes the connector a partners' one: mail on it
	// is accepted only from a client whose certificate authenticates the
	// sender's domain, as for the domains of TLSReceiveDomainSecureList
	// (SPEC DS1).
	DomainSecureEnabled bool `json:",omitempty"`
	Enabled             bool
}

// SendConnector is an outbound route (Get-SendConnector).
type SendConnector struct {
	Name          string
	AddressSpaces []AddressSpace
	SmartHosts    []string `json:",omitempty"` // host:port; none: MX lookup
	Fqdn          string   `json:",omitempty"`
	RequireTLS    bool
	// DomainSecureEnabled applies domain security (SPEC DS1) to every
	// domain this connector routes, as if each were on
	// TLSSendDomainSecureList.
	DomainSecureEnabled    bool     `json:",omitempty"`
	TlsCertificateName     string   `json:",omitempty"`
	SourceTransportServers []string `json:",omitempty"`
	Port                   int
	MaxMessageSize         int64
	Enabled                bool
}

// AddressSpace is a domain (or "*") a send connector routes, with a cost.
type AddressSpace struct {
	Domain string
	Cost   int
}

// AcceptedDomain is a domain this organisation receives mail for.
type AcceptedDomain struct {
	DomainName string
	DomainType string // "Authoritative"
	Default    bool   `json:",omitempty"`
}

// Mailbox is a recipient with a mailbox in this organisation.
type Mailbox struct {
	Address      string // user@domain, lower-case
	PasswordHash string `json:",omitempty"` // bcrypt; never printed
	Server       string // the server whose Maildir holds it
	Maildir      string // path under the data directory
}
