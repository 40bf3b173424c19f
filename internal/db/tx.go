package db

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
)

// Querier is what a database and a transaction share: the statements of
// every package run on one or the other through Q.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// unit is one write transaction with the work that must follow its end:
// files to remove if it rolls back (a key written for a row that never
// committed), files to sweep and log lines to write once it commits.
type unit struct {
	d          *sql.DB
	tx         *sql.Tx
	done       atomic.Bool
	savepoints int
	onCommit   []func()
	onRollback []func()
	before     []func(ctx context.Context) error
}

type unitKey struct{}

// current returns the open transaction ctx carries for d, if any.
func current(ctx context.Context, d *sql.DB) *unit {
	u, _ := ctx.Value(unitKey{}).(*unit)
	if u == nil || u.d != d || u.done.Load() {
		return nil
	}
	return u
}

// Q returns the transaction that ctx carries for d (see Tx), or d itself.
// Every statement of a package that may run inside another package's
// transaction goes through Q, so it reads that transaction's own writes
// and never waits for the write lock the transaction holds.
func Q(ctx context.Context, d *sql.DB) Querier {
	if u := current(ctx, d); u != nil {
		return u.tx
	}
	return d
}

// InTx reports whether ctx carries an open transaction on d.
func InTx(ctx context.Context, d *sql.DB) bool { return current(ctx, d) != nil }

// Tx runs fn in a write transaction on d and commits when fn returns nil.
// The ctx fn receives carries the transaction: everything fn calls with it
// — in any package working on d through Q, Tx, OnCommit and OnRollback —
// is part of the same transaction, which is how one operation spanning the
// store, the trust store, the settings, the embedded directory and the
// event log commits once or not at all.
//
// When ctx already carries a transaction on d, fn joins it inside a
// savepoint: an error from fn undoes only fn's statements (and runs the
// OnRollback functions fn registered), and the outer transaction decides
// whether the rest commits.
//
// Write transactions are IMMEDIATE (see Open): one writer at a time across
// every process, so work done while fn runs — such as writing a key file —
// is serialized with every other writer.
func Tx(ctx context.Context, d *sql.DB, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if u := current(ctx, d); u != nil {
		return u.nested(ctx, fn)
	}
	if dir, ok := readOnlyDBs.Load(d); ok {
		return readOnlyFix(dir.(string))
	}
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	u := &unit{d: d, tx: tx}
	inner := context.WithValue(ctx, unitKey{}, u)
	if err := fn(inner, tx); err != nil {
		_ = tx.Rollback()
		u.finish(u.onRollback)
		return err
	}
	for i := 0; i < len(u.before); i++ { // a function may register another
		if err := u.before[i](inner); err != nil {
			_ = tx.Rollback()
			u.finish(u.onRollback)
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		u.finish(u.onRollback)
		return fmt.Errorf("commit: %w", err)
	}
	u.finish(u.onCommit)
	return nil
}

// nested runs fn inside a savepoint of u.
func (u *unit) nested(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	u.savepoints++
	name := fmt.Sprintf("sp%d", u.savepoints)
	if _, err := u.tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	commits, rollbacks, befores := len(u.onCommit), len(u.onRollback), len(u.before)
	if err := fn(ctx, u.tx); err != nil {
		_, _ = u.tx.ExecContext(ctx, "ROLLBACK TO "+name)
		_, _ = u.tx.ExecContext(ctx, "RELEASE "+name)
		undo := u.onRollback[rollbacks:]
		u.onCommit, u.onRollback, u.before = u.onCommit[:commits], u.onRollback[:rollbacks], u.before[:befores]
		runReverse(undo)
		return err
	}
	if _, err := u.tx.ExecContext(ctx, "RELEASE "+name); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

// finish marks the unit done, so functions it runs and later calls with
// its context start transactions of their own, then runs fns.
func (u *unit) finish(fns []func()) {
	u.done.Store(true)
	runReverse(fns)
}

func runReverse(fns []func()) {
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// OnCommit arranges for fn to run once the transaction ctx carries on d
// has committed; without one, fn runs at once. Functions run in the
// reverse order of registration, outside the transaction: one that needs
// the database starts its own.
func OnCommit(ctx context.Context, d *sql.DB, fn func()) {
	if u := current(ctx, d); u != nil {
		u.onCommit = append(u.onCommit, fn)
		return
	}
	fn()
}

// OnRollback arranges for fn to run if the transaction ctx carries on d
// (or the savepoint fn was registered in) rolls back: it undoes what the
// transaction did outside the database, such as a file it wrote. Without
// a transaction it does nothing.
func OnRollback(ctx context.Context, d *sql.DB, fn func()) {
	if u := current(ctx, d); u != nil {
		u.onRollback = append(u.onRollback, fn)
	}
}

// BeforeCommit arranges for fn to run when the transaction ctx carries on
// d is about to commit — after everything else it does, still inside it,
// with its context: an error rolls the whole transaction back and is
// what Tx returns. It is how a change that must also be made elsewhere
// (an organisation's LDAP directory) becomes part of the transaction: the
// other write is its last step, so it happens only when everything before
// it succeeded, and the transaction commits only when it succeeded. (A
// commit that fails after it leaves the other write done: callers that
// publish this way make the publication idempotent and repeat it.)
// Functions run in the order of registration; a savepoint that rolls back
// drops those registered in it. Without a transaction, fn runs at once.
func BeforeCommit(ctx context.Context, d *sql.DB, fn func(ctx context.Context) error) error {
	if u := current(ctx, d); u != nil {
		u.before = append(u.before, fn)
		return nil
	}
	return fn(ctx)
}
