// Package acme obtains certificates from an ACME CA (RFC 8555): the
// accounts this data directory holds at ACME CAs, orders with the http-01
// (RFC 8555 §8.3), tls-alpn-01 (RFC 8737) and dns-01 (§8.4) challenges,
// and failures explained for an administrator — the CA's problem document
// (RFC 7807), the challenge it came from, what the CA saw and the likely
// fix.
//
// The protocol is github.com/mholt/acmez/v3 (JWS, nonces, orders,
// authorizations, polling, retries of another challenge type); this
// package only adds what certrelay needs around it: accounts kept in
// certrelay.db with their keys as files of mode 0600 under acme/ (written
// inside the transaction that adds the row, as the store does its keys),
// the challenge responders, and the record of how each certificate was
// obtained, so it can be renewed the same way.
//
// The network is never waited on inside a database transaction: an
// account is registered, or a certificate issued, first; the caller then
// stores the result in one transaction.
package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/safeio"

	"github.com/mholt/acmez/v3/acme"
)

// Errors callers test for.
var (
	ErrNoAccount = errors.New("no ACME account")
)

// Account is an account this data directory holds at an ACME CA.
type Account struct {
	ID        int64
	Directory string    // the CA's directory URL
	Email     string    // contact, "" when none
	URL       string    // the account's URL at the CA (its key ID)
	EAB       bool      // registered with an external account binding
	CreatedAt time.Time // when it was registered
	// CAPEM holds the roots that certify the CA's HTTPS server, when the
	// system bundle does not (a private or test CA); nil for the system's.
	CAPEM []byte
}

// Accounts is the data directory's ACME accounts and the records of the
// certificates obtained with them. Safe for concurrent use, and by several
// processes at once.
type Accounts struct {
	db  *sql.DB
	dir string // acme/ under the data directory: account keys
	now func() time.Time
	// HTTPTimeout bounds each request to a CA (default 30 s).
	HTTPTimeout time.Duration
}

const accountSchema = `CREATE TABLE IF NOT EXISTS acme_accounts (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	directory  TEXT NOT NULL,
	email      TEXT NOT NULL DEFAULT '',
	url        TEXT NOT NULL,
	eab        INTEGER NOT NULL DEFAULT 0,
	ca_pem     BLOB,
	created_at TEXT NOT NULL
)`

// Open opens the ACME accounts of the data directory dataDir on the
// database d, creating the tables and acme/ (0700) as needed, and removes
// account key files no row names (left by a process killed before its
// commit).
func Open(ctx context.Context, d *sql.DB, dataDir string, now func() time.Time) (*Accounts, error) {
	if err := db.Migrate(ctx, d, "acme", accountSchema, issuedSchema, challengeSchema); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	a := &Accounts{db: d, dir: filepath.Join(dataDir, "acme"), now: now}
	if err := a.migrateRenewals(ctx); err != nil {
		return nil, err
	}
	if db.ReadOnly(d) {
		return a, nil
	}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the ACME account directory: %w", err)
	}
	if err := a.sweep(ctx); err != nil {
		return nil, fmt.Errorf("clean up after an interrupted ACME registration: %w", err)
	}
	return a, nil
}

func (a *Accounts) keyPath(id int64) string {
	return filepath.Join(a.dir, "account-"+strconv.FormatInt(id, 10)+".key")
}

// sweep removes, under the database's write lock, key files and temporary
// files that no account row names.
func (a *Accounts) sweep(ctx context.Context) error {
	ents, err := os.ReadDir(a.dir)
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	return db.Tx(ctx, a.db, func(ctx context.Context, tx *sql.Tx) error {
		ids := map[string]bool{}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM acme_accounts`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids[filepath.Base(a.keyPath(id))] = true
		}
		rows.Close()
		for _, e := range ents {
			if !ids[e.Name()] {
				_ = os.Remove(filepath.Join(a.dir, e.Name()))
			}
		}
		return nil
	})
}

// RegisterOptions describe a new account.
type RegisterOptions struct {
	Directory string
	Email     string
	// EABKeyID and EABKey (the base64url MAC key the CA gave) bind the
	// account to one the CA knows (RFC 8555 §7.3.4); both or neither.
	EABKeyID string
	EABKey   string
	CAPEM    []byte // roots for the CA's HTTPS server, nil for the system's
	Rand     io.Reader
}

// Register makes a key, registers an account with it at the CA (agreeing
// to its terms of service) and stores both, the key in a file of mode
// 0600. The CA is asked before anything is stored; the row and the key
// file commit together (joining the transaction ctx carries, if any). A
// failure is an *Problem explained for people when the CA answered one.
func (a *Accounts) Register(ctx context.Context, o RegisterOptions) (Account, error) {
	if (o.EABKeyID == "") != (o.EABKey == "") {
		return Account{}, errors.New("an external account binding needs both its key ID and its MAC key")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), randOr(o.Rand))
	if err != nil {
		return Account{}, fmt.Errorf("make the account key: %w", err)
	}
	acct := Account{Directory: o.Directory, Email: o.Email, EAB: o.EABKeyID != "", CAPEM: o.CAPEM, CreatedAt: a.now().UTC()}
	cl, err := a.client(acct)
	if err != nil {
		return Account{}, err
	}
	reg := acme.Account{TermsOfServiceAgreed: true, PrivateKey: key}
	if o.Email != "" {
		reg.Contact = []string{"mailto:" + o.Email}
	}
	if o.EABKeyID != "" {
		if err := reg.SetExternalAccountBinding(ctx, cl, acme.EAB{KeyID: o.EABKeyID, MACKey: strings.TrimSpace(o.EABKey)}); err != nil {
			return Account{}, explain(fmt.Errorf("external account binding: %w", err), "account", o.Directory)
		}
	}
	got, err := cl.NewAccount(ctx, reg)
	if err != nil {
		return Account{}, explain(err, "account", o.Directory)
	}
	acct.URL = got.Location
	pemKey, err := certinfo.MarshalPrivateKeyPEM(key)
	if err != nil {
		return Account{}, err
	}
	err = db.Tx(ctx, a.db, func(ctx context.Context, tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `INSERT INTO acme_accounts(directory, email, url, eab, ca_pem, created_at) VALUES(?, ?, ?, ?, ?, ?)`,
			acct.Directory, acct.Email, acct.URL, acct.EAB, acct.CAPEM, acct.CreatedAt.Format(time.RFC3339Nano))
		if err != nil {
			return err
		}
		if acct.ID, err = r.LastInsertId(); err != nil {
			return err
		}
		path := a.keyPath(acct.ID)
		if err := safeio.WriteFile(path, pemKey, 0o600); err != nil {
			return fmt.Errorf("store the account key: %w", err)
		}
		db.OnRollback(ctx, a.db, func() { _ = os.Remove(path); _ = safeio.SyncDir(a.dir) })
		return nil
	})
	if err != nil {
		return Account{}, fmt.Errorf("store the ACME account: %w", err)
	}
	return acct, nil
}

// List returns the accounts, oldest first.
func (a *Accounts) List(ctx context.Context) ([]Account, error) {
	rows, err := db.Q(ctx, a.db).QueryContext(ctx, `SELECT id, directory, email, url, eab, ca_pem, created_at FROM acme_accounts ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		var ac Account
		var created string
		if err := rows.Scan(&ac.ID, &ac.Directory, &ac.Email, &ac.URL, &ac.EAB, &ac.CAPEM, &created); err != nil {
			return nil, err
		}
		ac.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
		out = append(out, ac)
	}
	return out, rows.Err()
}

// Get returns the account id; id 0 means the newest one. ErrNoAccount
// when there is none.
func (a *Accounts) Get(ctx context.Context, id int64) (Account, error) {
	list, err := a.List(ctx)
	if err != nil {
		return Account{}, err
	}
	if len(list) == 0 {
		return Account{}, ErrNoAccount
	}
	if id == 0 {
		return list[len(list)-1], nil
	}
	for _, ac := range list {
		if ac.ID == id {
			return ac, nil
		}
	}
	return Account{}, fmt.Errorf("%w with ID %d", ErrNoAccount, id)
}

// key reads the account's private key.
func (a *Accounts) key(ac Account) (crypto.Signer, error) {
	b, err := os.ReadFile(a.keyPath(ac.ID))
	if err != nil {
		return nil, fmt.Errorf("read the key of ACME account %d: %w", ac.ID, err)
	}
	return certinfo.ParsePrivateKeyPEM(b)
}

// KeyPath is the file of the account's private key (mode 0600).
func (a *Accounts) KeyPath(ac Account) string { return a.keyPath(ac.ID) }

// client is an ACME client for the account's CA.
func (a *Accounts) client(ac Account) (*acme.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(ac.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ac.CAPEM) {
			return nil, errors.New("the CA file holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	timeout := a.HTTPTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	return &acme.Client{
		Directory:    ac.Directory,
		UserAgent:    "certrelay",
		PollInterval: 250 * time.Millisecond,
		PollTimeout:  2 * time.Minute,
		HTTPClient: &http.Client{Timeout: timeout, Transport: &http.Transport{
			TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: 10 * time.Second,
		}},
	}, nil
}
