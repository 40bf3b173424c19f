package trust

import (
	"certrelay/internal/db"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"certrelay/internal/revocation"
)

// Revocation schema: the last result per certificate (what cert list
// shows without touching the network), and the downloaded CRLs and OCSP
// responses shared by every process on this data directory.
const revocationSchema = `CREATE TABLE IF NOT EXISTS revocation_status (
	thumbprint  TEXT PRIMARY KEY,
	checked_at  TEXT NOT NULL,
	valid_until TEXT NOT NULL,
	result      TEXT NOT NULL
)`

const revocationCacheSchema = `CREATE TABLE IF NOT EXISTS revocation_cache (
	key         TEXT PRIMARY KEY,
	der         BLOB NOT NULL,
	next_update TEXT NOT NULL
)`

// Record is the last revocation check of one certificate against its
// issuer.
type Record struct {
	Thumbprint string
	CheckedAt  time.Time
	// ValidUntil is when the answers it rests on expire (the earliest
	// NextUpdate of the answers used); after that the record is stale.
	ValidUntil time.Time
	Result     revocation.Result
}

// Stale reports whether the record's answers have expired at now.
func (r Record) Stale(now time.Time) bool { return !r.ValidUntil.IsZero() && now.After(r.ValidUntil) }

// RevocationRecords returns every stored record, by thumbprint.
func (s *Store) RevocationRecords(ctx context.Context) (map[string]Record, error) {
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT thumbprint, checked_at, valid_until, result FROM revocation_status`)
	if err != nil {
		return nil, fmt.Errorf("read revocation results: %w", err)
	}
	defer rows.Close()
	out := map[string]Record{}
	for rows.Next() {
		var r Record
		var checked, until, result string
		if err := rows.Scan(&r.Thumbprint, &checked, &until, &result); err != nil {
			return nil, err
		}
		r.CheckedAt, _ = time.Parse(time.RFC3339Nano, checked)
		r.ValidUntil, _ = time.Parse(time.RFC3339Nano, until)
		if err := json.Unmarshal([]byte(result), &r.Result); err != nil {
			continue // a damaged record reads as "never checked"
		}
		out[r.Thumbprint] = r
	}
	return out, rows.Err()
}

// PutRevocationRecord stores the result of a check.
func (s *Store) PutRevocationRecord(ctx context.Context, r Record) error {
	res, err := json.Marshal(r.Result)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO revocation_status(thumbprint, checked_at, valid_until, result) VALUES(?, ?, ?, ?)
		ON CONFLICT(thumbprint) DO UPDATE SET checked_at = excluded.checked_at, valid_until = excluded.valid_until, result = excluded.result`,
		r.Thumbprint, r.CheckedAt.UTC().Format(time.RFC3339Nano), r.ValidUntil.UTC().Format(time.RFC3339Nano), string(res))
	if err != nil {
		return fmt.Errorf("store revocation result: %w", err)
	}
	return nil
}

// sqlCache is revocation.Cache on the revocation_cache table. Errors are
// treated as misses: the cache is an optimisation, never a source of
// truth, and the revocation package re-verifies what it reads.
type sqlCache struct{ db *sql.DB }

var _ revocation.Cache = sqlCache{}

func (c sqlCache) Get(key string) ([]byte, time.Time, bool) {
	var der []byte
	var next string
	err := c.db.QueryRow(`SELECT der, next_update FROM revocation_cache WHERE key = ?`, key).Scan(&der, &next)
	if errors.Is(err, sql.ErrNoRows) || err != nil {
		return nil, time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, next)
	if err != nil {
		return nil, time.Time{}, false
	}
	return der, t, true
}

func (c sqlCache) Put(key string, der []byte, nextUpdate time.Time) {
	_, _ = c.db.Exec(`INSERT INTO revocation_cache(key, der, next_update) VALUES(?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET der = excluded.der, next_update = excluded.next_update`,
		key, der, nextUpdate.UTC().Format(time.RFC3339Nano))
}

// RevocationCache is the shared cache of downloaded CRLs and OCSP
// responses, for a revocation.Checker.
func (s *Store) RevocationCache() revocation.Cache { return sqlCache{s.db} }
