package servercred

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestProofs(t *testing.T) {
	k, err := New()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New()
	pemData, err := k.PEM()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil || string(loaded.Public) != string(k.Public) {
		t.Fatalf("Load: %v", err)
	}
	exp := []byte("0123456789abcdef0123456789abcdef")
	proof := loaded.Prove(Client, "hub1", exp)
	if err := Verify(k.Public, Client, "hub1", exp, proof); err != nil {
		t.Fatalf("a good proof: %v", err)
	}
	for name, c := range map[string]struct {
		pub        []byte
		side, srv  string
		exp, proof []byte
	}{
		"fail/other-key":          {other.Public, Client, "hub1", exp, proof},
		"fail/server-side":        {k.Public, Server, "hub1", exp, proof},
		"fail/other-name":         {k.Public, Client, "hub2", exp, proof},
		"fail/other-session":      {k.Public, Client, "hub1", []byte("another session's exporter value"), proof},
		"fail/no-key-in-dir":      {nil, Client, "hub1", exp, proof},
		"fail/damaged-key-in-dir": {[]byte("junk"), Client, "hub1", exp, proof},
	} {
		if err := Verify(c.pub, c.side, c.srv, c.exp, c.proof); err == nil {
			t.Errorf("%s: accepted", name)
		} else if name == "fail/other-key" && !errors.Is(err, ErrBadProof) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestExposed: a credential key file others may read (restored from a
// backup, copied with cp) lets them prove they are this server to every
// hub, whatever certificate they present; it is named, as certificate key
// files wider than 0600 are.
func TestExposed(t *testing.T) {
	k, _ := New()
	pemData, _ := k.PEM()
	for _, c := range []struct {
		name string
		mode os.FileMode
		want bool
	}{{"ok/0600", 0o600, false}, {"ok/0400", 0o400, false}, {"fail/group", 0o640, true}, {"fail/world", 0o644, true}} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			if err := os.WriteFile(path, pemData, c.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, c.mode)
			if why := Exposed(path); (why != "") != c.want {
				t.Errorf("Exposed(%o) = %q", c.mode, why)
			}
		})
	}
}
