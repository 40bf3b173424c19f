package policycache

import (
	"context"
	"testing"
	"time"

	"certrelay/internal/db"
)

// TestKeptAcrossOpen: a policy saved is read back, by a store opened
// again on the same data directory (a restart), and replaced by a newer
// one; an unknown domain has none.
func TestKeptAcrossOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := db.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	if err := s.SavePolicy(ctx, "partner.test", "one", "version: STSv1\nmode: enforce\n", at, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePolicy(ctx, "partner.test", "two", "version: STSv1\nmode: testing\n", at, at.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = db.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err = Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	id, text, f, e, ok := s.LoadPolicy(ctx, "partner.test")
	if !ok || id != "two" || text != "version: STSv1\nmode: testing\n" || !f.Equal(at) || !e.Equal(at.Add(2*time.Hour)) {
		t.Errorf("loaded %v %q %q %v %v", ok, id, text, f, e)
	}
	if _, _, _, _, ok := s.LoadPolicy(ctx, "other.test"); ok {
		t.Error("a policy for a domain never fetched")
	}
}
