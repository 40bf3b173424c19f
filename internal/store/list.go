package store

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/parallel"
)

// Listed is an entry as ListFacts returns it.
type Listed struct {
	// Entry is the entry; for a self-signed certificate whose facts the
	// store holds, Entry.Cert is nil (its DER was not even read): use
	// Facts, or Parse.
	Entry
	// Facts are the certificate's fields as certinfo.Describe gives them,
	// nil for a pending request or a certificate stored before facts
	// were kept (Entry.Cert is then set).
	Facts *certinfo.Info
}

// IsCertificate reports whether l is a certificate (not a pending
// request).
func (l Listed) IsCertificate() bool { return l.Facts != nil || l.Cert != nil }

// ListFacts returns every certificate and pending request, ordered by
// thumbprint, for a listing: self-signed certificates come with their
// stored facts and are not parsed — their Status needs only their dates —
// while CA-issued ones are parsed too, as judging their chain needs the
// certificate. It is List at a fraction of the cost for a large store.
func (s *Store) ListFacts(ctx context.Context) ([]Listed, error) {
	q := db.Q(ctx, s.db)
	if !db.InTx(ctx, s.db) {
		// Read the table through a memory map on a connection of its own:
		// 10,000 certificates are about 3,000 pages, each a pread64 call
		// otherwise (about a tenth of cert list's CPU time). The map is
		// undone before the connection goes back to the pool.
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return nil, fmt.Errorf("list certificates: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `PRAGMA mmap_size = 268435456`); err == nil {
			defer conn.ExecContext(context.Background(), `PRAGMA mmap_size = 0`)
		}
		q = conn
	}
	rows, err := q.QueryContext(ctx, `SELECT thumbprint, CASE WHEN facts IS NULL OR self_signed IS NOT 1 THEN der END, csr, key_id, services, friendly_name, exportable, added_at, self_signed, facts
		FROM certificates ORDER BY thumbprint`)
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	defer rows.Close()
	type listedRow struct {
		row
		facts sql.NullString
	}
	var raw []listedRow
	for rows.Next() {
		var w listedRow
		var added string
		var exportable int
		if err := rows.Scan(&w.e.Thumbprint, &w.der, &w.csr, &w.e.KeyID, &w.e.Services, &w.e.FriendlyName, &exportable, &added, &w.selfSigned, &w.facts); err != nil {
			return nil, err
		}
		w.e.Exportable = exportable != 0
		w.e.AddedAt, _ = time.Parse(time.RFC3339Nano, added)
		raw = append(raw, w)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Listed, len(raw))
	errs := make([]error, len(raw))
	parallel.Each(len(raw), func(i int) {
		w := raw[i]
		if w.facts.Valid {
			if in, err := certinfo.UnmarshalFacts(w.facts.String); err == nil {
				out[i].Facts = &in
				if w.der == nil { // self-signed: facts are all a listing needs
					out[i].Entry = w.e
					return
				}
			}
		}
		if w.der == nil && w.csr == nil {
			// Facts that did not decode, for a row whose DER was not read.
			e, err := s.Get(ctx, w.e.Thumbprint)
			out[i].Entry, errs[i] = e, err
			return
		}
		out[i].Entry, errs[i] = s.decode(w.row)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Parse returns the parsed certificate of l, reading it from the store
// when ListFacts did not.
func (s *Store) Parse(ctx context.Context, l Listed) (*x509.Certificate, error) {
	if l.Cert != nil {
		return l.Cert, nil
	}
	e, err := s.Get(ctx, l.Thumbprint)
	if err != nil {
		return nil, err
	}
	if e.Cert == nil {
		return nil, fmt.Errorf("%s is a pending request, not a certificate", l.Thumbprint)
	}
	return e.Cert, nil
}

// factsOf encodes a certificate's facts for the facts column (NULL when
// they cannot be encoded).
func factsOf(in certinfo.Info) sql.NullString {
	s, ok := certinfo.MarshalFacts(in)
	return sql.NullString{String: s, Valid: ok}
}

// factsFilled is the store_meta key set once every certificate stored
// before facts were kept has them (backfillFacts).
const factsFilled = "facts_filled"

// backfillFacts records the facts of certificates stored before facts
// were kept, once, when the data directory is writable.
func (s *Store) backfillFacts(ctx context.Context) error {
	// Looking for rows to fill reads the whole table: once, then a mark
	// says it was done (every certificate added since records its facts).
	return s.fillOnce(ctx, factsFilled, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT thumbprint, der FROM certificates WHERE der IS NOT NULL AND (facts IS NULL OR self_signed IS NULL)`)
		if err != nil {
			return err
		}
		type fill struct {
			t    string
			info certinfo.Info
		}
		var fills []fill
		for rows.Next() {
			var t string
			var der []byte
			if err := rows.Scan(&t, &der); err != nil {
				rows.Close()
				return err
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				continue // a damaged row: Get says so where it is used
			}
			fills = append(fills, fill{t, certinfo.Describe(c)})
		}
		rows.Close()
		for _, f := range fills {
			if _, err := tx.ExecContext(ctx, `UPDATE certificates SET facts = ?, self_signed = ? WHERE thumbprint = ?`, factsOf(f.info), f.info.IsSelfSigned, f.t); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListHolding returns the certificates (not pending requests) that may
// hold the DNS name fqdn, ordered by thumbprint: every certificate that
// holds it exactly or through a wildcard (SPEC S3, ASCII case-insensitive)
// is among them, and a few others may be (a wildcard that covers it only
// across several labels, a certificate with a name that is not ASCII):
// the caller tests each (selection.Holds). ok is false when the store
// cannot narrow the search for this name (it is not ASCII or is a
// wildcard, or the names of an older store are not recorded yet, in a
// data directory opened read-only): use List. With 10,000 certificates it
// reads the handful that hold a name instead of parsing them all (cert
// explain), through the table of names (names.go).
func (s *Store) ListHolding(ctx context.Context, fqdn string) (entries []Entry, ok bool, err error) {
	fqdn = strings.TrimSuffix(fqdn, ".")
	if fqdn == "" || strings.Contains(fqdn, "*") || nameKey(fqdn) == "" {
		return nil, false, nil
	}
	if ready, err := s.metaFlag(ctx, namesFilled); err != nil || !ready {
		return nil, false, err
	}
	fqdn = nameKey(fqdn)
	keys := []any{fqdn, ""} // the name itself; names that are not ASCII
	for i := 1; i < len(fqdn); i++ {
		if fqdn[i] == '.' {
			keys = append(keys, "*"+fqdn[i:]) // wildcards that may cover it
		}
	}
	marks := strings.TrimSuffix(strings.Repeat("?,", len(keys)), ",")
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT `+columns+` FROM certificates WHERE der IS NOT NULL AND thumbprint IN
		(SELECT thumbprint FROM certificate_names WHERE name IN (`+marks+`)) ORDER BY thumbprint`, keys...)
	if err != nil {
		return nil, false, fmt.Errorf("list certificates holding %s: %w", fqdn, err)
	}
	defer rows.Close()
	var raw []row
	for rows.Next() {
		w, err := scanRow(rows)
		if err != nil {
			return nil, false, err
		}
		raw = append(raw, w)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	for _, w := range raw {
		e, err := s.decode(w)
		if err != nil {
			return nil, false, err
		}
		entries = append(entries, e)
	}
	return entries, true, nil
}

// CountCertificates counts the certificates in the store (pending
// requests, which hold no certificate yet, are not counted).
func (s *Store) CountCertificates(ctx context.Context) (int, error) {
	var n int
	if err := db.Q(ctx, s.db).QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE der IS NOT NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	return n, nil
}
