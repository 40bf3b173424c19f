package access

import (
	"strings"
	"testing"
	"time"
)

func TestOptionOf(t *testing.T) {
	for in, want := range map[string]string{
		"MaxConnections":                    "--max-connections",
		"MaxConnectionFromSingleIP":         "--max-connection-from-single-ip",
		"PreAuthenticatedConnectionTimeout": "--pre-authenticated-connection-timeout",
		"X509CertificateName":               "--x509-certificate-name",
		"LoginType":                         "--login-type",
	} {
		if got := OptionOf(in); got != want {
			t.Errorf("OptionOf(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestCredentialCache(t *testing.T) {
	var c credCache
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	c.remember("alice@contoso.test", "right", "$2a$hash1", now)
	cases := []struct {
		name             string
		addr, pass, hash string
		at               time.Time
		want             bool
	}{
		{"ok/same", "alice@contoso.test", "right", "$2a$hash1", now.Add(time.Minute), true},
		{"no/other-password", "alice@contoso.test", "wrong", "$2a$hash1", now, false},
		{"no/new-hash", "alice@contoso.test", "right", "$2a$hash2", now, false},
		{"no/expired", "alice@contoso.test", "right", "$2a$hash1", now.Add(CredentialCacheTTL), false},
		{"no/other-user", "bob@contoso.test", "right", "$2a$hash1", now, false},
	}
	for _, tc := range cases {
		if got := c.verified(tc.addr, tc.pass, tc.hash, tc.at); got != tc.want {
			t.Errorf("%s: verified = %v", tc.name, got)
		}
	}
	for _, e := range c.m {
		if strings.Contains(string(e.mac), "right") {
			t.Error("the password is kept as is")
		}
	}
}

func TestFailedLoginLockout(t *testing.T) {
	var f failures
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	for i := 1; i < 3; i++ {
		if locked, n := f.fail("192.0.2.1", now, 3, time.Minute); locked || n != i {
			t.Fatalf("failure %d: locked %v n %d", i, locked, n)
		}
	}
	if locked, _ := f.fail("192.0.2.1", now, 3, time.Minute); !locked {
		t.Fatal("not locked at the limit")
	}
	if !f.blocked("192.0.2.1", now.Add(30*time.Second)) || f.blocked("192.0.2.2", now) {
		t.Error("lockout applies to the wrong address")
	}
	if f.blocked("192.0.2.1", now.Add(time.Minute)) {
		t.Error("still locked after the lockout")
	}
}
