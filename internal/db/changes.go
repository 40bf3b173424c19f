package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The change log. Every package whose data a running server serves from
// — the store, trust, the embedded directory, the settings — logs what it
// changes, in the transaction that changes it: a scope ("cert", "trust",
// "directory", "settings") and a key (a thumbprint, an object's kind and
// key; "" for "anything in the scope"). A server that learns that the
// database changed (see internal/fswatch and internal/server) reads the
// log from the last sequence number it saw, and rebuilds only what the
// entries name. Entries commit with their change or not at all, so a
// process killed after its commit has logged it, and one killed before
// has changed nothing.
//
// The log keeps the newest ChangeLogKeep entries; a reader that fell
// further behind is told so, and rebuilds everything.

// ChangeLogKeep is how many entries the change log keeps.
const ChangeLogKeep = 10000

// maxChangesRead bounds what ChangesSince returns: a reader that far
// behind does better to rebuild everything.
const maxChangesRead = 4096

const changeLogSchema = `CREATE TABLE IF NOT EXISTS change_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, key TEXT NOT NULL DEFAULT '')`

// Change is one entry of the change log.
type Change struct {
	Seq   int64
	Scope string
	Key   string
}

// Scopes of the change log.
const (
	ScopeCert      = "cert"      // key: a thumbprint; "": any certificate (also their keys' access)
	ScopeTrust     = "trust"     // roots, intermediates, revocation results: every Status may change
	ScopeDirectory = "directory" // key: "kind/key" of the object
	ScopeSettings  = "settings"  // key: the setting
)

// LogChange records, in the transaction ctx carries on d, that scope/key
// changed. It fails outside a transaction: a change logged apart from
// the change it describes could commit without it.
func LogChange(ctx context.Context, d *sql.DB, scope, key string) error {
	u := current(ctx, d)
	if u == nil {
		return errors.New("internal: a change is logged only inside the transaction that makes it")
	}
	res, err := u.tx.ExecContext(ctx, `INSERT INTO change_log(scope, key) VALUES(?, ?)`, scope, key)
	if err != nil {
		return fmt.Errorf("log the change: %w", err)
	}
	if seq, err := res.LastInsertId(); err == nil && seq > ChangeLogKeep && seq%64 == 0 {
		if _, err := u.tx.ExecContext(ctx, `DELETE FROM change_log WHERE seq <= ?`, seq-ChangeLogKeep); err != nil {
			return fmt.Errorf("trim the change log: %w", err)
		}
	}
	return nil
}

// LastChange returns the sequence number of the newest entry of the
// change log (0 when it is empty): read it before building from the
// database, then ask ChangesSince for what came after.
func LastChange(ctx context.Context, d *sql.DB) (int64, error) {
	var seq sql.NullInt64
	if err := Q(ctx, d).QueryRowContext(ctx, `SELECT max(seq) FROM change_log`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read the change log: %w", err)
	}
	return seq.Int64, nil
}

// ChangesSince returns the entries logged after seq, oldest first, and
// the sequence number to ask from next time. complete is false when the
// entries cannot be trusted to be all there were — the log was trimmed
// past seq, the database was replaced, or too many changes came at once:
// rebuild everything then.
func ChangesSince(ctx context.Context, d *sql.DB, seq int64) (changes []Change, next int64, complete bool, err error) {
	rows, err := Q(ctx, d).QueryContext(ctx, `SELECT seq, scope, key FROM change_log WHERE seq >= ? ORDER BY seq LIMIT ?`, seq, maxChangesRead+1)
	if err != nil {
		return nil, seq, false, fmt.Errorf("read the change log: %w", err)
	}
	defer rows.Close()
	first := true
	complete = true
	next = seq
	for rows.Next() {
		var c Change
		if err := rows.Scan(&c.Seq, &c.Scope, &c.Key); err != nil {
			return nil, seq, false, err
		}
		if first {
			first = false
			// The entry seq itself is still there: nothing was trimmed
			// in between (with seq 0, the log must start at 1).
			if seq > 0 && c.Seq != seq || seq == 0 && c.Seq != 1 {
				complete = false
			}
			if c.Seq == seq {
				continue
			}
		}
		changes = append(changes, c)
		next = c.Seq
	}
	if err := rows.Err(); err != nil {
		return nil, seq, false, err
	}
	if first && seq > 0 {
		complete = false // the entry seq is gone and nothing came after: another database
	}
	if len(changes) > maxChangesRead {
		complete = false
	}
	if !complete {
		last, err := LastChange(ctx, d)
		if err != nil {
			return nil, seq, false, err
		}
		return nil, last, false, nil
	}
	return changes, next, true, nil
}
