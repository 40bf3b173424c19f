package acme

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"certrelay/internal/db"
)

// The renewal state of every certificate certrelay renews by itself —
// ACME certificates and the internal self-signed one alike (SPEC L1,
// C12) — lives here, beside the records of how ACME certificates were
// obtained: failed attempts with their last error and the next try
// (back-off), and which certificate replaced one already renewed.

// Renewal is one certificate's renewal state.
type Renewal struct {
	Thumbprint  string
	Failures    int       // failed attempts since the last success
	LastError   string    // "" when the last attempt succeeded or none was made
	LastAttempt time.Time // zero when none was made
	NextTry     time.Time // after a failure: not before then
	RenewedBy   string    // the certificate that replaced it, "" until renewed
	GaveUp      bool      // automatic attempts stopped (cert renew starts again)
}

const renewalSchema = `CREATE TABLE IF NOT EXISTS renewals (
	thumbprint   TEXT PRIMARY KEY,
	failures     INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT NOT NULL DEFAULT '',
	last_attempt TEXT NOT NULL DEFAULT '',
	next_try     TEXT NOT NULL DEFAULT '',
	renewed_by   TEXT NOT NULL DEFAULT '',
	gave_up      INTEGER NOT NULL DEFAULT 0
)`

func (a *Accounts) migrateRenewals(ctx context.Context) error {
	return db.Migrate(ctx, a.db, "renewals", renewalSchema)
}

// Renewals returns the renewal state of every certificate that has one.
func (a *Accounts) Renewals(ctx context.Context) (map[string]Renewal, error) {
	rows, err := db.Q(ctx, a.db).QueryContext(ctx, `SELECT thumbprint, failures, last_error, last_attempt, next_try, renewed_by, gave_up FROM renewals`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Renewal{}
	for rows.Next() {
		var r Renewal
		var last, next string
		if err := rows.Scan(&r.Thumbprint, &r.Failures, &r.LastError, &last, &next, &r.RenewedBy, &r.GaveUp); err != nil {
			return nil, err
		}
		r.LastAttempt, _ = time.Parse(time.RFC3339Nano, last)
		r.NextTry, _ = time.Parse(time.RFC3339Nano, next)
		out[r.Thumbprint] = r
	}
	return out, rows.Err()
}

// Renewal returns one certificate's state (the zero Renewal when none).
func (a *Accounts) Renewal(ctx context.Context, t string) (Renewal, error) {
	var r Renewal
	var last, next string
	err := db.Q(ctx, a.db).QueryRowContext(ctx, `SELECT thumbprint, failures, last_error, last_attempt, next_try, renewed_by, gave_up FROM renewals WHERE thumbprint = ?`, t).
		Scan(&r.Thumbprint, &r.Failures, &r.LastError, &last, &next, &r.RenewedBy, &r.GaveUp)
	if errors.Is(err, sql.ErrNoRows) {
		return Renewal{Thumbprint: t}, nil
	}
	r.LastAttempt, _ = time.Parse(time.RFC3339Nano, last)
	r.NextTry, _ = time.Parse(time.RFC3339Nano, next)
	return r, err
}

// PutRenewal stores a certificate's state, in the transaction ctx
// carries (or one of its own).
func (a *Accounts) PutRenewal(ctx context.Context, r Renewal) error {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return db.Tx(ctx, a.db, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO renewals(thumbprint, failures, last_error, last_attempt, next_try, renewed_by, gave_up) VALUES(?, ?, ?, ?, ?, ?, ?)`,
			r.Thumbprint, r.Failures, r.LastError, ts(r.LastAttempt), ts(r.NextTry), r.RenewedBy, r.GaveUp)
		return err
	})
}
