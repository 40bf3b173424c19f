package store

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/testpki"
)

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	d, err := db.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s, err := Open(context.Background(), d, dir, CurrentAccount(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func keyFiles(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.KeysDir())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestAddCertificateWithKey(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	l := testpki.SelfSigned(t, testpki.Options{CommonName: "mail.contoso.com"})
	e, err := s.AddCertificate(ctx, NewCertificate{DER: l.Cert.Raw, Key: l.Key, Services: SMTP, FriendlyName: "mail"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Thumbprint != certinfo.Thumbprint(l.Cert.Raw) || e.Services != SMTP || e.FriendlyName != "mail" {
		t.Fatalf("entry %+v", e)
	}
	ki := s.KeyInfo(e)
	if !ki.Present || !ki.ServiceCanRead {
		t.Fatalf("key info %+v", ki)
	}
	fi, err := os.Stat(ki.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if len(ki.AccessRules) != 1 || ki.AccessRules[0].Kind != "owner" || ki.AccessRules[0].Rights != "Read, Write" {
		t.Errorf("AccessRules %+v", ki.AccessRules)
	}
	k, err := s.PrivateKey(e)
	if err != nil || !certinfo.KeyMatches(k, l.Cert.PublicKey) {
		t.Fatalf("PrivateKey: %v", err)
	}

	t.Run("fail/duplicate", func(t *testing.T) {
		before := keyFiles(t, s)
		_, err := s.AddCertificate(ctx, NewCertificate{DER: l.Cert.Raw, Key: l.Key})
		if !errors.Is(err, ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
		if after := keyFiles(t, s); len(after) != len(before) {
			t.Errorf("key files changed: %v -> %v", before, after)
		}
	})
	t.Run("fail/key-mismatch", func(t *testing.T) {
		other := testpki.SelfSigned(t, testpki.Options{CommonName: "other", Key: testpki.ECKey(t)})
		before := keyFiles(t, s)
		if _, err := s.AddCertificate(ctx, NewCertificate{DER: other.Cert.Raw, Key: l.Key}); err == nil {
			t.Fatal("accepted a key that is not the certificate's")
		}
		if after := keyFiles(t, s); len(after) != len(before) {
			t.Errorf("key files changed: %v -> %v", before, after)
		}
	})
	t.Run("ok/enable-only-adds", func(t *testing.T) {
		e, err := s.EnableServices(ctx, e.Thumbprint, POP)
		if err != nil {
			t.Fatal(err)
		}
		if e.Services != SMTP|POP {
			t.Errorf("services %v", e.Services)
		}
	})
	t.Run("ok/key-mode-repaired-on-enable", func(t *testing.T) {
		if err := os.Chmod(ki.Path, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.EnableServices(ctx, e.Thumbprint, SMTP); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(ki.Path)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v after enable, want 0600", fi.Mode().Perm())
		}
	})
	t.Run("ok/remove-deletes-key", func(t *testing.T) {
		if err := s.Remove(ctx, e.Thumbprint); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(ki.Path); !os.IsNotExist(err) {
			t.Errorf("key file still there: %v", err)
		}
		if _, err := s.Get(ctx, e.Thumbprint); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get after remove: %v", err)
		}
	})
}

func TestRequestAnswered(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	key := testpki.ECKey(t)
	csr, err := certinfo.NewRequest(certinfo.RequestOptions{Domains: []string{"pop.example"}, Key: key}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	req, err := s.AddRequest(ctx, csr, key, "pop", true)
	if err != nil {
		t.Fatal(err)
	}
	if !req.Pending() || req.Thumbprint != certinfo.Thumbprint(csr) {
		t.Fatalf("request entry %+v", req)
	}
	p, found, err := s.PendingByKeyID(ctx, req.KeyID)
	if err != nil || !found || p.Thumbprint != req.Thumbprint {
		t.Fatalf("PendingByKeyID: %v %v", found, err)
	}
	root := testpki.NewRoot(t, testpki.Options{CommonName: "CA"})
	issued := root.Issue(t, testpki.Options{CommonName: "pop.example", Key: key})
	e, err := s.AddCertificate(ctx, NewCertificate{DER: issued.Cert.Raw, Answers: req.Thumbprint, Exportable: true})
	if err != nil {
		t.Fatal(err)
	}
	if e.KeyID != req.KeyID || !s.KeyInfo(e).Present {
		t.Errorf("answered certificate lost the request's key")
	}
	if _, err := s.Get(ctx, req.Thumbprint); !errors.Is(err, ErrNotFound) {
		t.Errorf("the request is still listed: %v", err)
	}
	list, _ := s.List(ctx)
	if len(list) != 1 {
		t.Errorf("%d entries, want 1", len(list))
	}
}

// TestChangesAcrossProcesses opens the store twice, as a server and the
// CLI do: each change through one is logged with the thumbprints it
// touched, which the other reads from the change log, and a rolled-back
// change logs nothing.
func TestChangesAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	server := openStore(t, dir)
	cli := openStore(t, dir)
	ctx := context.Background()
	seq, err := db.LastChange(ctx, server.db)
	if err != nil {
		t.Fatal(err)
	}
	l := testpki.SelfSigned(t, testpki.Options{CommonName: "w.example"})
	tp := certinfo.Thumbprint(l.Cert.Raw)
	if _, err := cli.AddCertificate(ctx, NewCertificate{DER: l.Cert.Raw, Key: l.Key}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AddCertificate(ctx, NewCertificate{DER: l.Cert.Raw, Key: l.Key}); !errors.Is(err, ErrExists) {
		t.Fatalf("second add: %v", err)
	}
	if _, err := cli.EnableServices(ctx, tp, SMTP); err != nil {
		t.Fatal(err)
	}
	if err := cli.Remove(ctx, tp); err != nil {
		t.Fatal(err)
	}
	changes, _, complete, err := db.ChangesSince(ctx, server.db, seq)
	if err != nil || !complete {
		t.Fatalf("ChangesSince: %v, complete %v", err, complete)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Scope+" "+c.Key)
	}
	want := []string{"cert " + tp, "cert " + tp, "cert " + tp}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the change log holds %q, want add, enable and remove of %s (the failed add logs nothing)", got, tp)
	}
	if _, err := server.Get(ctx, tp); !errors.Is(err, ErrNotFound) {
		t.Errorf("server sees the removed certificate: %v", err)
	}
}

func TestParseServices(t *testing.T) {
	cases := map[string]Services{"SMTP": SMTP, "smtp,pop": SMTP | POP, "IMAP, POP, SMTP": IMAP | POP | SMTP, "None": None, "IIS,UM": IIS | UM, "https": IIS}
	for in, want := range cases {
		got, err := ParseServices(in)
		if err != nil || got != want {
			t.Errorf("ParseServices(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseServices("SMTP,FTP"); err == nil {
		t.Error("FTP accepted")
	}
	if got := (IMAP | POP | SMTP).String(); got != "IMAP, POP, SMTP" {
		t.Errorf("String = %q", got)
	}
}

// TestKeyFaults: a fault recorded for a key file matches that file as it
// is, logs the certificates that use it, and stops matching once the file
// changes.
func TestKeyFaults(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	l := testpki.SelfSigned(t, testpki.Options{CommonName: "f.example"})
	e, err := s.AddCertificate(ctx, NewCertificate{DER: l.Cert.Raw, Key: l.Key, Services: SMTP})
	if err != nil {
		t.Fatal(err)
	}
	seq, _ := db.LastChange(ctx, s.db)
	if err := s.RecordKeyFault(ctx, e.KeyID, errors.New("not a PEM private key")); err != nil {
		t.Fatal(err)
	}
	faults, err := s.KeyFaults(ctx)
	if err != nil || len(faults) != 1 || !faults[e.KeyID].Matches(s.KeyInfo(e)) || faults[e.KeyID].Error != "not a PEM private key" {
		t.Fatalf("faults %+v, %v", faults, err)
	}
	if changes, _, _, _ := db.ChangesSince(ctx, s.db, seq); len(changes) != 1 || changes[0].Key != e.Thumbprint {
		t.Errorf("the fault logged %+v, want the certificate %s", changes, e.Thumbprint)
	}
	if err := os.WriteFile(s.KeyInfo(e).Path, []byte("something else entirely\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if faults, _ := s.KeyFaults(ctx); faults[e.KeyID].Matches(s.KeyInfo(e)) {
		t.Error("the fault still matches a file that changed")
	}
}

// TestKeyFaultIsAboutTheFileThatFailed: a fault recorded after the file
// was already restored (the server records off the handshake that found
// it) blames the content that failed to load, not the restored file — or
// the certificate stays passed over until the file changes again.
func TestKeyFaultIsAboutTheFileThatFailed(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	l := testpki.SelfSigned(t, testpki.Options{CommonName: "late.example", Key: testpki.ECKey(t)})
	e, err := s.AddCertificate(ctx, NewCertificate{DER: l.Cert.Raw, Key: l.Key, Services: SMTP})
	if err != nil {
		t.Fatal(err)
	}
	path := s.KeyInfo(e).Path
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("-----BEGIN PRIVATE KEY-----\nZGFtYWdlZA==\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, loadErr := s.PrivateKeyByID(e.KeyID)
	if loadErr == nil {
		t.Fatal("a damaged key loaded")
	}
	if err := os.WriteFile(path, good, 0o600); err != nil { // restored before the fault is recorded
		t.Fatal(err)
	}
	if err := s.RecordKeyFault(ctx, e.KeyID, loadErr); err != nil {
		t.Fatal(err)
	}
	if faults, _ := s.KeyFaults(ctx); faults[e.KeyID].Matches(s.KeyInfo(e)) {
		t.Error("the restored key file is recorded as the one that could not be loaded")
	}
}
