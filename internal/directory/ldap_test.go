package directory

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"certrelay/internal/testpki"
)

func TestParseLDAPURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"ldap://ldap.contoso.com/dc=contoso,dc=com", "ldap://ldap.contoso.com:389/dc=contoso,dc=com"},
		{"ldaps://ldap.contoso.com/DC=contoso, DC=com", "ldaps://ldap.contoso.com:636/dc=contoso,dc=com"},
		{"ldap://127.0.0.1:3890/ou=mail,dc=example,dc=test", "ldap://127.0.0.1:3890/ou=mail,dc=example,dc=test"},
	} {
		u, err := ParseLDAPURL(c.in)
		if err != nil || u.String() != c.want {
			t.Errorf("ParseLDAPURL(%q) = %v, %v; want %s", c.in, u, err, c.want)
		}
	}
	for _, bad := range []string{"", "http://x/dc=a", "ldap:///dc=a", "ldap://host", "ldap://host/", "ldap://host/not a dn", "ldap://u:p@host/dc=a", "ldap://host/dc=a?x"} {
		if _, err := ParseLDAPURL(bad); err == nil || !strings.Contains(err.Error(), "ldap://HOST:PORT/BASE-DN") {
			t.Errorf("ParseLDAPURL(%q) = %v; want an error showing the form", bad, err)
		}
	}
}

// TestCheckNamesEachProblem: each way joining can fail is told apart, so
// the error can name the fix.
func TestCheckNamesEachProblem(t *testing.T) {
	ctx := context.Background()
	good := testpki.StartSlapdWith(t, testpki.SlapdOptions{Certrelay: true})
	bare := testpki.StartSlapd(t)
	nosync := testpki.StartSlapdWith(t, testpki.SlapdOptions{Certrelay: true, NoSyncProv: true})
	check := func(cfg LDAPConfig) error {
		l, err := OpenLDAP(cfg)
		if err != nil {
			return err
		}
		defer l.Close()
		return l.Check(ctx)
	}
	for _, c := range []struct {
		name string
		cfg  LDAPConfig
		want error
	}{
		{"ok", LDAPConfig{URL: good.URL(good.Suffix), BindDN: good.RootDN, Password: good.RootPW}, nil},
		{"fail/wrong-password", LDAPConfig{URL: good.URL(good.Suffix), BindDN: good.RootDN, Password: "wrong"}, ErrBind},
		{"fail/unknown-bind-dn", LDAPConfig{URL: good.URL(good.Suffix), BindDN: "cn=nobody," + good.Suffix, Password: "x"}, ErrBind},
		{"fail/unreachable", LDAPConfig{URL: "ldap://" + testpki.FreePort(t) + "/dc=example,dc=test", BindDN: good.RootDN, Password: good.RootPW}, ErrUnavailable},
		{"fail/no-such-base", LDAPConfig{URL: good.URL("ou=mail," + good.Suffix), BindDN: good.RootDN, Password: good.RootPW}, ErrNoBase},
		{"fail/no-schema", LDAPConfig{URL: bare.URL(bare.Suffix), BindDN: bare.RootDN, Password: bare.RootPW}, ErrNoSchema},
		{"fail/no-ldap-sync", LDAPConfig{URL: nosync.URL(nosync.Suffix), BindDN: nosync.RootDN, Password: nosync.RootPW}, ErrNoSync},
		{"fail/starttls-refused", LDAPConfig{URL: good.URL(good.Suffix), BindDN: good.RootDN, Password: good.RootPW, CA: testpki.PEM(testpki.NewRoot(t, testpki.Options{CommonName: "CA"}).Cert)}, ErrTLS},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := check(c.cfg)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Check = %v, want %v", err, c.want)
			}
		})
	}
}

// TestCheckTLS: StartTLS and ldaps:// with the directory's CA; without
// it the certificate is not trusted.
func TestCheckTLS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "Directory CA"})
	leaf := ca.Issue(t, testpki.Options{CommonName: "127.0.0.1", DNSNames: []string{"localhost"}})
	certFile := testpki.WriteFile(t, dir, "slapd.pem", testpki.PEM(leaf.Cert))
	keyFile := testpki.WriteFile(t, dir, "slapd.key", testpki.KeyPEM(t, leaf.Key))
	caPEM := testpki.PEM(ca.Cert)
	for _, ldaps := range []bool{false, true} {
		s := testpki.StartSlapdWith(t, testpki.SlapdOptions{Certrelay: true, TLSCert: certFile, TLSKey: keyFile, LDAPS: ldaps})
		// The certificate names localhost: connect by that name.
		url := strings.Replace(s.URL(s.Suffix), "127.0.0.1", "localhost", 1)
		for _, c := range []struct {
			ca   []byte
			want error
		}{{caPEM, nil}, {testpki.PEM(testpki.NewRoot(t, testpki.Options{CommonName: "Other CA"}).Cert), ErrTLS}} {
			l, err := OpenLDAP(LDAPConfig{URL: url, BindDN: s.RootDN, Password: s.RootPW, CA: c.ca})
			if err != nil {
				t.Fatal(err)
			}
			err = l.Check(ctx)
			l.Close()
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("%s with CA %v: Check = %v, want %v", s.Scheme, c.want == nil, err, c.want)
			}
		}
	}
}

func TestRDNValue(t *testing.T) {
	for _, dn := range []string{
		"cn=alice@contoso.test,ou=Mailboxes,dc=x",
		`cn=Odd\, name\+with\\signs,cn=hub1,ou=Servers,dc=x`,
		`CN=Default hub1,cn=hub1,ou=Servers,dc=x`,
		`cn=caf\c3\a9,ou=Domains,dc=x`,
		`cn=a+uid=b,ou=x`,
		`cn=#0403,ou=x`,
		`ou=x,dc=y`,
		`cn=lonely`,
	} {
		v, rest, ok := rdnValue(dn)
		parsed, err := ldap.ParseDN(dn)
		if !ok {
			if dn == `cn=a+uid=b,ou=x` || dn == `cn=#0403,ou=x` || dn == `ou=x,dc=y` || dn == `cn=lonely` {
				continue
			}
			t.Errorf("rdnValue(%q) refused it", dn)
			continue
		}
		if err != nil || v != parsed.RDNs[0].Attributes[0].Value {
			t.Errorf("rdnValue(%q) = %q, ParseDN says %v %v", dn, v, parsed, err)
		}
		if want := dn[strings.Index(dn, ",")+1:]; !strings.HasSuffix(dn, rest) || (rest != want && !strings.Contains(dn, `\,`)) {
			t.Errorf("rdnValue(%q) rest %q", dn, rest)
		}
	}
}

// TestCleartextOverNetwork: ldap:// without a CA (no StartTLS) sends the
// bind password in clear and takes whatever arrives on the sync stream —
// server objects with their certificates, which direct trust believes —
// from anyone on the path. Only the loopback is safe without TLS.
func TestCleartextOverNetwork(t *testing.T) {
	for _, c := range []struct {
		name, url string
		ca        bool
		want      bool
	}{
		{"ok/loopback", "ldap://127.0.0.1:3890/dc=x", false, false},
		{"ok/localhost", "ldap://localhost/dc=x", false, false},
		{"ok/ipv6-loopback", "ldap://[::1]:389/dc=x", false, false},
		{"ok/starttls", "ldap://ldap.contoso.com/dc=x", true, false},
		{"ok/ldaps", "ldaps://ldap.contoso.com/dc=x", false, false},
		{"fail/network-name", "ldap://ldap.contoso.com:389/dc=x", false, true},
		{"fail/network-address", "ldap://192.0.2.10/dc=x", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, err := ParseLDAPURL(c.url)
			if err != nil {
				t.Fatal(err)
			}
			var ca []byte
			if c.ca {
				ca = []byte("-----BEGIN CERTIFICATE-----")
			}
			if got := u.Cleartext(ca); got != c.want {
				t.Errorf("Cleartext = %v, want %v", got, c.want)
			}
		})
	}
}
