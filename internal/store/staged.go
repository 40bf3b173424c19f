package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"certrelay/internal/db"
)

// Staged rollover (SPEC L3): a staged certificate is in the store but
// enabled for nothing, so no selection uses it, until it is activated —
// at once or at a time — when it is enabled for the services it takes
// over. An activation can be undone (rolled back) within a grace period:
// the services it added are taken away again, the one exception to
// "services are only ever added" (C8), since it undoes that very
// addition.

// Staged is a staged certificate's rollover state.
type Staged struct {
	Thumbprint  string
	Services    Services  // what activation enables
	Replaces    []string  // the certificates it takes over from (preflight's)
	StagedAt    time.Time //
	ActivateAt  time.Time // zero: not scheduled
	ActivatedAt time.Time // zero: not active yet
	RolledBack  time.Time // zero: not rolled back
	// Added are the services the activation added (what a rollback
	// takes away); Previous is what the activation's side effects
	// replaced (settings as JSON), restored by a rollback.
	Added    Services
	Previous string
}

const stagedSchema = `CREATE TABLE IF NOT EXISTS staged (
	thumbprint   TEXT PRIMARY KEY,
	services     INTEGER NOT NULL,
	replaces     TEXT NOT NULL DEFAULT '',
	staged_at    TEXT NOT NULL,
	activate_at  TEXT NOT NULL DEFAULT '',
	activated_at TEXT NOT NULL DEFAULT '',
	rolled_back  TEXT NOT NULL DEFAULT '',
	added        INTEGER NOT NULL DEFAULT 0,
	previous     TEXT NOT NULL DEFAULT ''
)`

func (s *Store) migrateStaged(ctx context.Context) error {
	return db.Migrate(ctx, s.db, "store-staged", stagedSchema)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTS(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// PutStaged stores a staged certificate's state (the certificate must be
// in the store), in the transaction ctx carries or one of its own; the
// change is logged for running servers.
func (s *Store) PutStaged(ctx context.Context, st Staged) error {
	return s.change(ctx, func(ctx context.Context, tx *sql.Tx, touch func(string)) error {
		touch(st.Thumbprint)
		rep := ""
		for i, r := range st.Replaces {
			if i > 0 {
				rep += ","
			}
			rep += r
		}
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO staged(thumbprint, services, replaces, staged_at, activate_at, activated_at, rolled_back, added, previous) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			st.Thumbprint, int(st.Services), rep, ts(st.StagedAt), ts(st.ActivateAt), ts(st.ActivatedAt), ts(st.RolledBack), int(st.Added), st.Previous)
		return err
	})
}

// ListStaged returns every staged certificate's state, newest first.
func (s *Store) ListStaged(ctx context.Context) ([]Staged, error) {
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT thumbprint, services, replaces, staged_at, activate_at, activated_at, rolled_back, added, previous FROM staged ORDER BY staged_at DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Staged
	for rows.Next() {
		var st Staged
		var svc, added int
		var rep, at, act, on, rb string
		if err := rows.Scan(&st.Thumbprint, &svc, &rep, &at, &act, &on, &rb, &added, &st.Previous); err != nil {
			return nil, err
		}
		st.Services, st.Added = Services(svc), Services(added)
		if rep != "" {
			for _, r := range splitComma(rep) {
				st.Replaces = append(st.Replaces, r)
			}
		}
		st.StagedAt, st.ActivateAt, st.ActivatedAt, st.RolledBack = parseTS(at), parseTS(act), parseTS(on), parseTS(rb)
		out = append(out, st)
	}
	return out, rows.Err()
}

// GetStaged returns one staged certificate's state; ErrNotFound when it
// was never staged.
func (s *Store) GetStaged(ctx context.Context, t string) (Staged, error) {
	list, err := s.ListStaged(ctx)
	if err != nil {
		return Staged{}, err
	}
	for _, st := range list {
		if st.Thumbprint == t {
			return st, nil
		}
	}
	return Staged{}, ErrNotFound
}

// WithdrawServices takes services away from a certificate: only a
// rollback of an activation does this (see Staged). In the caller's
// transaction; logged for running servers.
func (s *Store) WithdrawServices(ctx context.Context, t string, take Services) (Entry, error) {
	var e Entry
	err := s.change(ctx, func(ctx context.Context, tx *sql.Tx, touch func(string)) error {
		var err error
		if e, err = s.Get(ctx, t); err != nil {
			return err
		}
		touch(t)
		if _, err := tx.ExecContext(ctx, `UPDATE certificates SET services = ? WHERE thumbprint = ?`, int(e.Services&^take), t); err != nil {
			return err
		}
		e, err = s.Get(ctx, t)
		return err
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Entry{}, err
	}
	return e, err
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
