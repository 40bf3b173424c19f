package store

import (
	"context"
	"crypto"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/safeio"
)

// Key files and rows change together, under one rule (SPEC P2): every
// write of a key file happens inside the database transaction that adds
// the row naming it. SQLite's write lock, taken at the start of every
// write transaction (BEGIN IMMEDIATE) by whichever process, is therefore
// also the lock of the key directory. The key is durable (written to a
// temporary file, fsynced, renamed, directory fsynced) before the row
// commits, so a committed row always has its key. What a killed process
// can leave is the converse — a key file, or a temporary one, that no row
// names — and Open sweeps those away under the same lock.

// putKey writes key as keys/<keyID>.key, mode 0600, unless that file is
// already there (the same public key, so the same key). It must run inside
// the transaction that adds the row naming keyID; if that transaction
// rolls back, the file this call wrote is removed again.
func (s *Store) putKey(ctx context.Context, keyID string, key crypto.Signer) error {
	if !db.InTx(ctx, s.db) {
		return errors.New("internal: a key file is written only inside the transaction that adds its row")
	}
	path := s.keyPath(keyID)
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	pemKey, err := certinfo.MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	if err := safeio.WriteFile(path, pemKey, 0o600); err != nil {
		return fmt.Errorf("store private key: %w", err)
	}
	if err := s.forgetKeyFault(ctx, keyID); err != nil {
		return err
	}
	db.OnRollback(ctx, s.db, func() {
		_ = os.Remove(path)
		_ = safeio.SyncDir(s.keysDir)
	})
	return nil
}

// grantRead gives the service account read access to the key file keyID,
// inside the transaction ctx carries: on rollback the file gets its old
// owner and mode back.
func (s *Store) grantRead(ctx context.Context, keyID string) error {
	path := s.keyPath(keyID)
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("the key file %s: %w", path, err)
	}
	acct := s.Account()
	if canRead(fi, acct) && fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("the key file %s: cannot read its owner", path)
	}
	if err := os.Chown(path, acct.UID, acct.GID); err != nil {
		return fmt.Errorf("cannot give the service account %s read access to the key %s: %w (run the command as root, or as %s)", acct.Name, path, err, acct.Name)
	}
	db.OnRollback(ctx, s.db, func() {
		_ = os.Chown(path, int(st.Uid), int(st.Gid))
		_ = os.Chmod(path, fi.Mode().Perm())
	})
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("set the mode of %s: %w", path, err)
	}
	return nil
}

// UseAccount makes acct the service account and gives it read access to
// the key files of every certificate enabled for SMTP, POP or IMAP, in the
// transaction ctx carries: if it rolls back, the files get their owners
// back and the store its previous account.
func (s *Store) UseAccount(ctx context.Context, acct Account) error {
	return s.change(ctx, func(ctx context.Context, _ *sql.Tx, touch func(string)) error {
		touch("") // every certificate's key facts are judged for the new account
		prev := s.account.Swap(&acct)
		db.OnRollback(ctx, s.db, func() { s.account.Store(prev) })
		list, err := s.List(ctx)
		if err != nil {
			return err
		}
		for _, e := range list {
			if e.KeyID != "" && e.Services&(SMTP|POP|IMAP) != 0 && s.HasKey(e.KeyID) {
				if err := s.grantRead(ctx, e.KeyID); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// SetAccount makes acct the service account whose access KeyInfo
// reports, without changing any file: for a process that learns that
// another one changed the service account (UseAccount there).
func (s *Store) SetAccount(acct Account) { s.account.Store(&acct) }

// isTempName reports a temporary file of safeio.WriteFile.
func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// leftovers lists the files of the key directory that no row accounts
// for: temporary files and key files whose key ID no row names. When only
// is not empty, just that key's file is considered.
func (s *Store) leftovers(ctx context.Context, only string) ([]string, error) {
	var names []string
	if only != "" {
		names = []string{only + ".key"}
	} else {
		ents, err := os.ReadDir(s.keysDir)
		if err != nil {
			return nil, fmt.Errorf("read the key directory: %w", err)
		}
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	used, err := s.keyIDsInUse(ctx, only)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		id, isKey := strings.CutSuffix(n, ".key")
		switch {
		case isTempName(n):
			out = append(out, n)
		case isKey && !used[id]:
			if _, err := os.Lstat(filepath.Join(s.keysDir, n)); err == nil {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// keyIDsInUse returns the key IDs rows name (only that one, if given).
func (s *Store) keyIDsInUse(ctx context.Context, only string) (map[string]bool, error) {
	q, args := `SELECT DISTINCT key_id FROM certificates WHERE key_id != ''`, []any{}
	if only != "" {
		q, args = `SELECT DISTINCT key_id FROM certificates WHERE key_id = ?`, []any{only}
	}
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	used := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		used[id] = true
	}
	return used, rows.Err()
}

// sweep removes leftovers (all of them, or only key keyID's file when no
// row names it). It looks first without the lock, which costs a directory
// listing, and takes the write lock only when there is something to
// remove, to decide again under it: a file another process is writing
// right now belongs to a transaction that holds the lock, and is seen
// with its row once the lock is ours.
func (s *Store) sweep(ctx context.Context, keyID string) error {
	if db.ReadOnly(s.db) {
		return nil
	}
	found, err := s.leftovers(ctx, keyID)
	if err != nil || len(found) == 0 {
		return err
	}
	return db.Tx(ctx, s.db, func(ctx context.Context, _ *sql.Tx) error {
		found, err := s.leftovers(ctx, keyID)
		if err != nil {
			return err
		}
		for _, n := range found {
			if err := os.Remove(filepath.Join(s.keysDir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove the leftover %s: %w", n, err)
			}
			if id, ok := strings.CutSuffix(n, ".key"); ok {
				if err := s.forgetKeyFault(ctx, id); err != nil {
					return err
				}
			}
		}
		return safeio.SyncDir(s.keysDir)
	})
}
