package db

import (
	"context"
	"testing"
)

// TestMigrateAppliesEachStepOnce: a schema change appended as a step that
// is not idempotent (ALTER TABLE … ADD COLUMN) runs once on a database
// made before it, once on a new one, and never again.
func TestMigrateAppliesEachStepOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(d)
	v1 := []string{`CREATE TABLE IF NOT EXISTS m (a TEXT)`}
	if err := Migrate(ctx, d, "m", v1...); err != nil {
		t.Fatal(err)
	}
	v2 := append(v1, `ALTER TABLE m ADD COLUMN b TEXT`)
	for i := 0; i < 3; i++ { // the next opens: applied once, then nothing to do
		if err := Migrate(ctx, d, "m", v2...); err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	if _, err := d.Exec(`INSERT INTO m(a, b) VALUES('x', 'y')`); err != nil {
		t.Fatalf("the appended column is missing: %v", err)
	}
	if got := version(ctx, d, "m"); got != 2 {
		t.Errorf("version %d, want 2", got)
	}
	// A new database takes every step in one go.
	d2, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer Close(d2)
	if err := Migrate(ctx, d2, "m", v2...); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Exec(`INSERT INTO m(a, b) VALUES('x', 'y')`); err != nil {
		t.Fatal(err)
	}
}
