package directory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// OpenCopy returns the last copy of the organisation's directory that a
// running server kept in the data directory (see Replica), read-only:
// its writes fail with ErrUnavailable. An empty copy when there is none.
func OpenCopy(ctx context.Context, d *sql.DB) (*Replica, error) {
	r := &Replica{byUUID: map[string]ref{}, problems: map[string]Problem{}, o: ReplicaOptions{DB: d}, done: make(chan struct{})}
	close(r.done)
	var n int
	if err := d.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'dir_copy_meta'`).Scan(&n); err != nil || n == 0 {
		return r, err
	}
	if _, _, err := r.loadCopy(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Fallback reads the organisation's directory (Primary, an *LDAP) and,
// when it cannot be reached, the last copy a server kept in the data
// directory's database (CopyDB, read on first need), so commands that
// only read keep working during an outage; Stale then reports it. Writes
// go to Primary only: they fail while it is down.
type Fallback struct {
	Primary *LDAP
	CopyDB  *sql.DB
	stale   atomic.Bool

	once sync.Once
	cp   *Replica
}

// Copy returns the copy a server kept (read once); nil when there is none.
func (f *Fallback) Copy(ctx context.Context) *Replica {
	f.once.Do(func() {
		if f.CopyDB == nil {
			return
		}
		if cp, err := OpenCopy(ctx, f.CopyDB); err == nil {
			if _, synced := cp.Up(); !synced.IsZero() {
				f.cp = cp
			}
		}
	})
	return f.cp
}

var _ Directory = (*Fallback)(nil)

// Stale reports whether a read was answered from the copy.
func (f *Fallback) Stale() bool { return f.stale.Load() }

func read[T any](ctx context.Context, f *Fallback, primary func() (T, error), copy func(*Replica) (T, error)) (T, error) {
	v, err := primary()
	if err == nil || !errors.Is(err, ErrUnavailable) {
		return v, err
	}
	cp := f.Copy(ctx)
	if cp == nil {
		return v, err
	}
	f.stale.Store(true)
	cv, cerr := copy(cp)
	if cerr != nil && !errors.Is(cerr, ErrNotFound) {
		return v, err
	}
	if cerr != nil {
		return cv, fmt.Errorf("%w (in the copy this server kept: %v)", cerr, err)
	}
	return cv, nil
}

// Server implements Directory.
func (f *Fallback) Server(ctx context.Context, name string) (Server, error) {
	return read(ctx, f, func() (Server, error) { return f.Primary.Server(ctx, name) }, func(c *Replica) (Server, error) { return c.Server(ctx, name) })
}

// Servers implements Directory.
func (f *Fallback) Servers(ctx context.Context) ([]Server, error) {
	return read(ctx, f, func() ([]Server, error) { return f.Primary.Servers(ctx) }, func(c *Replica) ([]Server, error) { return c.Servers(ctx) })
}

// ReceiveConnectors implements Directory.
func (f *Fallback) ReceiveConnectors(ctx context.Context, server string) ([]ReceiveConnector, error) {
	return read(ctx, f, func() ([]ReceiveConnector, error) { return f.Primary.ReceiveConnectors(ctx, server) }, func(c *Replica) ([]ReceiveConnector, error) { return c.ReceiveConnectors(ctx, server) })
}

// ReceiveConnector implements Directory.
func (f *Fallback) ReceiveConnector(ctx context.Context, server, name string) (ReceiveConnector, error) {
	return read(ctx, f, func() (ReceiveConnector, error) { return f.Primary.ReceiveConnector(ctx, server, name) }, func(c *Replica) (ReceiveConnector, error) { return c.ReceiveConnector(ctx, server, name) })
}

// SendConnectors implements Directory.
func (f *Fallback) SendConnectors(ctx context.Context) ([]SendConnector, error) {
	return read(ctx, f, func() ([]SendConnector, error) { return f.Primary.SendConnectors(ctx) }, func(c *Replica) ([]SendConnector, error) { return c.SendConnectors(ctx) })
}

// SendConnector implements Directory.
func (f *Fallback) SendConnector(ctx context.Context, name string) (SendConnector, error) {
	return read(ctx, f, func() (SendConnector, error) { return f.Primary.SendConnector(ctx, name) }, func(c *Replica) (SendConnector, error) { return c.SendConnector(ctx, name) })
}

// AcceptedDomains implements Directory.
func (f *Fallback) AcceptedDomains(ctx context.Context) ([]AcceptedDomain, error) {
	return read(ctx, f, func() ([]AcceptedDomain, error) { return f.Primary.AcceptedDomains(ctx) }, func(c *Replica) ([]AcceptedDomain, error) { return c.AcceptedDomains(ctx) })
}

// Mailboxes implements Directory.
func (f *Fallback) Mailboxes(ctx context.Context) ([]Mailbox, error) {
	return read(ctx, f, func() ([]Mailbox, error) { return f.Primary.Mailboxes(ctx) }, func(c *Replica) ([]Mailbox, error) { return c.Mailboxes(ctx) })
}

// Mailbox implements Directory.
func (f *Fallback) Mailbox(ctx context.Context, address string) (Mailbox, error) {
	return read(ctx, f, func() (Mailbox, error) { return f.Primary.Mailbox(ctx, address) }, func(c *Replica) (Mailbox, error) { return c.Mailbox(ctx, address) })
}

// TrustedRoots implements Directory.
func (f *Fallback) TrustedRoots(ctx context.Context) ([]TrustedRoot, error) {
	return read(ctx, f, func() ([]TrustedRoot, error) { return f.Primary.TrustedRoots(ctx) }, func(c *Replica) ([]TrustedRoot, error) { return c.TrustedRoots(ctx) })
}

// Writes go to the directory itself.

// PutServer implements Directory.
func (f *Fallback) PutServer(ctx context.Context, s Server) error { return f.Primary.PutServer(ctx, s) }

// PutReceiveConnector implements Directory.
func (f *Fallback) PutReceiveConnector(ctx context.Context, c ReceiveConnector) error {
	return f.Primary.PutReceiveConnector(ctx, c)
}

// DeleteReceiveConnector implements Directory.
func (f *Fallback) DeleteReceiveConnector(ctx context.Context, server, name string) error {
	return f.Primary.DeleteReceiveConnector(ctx, server, name)
}

// PutSendConnector implements Directory.
func (f *Fallback) PutSendConnector(ctx context.Context, c SendConnector) error {
	return f.Primary.PutSendConnector(ctx, c)
}

// DeleteSendConnector implements Directory.
func (f *Fallback) DeleteSendConnector(ctx context.Context, name string) error {
	return f.Primary.DeleteSendConnector(ctx, name)
}

// PutAcceptedDomain implements Directory.
func (f *Fallback) PutAcceptedDomain(ctx context.Context, d AcceptedDomain) error {
	return f.Primary.PutAcceptedDomain(ctx, d)
}

// DeleteAcceptedDomain implements Directory.
func (f *Fallback) DeleteAcceptedDomain(ctx context.Context, name string) error {
	return f.Primary.DeleteAcceptedDomain(ctx, name)
}

// PutMailbox implements Directory.
func (f *Fallback) PutMailbox(ctx context.Context, m Mailbox) error {
	return f.Primary.PutMailbox(ctx, m)
}

// DeleteMailbox implements Directory.
func (f *Fallback) DeleteMailbox(ctx context.Context, address string) error {
	return f.Primary.DeleteMailbox(ctx, address)
}

// PutTrustedRoot implements Directory.
func (f *Fallback) PutTrustedRoot(ctx context.Context, r TrustedRoot) error {
	return f.Primary.PutTrustedRoot(ctx, r)
}

// DeleteTrustedRoot implements Directory.
func (f *Fallback) DeleteTrustedRoot(ctx context.Context, thumbprint string) error {
	return f.Primary.DeleteTrustedRoot(ctx, thumbprint)
}
