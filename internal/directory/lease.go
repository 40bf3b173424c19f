package directory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"certrelay/internal/db"
)

// Leaser grants the lease that lets exactly one hub synchronise an edge
// at a time (SPEC X3, EdgeSync): TakeEdgeLease returns Held when holder
// now holds the lease on edge until now+ttl — it was free, had expired,
// or holder held it already (a renewal) — and otherwise who holds it and
// until when. Taking is atomic against every other process and server: in
// LDAP a compare-and-swap of the attribute (a modify that deletes the
// value read, which fails if it changed), in the embedded directory one
// SQLite transaction. A hub that dies holding the lease loses it when it
// expires. Safe for concurrent use.
type Leaser interface {
	TakeEdgeLease(ctx context.Context, edge, holder string, now time.Time, ttl time.Duration) (Lease, error)
}

// Lease says who holds an edge's lease.
type Lease struct {
	Held   bool      // the caller holds it now
	Holder string    // else: the hub that does
	Until  time.Time // and until when
}

// other describes the lease cur, held by someone else.
func other(cur string) Lease {
	h, until, _ := parseLease(cur)
	return Lease{Holder: h, Until: until}
}

var (
	_ Leaser = (*LDAP)(nil)
	_ Leaser = (*Embedded)(nil)
	_ Leaser = (*Replica)(nil)
	_ Leaser = (*Fallback)(nil)
	_ Leaser = (*Joined)(nil)
)

const leaseAttr = "certrelayEdgeSyncLease"

// parseLease reads "HOLDER UNIX-SECONDS".
func parseLease(v string) (holder string, until time.Time, ok bool) {
	h, u, found := strings.Cut(strings.TrimSpace(v), " ")
	n, err := strconv.ParseInt(u, 10, 64)
	if !found || err != nil || h == "" {
		return "", time.Time{}, false
	}
	return h, time.Unix(n, 0), true
}

func leaseValue(holder string, until time.Time) string {
	return holder + " " + strconv.FormatInt(until.Unix(), 10)
}

// free reports whether holder may take a lease whose current value is cur.
func free(cur, holder string, now time.Time) bool {
	if cur == "" {
		return true
	}
	h, until, ok := parseLease(cur)
	return !ok || key(h) == key(holder) || !now.Before(until)
}

// TakeEdgeLease implements Leaser.
func (l *LDAP) TakeEdgeLease(ctx context.Context, edge, holder string, now time.Time, ttl time.Duration) (Lease, error) {
	s := Server{Name: edge}
	dn := serverCodec.dn(l.base, &s)
	var won Lease
	err := l.c.do(ctx, func(conn *ldap.Conn) error {
		res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=certrelayServer)", []string{leaseAttr}, nil))
		if err != nil {
			return err
		}
		if len(res.Entries) == 0 {
			return ErrNotFound
		}
		cur := res.Entries[0].GetAttributeValue(leaseAttr)
		if !free(cur, holder, now) {
			won = other(cur)
			return nil
		}
		m := ldap.NewModifyRequest(dn, nil)
		if cur != "" {
			m.Delete(leaseAttr, []string{cur}) // fails if another hub changed it meanwhile
		}
		m.Add(leaseAttr, []string{leaseValue(holder, now.Add(ttl))})
		err = conn.Modify(m)
		if ldap.IsErrorAnyOf(err, ldap.LDAPResultNoSuchAttribute, ldap.LDAPResultAttributeOrValueExists, ldap.LDAPResultConstraintViolation) {
			return nil // lost the race
		}
		won = Lease{Held: err == nil, Holder: holder, Until: now.Add(ttl)}
		return err
	})
	if err != nil {
		return Lease{}, classify(err, "take the EdgeSync lease of "+edge)
	}
	return won, nil
}

// TakeEdgeLease implements Leaser: in the database's own table.
func (e *Embedded) TakeEdgeLease(ctx context.Context, edge, holder string, now time.Time, ttl time.Duration) (Lease, error) {
	var won Lease
	err := db.Tx(ctx, e.db, func(ctx context.Context, tx *sql.Tx) error {
		var cur string
		err := tx.QueryRowContext(ctx, `SELECT value FROM dir_leases WHERE edge = ?`, key(edge)).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if !free(cur, holder, now) {
			won = other(cur)
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO dir_leases(edge, value) VALUES(?, ?) ON CONFLICT(edge) DO UPDATE SET value = excluded.value`, key(edge), leaseValue(holder, now.Add(ttl)))
		won = Lease{Held: err == nil, Holder: holder, Until: now.Add(ttl)}
		return err
	})
	if err != nil {
		return Lease{}, fmt.Errorf("take the EdgeSync lease of %s: %w", edge, err)
	}
	return won, nil
}

// TakeEdgeLease implements Leaser, on the directory itself.
func (r *Replica) TakeEdgeLease(ctx context.Context, edge, holder string, now time.Time, ttl time.Duration) (Lease, error) {
	if r.l == nil {
		return Lease{}, errCopy
	}
	return r.l.TakeEdgeLease(ctx, edge, holder, now, ttl)
}

// TakeEdgeLease implements Leaser, on the directory itself.
func (f *Fallback) TakeEdgeLease(ctx context.Context, edge, holder string, now time.Time, ttl time.Duration) (Lease, error) {
	return f.Primary.TakeEdgeLease(ctx, edge, holder, now, ttl)
}

// TakeEdgeLease implements Leaser: the organisation's.
func (j *Joined) TakeEdgeLease(ctx context.Context, edge, holder string, now time.Time, ttl time.Duration) (Lease, error) {
	l, ok := j.Org.(Leaser)
	if !ok {
		return Lease{}, fmt.Errorf("the organisation's directory grants no EdgeSync lease")
	}
	return l.TakeEdgeLease(ctx, edge, holder, now, ttl)
}

// ServerDeleter removes a server object with its receive connectors
// (Remove-EdgeSubscription): the LDAP directory and the embedded one.
type ServerDeleter interface {
	DeleteServer(ctx context.Context, name string) error
}

var (
	_ ServerDeleter = (*LDAP)(nil)
	_ ServerDeleter = (*Embedded)(nil)
	_ ServerDeleter = (*Fallback)(nil)
)

// DeleteServer implements ServerDeleter, on the directory itself.
func (f *Fallback) DeleteServer(ctx context.Context, name string) error {
	return f.Primary.DeleteServer(ctx, name)
}
