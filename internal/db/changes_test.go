package db

import (
	"context"
	"database/sql"
	"errors"
	"testing"
)

// TestChangeLog: changes are logged with their transaction (and not when
// it rolls back), read back in order from a sequence number, and a reader
// that fell behind the trimmed log, or reads another database, is told to
// rebuild everything.
func TestChangeLog(t *testing.T) {
	ctx := context.Background()
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer Close(d)
	if err := LogChange(ctx, d, ScopeCert, "A"); err == nil {
		t.Fatal("a change logged outside a transaction")
	}
	start, err := LastChange(ctx, d)
	if err != nil || start != 0 {
		t.Fatalf("LastChange of an empty log = %d, %v", start, err)
	}
	logged := func(keys ...string) error {
		return Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error {
			for _, k := range keys {
				if err := LogChange(ctx, d, ScopeCert, k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := logged("A", "B"); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error {
		if err := LogChange(ctx, d, ScopeCert, "ROLLED-BACK"); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := logged("C"); err != nil {
		t.Fatal(err)
	}
	got, next, complete, err := ChangesSince(ctx, d, start)
	if err != nil || !complete || len(got) != 3 || got[0].Key != "A" || got[1].Key != "B" || got[2].Key != "C" || next != got[2].Seq {
		t.Fatalf("ChangesSince(%d) = %+v, %d, %v, %v", start, got, next, complete, err)
	}
	if again, n2, complete, _ := ChangesSince(ctx, d, next); len(again) != 0 || n2 != next || !complete {
		t.Errorf("nothing new: %+v, %d, %v", again, n2, complete)
	}

	// Fill past the kept length: a reader at the old position is behind.
	keys := make([]string, ChangeLogKeep+100)
	for i := range keys {
		keys[i] = "K"
	}
	if err := logged(keys...); err != nil {
		t.Fatal(err)
	}
	last, _ := LastChange(ctx, d)
	if _, n, complete, err := ChangesSince(ctx, d, next); err != nil || complete || n != last {
		t.Errorf("a reader behind the trimmed log: next %d (last %d), complete %v, %v", n, last, complete, err)
	}
	var kept int
	_ = d.QueryRow(`SELECT count(*) FROM change_log`).Scan(&kept)
	if kept > ChangeLogKeep+64 {
		t.Errorf("the log keeps %d entries", kept)
	}
	// A position this database never had (another database restored in
	// its place) is incomplete too.
	if _, _, complete, _ := ChangesSince(ctx, d, last+1000); complete {
		t.Error("a position past the end reads as complete")
	}
}
