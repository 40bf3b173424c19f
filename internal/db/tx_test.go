package db

import (
	"context"
	"database/sql"
	"errors"
	"testing"
)

func openTest(t *testing.T) *sql.DB {
	t.Helper()
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(d) })
	if err := Migrate(context.Background(), d, "test", `CREATE TABLE IF NOT EXISTS t (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	return d
}

func count(t *testing.T, d *sql.DB) int {
	t.Helper()
	var n int
	if err := d.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func insert(ctx context.Context, d *sql.DB, v string) error {
	return Tx(ctx, d, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t(v) VALUES(?)`, v)
		return err
	})
}

func TestNestedTxJoinsTheOuter(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	boom := errors.New("boom")
	var committed, rolledBack []string
	err := Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error {
		if err := insert(ctx, d, "a"); err != nil {
			return err
		}
		OnCommit(ctx, d, func() { committed = append(committed, "a") })
		OnRollback(ctx, d, func() { rolledBack = append(rolledBack, "a") })
		// The inner write is visible to reads through Q before the commit.
		var n int
		if err := Q(ctx, d).QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
			t.Errorf("read inside the transaction: %d %v", n, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if n := count(t, d); n != 0 {
		t.Errorf("%d rows after the outer rolled back", n)
	}
	if len(committed) != 0 || len(rolledBack) != 1 {
		t.Errorf("hooks: commit %v, rollback %v", committed, rolledBack)
	}
}

func TestFailedNestedTxUndoesOnlyItself(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	var undone []string
	err := Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error {
		if err := insert(ctx, d, "kept"); err != nil {
			return err
		}
		err := Tx(ctx, d, func(ctx context.Context, tx *sql.Tx) error {
			OnRollback(ctx, d, func() { undone = append(undone, "inner") })
			if _, err := tx.ExecContext(ctx, `INSERT INTO t(v) VALUES('dropped')`); err != nil {
				return err
			}
			return errors.New("inner fails")
		})
		if err == nil {
			t.Error("the inner error was lost")
		}
		return nil // the outer carries on
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, d); n != 1 {
		t.Errorf("%d rows, want only the outer's", n)
	}
	if len(undone) != 1 {
		t.Errorf("the inner's rollback functions ran %d times", len(undone))
	}
}

func TestOnCommitRunsOutsideTheTransaction(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	err := Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error {
		OnCommit(ctx, d, func() {
			// A hook that writes starts a transaction of its own instead
			// of joining the finished one.
			if err := insert(ctx, d, "after"); err != nil {
				t.Error(err)
			}
		})
		return insert(ctx, d, "during")
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, d); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
}

// TestBeforeCommit: functions registered with BeforeCommit run last,
// inside the transaction (they read its writes); one that fails rolls
// everything back; a savepoint that rolls back drops its own.
func TestBeforeCommit(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	var order []string
	var seen int
	err := Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error {
		_ = BeforeCommit(ctx, d, func(ctx context.Context) error {
			order = append(order, "publish")
			return Q(ctx, d).QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&seen)
		})
		_ = Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error {
			_ = BeforeCommit(ctx, d, func(context.Context) error { order = append(order, "dropped"); return nil })
			return errors.New("savepoint fails")
		})
		order = append(order, "write")
		return insert(ctx, d, "a")
	})
	if err != nil || seen != 1 || len(order) != 2 || order[0] != "write" || order[1] != "publish" {
		t.Fatalf("err %v, seen %d, order %v", err, seen, order)
	}
	boom := errors.New("the directory is down")
	err = Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error {
		_ = BeforeCommit(ctx, d, func(context.Context) error { return boom })
		return insert(ctx, d, "b")
	})
	if !errors.Is(err, boom) || count(t, d) != 1 {
		t.Fatalf("a failing BeforeCommit: err %v, rows %d (want the first only)", err, count(t, d))
	}
	ran := false
	if err := BeforeCommit(ctx, d, func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("without a transaction: %v %v", err, ran)
	}
}
