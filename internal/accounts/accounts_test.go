package accounts

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"certrelay/internal/db"
)

var ctx = context.Background()

func openStore(t *testing.T, now func() time.Time) *Store {
	t.Helper()
	d, err := db.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(d) })
	s, err := Open(ctx, d, now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const goodPassword = "correct horse battery"

// TestPasswordHash: the hash is argon2id in PHC form, salted (two hashes
// of one password differ), verifies the password and nothing else, and
// never holds the password.
func TestPasswordHash(t *testing.T) {
	h1, err := HashPassword(goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword(goodPassword)
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") || h1 == h2 {
		t.Errorf("hashes %q %q: want argon2id PHC strings with their own salts", h1, h2)
	}
	if strings.Contains(h1, goodPassword) {
		t.Error("the hash holds the password")
	}
	if !VerifyPassword(h1, goodPassword) || VerifyPassword(h1, goodPassword+"x") || VerifyPassword(h1, "") {
		t.Error("verification does not tell the password from others")
	}
	for _, bad := range []string{"", "$argon2id$", "$bcrypt$v=19$m=1,t=1,p=1$AAAA$AAAA", strings.Replace(h1, "m=19456", "m=999999999", 1)} {
		if VerifyPassword(bad, goodPassword) {
			t.Errorf("a malformed hash %q verified", bad)
		}
	}
}

// TestAccounts: add, authenticate, change, tokens, remove — with names
// normalised, weak passwords refused, and every authentication failure
// the same error.
func TestAccounts(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := openStore(t, func() time.Time { return now })

	if _, err := s.Add(ctx, "Alice", "server-admin", "short"); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Errorf("a short password: %v", err)
	}
	if _, err := s.Add(ctx, "bad name", "view-only", goodPassword); err == nil {
		t.Error("a name with a space was accepted")
	}
	a, err := s.Add(ctx, "Alice", "server-admin", goodPassword)
	if err != nil || a.Name != "alice" || a.Role != "server-admin" || !a.Created.Equal(now) {
		t.Fatalf("add: %+v %v", a, err)
	}
	if _, err := s.Add(ctx, "ALICE", "view-only", goodPassword); !errors.Is(err, ErrExists) {
		t.Errorf("a second alice: %v", err)
	}
	for _, c := range []struct{ name, pw string }{{"alice", "wrong password!"}, {"bob", goodPassword}, {"", ""}, {"alice", ""}} {
		if _, err := s.Authenticate(ctx, c.name, c.pw); err != ErrBadCredentials {
			t.Errorf("authenticate %q/%q: %v, want ErrBadCredentials", c.name, c.pw, err)
		}
	}
	got, err := s.Authenticate(ctx, "ALICE", goodPassword)
	if err != nil || got.Name != "alice" || got.LastLogin == nil {
		t.Fatalf("authenticate: %+v %v", got, err)
	}

	tok, err := s.NewToken(ctx, "alice", time.Hour)
	if err != nil || !IsToken(tok.Secret) || tok.Expires == nil {
		t.Fatalf("token: %+v %v", tok, err)
	}
	if a, err := s.AuthenticateToken(ctx, tok.Secret); err != nil || a.Name != "alice" || a.Tokens != 1 {
		t.Fatalf("token authentication: %+v %v", a, err)
	}
	for _, bad := range []string{tok.Secret + "x", "crt_" + tok.ID + "_", "crt_nope_x", strings.TrimPrefix(tok.Secret, "crt_"), ""} {
		if _, err := s.AuthenticateToken(ctx, bad); err != ErrBadCredentials {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	now = now.Add(2 * time.Hour)
	if _, err := s.AuthenticateToken(ctx, tok.Secret); err != ErrBadCredentials {
		t.Errorf("an expired token: %v", err)
	}

	role, pw := "view-only", "another long password"
	if a, err := s.Update(ctx, "alice", &role, &pw, true); err != nil || a.Role != "view-only" || !a.PasswordChanged.Equal(now) {
		t.Fatalf("update: %+v %v", a, err)
	}
	if _, err := s.Authenticate(ctx, "alice", goodPassword); err != ErrBadCredentials {
		t.Error("the old password still works")
	}
	if _, err := s.Authenticate(ctx, "alice", pw); err != nil {
		t.Errorf("the new password: %v", err)
	}
	tok2, _ := s.NewToken(ctx, "alice", 0)
	if _, err := s.Remove(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateToken(ctx, tok2.Secret); err != ErrBadCredentials {
		t.Error("a removed account's token still works")
	}
	if _, err := s.Remove(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing again: %v", err)
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Errorf("left %+v", list)
	}
}
