package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"certrelay/internal/db"
)

// Key faults: what a server found when it tried to load a key file that
// looks fine from outside (present, readable by the service account) —
// a damaged or foreign key. Selection never reads keys, so this is the
// one fact about a key that only loading it reveals; recorded here, every
// process judges the key as the server does (cert explain, cert show),
// for as long as the file keeps the size and modification time it had.

const keyFaultSchema = `CREATE TABLE IF NOT EXISTS key_faults (
	key_id   TEXT PRIMARY KEY,
	size     INTEGER NOT NULL,
	mtime_ns INTEGER NOT NULL,
	error    TEXT NOT NULL
)`

// KeyFault is a key file that could not be loaded, as it was then.
type KeyFault struct {
	KeyID   string
	Size    int64
	ModTime time.Time
	Error   string
}

// Matches reports whether ki describes the file as it was when the fault
// was recorded.
func (f KeyFault) Matches(ki KeyInfo) bool {
	return ki.Present && ki.Size == f.Size && ki.ModTime.Equal(f.ModTime)
}

// RecordKeyFault records that the key file keyID, as it is now, cannot
// be loaded (cause), and logs a change of the certificates that use it so
// that running servers and later commands judge them again. Nothing is
// recorded for a file that is gone (KeyInfo says so already).
func (s *Store) RecordKeyFault(ctx context.Context, keyID string, cause error) error {
	fi, err := os.Stat(s.keyPath(keyID))
	if err != nil {
		return nil
	}
	size, mtime := fi.Size(), fi.ModTime()
	var kf *KeyFileError
	if errors.As(cause, &kf) {
		// The content that failed, as read: if the file was replaced
		// since, the fault does not match it.
		size, mtime = kf.Size, kf.ModTime
	}
	return s.change(ctx, func(ctx context.Context, tx *sql.Tx, touch func(string)) error {
		rows, err := tx.QueryContext(ctx, `SELECT thumbprint FROM certificates WHERE key_id = ?`, keyID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return err
			}
			touch(t)
		}
		rows.Close()
		_, err = tx.ExecContext(ctx, `INSERT INTO key_faults(key_id, size, mtime_ns, error) VALUES(?, ?, ?, ?)
			ON CONFLICT(key_id) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, error = excluded.error`,
			keyID, size, mtime.UnixNano(), fmt.Sprint(cause))
		return err
	})
}

// KeyFaults returns the recorded key faults by key ID.
func (s *Store) KeyFaults(ctx context.Context) (map[string]KeyFault, error) {
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT key_id, size, mtime_ns, error FROM key_faults`)
	if err != nil {
		return nil, fmt.Errorf("read key faults: %w", err)
	}
	defer rows.Close()
	out := map[string]KeyFault{}
	for rows.Next() {
		var f KeyFault
		var ns int64
		if err := rows.Scan(&f.KeyID, &f.Size, &ns, &f.Error); err != nil {
			return nil, err
		}
		f.ModTime = time.Unix(0, ns)
		out[f.KeyID] = f
	}
	return out, rows.Err()
}

// forgetKeyFault drops the fault of keyID, whose file is written anew or
// removed, in the transaction ctx carries.
func (s *Store) forgetKeyFault(ctx context.Context, keyID string) error {
	_, err := db.Q(ctx, s.db).ExecContext(ctx, `DELETE FROM key_faults WHERE key_id = ?`, keyID)
	return err
}
