package store

import (
	"context"
	"crypto/x509"
	"database/sql"
	"strings"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
)

// The names each certificate holds (C3), in a table of their own with an
// index, so that the certificates that may hold a DNS name are found
// without reading the store (ListHolding: cert explain with 10,000
// certificates). A name is kept lower-cased when it is ASCII; a name that
// is not is kept as "" — Unicode case folding is not lower-casing, so such
// a certificate is among the answers for every name. Rows are written in
// the transaction that adds the certificate and removed by a trigger with
// it; a store made before the table existed fills it once at Open.
const namesSchema = `CREATE TABLE IF NOT EXISTS certificate_names (
	name       TEXT NOT NULL,
	thumbprint TEXT NOT NULL,
	PRIMARY KEY (name, thumbprint)
) WITHOUT ROWID`

const namesTrigger = `CREATE TRIGGER IF NOT EXISTS certificate_names_gone AFTER DELETE ON certificates
BEGIN DELETE FROM certificate_names WHERE thumbprint = old.thumbprint; END`

// namesByThumbprint lets the trigger find a removed certificate's names
// without reading the table.
const namesByThumbprint = `CREATE INDEX IF NOT EXISTS certificate_names_thumbprint ON certificate_names(thumbprint)`

// namesFilled is the store_meta key set once every stored certificate's
// names are in certificate_names.
const namesFilled = "names_filled"

// nameKey is how a certificate's name is kept in certificate_names.
func nameKey(d string) string {
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			return ""
		}
	}
	return strings.ToLower(d)
}

// putNames records the names c holds, in tx.
func putNames(ctx context.Context, tx *sql.Tx, thumbprint string, domains []string) error {
	for _, d := range domains {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO certificate_names(name, thumbprint) VALUES(?, ?)`, nameKey(d), thumbprint); err != nil {
			return err
		}
	}
	return nil
}

// backfillNames fills certificate_names for a store made before it
// existed, once, when the data directory is writable. Until it is
// filled, ListHolding answers that it cannot narrow a search.
func (s *Store) backfillNames(ctx context.Context) error {
	return s.fillOnce(ctx, namesFilled, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT thumbprint, der, facts FROM certificates WHERE der IS NOT NULL`)
		if err != nil {
			return err
		}
		type fill struct {
			t       string
			domains []string
		}
		var fills []fill
		for rows.Next() {
			var t string
			var der []byte
			var facts sql.NullString
			if err := rows.Scan(&t, &der, &facts); err != nil {
				rows.Close()
				return err
			}
			if facts.Valid {
				if in, err := certinfo.UnmarshalFacts(facts.String); err == nil {
					fills = append(fills, fill{t, in.CertificateDomains})
					continue
				}
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				continue // a damaged row: Get says so where it is used
			}
			fills = append(fills, fill{t, certinfo.Describe(c).CertificateDomains})
		}
		rows.Close()
		if _, err := tx.ExecContext(ctx, `DELETE FROM certificate_names`); err != nil {
			return err
		}
		for _, f := range fills {
			if err := putNames(ctx, tx, f.t, f.domains); err != nil {
				return err
			}
		}
		return nil
	})
}

// fillOnce runs fill, in one transaction with setting the store_meta key
// mark, unless mark is set already or the data directory is read-only:
// work on older rows that must be done once, not at every Open.
func (s *Store) fillOnce(ctx context.Context, mark string, fill func(ctx context.Context, tx *sql.Tx) error) error {
	if db.ReadOnly(s.db) {
		return nil
	}
	if done, err := s.metaFlag(ctx, mark); err != nil || done {
		return err
	}
	return db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		if err := fill(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO store_meta(key, value) VALUES(?, 1)`, mark)
		return err
	})
}

// metaFlag reports whether the store_meta key is set to 1.
func (s *Store) metaFlag(ctx context.Context, key string) (bool, error) {
	var v int
	err := db.Q(ctx, s.db).QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = ?`, key).Scan(&v)
	if err == sql.ErrNoRows {
		return false, nil
	}
	return v == 1, err
}
