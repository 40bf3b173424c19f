package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"certrelay/internal/db"
	"certrelay/internal/testpki"
)

func openAccounts(t *testing.T) (*Accounts, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := db.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(d) })
	a, err := Open(context.Background(), d, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a, dir
}

// TestObtainFromPebble registers an account at pebble and obtains a
// certificate over each challenge type, then a forced failure that must be
// explained: the challenge, the name, what the CA saw and the fix.
func TestObtainFromPebble(t *testing.T) {
	p := testpki.StartPebble(t)
	a, dir := openAccounts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	acct, err := a.Register(ctx, RegisterOptions{Directory: p.Directory, Email: "admin@example.test", CAPEM: p.CAPEM})
	if err != nil {
		t.Fatalf("register: %v\n%s", err, p.Log())
	}
	fi, err := os.Stat(a.KeyPath(acct))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("account key file: %v %v", fi, err)
	}
	if filepath.Dir(a.KeyPath(acct)) != filepath.Join(dir, "acme") {
		t.Fatalf("account key at %s", a.KeyPath(acct))
	}
	if acct.URL == "" {
		t.Fatal("no account URL")
	}
	cases := []struct {
		name   string
		domain string
		ch     Challenges
	}{
		{"ok/http-01", "http.example.test", Challenges{HTTPAddr: "127.0.0.1:" + p.HTTPPort}},
		{"ok/tls-alpn-01", "alpn.example.test", Challenges{TLSALPNAddr: "127.0.0.1:" + p.TLSPort}},
		{"ok/dns-01", "dns.example.test", Challenges{DNSHook: p.HookScript(t)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			got, err := a.Obtain(ctx, Order{Account: acct, Domains: []string{c.domain, "www." + c.domain}, Key: key, Challenges: c.ch})
			if err != nil {
				t.Fatalf("obtain: %v\n%s", err, p.Log())
			}
			if !slices.Equal(got.Leaf.DNSNames, []string{c.domain, "www." + c.domain}) && !slices.Equal(got.Leaf.DNSNames, []string{"www." + c.domain, c.domain}) {
				t.Errorf("names %v", got.Leaf.DNSNames)
			}
			if len(got.Chain) == 0 {
				t.Error("no intermediate: the chain was dropped")
			}
			if !got.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
				t.Error("the certificate is not for the order's key")
			}
		})
	}
	t.Run("fail/http-01-nothing-listens", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		// The solver listens where the CA does not connect.
		_, err := a.Obtain(ctx, Order{Account: acct, Domains: []string{"down.example.test"}, Key: key, Challenges: Challenges{HTTPAddr: testpki.FreePort(t)}})
		var oe *OrderError
		if !errors.As(err, &oe) {
			t.Fatalf("want an explained failure, got %v", err)
		}
		if oe.Challenge != "http-01" || oe.Identifier != "down.example.test" || oe.Type != "connection" {
			t.Errorf("explanation %+v", oe)
		}
		if oe.Detail == "" || !strings.Contains(oe.Fix, "port 80") {
			t.Errorf("no detail or fix: %+v", oe)
		}
		t.Logf("explained: %v; fix: %s", err, oe.Fix)
		if !strings.Contains(err.Error(), "the CA says") {
			t.Errorf("message %q", err)
		}
	})
	t.Run("fail/dns-01-hook-fails", func(t *testing.T) {
		hook := filepath.Join(t.TempDir(), "hook")
		os.WriteFile(hook, []byte("#!/bin/sh\necho 'zone example.test: permission denied' >&2\nexit 3\n"), 0o700)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, err := a.Obtain(ctx, Order{Account: acct, Domains: []string{"hook.example.test"}, Key: key, Challenges: Challenges{DNSHook: hook}})
		if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "_acme-challenge.hook.example.test") {
			t.Fatalf("want the hook's words and the record's name, got %v", err)
		}
	})
	t.Run("fail/listen", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, err := a.Obtain(ctx, Order{Account: acct, Domains: []string{"x.example.test"}, Key: key, Challenges: Challenges{HTTPAddr: p.Management}})
		if err == nil || !strings.Contains(err.Error(), "already listens") {
			t.Fatalf("want a busy-port explanation, got %v", err)
		}
	})
}

// TestExternalAccountBinding: a CA that requires an external account
// binding refuses a plain registration, explained; with the key ID and MAC
// key it gave, the account is registered.
func TestExternalAccountBinding(t *testing.T) {
	mac := "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	p := testpki.StartPebbleWith(t, testpki.PebbleOptions{EAB: map[string]string{"kid-1": mac}})
	a, _ := openAccounts(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := a.Register(ctx, RegisterOptions{Directory: p.Directory, CAPEM: p.CAPEM})
	var oe *OrderError
	if !errors.As(err, &oe) || oe.Type != "externalAccountRequired" || !strings.Contains(oe.Fix, "external account binding") {
		t.Fatalf("want externalAccountRequired explained, got %v", err)
	}
	if list, _ := a.List(ctx); len(list) != 0 {
		t.Fatalf("a refused account was stored: %+v", list)
	}
	if _, err := a.Register(ctx, RegisterOptions{Directory: p.Directory, CAPEM: p.CAPEM, EABKeyID: "kid-1", EABKey: "AAAA" + mac[4:]}); err == nil {
		t.Fatal("a wrong MAC key was accepted")
	}
	acct, err := a.Register(ctx, RegisterOptions{Directory: p.Directory, CAPEM: p.CAPEM, EABKeyID: "kid-1", EABKey: mac})
	if err != nil || !acct.EAB || acct.URL == "" {
		t.Fatalf("register with EAB: %+v %v", acct, err)
	}
}
