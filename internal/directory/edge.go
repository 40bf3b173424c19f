package directory

import (
	"context"
	"fmt"
)

// An edge's directory (SPEC X3): the embedded one, where EdgeSync writes
// what the organisation replicates to the edge — accepted domains,
// recipients, send connectors, the other servers with their internal
// certificates and receive connectors, the organisation's roots. Once the
// edge is subscribed those objects are read-only there: a change made on
// the edge would be undone by the next synchronisation, so it is refused
// with ReplicatedError, which names where to make it. The edge's own
// objects (its server object and receive connectors) stay writable.

// ReplicatedError is the error of a write, on a subscribed edge, of an
// object EdgeSync replicates from the organisation.
type ReplicatedError struct {
	Kind string // the object's kind: "accepteddomain", "mailbox", "sendconnector", "trustedroot", "server", "receiveconnector"
	Name string
}

func (e *ReplicatedError) Error() string {
	return fmt.Sprintf("%s %s is replicated to this edge from the organisation by EdgeSync and is read-only here: change it on a hub", KindNoun(e.Kind), e.Name)
}

// KindNoun names an object kind for people.
func KindNoun(kind string) string {
	switch kind {
	case kindServer:
		return "server"
	case kindReceive:
		return "receive connector"
	case kindSend:
		return "send connector"
	case kindDomain:
		return "accepted domain"
	case kindMailbox:
		return "mailbox"
	case kindRoot:
		return "trusted root"
	}
	return kind
}

// Object kinds, as ReplicatedError and the change log name them.
const (
	KindServer           = kindServer
	KindReceiveConnector = kindReceive
	KindSendConnector    = kindSend
	KindAcceptedDomain   = kindDomain
	KindMailbox          = kindMailbox
	KindTrustedRoot      = kindRoot
)

type replicationKey struct{}

// Replicating marks ctx as EdgeSync's own: EdgeGuard lets its writes
// through.
func Replicating(ctx context.Context) context.Context {
	return context.WithValue(ctx, replicationKey{}, true)
}

func replicating(ctx context.Context) bool { v, _ := ctx.Value(replicationKey{}).(bool); return v }

// EdgeGuard is the embedded directory of a server that may be an edge:
// while Subscribed says so, writes of replicated objects fail with
// *ReplicatedError unless their context comes from Replicating. Reads
// and everything else are the Embedded directory's.
type EdgeGuard struct {
	*Embedded
	// Self returns this server's name; Subscribed whether it is an edge
	// that EdgeSync fills.
	Self       func(ctx context.Context) (string, error)
	Subscribed func(ctx context.Context) (bool, error)
}

var _ Directory = (*EdgeGuard)(nil)

func (g *EdgeGuard) check(ctx context.Context, kind, name, owner string) error {
	if replicating(ctx) {
		return nil
	}
	on, err := g.Subscribed(ctx)
	if err != nil || !on {
		return err
	}
	if owner != "" {
		self, err := g.Self(ctx)
		if err != nil {
			return err
		}
		if key(self) == key(owner) {
			return nil // the edge's own object
		}
	}
	return &ReplicatedError{Kind: kind, Name: name}
}

// PutServer implements Directory.
func (g *EdgeGuard) PutServer(ctx context.Context, s Server) error {
	if err := g.check(ctx, kindServer, s.Name, s.Name); err != nil {
		return err
	}
	return g.Embedded.PutServer(ctx, s)
}

// PutReceiveConnector implements Directory.
func (g *EdgeGuard) PutReceiveConnector(ctx context.Context, c ReceiveConnector) error {
	if err := g.check(ctx, kindReceive, c.Server+`\`+c.Name, c.Server); err != nil {
		return err
	}
	return g.Embedded.PutReceiveConnector(ctx, c)
}

// DeleteReceiveConnector implements Directory.
func (g *EdgeGuard) DeleteReceiveConnector(ctx context.Context, server, name string) error {
	if err := g.check(ctx, kindReceive, server+`\`+name, server); err != nil {
		return err
	}
	return g.Embedded.DeleteReceiveConnector(ctx, server, name)
}

// PutSendConnector implements Directory.
func (g *EdgeGuard) PutSendConnector(ctx context.Context, c SendConnector) error {
	if err := g.check(ctx, kindSend, c.Name, ""); err != nil {
		return err
	}
	return g.Embedded.PutSendConnector(ctx, c)
}

// DeleteSendConnector implements Directory.
func (g *EdgeGuard) DeleteSendConnector(ctx context.Context, name string) error {
	if err := g.check(ctx, kindSend, name, ""); err != nil {
		return err
	}
	return g.Embedded.DeleteSendConnector(ctx, name)
}

// PutAcceptedDomain implements Directory.
func (g *EdgeGuard) PutAcceptedDomain(ctx context.Context, d AcceptedDomain) error {
	if err := g.check(ctx, kindDomain, d.DomainName, ""); err != nil {
		return err
	}
	return g.Embedded.PutAcceptedDomain(ctx, d)
}

// DeleteAcceptedDomain implements Directory.
func (g *EdgeGuard) DeleteAcceptedDomain(ctx context.Context, name string) error {
	if err := g.check(ctx, kindDomain, name, ""); err != nil {
		return err
	}
	return g.Embedded.DeleteAcceptedDomain(ctx, name)
}

// PutMailbox implements Directory.
func (g *EdgeGuard) PutMailbox(ctx context.Context, m Mailbox) error {
	if err := g.check(ctx, kindMailbox, m.Address, ""); err != nil {
		return err
	}
	return g.Embedded.PutMailbox(ctx, m)
}

// DeleteMailbox implements Directory.
func (g *EdgeGuard) DeleteMailbox(ctx context.Context, address string) error {
	if err := g.check(ctx, kindMailbox, address, ""); err != nil {
		return err
	}
	return g.Embedded.DeleteMailbox(ctx, address)
}

// PutTrustedRoot implements Directory.
func (g *EdgeGuard) PutTrustedRoot(ctx context.Context, r TrustedRoot) error {
	if err := g.check(ctx, kindRoot, r.Thumbprint, ""); err != nil {
		return err
	}
	return g.Embedded.PutTrustedRoot(ctx, r)
}

// DeleteTrustedRoot implements Directory.
func (g *EdgeGuard) DeleteTrustedRoot(ctx context.Context, thumbprint string) error {
	if err := g.check(ctx, kindRoot, thumbprint, ""); err != nil {
		return err
	}
	return g.Embedded.DeleteTrustedRoot(ctx, thumbprint)
}
