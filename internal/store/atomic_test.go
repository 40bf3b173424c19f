package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/testpki"
)

// checkKeysMatchRows asserts SPEC P2's invariant: every row that names a
// key has its key file, every key file belongs to a row, and no temporary
// file is left in the key directory.
func checkKeysMatchRows(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	entries, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, e := range entries {
		if e.KeyID == "" {
			continue
		}
		want[e.KeyID+".key"] = true
		if !s.HasKey(e.KeyID) {
			t.Errorf("row %s has no key file", e.Thumbprint)
		}
	}
	for _, name := range keyFiles(t, s) {
		if !want[name] {
			t.Errorf("key directory holds %s, which no row refers to", name)
		}
	}
}

// TestConcurrentImportsKeepTheKey protects issue 9 item 1: processes that
// add the same certificate with its key at once must leave the row with
// its key, whichever of them wins.
func TestConcurrentImportsKeepTheKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const writers = 6
	stores := make([]*Store, writers)
	for i := range stores {
		stores[i] = openStore(t, dir) // one database handle each, as separate processes have
	}
	for round := 0; round < 15; round++ {
		l := testpki.SelfSigned(t, testpki.Options{CommonName: "race.example", Key: testpki.ECKey(t)})
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for _, s := range stores {
			wg.Add(1)
			go func(s *Store) {
				defer wg.Done()
				_, err := s.AddCertificate(ctx, NewCertificate{DER: l.Cert.Raw, Key: l.Key})
				if err != nil && !errors.Is(err, ErrExists) {
					t.Errorf("round %d: %v", round, err)
				}
				if err == nil {
					mu.Lock()
					won++
					mu.Unlock()
				}
			}(s)
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("round %d: %d writers succeeded, want 1", round, won)
		}
		e, err := stores[0].Get(ctx, certinfo.Thumbprint(l.Cert.Raw))
		if err != nil {
			t.Fatal(err)
		}
		if !stores[0].KeyInfo(e).Present {
			t.Fatalf("round %d: the certificate was added but its key file is gone", round)
		}
	}
	checkKeysMatchRows(t, stores[0])
}

// TestRolledBackAddLeavesNoKey: a certificate added inside a transaction
// that then fails leaves neither its row nor the key file it wrote.
func TestRolledBackAddLeavesNoKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := db.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := Open(ctx, d, dir, CurrentAccount(), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := testpki.SelfSigned(t, testpki.Options{CommonName: "rollback.example"})
	boom := errors.New("a later step failed")
	err = db.Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error {
		if _, err := s.AddCertificate(ctx, NewCertificate{DER: l.Cert.Raw, Key: l.Key}); err != nil {
			return err
		}
		if len(keyFiles(t, s)) != 1 {
			t.Error("the key file is not written before the row commits")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Errorf("rows after rollback: %d", len(list))
	}
	if files := keyFiles(t, s); len(files) != 0 {
		t.Errorf("key files after rollback: %v", files)
	}
}

// TestOpenRecoversCrashLeftovers protects issue 9 item 2: what an
// operation killed mid-way leaves in keys/ — a key whose row never
// committed, a half-written temporary file holding a private key — is
// removed at the next open; keys that rows refer to stay.
func TestOpenRecoversCrashLeftovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir)
	kept := testpki.SelfSigned(t, testpki.Options{CommonName: "kept.example"})
	e, err := s.AddCertificate(ctx, NewCertificate{DER: kept.Cert.Raw, Key: kept.Key})
	if err != nil {
		t.Fatal(err)
	}
	orphan := testpki.SelfSigned(t, testpki.Options{CommonName: "orphan.example", Key: testpki.ECKey(t)})
	pemKey, err := certinfo.MarshalPrivateKeyPEM(orphan.Key)
	if err != nil {
		t.Fatal(err)
	}
	orphanPath := filepath.Join(s.KeysDir(), certinfo.KeyID(orphan.Cert.RawSubjectPublicKeyInfo)+".key")
	tmpPath := filepath.Join(s.KeysDir(), "."+filepath.Base(orphanPath)+".tmp-12345")
	for _, p := range []string{orphanPath, tmpPath} {
		if err := os.WriteFile(p, pemKey, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	s2 := openStore(t, dir) // the next command
	if _, err := os.Stat(orphanPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan key survived the next open: %v", err)
	}
	if _, err := os.Stat(tmpPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary key file survived the next open: %v", err)
	}
	if !s2.KeyInfo(e).Present {
		t.Error("the next open removed a key a row refers to")
	}
	checkKeysMatchRows(t, s2)
}

// TestRemoveRacingReAdd: removing a certificate while another process
// adds it again (same key) never leaves the re-added row without its key.
func TestRemoveRacingReAdd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := openStore(t, dir), openStore(t, dir)
	l := testpki.SelfSigned(t, testpki.Options{CommonName: "flap.example"})
	tp := certinfo.Thumbprint(l.Cert.Raw)
	for i := 0; i < 40; i++ {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := a.Remove(ctx, tp); err != nil && !errors.Is(err, ErrNotFound) {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := b.AddCertificate(ctx, NewCertificate{DER: l.Cert.Raw, Key: l.Key}); err != nil && !errors.Is(err, ErrExists) {
				t.Error(err)
			}
		}()
		wg.Wait()
		if e, err := a.Get(ctx, tp); err == nil && !a.KeyInfo(e).Present {
			t.Fatalf("iteration %d: the row is there without its key", i)
		}
	}
	openStore(t, dir) // sweeps what a removal left
	checkKeysMatchRows(t, a)
}

func TestKeyFilesHaveNoTemporaryNames(t *testing.T) {
	s := openStore(t, t.TempDir())
	l := testpki.SelfSigned(t, testpki.Options{CommonName: "tmp.example"})
	if _, err := s.AddCertificate(context.Background(), NewCertificate{DER: l.Cert.Raw, Key: l.Key}); err != nil {
		t.Fatal(err)
	}
	for _, n := range keyFiles(t, s) {
		if strings.Contains(n, ".tmp-") {
			t.Errorf("temporary file %s left", n)
		}
	}
}
