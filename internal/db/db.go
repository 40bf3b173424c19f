// Package db opens certrelay's embedded SQLite database (modernc.org/sqlite,
// pure Go) with the settings every package relies on: WAL journal so a CLI
// and a running server share the file, a busy timeout instead of
// "database is locked" errors, IMMEDIATE write transactions so two
// processes never deadlock upgrading a read lock, and synchronous=FULL so a
// committed change survives power loss.
//
// Each package owns its tables and creates them with Migrate.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the database's name inside the data directory.
const FileName = "certrelay.db"

// Open opens (creating if needed) the database in dataDir. When this
// process may not write the data directory or its database (another
// account's directory, a read-only mount), it opens the database
// read-only: reads work, and every write transaction fails at once with
// an error wrapping ErrReadOnly that names the directory and the fix.
func Open(dataDir string) (*sql.DB, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(abs, FileName)
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("create the data directory %s: %w (use another data directory, or create it as the account that runs certrelay)", abs, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", abs, err)
	}
	created := !exists(path)
	if !created && !readable(path) {
		return nil, fmt.Errorf("this account (%s) cannot read %s: run the command as the data directory's owner, or give this account read access (the database holds no private keys)", account(), path)
	}
	readOnly := !writable(abs) || !created && !writable(path)
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	if readOnly {
		if !exists(path) {
			return nil, fmt.Errorf("the data directory %s holds no %s and this account (%s) cannot create it: %w", abs, FileName, account(), readOnlyFix(abs))
		}
		// A read-only connection to a WAL database needs the shared-memory
		// index (-shm), which only a writer can create. With no write-ahead
		// log, the database file holds everything: read it as immutable.
		// With one, its index must exist and be readable.
		switch {
		case size(path+"-wal") == 0:
			q.Set("immutable", "1")
		case readable(path + "-shm"):
			q.Set("mode", "ro")
		default:
			return nil, fmt.Errorf("%s has recent changes in its write-ahead log (%s-wal), which this account (%s) cannot read: %w", path, FileName, account(), readOnlyFix(abs))
		}
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
	}
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	d, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := d.Ping(); err != nil {
		d.Close()
		if readOnly {
			return nil, fmt.Errorf("open %s read-only: %v: %w", path, err, readOnlyFix(abs))
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if readOnly {
		readOnlyDBs.Store(d, abs)
		return d, nil
	}
	if created {
		_ = os.Chmod(path, 0o600) // private by default; an administrator may open it to a group
	}
	if err := Migrate(context.Background(), d, "changes", changeLogSchema); err != nil {
		d.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return d, nil
}

// ErrReadOnly is wrapped by the errors of writes to a database Open
// opened read-only.
var ErrReadOnly = errors.New("the data directory is read-only for this account")

// readOnlyDBs maps each database opened read-only to its data directory.
var readOnlyDBs sync.Map // *sql.DB → string

// ReadOnly reports whether d was opened read-only.
func ReadOnly(d *sql.DB) bool {
	_, ok := readOnlyDBs.Load(d)
	return ok
}

// Close closes d and forgets it.
func Close(d *sql.DB) error {
	readOnlyDBs.Delete(d)
	return d.Close()
}

// readOnlyError says who cannot write which data directory, and who can.
type readOnlyError struct{ dir, account, owner string }

func (e *readOnlyError) Error() string {
	return fmt.Sprintf("this account (%s) cannot write the data directory %s: run the command as %s (for example with sudo -u %s), or use a data directory this account can write", e.account, e.dir, e.owner, e.owner)
}

func (e *readOnlyError) Is(target error) bool { return target == ErrReadOnly }

func readOnlyFix(dir string) error {
	owner := "its owner"
	if fi, err := os.Stat(dir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = userName(st.Uid)
		}
	}
	return &readOnlyError{dir: dir, account: account(), owner: owner}
}

func writable(path string) bool { return syscall.Access(path, 2 /* W_OK */) == nil }

func readable(path string) bool { return syscall.Access(path, 4 /* R_OK */) == nil }

func size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func account() string { return userName(uint32(os.Geteuid())) }

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", uid)
}

// Migrate brings one package's tables up to date. steps are the
// package's schema changes in the order they were made: each runs once
// per database, and a change to the schema appends a step — it never edits
// one (the first steps are CREATE … IF NOT EXISTS, so a database made
// before versions were kept is brought up to date too). The steps not yet
// applied run in one write transaction with the new version; opening an
// up-to-date database writes nothing, so read-only commands work on a
// data directory they cannot write.
func Migrate(ctx context.Context, d *sql.DB, owner string, steps ...string) error {
	if version(ctx, d, owner) >= len(steps) {
		return nil
	}
	return Tx(ctx, d, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_versions (owner TEXT PRIMARY KEY, version INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("schema versions: %w", err)
		}
		v := version(ctx, d, owner) // again, under the write lock
		for i := v; i < len(steps); i++ {
			if _, err := tx.ExecContext(ctx, steps[i]); err != nil {
				return fmt.Errorf("schema of %s, step %d: %w", owner, i+1, err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO schema_versions(owner, version) VALUES(?, ?) ON CONFLICT(owner) DO UPDATE SET version = excluded.version`, owner, len(steps))
		return err
	})
}

// version returns how many of owner's schema steps d has applied (0 when
// none is recorded). Inside a transaction on d, it reads through it.
func version(ctx context.Context, d *sql.DB, owner string) int {
	var v int
	if err := Q(ctx, d).QueryRowContext(ctx, `SELECT version FROM schema_versions WHERE owner = ?`, owner).Scan(&v); err != nil {
		return 0
	}
	return v
}
