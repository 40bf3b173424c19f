// Package directory is the organisation's shared configuration and trust
// (Active Directory / ADAM in the seeds): server objects with their
// internal transport certificates (SPEC X1), and, as later issues add
// them, connectors, accepted domains, recipients and subscriptions.
//
// One interface, Directory, with backends: Embedded (tables in the
// server's own certrelay.db, the default) and, later, LDAP (OpenLDAP shared
// by several servers). The directory never holds private keys.
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
	Name     string   // host name, the object's key (DnsHostName)
	Fqdn     string   // DnsFullyQualifiedDomainName
	Role     string   // "hub" or "edge"
	NLBNames []string `json:",omitempty"` // names a load balancer adds (Q4)

	// InternalTransportCertificateThumbprint names, in this server's
	// personal store, the certificate used with other servers (X1).
	InternalTransportCertificateThumbprint string
	// InternalTransportCertificate is its public part, DER, published so
	// peers can check direct trust (X2).
	InternalTransportCertificate []byte `json:",omitempty"`
}

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
// deletions of them.
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

	// Generation grows with every change, so servers notice changes made
	// by other processes (S7: no restart).
	Generation(ctx context.Context) (int64, error)
}

func key(name string) string { return strings.ToLower(strings.TrimSpace(name)) }
