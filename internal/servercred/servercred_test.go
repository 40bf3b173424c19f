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
