package directory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"certrelay/internal/db"
)

// Joined is the directory as a server that has joined an organisation
// sees it. Objects have one owner each:
//
//   - this server's own objects — its server object and its receive
//     connectors — are kept in its data directory (Local, committed with
//     the certificates and settings they go with) and published to the
//     organisation's directory (Org). Local is authoritative: publishing
//     writes the local copy, so it is idempotent and is repeated until the
//     two agree (Reconcile: at server start, after each change of either,
//     when the directory comes back);
//   - everything else — other servers, send connectors, accepted domains,
//     mailboxes, the organisation's roots — is the organisation's: read
//     from Org and written there.
//
// Writes to Org join the local transaction ctx carries (db.BeforeCommit):
// they are its last step, so a command whose directory write fails
// changes nothing, and one whose local steps fail writes nothing to the
// directory. Without a transaction they happen at once.
type Joined struct {
	Local *Embedded
	Org   Directory // *LDAP for commands, *Replica for a running server
	DB    *sql.DB   // the data directory's database (Local's)
	// Self returns this server's name ("" before setup), read in the
	// transaction ctx carries.
	Self func(ctx context.Context) (string, error)
}

var _ Directory = (*Joined)(nil)

// ErrNotOwn is returned by writes of another server's own objects.
var ErrNotOwn = errors.New("only that server changes its own objects")

func (j *Joined) isSelf(ctx context.Context, name string) (bool, error) {
	self, err := j.Self(ctx)
	if err != nil {
		return false, err
	}
	return self != "" && key(self) == key(name), nil
}

// orgWrite runs a write of the organisation's directory as the last step
// of the transaction ctx carries, or now.
func (j *Joined) orgWrite(ctx context.Context, fn func(ctx context.Context) error) error {
	return db.BeforeCommit(ctx, j.DB, fn)
}

// Server implements Directory.
func (j *Joined) Server(ctx context.Context, name string) (Server, error) {
	if self, err := j.isSelf(ctx, name); err != nil || self {
		if err != nil {
			return Server{}, err
		}
		return j.Local.Server(ctx, name)
	}
	return j.Org.Server(ctx, name)
}

// Servers implements Directory: the organisation's, with this server's
// own object as this data directory holds it.
func (j *Joined) Servers(ctx context.Context) ([]Server, error) {
	list, err := j.Org.Servers(ctx)
	if err != nil {
		return nil, err
	}
	self, err := j.Self(ctx)
	if err != nil || self == "" {
		return list, err
	}
	me, err := j.Local.Server(ctx, self)
	if err != nil {
		return list, nil
	}
	out := slices.DeleteFunc(slices.Clone(list), func(s Server) bool { return key(s.Name) == key(self) })
	out = append(out, me)
	slices.SortFunc(out, func(a, b Server) int {
		switch ka, kb := key(a.Name), key(b.Name); {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
	return out, nil
}

// PutServer implements Directory: this server's object only.
func (j *Joined) PutServer(ctx context.Context, s Server) error {
	if self, err := j.isSelf(ctx, s.Name); err != nil || !self {
		if err != nil {
			return err
		}
		return fmt.Errorf("write server %q: %w", s.Name, ErrNotOwn)
	}
	if err := j.Local.PutServer(ctx, s); err != nil {
		return err
	}
	return j.orgWrite(ctx, func(ctx context.Context) error { return j.publishServer(ctx, s.Name) })
}

// publishServer writes the local copy of this server's object to Org.
func (j *Joined) publishServer(ctx context.Context, name string) error {
	s, err := j.Local.Server(ctx, name)
	if err != nil {
		return err
	}
	return j.Org.PutServer(ctx, s)
}

// ReceiveConnectors implements Directory.
func (j *Joined) ReceiveConnectors(ctx context.Context, server string) ([]ReceiveConnector, error) {
	if self, err := j.isSelf(ctx, server); err != nil || self {
		if err != nil {
			return nil, err
		}
		return j.Local.ReceiveConnectors(ctx, server)
	}
	return j.Org.ReceiveConnectors(ctx, server)
}

// ReceiveConnector implements Directory.
func (j *Joined) ReceiveConnector(ctx context.Context, server, name string) (ReceiveConnector, error) {
	if self, err := j.isSelf(ctx, server); err != nil || self {
		if err != nil {
			return ReceiveConnector{}, err
		}
		return j.Local.ReceiveConnector(ctx, server, name)
	}
	return j.Org.ReceiveConnector(ctx, server, name)
}

// PutReceiveConnector implements Directory: this server's connectors only.
func (j *Joined) PutReceiveConnector(ctx context.Context, c ReceiveConnector) error {
	if self, err := j.isSelf(ctx, c.Server); err != nil || !self {
		if err != nil {
			return err
		}
		return fmt.Errorf("write receive connector %q of %s: %w", c.Name, c.Server, ErrNotOwn)
	}
	if err := j.Local.PutReceiveConnector(ctx, c); err != nil {
		return err
	}
	return j.orgWrite(ctx, func(ctx context.Context) error {
		cur, err := j.Local.ReceiveConnector(ctx, c.Server, c.Name)
		if err != nil {
			return err
		}
		return j.Org.PutReceiveConnector(ctx, cur)
	})
}

// DeleteReceiveConnector implements Directory: this server's only.
func (j *Joined) DeleteReceiveConnector(ctx context.Context, server, name string) error {
	if self, err := j.isSelf(ctx, server); err != nil || !self {
		if err != nil {
			return err
		}
		return fmt.Errorf("delete receive connector %q of %s: %w", name, server, ErrNotOwn)
	}
	if err := j.Local.DeleteReceiveConnector(ctx, server, name); err != nil {
		return err
	}
	return j.orgWrite(ctx, func(ctx context.Context) error {
		if err := j.Org.DeleteReceiveConnector(ctx, server, name); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	})
}

// The organisation's objects.

// SendConnectors implements Directory.
func (j *Joined) SendConnectors(ctx context.Context) ([]SendConnector, error) {
	return j.Org.SendConnectors(ctx)
}

// SendConnector implements Directory.
func (j *Joined) SendConnector(ctx context.Context, name string) (SendConnector, error) {
	return j.Org.SendConnector(ctx, name)
}

// PutSendConnector implements Directory.
func (j *Joined) PutSendConnector(ctx context.Context, c SendConnector) error {
	return j.orgWrite(ctx, func(ctx context.Context) error { return j.Org.PutSendConnector(ctx, c) })
}

// DeleteSendConnector implements Directory.
func (j *Joined) DeleteSendConnector(ctx context.Context, name string) error {
	return j.orgWrite(ctx, func(ctx context.Context) error { return j.Org.DeleteSendConnector(ctx, name) })
}

// AcceptedDomains implements Directory.
func (j *Joined) AcceptedDomains(ctx context.Context) ([]AcceptedDomain, error) {
	return j.Org.AcceptedDomains(ctx)
}

// PutAcceptedDomain implements Directory.
func (j *Joined) PutAcceptedDomain(ctx context.Context, d AcceptedDomain) error {
	return j.orgWrite(ctx, func(ctx context.Context) error { return j.Org.PutAcceptedDomain(ctx, d) })
}

// DeleteAcceptedDomain implements Directory.
func (j *Joined) DeleteAcceptedDomain(ctx context.Context, name string) error {
	return j.orgWrite(ctx, func(ctx context.Context) error { return j.Org.DeleteAcceptedDomain(ctx, name) })
}

// Mailboxes implements Directory.
func (j *Joined) Mailboxes(ctx context.Context) ([]Mailbox, error) { return j.Org.Mailboxes(ctx) }

// Mailbox implements Directory.
func (j *Joined) Mailbox(ctx context.Context, address string) (Mailbox, error) {
	return j.Org.Mailbox(ctx, address)
}

// PutMailbox implements Directory.
func (j *Joined) PutMailbox(ctx context.Context, m Mailbox) error {
	return j.orgWrite(ctx, func(ctx context.Context) error { return j.Org.PutMailbox(ctx, m) })
}

// DeleteMailbox implements Directory.
func (j *Joined) DeleteMailbox(ctx context.Context, address string) error {
	return j.orgWrite(ctx, func(ctx context.Context) error { return j.Org.DeleteMailbox(ctx, address) })
}

// TrustedRoots implements Directory.
func (j *Joined) TrustedRoots(ctx context.Context) ([]TrustedRoot, error) {
	return j.Org.TrustedRoots(ctx)
}

// PutTrustedRoot implements Directory.
func (j *Joined) PutTrustedRoot(ctx context.Context, r TrustedRoot) error {
	return j.orgWrite(ctx, func(ctx context.Context) error { return j.Org.PutTrustedRoot(ctx, r) })
}

// DeleteTrustedRoot implements Directory.
func (j *Joined) DeleteTrustedRoot(ctx context.Context, thumbprint string) error {
	return j.orgWrite(ctx, func(ctx context.Context) error { return j.Org.DeleteTrustedRoot(ctx, thumbprint) })
}

// Reconcile makes the organisation's directory hold this server's own
// objects as the data directory does: its server object, and exactly its
// receive connectors. It writes only what differs and returns what it
// wrote ("kind/key"); run it again after a failure. With no local server
// object (before setup) it does nothing.
func (j *Joined) Reconcile(ctx context.Context) ([]string, error) {
	self, err := j.Self(ctx)
	if err != nil || self == "" {
		return nil, err
	}
	me, err := j.Local.Server(ctx, self)
	if err != nil {
		return nil, err
	}
	var wrote []string
	// A published object that is missing, damaged (edited by hand into
	// something that does not decode) or different is written again.
	if pub, err := j.Org.Server(ctx, self); err != nil || !sameObject(&serverCodec, &pub, &me) {
		if errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		if err := j.Org.PutServer(ctx, me); err != nil {
			return wrote, err
		}
		wrote = append(wrote, kindServer+"/"+key(self))
	}
	local, err := j.Local.ReceiveConnectors(ctx, self)
	if err != nil {
		return wrote, err
	}
	pub, err := j.Org.ReceiveConnectors(ctx, self)
	if err != nil {
		return wrote, err
	}
	have := map[string]ReceiveConnector{}
	for _, c := range pub {
		have[key(c.Name)] = c
	}
	for _, c := range local {
		p, ok := have[key(c.Name)]
		delete(have, key(c.Name))
		if ok && sameObject(&receiveCodec, &p, &c) {
			continue
		}
		if err := j.Org.PutReceiveConnector(ctx, c); err != nil {
			return wrote, err
		}
		wrote = append(wrote, kindReceive+"/"+connKey(self, c.Name))
	}
	for _, c := range have {
		if err := j.Org.DeleteReceiveConnector(ctx, self, c.Name); err != nil && !errors.Is(err, ErrNotFound) {
			return wrote, err
		}
		wrote = append(wrote, kindReceive+"/"+connKey(self, c.Name))
	}
	return wrote, nil
}

// sameObject compares two objects as the directory stores them.
func sameObject[T any](c *codec[T], a, b *T) bool {
	if c.name(a) != c.name(b) {
		return false
	}
	for _, f := range c.fields {
		if !slices.Equal(f.enc(a), f.enc(b)) {
			return false
		}
	}
	return true
}

// AllReceiveConnectors lists the receive connectors of every server d
// knows (for a Joined directory: this server's as its data directory
// holds them, the others' from the organisation's directory).
func AllReceiveConnectors(ctx context.Context, d Directory) ([]ReceiveConnector, error) {
	switch d := d.(type) {
	case *Embedded:
		return list[ReceiveConnector](ctx, d, kindReceive, "")
	case *EdgeGuard:
		return list[ReceiveConnector](ctx, d.Embedded, kindReceive, "")
	case *Replica:
		return listCopy(d, &d.receive), nil
	case *Joined:
		self, err := d.Self(ctx)
		if err != nil {
			return nil, err
		}
		org, err := AllReceiveConnectors(ctx, d.Org)
		if err != nil {
			return nil, err
		}
		out := slices.DeleteFunc(org, func(c ReceiveConnector) bool { return key(c.Server) == key(self) })
		if self != "" {
			mine, err := d.Local.ReceiveConnectors(ctx, self)
			if err != nil {
				return nil, err
			}
			out = append(out, mine...)
		}
		return out, nil
	}
	servers, err := d.Servers(ctx)
	if err != nil {
		return nil, err
	}
	var out []ReceiveConnector
	for _, s := range servers {
		cs, err := d.ReceiveConnectors(ctx, s.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}
