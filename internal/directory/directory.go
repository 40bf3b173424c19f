// Package directory is the organisation's shared configuration and trust
// (Active Directory / ADAM in the seeds): server objects with their DNS
// names and internal transport certificates (SPEC X1, D3), receive and
// send connectors, accepted domains, mailboxes with their home server,
// and the trusted roots the organisation distributes (T2: GroupPolicy,
// Enterprise).
//
// One interface, Directory, with backends: Embedded (tables in the
// server's own certrelay.db, the default), LDAP (OpenLDAP shared by the
// servers of an organisation, read and written directly: what commands
// use), Replica (a copy of an LDAP directory kept current by LDAP Sync,
// RFC 4533, with the last copy kept on disk: what a running server reads)
// and Joined (a server's view once it has joined an organisation: its own
// objects are kept in its data directory and published to the
// organisation's directory; everything else is the organisation's). The
// directory never holds private keys. The LDAP schema is in
// schema/certrelay.schema (see docs/DIRECTORY.md).
package directory

import (
	"context"
	"errors"
	"strings"
)

// ErrNotFound is wrapped by lookups of objects that do not exist.
var ErrNotFound = errors.New("not in the directory")

// Server is a server object (Get-ExchangeServer in the seeds).
type Server struct {
	Name string // host name, the object's key (DnsHostName)
	Fqdn string // DnsFullyQualifiedDomainName
	// PhysicalHostName and PhysicalFqdn are the machine's own names
	// (DnsPhysicalHostName, DnsPhysicalFullyQualifiedDomainName); ""
	// means the same as Name and Fqdn (see DNSNames).
	PhysicalHostName string   `json:",omitempty"`
	PhysicalFqdn     string   `json:",omitempty"`
	Role             string   // "hub" or "edge"
	NLBNames         []string `json:",omitempty"` // names a load balancer adds (Q4)

	// InternalTransportCertificateThumbprint names, in this server's
	// personal store, the certificate used with other servers (X1).
	InternalTransportCertificateThumbprint string
	// InternalTransportCertificate is its public part, DER, published so
	// peers can check direct trust (X2).
	InternalTransportCertificate []byte `json:",omitempty"`

	// ServerCredential is the public key (PKIX DER, Ed25519) of the
	// server's organisation credential, with which hubs authenticate each
	// other when one of them has no internal transport certificate to
	// present (S6: the ephemeral fallback); see docs/DIRECTORY.md.
	ServerCredential []byte `json:",omitempty"`

	// EdgeSyncAddress is, for an edge that joined by subscription (SPEC
	// X3), where its EdgeSync endpoint listens (HOST:PORT); "" for every
	// other server.
	EdgeSyncAddress string `json:",omitempty"`
	// EdgeSyncBootstrap is the subscription's bootstrap account and
	// password ("ACCOUNT PASSWORD"), with which the first synchronisation
	// authenticates to the edge; the hub that completes it clears it.
	// Never printed.
	EdgeSyncBootstrap string `json:",omitempty"`
}

// Subscribed reports whether s is an edge that joined by subscription.
func (s Server) Subscribed() bool { return s.Role == RoleEdge && s.EdgeSyncAddress != "" }

// DNSName is one of a server's names with the property that holds it.
type DNSName struct {
	Property string // DnsHostName, DnsFullyQualifiedDomainName, …, NLBName
	Name     string
}

// DNSNames returns the names direct trust checks a server's certificate
// against (D3), in this order: DnsFullyQualifiedDomainName, DnsHostName,
// DnsPhysicalFullyQualifiedDomainName, DnsPhysicalHostName, and each
// load-balancer name (Q4). Physical names default to the others.
func (s Server) DNSNames() []DNSName {
	phys, physFqdn := s.PhysicalHostName, s.PhysicalFqdn
	if phys == "" {
		phys = s.Name
	}
	if physFqdn == "" {
		physFqdn = s.Fqdn
	}
	out := []DNSName{
		{"DnsFullyQualifiedDomainName", s.Fqdn},
		{"DnsHostName", s.Name},
		{"DnsPhysicalFullyQualifiedDomainName", physFqdn},
		{"DnsPhysicalHostName", phys},
	}
	for _, n := range s.NLBNames {
		out = append(out, DNSName{"NLBName", n})
	}
	return out
}

// TrustedRoot is a root CA certificate the organisation distributes to
// every server (T2): Source is "GroupPolicy" or "Enterprise", the
// RootCAType of the certificates whose chain ends there.
type TrustedRoot struct {
	Thumbprint  string
	Source      string
	Certificate []byte // DER
}

// Root sources the directory distributes.
const (
	SourceGroupPolicy = "GroupPolicy"
	SourceEnterprise  = "Enterprise"
)

// ErrUnavailable is wrapped by the errors of a directory that cannot be
// reached (an LDAP server down or unreachable): nothing was changed.
var ErrUnavailable = errors.New("the directory cannot be reached")

// Roles certrelay runs.
const (
	RoleHub  = "hub"
	RoleEdge = "edge"
)

// ValidRole reports whether r is a role certrelay knows.
func ValidRole(r string) bool { return r == RoleHub || r == RoleEdge }

// Directory is the organisation's shared configuration. Implementations
// are safe for concurrent use; every method honours ctx. Lookups of
// objects that do not exist return an error wrapping ErrNotFound; so do
// deletions of them. Lists are sorted by key. A shared directory that
// cannot be reached fails with an error wrapping ErrUnavailable, and a
// write that fails changes nothing. Put replaces the whole object.
type Directory interface {
	Server(ctx context.Context, name string) (Server, error)
	Servers(ctx context.Context) ([]Server, error)
	PutServer(ctx context.Context, s Server) error

	ReceiveConnectors(ctx context.Context, server string) ([]ReceiveConnector, error)
	ReceiveConnector(ctx context.Context, server, name string) (ReceiveConnector, error)
	PutReceiveConnector(ctx context.Context, c ReceiveConnector) error
	DeleteReceiveConnector(ctx context.Context, server, name string) error

	SendConnectors(ctx context.Context) ([]SendConnector, error)
	SendConnector(ctx context.Context, name string) (SendConnector, error)
	PutSendConnector(ctx context.Context, c SendConnector) error
	DeleteSendConnector(ctx context.Context, name string) error

	AcceptedDomains(ctx context.Context) ([]AcceptedDomain, error)
	PutAcceptedDomain(ctx context.Context, d AcceptedDomain) error
	DeleteAcceptedDomain(ctx context.Context, name string) error

	Mailboxes(ctx context.Context) ([]Mailbox, error)
	Mailbox(ctx context.Context, address string) (Mailbox, error)
	PutMailbox(ctx context.Context, m Mailbox) error
	DeleteMailbox(ctx context.Context, address string) error

	TrustedRoots(ctx context.Context) ([]TrustedRoot, error)
	PutTrustedRoot(ctx context.Context, r TrustedRoot) error
	DeleteTrustedRoot(ctx context.Context, thumbprint string) error
}

func key(name string) string { return strings.ToLower(strings.TrimSpace(name)) }
