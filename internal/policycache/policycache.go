// Package policycache keeps the MTA-STS policies (RFC 8461) this server
// fetched, in certrelay.db, so that a restart does not forget them: RFC
// 8461 5.1 has senders keep a policy until its max_age ends, which is what
// protects a domain against an attacker who hides its _mta-sts record. The
// transport's STS reads and writes it (transport.PolicyStore).
package policycache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"certrelay/internal/db"
)

// Store is the policy table. Safe for concurrent use.
type Store struct{ db *sql.DB }

// Open creates the table if needed.
func Open(ctx context.Context, d *sql.DB) (*Store, error) {
	err := db.Migrate(ctx, d, "policycache",
		`CREATE TABLE IF NOT EXISTS mtasts_policies (domain TEXT PRIMARY KEY, id TEXT NOT NULL, policy TEXT NOT NULL, fetched TEXT NOT NULL, expires TEXT NOT NULL)`)
	if err != nil {
		return nil, fmt.Errorf("open the MTA-STS policy cache: %w", err)
	}
	return &Store{db: d}, nil
}

// LoadPolicy returns the policy kept for domain; ok false when none is.
func (s *Store) LoadPolicy(ctx context.Context, domain string) (id, text string, fetched, expires time.Time, ok bool) {
	var f, e string
	err := db.Q(ctx, s.db).QueryRowContext(ctx, `SELECT id, policy, fetched, expires FROM mtasts_policies WHERE domain = ?`, domain).Scan(&id, &text, &f, &e)
	if err != nil {
		return "", "", time.Time{}, time.Time{}, false
	}
	fetched, err1 := time.Parse(time.RFC3339Nano, f)
	expires, err2 := time.Parse(time.RFC3339Nano, e)
	if errors.Join(err1, err2) != nil {
		return "", "", time.Time{}, time.Time{}, false // a damaged row reads as none
	}
	return id, text, fetched, expires, true
}

// SavePolicy keeps domain's policy, replacing the one before, in one
// transaction.
func (s *Store) SavePolicy(ctx context.Context, domain, id, text string, fetched, expires time.Time) error {
	return db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO mtasts_policies(domain, id, policy, fetched, expires) VALUES(?, ?, ?, ?, ?)
			ON CONFLICT(domain) DO UPDATE SET id = excluded.id, policy = excluded.policy, fetched = excluded.fetched, expires = excluded.expires`,
			domain, id, text, fetched.UTC().Format(time.RFC3339Nano), expires.UTC().Format(time.RFC3339Nano))
		if err != nil {
			return fmt.Errorf("keep the MTA-STS policy of %s: %w", domain, err)
		}
		return nil
	})
}
