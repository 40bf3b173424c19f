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
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the database's name inside the data directory.
const FileName = "certrelay.db"

// Open opens (creating if needed) the database in dataDir.
func Open(dataDir string) (*sql.DB, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dataDir, err)
	}
	path, err := filepath.Abs(filepath.Join(dataDir, FileName))
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	d, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := d.Ping(); err != nil {
		d.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	_ = os.Chmod(path, 0o600)
	return d, nil
}

// Migrate runs the statements of one package's schema in a transaction.
// Statements must be idempotent (CREATE … IF NOT EXISTS).
func Migrate(ctx context.Context, d *sql.DB, owner string, stmts ...string) error {
	return Tx(ctx, d, func(tx *sql.Tx) error {
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("schema of %s: %w", owner, err)
			}
		}
		return nil
	})
}

// Tx runs fn in a write transaction, committing when fn returns nil and
// rolling back otherwise.
func Tx(ctx context.Context, d *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
