package directory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"certrelay/internal/db"
)

// Embedded keeps the directory in the server's own database, as JSON
// objects by kind and key, with a generation counter every write bumps.
type Embedded struct{ db *sql.DB }

var _ Directory = (*Embedded)(nil)

// Object kinds.
const (
	kindServer  = "server"
	kindReceive = "receiveconnector"
	kindSend    = "sendconnector"
	kindDomain  = "accepteddomain"
	kindMailbox = "mailbox"
	kindRoot    = "trustedroot"
)

// OpenEmbedded creates the directory's tables in d if needed.
func OpenEmbedded(ctx context.Context, d *sql.DB) (*Embedded, error) {
	err := db.Migrate(ctx, d, "directory",
		`CREATE TABLE IF NOT EXISTS dir_objects (kind TEXT NOT NULL, key TEXT NOT NULL, object TEXT NOT NULL, PRIMARY KEY(kind, key))`,
		`CREATE TABLE IF NOT EXISTS dir_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
		`INSERT OR IGNORE INTO dir_meta(key, value) VALUES('generation', 0)`,
		`CREATE TABLE IF NOT EXISTS dir_leases (edge TEXT PRIMARY KEY, value TEXT NOT NULL)`)
	if err != nil {
		return nil, err
	}
	return &Embedded{db: d}, nil
}

func (e *Embedded) get(ctx context.Context, kind, k string, v any) error {
	var obj string
	err := db.Q(ctx, e.db).QueryRowContext(ctx, `SELECT object FROM dir_objects WHERE kind = ? AND key = ?`, kind, k).Scan(&obj)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("read %s %q: %w", kind, k, err)
	}
	if err := json.Unmarshal([]byte(obj), v); err != nil {
		return fmt.Errorf("%s %q in the directory is damaged: %w", kind, k, err)
	}
	return nil
}

// list decodes every object of kind whose key starts with prefix, by key.
func list[T any](ctx context.Context, e *Embedded, kind, prefix string) ([]T, error) {
	rows, err := db.Q(ctx, e.db).QueryContext(ctx, `SELECT object FROM dir_objects WHERE kind = ? AND substr(key, 1, ?) = ? ORDER BY key`, kind, len(prefix), prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var obj string
		if err := rows.Scan(&obj); err != nil {
			return nil, err
		}
		var v T
		if err := json.Unmarshal([]byte(obj), &v); err != nil {
			return nil, fmt.Errorf("a %s in the directory is damaged: %w", kind, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (e *Embedded) put(ctx context.Context, kind, k string, v any) error {
	obj, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return db.Tx(ctx, e.db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO dir_objects(kind, key, object) VALUES(?, ?, ?) ON CONFLICT(kind, key) DO UPDATE SET object = excluded.object`, kind, k, string(obj)); err != nil {
			return fmt.Errorf("write %s %q: %w", kind, k, err)
		}
		return e.bump(ctx, tx, kind, k)
	})
}

func (e *Embedded) del(ctx context.Context, kind, k string) error {
	return db.Tx(ctx, e.db, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM dir_objects WHERE kind = ? AND key = ?`, kind, k)
		if err != nil {
			return fmt.Errorf("delete %s %q: %w", kind, k, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return e.bump(ctx, tx, kind, k)
	})
}

// bump counts a change of the object kind/k and logs it (db.LogChange),
// so running servers re-read that kind of object.
func (e *Embedded) bump(ctx context.Context, tx *sql.Tx, kind, k string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE dir_meta SET value = value + 1 WHERE key = 'generation'`); err != nil {
		return err
	}
	return db.LogChange(ctx, e.db, db.ScopeDirectory, kind+"/"+k)
}

// Generation implements Directory.
func (e *Embedded) Generation(ctx context.Context) (int64, error) {
	var g int64
	err := db.Q(ctx, e.db).QueryRowContext(ctx, `SELECT value FROM dir_meta WHERE key = 'generation'`).Scan(&g)
	return g, err
}

func notFound(err error, what string) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}

// Server implements Directory.
func (e *Embedded) Server(ctx context.Context, name string) (Server, error) {
	var s Server
	return s, notFound(e.get(ctx, kindServer, key(name), &s), fmt.Sprintf("server %q", name))
}

// Servers implements Directory.
func (e *Embedded) Servers(ctx context.Context) ([]Server, error) {
	return list[Server](ctx, e, kindServer, "")
}

// PutServer implements Directory.
func (e *Embedded) PutServer(ctx context.Context, s Server) error {
	return e.put(ctx, kindServer, key(s.Name), s)
}

// Count returns how many objects of kind (KindMailbox, …) the directory
// holds.
func (e *Embedded) Count(ctx context.Context, kind string) (int, error) {
	var n int
	err := db.Q(ctx, e.db).QueryRowContext(ctx, `SELECT COUNT(*) FROM dir_objects WHERE kind = ?`, kind).Scan(&n)
	return n, err
}

// DeleteServer removes a server object and its receive connectors (an
// edge whose subscription is removed).
func (e *Embedded) DeleteServer(ctx context.Context, name string) error {
	return db.Tx(ctx, e.db, func(ctx context.Context, tx *sql.Tx) error {
		conns, err := e.ReceiveConnectors(ctx, name)
		if err != nil {
			return err
		}
		for _, c := range conns {
			if err := e.del(ctx, kindReceive, connKey(c.Server, c.Name)); err != nil {
				return err
			}
		}
		return notFound(e.del(ctx, kindServer, key(name)), fmt.Sprintf("server %q", name))
	})
}

func connKey(server, name string) string { return key(server) + `\` + key(name) }

// ReceiveConnectors implements Directory.
func (e *Embedded) ReceiveConnectors(ctx context.Context, server string) ([]ReceiveConnector, error) {
	return list[ReceiveConnector](ctx, e, kindReceive, key(server)+`\`)
}

// ReceiveConnector implements Directory.
func (e *Embedded) ReceiveConnector(ctx context.Context, server, name string) (ReceiveConnector, error) {
	var c ReceiveConnector
	return c, notFound(e.get(ctx, kindReceive, connKey(server, name), &c), fmt.Sprintf("receive connector %q", name))
}

// PutReceiveConnector implements Directory.
func (e *Embedded) PutReceiveConnector(ctx context.Context, c ReceiveConnector) error {
	return e.put(ctx, kindReceive, connKey(c.Server, c.Name), c)
}

// DeleteReceiveConnector implements Directory.
func (e *Embedded) DeleteReceiveConnector(ctx context.Context, server, name string) error {
	return notFound(e.del(ctx, kindReceive, connKey(server, name)), fmt.Sprintf("receive connector %q", name))
}

// SendConnectors implements Directory.
func (e *Embedded) SendConnectors(ctx context.Context) ([]SendConnector, error) {
	return list[SendConnector](ctx, e, kindSend, "")
}

// SendConnector implements Directory.
func (e *Embedded) SendConnector(ctx context.Context, name string) (SendConnector, error) {
	var c SendConnector
	return c, notFound(e.get(ctx, kindSend, key(name), &c), fmt.Sprintf("send connector %q", name))
}

// PutSendConnector implements Directory.
func (e *Embedded) PutSendConnector(ctx context.Context, c SendConnector) error {
	return e.put(ctx, kindSend, key(c.Name), c)
}

// DeleteSendConnector implements Directory.
func (e *Embedded) DeleteSendConnector(ctx context.Context, name string) error {
	return notFound(e.del(ctx, kindSend, key(name)), fmt.Sprintf("send connector %q", name))
}

// AcceptedDomains implements Directory.
func (e *Embedded) AcceptedDomains(ctx context.Context) ([]AcceptedDomain, error) {
	return list[AcceptedDomain](ctx, e, kindDomain, "")
}

// PutAcceptedDomain implements Directory.
func (e *Embedded) PutAcceptedDomain(ctx context.Context, d AcceptedDomain) error {
	return e.put(ctx, kindDomain, key(d.DomainName), d)
}

// DeleteAcceptedDomain implements Directory.
func (e *Embedded) DeleteAcceptedDomain(ctx context.Context, name string) error {
	return notFound(e.del(ctx, kindDomain, key(name)), fmt.Sprintf("accepted domain %q", name))
}

// Mailboxes implements Directory.
func (e *Embedded) Mailboxes(ctx context.Context) ([]Mailbox, error) {
	return list[Mailbox](ctx, e, kindMailbox, "")
}

// Mailbox implements Directory.
func (e *Embedded) Mailbox(ctx context.Context, address string) (Mailbox, error) {
	var m Mailbox
	return m, notFound(e.get(ctx, kindMailbox, key(address), &m), fmt.Sprintf("mailbox %q", address))
}

// PutMailbox implements Directory.
func (e *Embedded) PutMailbox(ctx context.Context, m Mailbox) error {
	return e.put(ctx, kindMailbox, key(m.Address), m)
}

// DeleteMailbox implements Directory.
func (e *Embedded) DeleteMailbox(ctx context.Context, address string) error {
	return notFound(e.del(ctx, kindMailbox, key(address)), fmt.Sprintf("mailbox %q", address))
}

// TrustedRoots implements Directory.
func (e *Embedded) TrustedRoots(ctx context.Context) ([]TrustedRoot, error) {
	return list[TrustedRoot](ctx, e, kindRoot, "")
}

// PutTrustedRoot implements Directory.
func (e *Embedded) PutTrustedRoot(ctx context.Context, r TrustedRoot) error {
	return e.put(ctx, kindRoot, key(r.Thumbprint), r)
}

// DeleteTrustedRoot implements Directory.
func (e *Embedded) DeleteTrustedRoot(ctx context.Context, thumbprint string) error {
	return notFound(e.del(ctx, kindRoot, key(thumbprint)), fmt.Sprintf("trusted root %s", thumbprint))
}

// ChangeMailboxes writes put and deletes the addresses in del, in one
// transaction with one entry in the change log for the kind (EdgeSync's
// recipients rounds: 100,000 at a time). It returns how many rows
// changed.
func (e *Embedded) ChangeMailboxes(ctx context.Context, put []Mailbox, del []string) (int, error) {
	n := 0
	err := db.Tx(ctx, e.db, func(ctx context.Context, tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, `INSERT INTO dir_objects(kind, key, object) VALUES(?, ?, ?) ON CONFLICT(kind, key) DO UPDATE SET object = excluded.object`)
		if err != nil {
			return err
		}
		defer ins.Close()
		rm, err := tx.PrepareContext(ctx, `DELETE FROM dir_objects WHERE kind = ? AND key = ?`)
		if err != nil {
			return err
		}
		defer rm.Close()
		for _, m := range put {
			obj, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if _, err := ins.ExecContext(ctx, kindMailbox, key(m.Address), string(obj)); err != nil {
				return fmt.Errorf("write mailbox %q: %w", m.Address, err)
			}
			n++
		}
		for _, a := range del {
			res, err := rm.ExecContext(ctx, kindMailbox, key(a))
			if err != nil {
				return fmt.Errorf("delete mailbox %q: %w", a, err)
			}
			if c, _ := res.RowsAffected(); c > 0 {
				n++
			}
		}
		if n == 0 {
			return nil
		}
		return e.bump(ctx, tx, kindMailbox, "*")
	})
	return n, err
}
