// Package store is the server's personal certificate store (the Windows
// "Personal" store of the seeds): certificates with their properties
// (services, friendly name, exportability), pending certificate requests,
// and private keys.
//
// Metadata lives in certrelay.db (SQLite, WAL), so the CLI can change the
// store while a server runs; private keys are PEM files of mode 0600 under
// keys/, named by the SHA-256 of their public key, so a request, the
// certificate that answers it and any renewal with the same key share one
// file. Every change is atomic: it either completes or leaves the table and
// the key files as they were. Every committed change logs the thumbprints
// it touched in the database's change log (db.LogChange), from which a
// running server in another process rebuilds just those certificates.
//
// Store knows nothing about SMTP or trust: Status and RootCAType are
// computed by the trust package.
package store

import (
	"certrelay/internal/parallel"
	"context"
	"crypto"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/memo"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors callers test for.
var (
	ErrNotFound = errors.New("no certificate with that thumbprint in the store")
	ErrExists   = errors.New("the certificate is already in the store")
	ErrNoKey    = errors.New("the store holds no private key for this certificate")
)

// Entry is one certificate or pending request with its properties.
type Entry struct {
	Thumbprint   string
	Cert         *x509.Certificate        // nil for a pending request
	Request      *x509.CertificateRequest // set only for a pending request
	KeyID        string                   // "" when the store has no key for it
	Services     Services
	FriendlyName string
	Exportable   bool
	AddedAt      time.Time
}

// Pending reports whether e is a certificate request awaiting its
// certificate (SPEC C5).
func (e Entry) Pending() bool { return e.Request != nil }

// KeyInfo describes the private key file of an entry.
type KeyInfo struct {
	Present        bool         // the key file exists (HasPrivateKey, C10)
	Path           string       // its path ("" when the entry has no key)
	Mode           os.FileMode  // its permission bits, when Present
	AccessRules    []AccessRule // C11
	ServiceCanRead bool         // the service account can read it (S2, Q2)
	// Hidden: this process may not look into the key directory (another
	// account reading a data directory opened to it), so nothing above
	// could be checked; the row names a key, and the store writes rows
	// only with their key files.
	Hidden bool
	// Size and ModTime identify the file's current content, when Present.
	Size    int64
	ModTime time.Time
}

// Store is the personal store. Safe for concurrent use, and by several
// processes at once.
type Store struct {
	db      *sql.DB
	keysDir string
	account atomic.Pointer[Account] // the service account; changed by UseAccount
	now     func() time.Time
	// parsed remembers parsed certificates by thumbprint: a certificate's
	// DER never changes, and parsing is a large part of listing a big
	// store. Bounded; entries of removed certificates are dropped.
	parsed memo.Table[string, *x509.Certificate]
}

const schema = `CREATE TABLE IF NOT EXISTS certificates (
	thumbprint    TEXT PRIMARY KEY,
	der           BLOB,
	csr           BLOB,
	key_id        TEXT NOT NULL DEFAULT '',
	services      INTEGER NOT NULL DEFAULT 0,
	friendly_name TEXT NOT NULL DEFAULT '',
	exportable    INTEGER NOT NULL DEFAULT 0,
	added_at      TEXT NOT NULL,
	CHECK ((der IS NULL) != (csr IS NULL))
)`

const metaSchema = `CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)`

// Open opens the store in dataDir on the database d. account is the
// service account whose read access to keys Enable grants and KeyInfo
// reports; now is the clock for AddedAt.
func Open(ctx context.Context, d *sql.DB, dataDir string, account Account, now func() time.Time) (*Store, error) {
	if err := db.Migrate(ctx, d, "store", schema, metaSchema,
		`CREATE INDEX IF NOT EXISTS certificates_key ON certificates(key_id)`,
		// C6, checked once when the certificate is added: verifying the
		// signature of 10,000 certificates is most of a cold cert list.
		`ALTER TABLE certificates ADD COLUMN self_signed INTEGER`,
		`INSERT OR IGNORE INTO store_meta(key, value) VALUES('generation', 0)`,
		keyFaultSchema,
		// The certificate's fields (certinfo.MarshalFacts), so a listing
		// needs no parsing (see ListFacts).
		`ALTER TABLE certificates ADD COLUMN facts TEXT`,
		// The names each certificate holds, for ListHolding (names.go).
		namesSchema, namesTrigger, namesByThumbprint); err != nil {
		return nil, err
	}
	if err := (&Store{db: d}).migrateStaged(ctx); err != nil {
		return nil, err
	}
	keys := filepath.Join(dataDir, "keys")
	// 0711: other accounts may look up a key file they know the name of
	// (its owner and mode: what cert explain needs to answer as the
	// server does), never list the directory or read a key (files 0600).
	if err := os.MkdirAll(keys, 0o711); err != nil && !db.ReadOnly(d) {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	s := &Store{db: d, keysDir: keys, now: now}
	s.account.Store(&account)
	if err := s.backfillFacts(ctx); err != nil {
		return nil, fmt.Errorf("record the facts of stored certificates: %w", err)
	}
	if err := s.backfillNames(ctx); err != nil {
		return nil, fmt.Errorf("record the names of stored certificates: %w", err)
	}
	if err := s.sweep(ctx, ""); err != nil {
		return nil, fmt.Errorf("clean up after an interrupted operation: %w", err)
	}
	return s, nil
}

// KeysDir is the directory holding the private key files.
func (s *Store) KeysDir() string { return s.keysDir }

// Account is the service account the store grants key access to.
func (s *Store) Account() Account { return *s.account.Load() }

func (s *Store) keyPath(keyID string) string { return filepath.Join(s.keysDir, keyID+".key") }

const columns = `thumbprint, der, csr, key_id, services, friendly_name, exportable, added_at, self_signed`

type scanner interface{ Scan(...any) error }

func (s *Store) scanEntry(r scanner) (Entry, error) {
	raw, err := scanRow(r)
	if err != nil {
		return Entry{}, err
	}
	return s.decode(raw)
}

// row is one row of certificates as read, before its DER is parsed.
type row struct {
	e          Entry
	der, csr   []byte
	selfSigned sql.NullBool
}

func scanRow(r scanner) (row, error) {
	var w row
	var added string
	var exportable int
	if err := r.Scan(&w.e.Thumbprint, &w.der, &w.csr, &w.e.KeyID, &w.e.Services, &w.e.FriendlyName, &exportable, &added, &w.selfSigned); err != nil {
		return row{}, err
	}
	w.e.Exportable = exportable != 0
	w.e.AddedAt, _ = time.Parse(time.RFC3339Nano, added)
	return w, nil
}

// decode parses a row's certificate or request (remembered by
// thumbprint: the DER never changes).
func (s *Store) decode(w row) (Entry, error) {
	e := w.e
	var err error
	if w.der != nil {
		if c, ok := s.parsed.Get(e.Thumbprint); ok && string(c.Raw) == string(w.der) {
			e.Cert = c
		} else if e.Cert, err = x509.ParseCertificate(w.der); err != nil {
			return Entry{}, fmt.Errorf("certificate %s in the store is damaged: %w", e.Thumbprint, err)
		} else {
			s.parsed.Put(e.Thumbprint, e.Cert)
		}
		if w.selfSigned.Valid {
			certinfo.RememberSelfSigned(e.Cert, w.selfSigned.Bool)
		}
	} else if e.Request, err = x509.ParseCertificateRequest(w.csr); err != nil {
		return Entry{}, fmt.Errorf("request %s in the store is damaged: %w", e.Thumbprint, err)
	}
	return e, nil
}

// List returns every certificate and pending request, ordered by
// thumbprint.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT `+columns+` FROM certificates ORDER BY thumbprint`)
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	defer rows.Close()
	var raw []row
	for rows.Next() {
		w, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		raw = append(raw, w)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Parsing is most of the cost of a large store: on every core.
	out := make([]Entry, len(raw))
	errs := make([]error, len(raw))
	parallel.Each(len(raw), func(i int) { out[i], errs[i] = s.decode(raw[i]) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Get returns the entry with thumbprint t (any case, colons allowed), or
// an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, t string) (Entry, error) {
	t, _ = certinfo.NormalizeThumbprint(t)
	e, err := s.scanEntry(db.Q(ctx, s.db).QueryRowContext(ctx, `SELECT `+columns+` FROM certificates WHERE thumbprint = ?`, t))
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, t)
	}
	return e, err
}

// PendingByKeyID returns the pending request made with the key keyID.
func (s *Store) PendingByKeyID(ctx context.Context, keyID string) (Entry, bool, error) {
	e, err := s.scanEntry(db.Q(ctx, s.db).QueryRowContext(ctx, `SELECT `+columns+` FROM certificates WHERE key_id = ? AND der IS NULL`, keyID))
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, err
	}
	return e, true, nil
}

// HasKey reports whether a key file for keyID exists.
func (s *Store) HasKey(keyID string) bool {
	if keyID == "" {
		return false
	}
	fi, err := os.Stat(s.keyPath(keyID))
	return err == nil && fi.Mode().IsRegular()
}

// KeyInfo describes e's key file.
func (s *Store) KeyInfo(e Entry) KeyInfo {
	if e.KeyID == "" {
		return KeyInfo{}
	}
	ki := KeyInfo{Path: s.keyPath(e.KeyID)}
	fi, err := os.Stat(ki.Path)
	if errors.Is(err, syscall.EACCES) {
		ki.Hidden = true
		return ki
	}
	if err != nil || !fi.Mode().IsRegular() {
		return ki
	}
	ki.Present = true
	ki.Mode = fi.Mode().Perm()
	ki.Size, ki.ModTime = fi.Size(), fi.ModTime()
	ki.AccessRules = accessRules(fi)
	ki.ServiceCanRead = canRead(fi, s.Account())
	return ki
}

// PrivateKey reads e's private key. It wraps ErrNoKey when there is none.
func (s *Store) PrivateKey(e Entry) (crypto.Signer, error) {
	if e.KeyID == "" {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, e.Thumbprint)
	}
	data, err := os.ReadFile(s.keyPath(e.KeyID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s (the key file %s is missing)", ErrNoKey, e.Thumbprint, s.keyPath(e.KeyID))
	}
	if err != nil {
		return nil, fmt.Errorf("read private key of %s: %w", e.Thumbprint, err)
	}
	k, err := certinfo.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("private key of %s: %w", e.Thumbprint, err)
	}
	return k, nil
}

// PrivateKeyByID reads the private key keyID (an Entry's KeyID). It wraps
// ErrNoKey when the key file is missing. Only the code that serves a
// certificate, and export, read private keys.
func (s *Store) PrivateKeyByID(keyID string) (crypto.Signer, error) {
	path := s.keyPath(keyID)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (the key file %s is missing)", ErrNoKey, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read the private key file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read the private key file %s: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the private key file %s: %w", path, err)
	}
	k, err := certinfo.ParsePrivateKeyPEM(data)
	if err != nil {
		// The file as it was read, so a fault recorded later is about
		// this content even if the file has been replaced since.
		return nil, &KeyFileError{Path: path, Size: fi.Size(), ModTime: fi.ModTime(), Err: err}
	}
	return k, nil
}

// KeyFileError is a key file whose content could not be loaded: the file
// as it was read (size and modification time) and why.
type KeyFileError struct {
	Path    string
	Size    int64
	ModTime time.Time
	Err     error
}

func (e *KeyFileError) Error() string {
	return fmt.Sprintf("the private key file %s: %v", e.Path, e.Err)
}
func (e *KeyFileError) Unwrap() error { return e.Err }

// NewCertificate is what AddCertificate stores.
type NewCertificate struct {
	DER          []byte
	Key          crypto.Signer // nil: no private key (or the key of a pending request: see Answers)
	Answers      string        // thumbprint of the pending request this certificate answers; its key is used and the request removed
	Services     Services
	FriendlyName string
	Exportable   bool
}

// AddCertificate stores a certificate, with its key when given. The key
// must match the certificate. Adding a certificate already in the store
// fails with ErrExists and changes nothing. The key file is written
// (durably) inside the transaction that adds the row: when ctx carries a
// transaction (db.Tx), the certificate commits or rolls back with it, and
// a key file this call wrote is removed on rollback.
func (s *Store) AddCertificate(ctx context.Context, n NewCertificate) (Entry, error) {
	cert, err := x509.ParseCertificate(n.DER)
	if err != nil {
		return Entry{}, fmt.Errorf("add certificate: %w", err)
	}
	t := certinfo.Thumbprint(n.DER)
	keyID := ""
	if n.Key != nil {
		if !certinfo.KeyMatches(n.Key, cert.PublicKey) {
			return Entry{}, errors.New("add certificate: the private key does not belong to the certificate")
		}
		keyID = certinfo.KeyID(cert.RawSubjectPublicKeyInfo)
	}
	var e Entry
	err = s.change(ctx, func(ctx context.Context, tx *sql.Tx, touch func(string)) error {
		touch(t)
		if n.Answers != "" {
			touch(n.Answers)
			var reqKey string
			if err := tx.QueryRowContext(ctx, `SELECT key_id FROM certificates WHERE thumbprint = ? AND der IS NULL`, n.Answers).Scan(&reqKey); err != nil {
				return fmt.Errorf("the pending request %s is gone: %w", n.Answers, err)
			}
			if reqKey != certinfo.KeyID(cert.RawSubjectPublicKeyInfo) {
				return errors.New("the certificate's public key is not the request's")
			}
			keyID = reqKey
			if _, err := tx.ExecContext(ctx, `DELETE FROM certificates WHERE thumbprint = ?`, n.Answers); err != nil {
				return err
			}
		}
		var exists int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE thumbprint = ?`, t).Scan(&exists); err != nil {
			return err
		}
		if exists > 0 {
			return fmt.Errorf("%w: %s", ErrExists, t)
		}
		if n.Key != nil {
			if err := s.putKey(ctx, keyID, n.Key); err != nil {
				return err
			}
		}
		info := certinfo.Describe(cert)
		if _, err := tx.ExecContext(ctx, `INSERT INTO certificates(thumbprint, der, key_id, services, friendly_name, exportable, added_at, self_signed, facts) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t, n.DER, keyID, int(n.Services), n.FriendlyName, boolInt(n.Exportable), s.now().UTC().Format(time.RFC3339Nano), info.IsSelfSigned, factsOf(info)); err != nil {
			return err
		}
		if err := putNames(ctx, tx, t, info.CertificateDomains); err != nil {
			return err
		}
		e, err = s.Get(ctx, t)
		return err
	})
	if err != nil {
		return Entry{}, fmt.Errorf("add certificate %s: %w", t, err)
	}
	return e, nil
}

// AddRequest stores a pending request (SPEC M3) with its key, atomically
// as AddCertificate does. The request's thumbprint is the SHA-1 of its DER.
func (s *Store) AddRequest(ctx context.Context, csrDER []byte, key crypto.Signer, friendlyName string, exportable bool) (Entry, error) {
	req, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return Entry{}, fmt.Errorf("add request: %w", err)
	}
	keyID := certinfo.KeyID(req.RawSubjectPublicKeyInfo)
	t := certinfo.Thumbprint(csrDER)
	var e Entry
	err = s.change(ctx, func(ctx context.Context, tx *sql.Tx, touch func(string)) error {
		touch(t)
		if err := s.putKey(ctx, keyID, key); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO certificates(thumbprint, csr, key_id, friendly_name, exportable, added_at) VALUES(?, ?, ?, ?, ?, ?)`,
			t, csrDER, keyID, friendlyName, boolInt(exportable), s.now().UTC().Format(time.RFC3339Nano)); err != nil {
			return err
		}
		e, err = s.Get(ctx, t)
		return err
	})
	if err != nil {
		return Entry{}, fmt.Errorf("add request %s: %w", t, err)
	}
	return e, nil
}

// EnableServices adds services to the entry's set (never removes, SPEC
// C8) and returns the updated entry. For SMTP, POP and IMAP it makes sure
// the service account can read the private key (SPEC M5): the key file is
// given to the service account, mode 0600. That needs root when the file
// belongs to another account; the error says so, and nothing changes. The
// key file's owner is changed inside the transaction and restored if it
// rolls back.
func (s *Store) EnableServices(ctx context.Context, t string, add Services) (Entry, error) {
	var e Entry
	err := s.change(ctx, func(ctx context.Context, tx *sql.Tx, touch func(string)) error {
		var err error
		if e, err = s.Get(ctx, t); err != nil {
			return err
		}
		touch(e.Thumbprint)
		if e.Pending() {
			return errors.New("it is a pending request, not a certificate: import the CA's answer first")
		}
		if add&(SMTP|POP|IMAP) != 0 && e.KeyID != "" {
			if err := s.grantRead(ctx, e.KeyID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE certificates SET services = services | ? WHERE thumbprint = ?`, int(add), e.Thumbprint); err != nil {
			return err
		}
		e, err = s.Get(ctx, e.Thumbprint)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Entry{}, err
		}
		return Entry{}, fmt.Errorf("enable %s: %w", e.Thumbprint, err)
	}
	return e, nil
}

// Remove deletes the entry, and its key file when no other entry uses the
// key. The row goes first; the key file is removed after the commit, under
// the write lock again, and only if still no row uses it — so a process
// that adds the same key meanwhile keeps it, and a crash in between leaves
// an orphan that the next Open removes.
func (s *Store) Remove(ctx context.Context, t string) error {
	var e Entry
	err := s.change(ctx, func(ctx context.Context, tx *sql.Tx, touch func(string)) error {
		var err error
		if e, err = s.Get(ctx, t); err != nil {
			return err
		}
		touch(e.Thumbprint)
		if _, err := tx.ExecContext(ctx, `DELETE FROM certificates WHERE thumbprint = ?`, e.Thumbprint); err != nil {
			return err
		}
		db.OnCommit(ctx, s.db, func() {
			s.parsed.Delete(e.Thumbprint)
			if e.KeyID != "" {
				_ = s.sweep(context.WithoutCancel(ctx), e.KeyID)
			}
		})
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return fmt.Errorf("remove %s: %w", t, err)
	}
	return nil
}

// change runs fn in a write transaction (joining the one ctx carries) and
// logs, in the same transaction, the thumbprints fn says it touched
// (touch("") for "possibly every certificate"), so that running servers
// rebuild what changed and nothing else (db.LogChange).
func (s *Store) change(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx, touch func(thumbprint string)) error) error {
	return db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		var touched []string
		seen := map[string]bool{}
		touch := func(t string) {
			if !seen[t] {
				seen[t] = true
				touched = append(touched, t)
			}
		}
		if err := fn(ctx, tx, touch); err != nil {
			return err
		}
		for _, t := range touched {
			if err := db.LogChange(ctx, s.db, db.ScopeCert, t); err != nil {
				return err
			}
		}
		return nil
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isUniqueViolation reports a primary-key or UNIQUE constraint failure.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}
