package directory

import (
	"context"
	"fmt"
	"strings"
)

// Reads, from the copy.

func getCopy[T any](r *Replica, m *kindMap[T], k, what string) (T, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := m.by[k]
	if !ok {
		return v, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return v, nil
}

func listCopy[T any](r *Replica, m *kindMap[T]) []T {
	r.mu.Lock() // list() may build the sorted list
	defer r.mu.Unlock()
	return append([]T(nil), m.list()...)
}

// Server implements Directory.
func (r *Replica) Server(_ context.Context, name string) (Server, error) {
	return getCopy(r, &r.servers, key(name), fmt.Sprintf("server %q", name))
}

// Servers implements Directory.
func (r *Replica) Servers(context.Context) ([]Server, error) { return listCopy(r, &r.servers), nil }

// ReceiveConnectors implements Directory.
func (r *Replica) ReceiveConnectors(_ context.Context, server string) ([]ReceiveConnector, error) {
	prefix := key(server) + `\`
	var out []ReceiveConnector
	for _, c := range listCopy(r, &r.receive) {
		if strings.HasPrefix(connKey(c.Server, c.Name), prefix) {
			out = append(out, c)
		}
	}
	return out, nil
}

// ReceiveConnector implements Directory.
func (r *Replica) ReceiveConnector(_ context.Context, server, name string) (ReceiveConnector, error) {
	return getCopy(r, &r.receive, connKey(server, name), fmt.Sprintf("receive connector %q", name))
}

// SendConnectors implements Directory.
func (r *Replica) SendConnectors(context.Context) ([]SendConnector, error) {
	return listCopy(r, &r.send), nil
}

// SendConnector implements Directory.
func (r *Replica) SendConnector(_ context.Context, name string) (SendConnector, error) {
	return getCopy(r, &r.send, key(name), fmt.Sprintf("send connector %q", name))
}

// AcceptedDomains implements Directory.
func (r *Replica) AcceptedDomains(context.Context) ([]AcceptedDomain, error) {
	return listCopy(r, &r.domains), nil
}

// Mailboxes implements Directory.
func (r *Replica) Mailboxes(context.Context) ([]Mailbox, error) { return listCopy(r, &r.boxes), nil }

// Mailbox implements Directory.
func (r *Replica) Mailbox(_ context.Context, address string) (Mailbox, error) {
	return getCopy(r, &r.boxes, key(address), fmt.Sprintf("mailbox %q", address))
}

// TrustedRoots implements Directory.
func (r *Replica) TrustedRoots(context.Context) ([]TrustedRoot, error) {
	return listCopy(r, &r.roots), nil
}

// Writes: to the directory, then to the copy (the sync search brings the
// same change again, which changes nothing more).

// errCopy is the error of writes to a copy opened with OpenCopy.
var errCopy = fmt.Errorf("%w: this is the copy a server kept; write to the directory itself", ErrUnavailable)

func (r *Replica) wrote(kind, k string, apply func()) {
	r.mu.Lock()
	apply()
	r.mu.Unlock()
	r.changed([]string{kind + "/" + k}, false)
}

// PutServer implements Directory.
func (r *Replica) PutServer(ctx context.Context, s Server) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutServer(ctx, s); err != nil {
		return err
	}
	r.wrote(kindServer, key(s.Name), func() { r.servers.put(key(s.Name), s) })
	return nil
}

// PutReceiveConnector implements Directory.
func (r *Replica) PutReceiveConnector(ctx context.Context, c ReceiveConnector) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutReceiveConnector(ctx, c); err != nil {
		return err
	}
	r.wrote(kindReceive, connKey(c.Server, c.Name), func() { r.receive.put(connKey(c.Server, c.Name), c) })
	return nil
}

// DeleteReceiveConnector implements Directory.
func (r *Replica) DeleteReceiveConnector(ctx context.Context, server, name string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteReceiveConnector(ctx, server, name); err != nil {
		return err
	}
	r.wrote(kindReceive, connKey(server, name), func() { r.receive.del(connKey(server, name)) })
	return nil
}

// PutSendConnector implements Directory.
func (r *Replica) PutSendConnector(ctx context.Context, c SendConnector) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutSendConnector(ctx, c); err != nil {
		return err
	}
	r.wrote(kindSend, key(c.Name), func() { r.send.put(key(c.Name), c) })
	return nil
}

// DeleteSendConnector implements Directory.
func (r *Replica) DeleteSendConnector(ctx context.Context, name string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteSendConnector(ctx, name); err != nil {
		return err
	}
	r.wrote(kindSend, key(name), func() { r.send.del(key(name)) })
	return nil
}

// PutAcceptedDomain implements Directory.
func (r *Replica) PutAcceptedDomain(ctx context.Context, d AcceptedDomain) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutAcceptedDomain(ctx, d); err != nil {
		return err
	}
	r.wrote(kindDomain, key(d.DomainName), func() { r.domains.put(key(d.DomainName), d) })
	return nil
}

// DeleteAcceptedDomain implements Directory.
func (r *Replica) DeleteAcceptedDomain(ctx context.Context, name string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteAcceptedDomain(ctx, name); err != nil {
		return err
	}
	r.wrote(kindDomain, key(name), func() { r.domains.del(key(name)) })
	return nil
}

// PutMailbox implements Directory.
func (r *Replica) PutMailbox(ctx context.Context, m Mailbox) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutMailbox(ctx, m); err != nil {
		return err
	}
	r.wrote(kindMailbox, key(m.Address), func() { r.boxes.put(key(m.Address), m) })
	return nil
}

// DeleteMailbox implements Directory.
func (r *Replica) DeleteMailbox(ctx context.Context, address string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteMailbox(ctx, address); err != nil {
		return err
	}
	r.wrote(kindMailbox, key(address), func() { r.boxes.del(key(address)) })
	return nil
}

// PutTrustedRoot implements Directory.
func (r *Replica) PutTrustedRoot(ctx context.Context, t TrustedRoot) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutTrustedRoot(ctx, t); err != nil {
		return err
	}
	r.wrote(kindRoot, key(t.Thumbprint), func() { r.roots.put(key(t.Thumbprint), t) })
	return nil
}

// DeleteTrustedRoot implements Directory.
func (r *Replica) DeleteTrustedRoot(ctx context.Context, thumbprint string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteTrustedRoot(ctx, thumbprint); err != nil {
		return err
	}
	r.wrote(kindRoot, key(thumbprint), func() { r.roots.del(key(thumbprint)) })
	return nil
}
