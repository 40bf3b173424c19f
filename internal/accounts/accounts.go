// Package accounts keeps the accounts of the HTTPS console and API (SPEC
// I3): a name, a role, a password hash (argon2id, RFC 9106) and API
// tokens (stored as SHA-256 hashes, shown once). The accounts live in
// the data directory's database, beside the settings, so every command
// and the running server see the same ones; a change is read again at
// each request, so a removed account or a lowered role takes effect at
// once.
//
// The package knows roles only as names; internal/admin decides what
// each may do. Passwords never come from a command line (SPEC I5): the
// faces read them from files, standard input or a prompt.
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"certrelay/internal/db"
)

// Errors callers test.
var (
	// ErrNotFound is wrapped by operations on an account that does not
	// exist.
	ErrNotFound = errors.New("no such account")
	// ErrExists is wrapped when an account of that name exists.
	ErrExists = errors.New("the account exists")
	// ErrBadCredentials is returned for a wrong name, password or token,
	// without saying which.
	ErrBadCredentials = errors.New("wrong account name or password")
	// ErrInvalidName and ErrWeakPassword are wrapped by the refusals of a
	// name or a password.
	ErrInvalidName  = errors.New("invalid account name")
	ErrWeakPassword = errors.New("password refused")
)

// Password rules.
const (
	MinPassword = 12   // characters
	MaxPassword = 1024 // bytes: hashing longer input only costs time
)

// Account is one console account, as Get-CertrelayAccount lists it.
type Account struct {
	Name            string
	Role            string // "view-only", "server-admin" or "org-admin"
	Created         time.Time
	PasswordChanged time.Time
	LastLogin       *time.Time `json:",omitempty"`
	Tokens          int        // API tokens that have not expired
}

// Token is an API token just made: Secret is shown once and never stored.
type Token struct {
	Account string
	ID      string
	Secret  string // the whole token, "crt_ID_SECRET"
	Created time.Time
	Expires *time.Time `json:",omitempty"`
}

// Store is the account table of one data directory. Safe for concurrent
// use.
type Store struct {
	db  *sql.DB
	now func() time.Time
	// unavailable is why the tables are missing (a read-only data
	// directory made before accounts existed); nil when they are there.
	unavailable error
}

// Open creates the tables if needed. On a data directory this process
// cannot write whose database has no account tables yet, it still
// opens: the store is empty and refuses changes.
func Open(ctx context.Context, d *sql.DB, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{db: d, now: now}
	err := db.Migrate(ctx, d, "accounts",
		`CREATE TABLE IF NOT EXISTS accounts (
			name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,
			created TEXT NOT NULL, changed TEXT NOT NULL, last_login TEXT NOT NULL DEFAULT '')`,
		`CREATE TABLE IF NOT EXISTS account_tokens (
			id TEXT PRIMARY KEY, account TEXT NOT NULL, hash TEXT NOT NULL,
			created TEXT NOT NULL, expires TEXT NOT NULL DEFAULT '')`)
	if err != nil {
		if errors.Is(err, db.ErrReadOnly) || db.ReadOnly(d) {
			s.unavailable = err
			return s, nil
		}
		return nil, err
	}
	return s, nil
}

// NormalizeName checks an account name and returns its stored form
// (lower case): 1 to 64 letters, digits, '.', '_', '-' or '@'.
func NormalizeName(name string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" || len(n) > 64 {
		return "", fmt.Errorf("%w %q: give 1 to 64 characters", ErrInvalidName, name)
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)) {
			return "", fmt.Errorf("%w %q: use letters, digits, '.', '_', '-' and '@' only", ErrInvalidName, name)
		}
	}
	return n, nil
}

// CheckPassword says what is wrong with a password, or nil.
func CheckPassword(pw string) error {
	switch {
	case utf8.RuneCountInString(pw) < MinPassword:
		return fmt.Errorf("%w: it has %d characters; give at least %d", ErrWeakPassword, utf8.RuneCountInString(pw), MinPassword)
	case len(pw) > MaxPassword:
		return fmt.Errorf("%w: it is longer than %d bytes", ErrWeakPassword, MaxPassword)
	}
	return nil
}

func (s *Store) writable() error {
	if s.unavailable != nil {
		return s.unavailable
	}
	return nil
}

// Add makes an account, in the transaction ctx carries or its own.
func (s *Store) Add(ctx context.Context, name, role, password string) (Account, error) {
	n, err := NormalizeName(name)
	if err != nil {
		return Account{}, err
	}
	if err := CheckPassword(password); err != nil {
		return Account{}, err
	}
	if err := s.writable(); err != nil {
		return Account{}, err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return Account{}, err
	}
	now := s.now().UTC()
	err = db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		var x int
		if tx.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE name = ?`, n).Scan(&x) == nil {
			return fmt.Errorf("%w: %s", ErrExists, n)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO accounts(name, role, hash, created, changed) VALUES(?, ?, ?, ?, ?)`,
			n, role, hash, now.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
		return err
	})
	if err != nil {
		return Account{}, fmt.Errorf("add account %s: %w", n, err)
	}
	return s.Get(ctx, n)
}

// Get returns an account, or an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (Account, error) {
	n, err := NormalizeName(name)
	if err != nil {
		return Account{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	list, err := s.list(ctx, n)
	if err != nil {
		return Account{}, err
	}
	if len(list) == 0 {
		return Account{}, fmt.Errorf("%w: %s", ErrNotFound, n)
	}
	return list[0], nil
}

// List returns every account, by name.
func (s *Store) List(ctx context.Context) ([]Account, error) { return s.list(ctx, "") }

func (s *Store) list(ctx context.Context, only string) ([]Account, error) {
	if s.unavailable != nil {
		return nil, nil
	}
	now := s.now().UTC().Format(time.RFC3339Nano)
	q := `SELECT a.name, a.role, a.created, a.changed, a.last_login,
		(SELECT count(*) FROM account_tokens t WHERE t.account = a.name AND (t.expires = '' OR t.expires > ?))
		FROM accounts a`
	args := []any{now}
	if only != "" {
		q += ` WHERE a.name = ?`
		args = append(args, only)
	}
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, q+` ORDER BY a.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		var a Account
		var created, changed, last string
		if err := rows.Scan(&a.Name, &a.Role, &created, &changed, &last, &a.Tokens); err != nil {
			return nil, err
		}
		a.Created, _ = time.Parse(time.RFC3339Nano, created)
		a.PasswordChanged, _ = time.Parse(time.RFC3339Nano, changed)
		if t, err := time.Parse(time.RFC3339Nano, last); err == nil {
			a.LastLogin = &t
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Update changes an account's role and/or password (nil: unchanged);
// revokeTokens removes its API tokens. In the transaction ctx carries or
// its own.
func (s *Store) Update(ctx context.Context, name string, role, password *string, revokeTokens bool) (Account, error) {
	n, err := NormalizeName(name)
	if err != nil {
		return Account{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	if password != nil {
		if err := CheckPassword(*password); err != nil {
			return Account{}, err
		}
	}
	if err := s.writable(); err != nil {
		return Account{}, err
	}
	var hash string
	if password != nil {
		if hash, err = HashPassword(*password); err != nil {
			return Account{}, err
		}
	}
	now := s.now().UTC().Format(time.RFC3339Nano)
	err = db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		var x int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE name = ?`, n).Scan(&x); err != nil {
			return fmt.Errorf("%w: %s", ErrNotFound, n)
		}
		if role != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET role = ? WHERE name = ?`, *role, n); err != nil {
				return err
			}
		}
		if password != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET hash = ?, changed = ? WHERE name = ?`, hash, now, n); err != nil {
				return err
			}
		}
		if revokeTokens {
			if _, err := tx.ExecContext(ctx, `DELETE FROM account_tokens WHERE account = ?`, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Account{}, fmt.Errorf("change account %s: %w", n, err)
	}
	return s.Get(ctx, n)
}

// Remove deletes an account and its tokens.
func (s *Store) Remove(ctx context.Context, name string) (Account, error) {
	a, err := s.Get(ctx, name)
	if err != nil {
		return Account{}, err
	}
	if err := s.writable(); err != nil {
		return Account{}, err
	}
	err = db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM account_tokens WHERE account = ?`, a.Name); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM accounts WHERE name = ?`, a.Name)
		return err
	})
	if err != nil {
		return Account{}, fmt.Errorf("remove account %s: %w", a.Name, err)
	}
	return a, nil
}

// NewToken makes an API token for an account, valid for validity (0:
// until revoked). The secret is returned once; only its hash is kept.
func (s *Store) NewToken(ctx context.Context, name string, validity time.Duration) (Token, error) {
	a, err := s.Get(ctx, name)
	if err != nil {
		return Token{}, err
	}
	if err := s.writable(); err != nil {
		return Token{}, err
	}
	var idb [8]byte
	var sec [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return Token{}, err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return Token{}, err
	}
	id := hex.EncodeToString(idb[:])
	secret := base64.RawURLEncoding.EncodeToString(sec[:])
	now := s.now().UTC()
	t := Token{Account: a.Name, ID: id, Secret: tokenPrefix + id + "_" + secret, Created: now}
	expires := ""
	if validity > 0 {
		e := now.Add(validity)
		t.Expires = &e
		expires = e.Format(time.RFC3339Nano)
	}
	sum := sha256.Sum256([]byte(secret))
	err = db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO account_tokens(id, account, hash, created, expires) VALUES(?, ?, ?, ?, ?)`,
			id, a.Name, hex.EncodeToString(sum[:]), now.Format(time.RFC3339Nano), expires)
		return err
	})
	if err != nil {
		return Token{}, fmt.Errorf("make a token for %s: %w", a.Name, err)
	}
	return t, nil
}

const tokenPrefix = "crt_"

// IsToken reports whether s has the form of an API token.
func IsToken(s string) bool { return strings.HasPrefix(s, tokenPrefix) }

// Authenticate checks a password and returns the account. Every failure
// is ErrBadCredentials and costs the same time, whether the account
// exists or not. A success records the login time.
func (s *Store) Authenticate(ctx context.Context, name, password string) (Account, error) {
	n, nerr := NormalizeName(name)
	var hash string
	if nerr == nil && s.unavailable == nil {
		_ = db.Q(ctx, s.db).QueryRowContext(ctx, `SELECT hash FROM accounts WHERE name = ?`, n).Scan(&hash)
	}
	if len(password) > MaxPassword {
		password = password[:MaxPassword]
	}
	if hash == "" {
		_ = VerifyPassword(dummyHash(), password)
		return Account{}, ErrBadCredentials
	}
	if !VerifyPassword(hash, password) {
		return Account{}, ErrBadCredentials
	}
	if s.unavailable == nil && !db.ReadOnly(s.db) {
		_ = db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE accounts SET last_login = ? WHERE name = ?`, s.now().UTC().Format(time.RFC3339Nano), n)
			return err
		})
	}
	return s.Get(ctx, n)
}

// AuthenticateToken checks an API token and returns its account; every
// failure (unknown, expired, wrong secret, account gone) is
// ErrBadCredentials.
func (s *Store) AuthenticateToken(ctx context.Context, token string) (Account, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || s.unavailable != nil {
		return Account{}, ErrBadCredentials
	}
	var account, hash, expires string
	err := db.Q(ctx, s.db).QueryRowContext(ctx, `SELECT account, hash, expires FROM account_tokens WHERE id = ?`, id).Scan(&account, &hash, &expires)
	sum := sha256.Sum256([]byte(secret))
	got := hex.EncodeToString(sum[:])
	if err != nil || subtle.ConstantTimeCompare([]byte(got), []byte(hash)) != 1 {
		return Account{}, ErrBadCredentials
	}
	if expires != "" {
		if e, err := time.Parse(time.RFC3339Nano, expires); err != nil || !s.now().Before(e) {
			return Account{}, ErrBadCredentials
		}
	}
	a, err := s.Get(ctx, account)
	if err != nil {
		return Account{}, ErrBadCredentials
	}
	return a, nil
}
