// Package trust decides whether certrelay can rely on a certificate: it
// keeps the trusted root store, each root with the source it came from
// (SPEC T2), and the intermediate store; it builds chains through
// intermediates and cross-certificates (T1, T3) and derives each
// certificate's Status (C9) and RootCAType (C7).
//
// Revocation (T4) is checked by internal/revocation and folded in here.
// Trust never chooses certificates: that is internal/selection's job.
package trust

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/certprop"
	"certrelay/internal/db"
)

// Status is a certificate's state as SPEC C9 names it (defined in
// certprop, so that selection can use it without trust).
type Status = certprop.Status

// The statuses of C9.
const (
	Valid                  = certprop.Valid
	Unknown                = certprop.Unknown
	RevocationCheckFailure = certprop.RevocationCheckFailure
	Revoked                = certprop.Revoked
	DateInvalid            = certprop.DateInvalid
	Untrusted              = certprop.Untrusted
	Invalid                = certprop.Invalid
	PendingRequest         = certprop.PendingRequest
)

// RootCAType says where the root of a certificate's chain comes from (C7).
type RootCAType = certprop.RootCAType

// The values of C7.
const (
	RootNone        = certprop.RootNone
	RootThirdParty  = certprop.RootThirdParty
	RootRegistry    = certprop.RootRegistry
	RootGroupPolicy = certprop.RootGroupPolicy
	RootEnterprise  = certprop.RootEnterprise
	RootUnknown     = certprop.RootUnknown
)

// Source is where a trusted root came from (T2). Its values are the
// RootCAType a chain ending at that root gets.
type Source = RootCAType

// ParseSource reads the source a root is added with.
func ParseSource(s string) (Source, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "registry", "":
		return RootRegistry, nil
	case "grouppolicy", "group-policy", "policy":
		return RootGroupPolicy, nil
	case "enterprise":
		return RootEnterprise, nil
	case "thirdparty":
		return "", errors.New("ThirdParty roots come from the system bundle (/etc/ssl/certs); add this root as registry, grouppolicy or enterprise")
	}
	return "", fmt.Errorf("unknown root source %q: use registry (this server only), grouppolicy or enterprise", s)
}

// Root is one trusted root certificate.
type Root struct {
	Thumbprint string
	Subject    string
	NotAfter   time.Time
	Source     Source
	System     bool // from the system bundle (cannot be removed here)
	Cert       *x509.Certificate
}

// DefaultSystemBundles are the files read for ThirdParty roots, first
// found wins. CERTRELAY_SYSTEM_ROOTS (a file) overrides them.
var DefaultSystemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/cert.pem",
}

// Store holds the trusted roots added to this server and the intermediate
// certificates. Safe for concurrent use and by several processes.
type Store struct {
	db      *sql.DB
	bundles []string

	// PolicyRoots, when set, returns the roots the organisation's
	// directory distributes to every server (GroupPolicy, Enterprise):
	// Roots lists them after those added here. Set it before use.
	PolicyRoots func(ctx context.Context) ([]Root, error)

	sysOnce  sync.Once
	sysRoots []*x509.Certificate
	sysErr   error
}

const schema = `CREATE TABLE IF NOT EXISTS trusted_roots (
	thumbprint TEXT PRIMARY KEY,
	der        BLOB NOT NULL,
	source     TEXT NOT NULL,
	added_at   TEXT NOT NULL
)`

const interSchema = `CREATE TABLE IF NOT EXISTS intermediates (
	thumbprint TEXT PRIMARY KEY,
	der        BLOB NOT NULL,
	added_at   TEXT NOT NULL
)`

// Open opens the trust store on d. bundles lists the system bundle files
// to try (nil: DefaultSystemBundles, or CERTRELAY_SYSTEM_ROOTS when set).
func Open(ctx context.Context, d *sql.DB, bundles []string) (*Store, error) {
	if err := db.Migrate(ctx, d, "trust", schema, interSchema, revocationSchema, revocationCacheSchema); err != nil {
		return nil, err
	}
	if bundles == nil {
		if f := os.Getenv("CERTRELAY_SYSTEM_ROOTS"); f != "" {
			bundles = []string{f}
		} else {
			bundles = DefaultSystemBundles
		}
	}
	return &Store{db: d, bundles: bundles}, nil
}

// SystemRoots returns the roots of the system bundle (ThirdParty), read
// once per Store.
func (s *Store) SystemRoots() ([]*x509.Certificate, error) {
	s.sysOnce.Do(func() {
		for _, f := range s.bundles {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			b, err := certinfo.ParseBundle(data, nil)
			if err != nil {
				s.sysErr = fmt.Errorf("system root bundle %s: %w", f, err)
				return
			}
			s.sysRoots = b.Certificates
			return
		}
	})
	return s.sysRoots, s.sysErr
}

// Roots lists the trusted roots: those added here, then the system ones.
func (s *Store) Roots(ctx context.Context) ([]Root, error) {
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT der, source FROM trusted_roots ORDER BY thumbprint`)
	if err != nil {
		return nil, fmt.Errorf("list trusted roots: %w", err)
	}
	defer rows.Close()
	var out []Root
	for rows.Next() {
		var der []byte
		var src string
		if err := rows.Scan(&der, &src); err != nil {
			return nil, err
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("a trusted root in the store is damaged: %w", err)
		}
		out = append(out, rootOf(c, RootCAType(src), false))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if s.PolicyRoots != nil {
		policy, err := s.PolicyRoots(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the organisation's trusted roots: %w", err)
		}
		out = append(out, policy...)
	}
	sys, err := s.SystemRoots()
	if err != nil {
		return nil, err
	}
	for _, c := range sys {
		out = append(out, rootOf(c, RootThirdParty, true))
	}
	return out, nil
}

// PolicyRoot describes a root the directory distributes.
func PolicyRoot(c *x509.Certificate, src Source) Root { return rootOf(c, src, false) }

func rootOf(c *x509.Certificate, src Source, system bool) Root {
	return Root{Thumbprint: certinfo.Thumbprint(c.Raw), Subject: c.Subject.String(), NotAfter: c.NotAfter, Source: src, System: system, Cert: c}
}

// AddRoot trusts c as a root from src. It must be a CA certificate or
// self-signed. Adding a root already trusted changes its source.
func (s *Store) AddRoot(ctx context.Context, c *x509.Certificate, src Source, now time.Time) error {
	if !certinfo.IsSelfSigned(c) && !(c.BasicConstraintsValid && c.IsCA) {
		return fmt.Errorf("%s is neither self-signed nor a CA certificate: a trusted root must be the CA's own certificate", c.Subject)
	}
	_, err := s.exec(ctx, `INSERT INTO trusted_roots(thumbprint, der, source, added_at) VALUES(?, ?, ?, ?)
		ON CONFLICT(thumbprint) DO UPDATE SET source = excluded.source`,
		certinfo.Thumbprint(c.Raw), c.Raw, string(src), now.UTC().Format(time.RFC3339))
	if err != nil {
		return fmt.Errorf("add trusted root: %w", err)
	}
	return nil
}

// ErrNotFound is returned when a root or intermediate is not in the store.
var ErrNotFound = errors.New("not in the trust store")

// RemoveRoot stops trusting the root with thumbprint t. System roots cannot
// be removed here.
func (s *Store) RemoveRoot(ctx context.Context, t string) error {
	t, _ = certinfo.NormalizeThumbprint(t)
	res, err := s.exec(ctx, `DELETE FROM trusted_roots WHERE thumbprint = ?`, t)
	if err != nil {
		return fmt.Errorf("remove trusted root: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if sys, _ := s.SystemRoots(); containsThumbprint(sys, t) {
			return fmt.Errorf("%s is a root of the system bundle; remove it from the system's trust (update-ca-certificates) instead", t)
		}
		return fmt.Errorf("%w: root %s", ErrNotFound, t)
	}
	return nil
}

func containsThumbprint(cs []*x509.Certificate, t string) bool {
	for _, c := range cs {
		if certinfo.Thumbprint(c.Raw) == t {
			return true
		}
	}
	return false
}

// AddIntermediate keeps c for chain building. It reports whether c was new.
func (s *Store) AddIntermediate(ctx context.Context, c *x509.Certificate, now time.Time) (bool, error) {
	res, err := s.exec(ctx, `INSERT OR IGNORE INTO intermediates(thumbprint, der, added_at) VALUES(?, ?, ?)`,
		certinfo.Thumbprint(c.Raw), c.Raw, now.UTC().Format(time.RFC3339))
	if err != nil {
		return false, fmt.Errorf("add intermediate: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// RemoveIntermediate forgets the intermediate with thumbprint t.
func (s *Store) RemoveIntermediate(ctx context.Context, t string) error {
	t, _ = certinfo.NormalizeThumbprint(t)
	res, err := s.exec(ctx, `DELETE FROM intermediates WHERE thumbprint = ?`, t)
	if err != nil {
		return fmt.Errorf("remove intermediate: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: intermediate %s", ErrNotFound, t)
	}
	return nil
}

// Intermediates lists the intermediate certificates.
func (s *Store) Intermediates(ctx context.Context) ([]*x509.Certificate, error) {
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT der FROM intermediates ORDER BY thumbprint`)
	if err != nil {
		return nil, fmt.Errorf("list intermediates: %w", err)
	}
	defer rows.Close()
	var out []*x509.Certificate
	for rows.Next() {
		var der []byte
		if err := rows.Scan(&der); err != nil {
			return nil, err
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("an intermediate in the store is damaged: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// exec runs one statement in a write transaction (joining the one ctx
// carries), and logs a trust change with it: any Status may change with a
// root, an intermediate or a revocation result, so running servers judge
// every certificate again (db.LogChange).
func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if res, err = tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return nil // nothing changed
		}
		return db.LogChange(ctx, s.db, db.ScopeTrust, "")
	})
	return res, err
}
