package e2e

import (
	"reflect"
	"strings"
	"testing"

	"certrelay/internal/testpki"
)

// opensslSAN returns the DNS names of a certificate's Subject Alternative
// Name as OpenSSL reads them.
func opensslSAN(e *env, thumbprint string) []string {
	e.t.Helper()
	e.ok("cert", "export", thumbprint, "--out", thumbprint+".pem", "--force")
	out := e.tool("openssl", "x509", "-in", thumbprint+".pem", "-noout", "-ext", "subjectAltName")
	var names []string
	for _, f := range strings.FieldsFunc(out, func(r rune) bool { return r == ',' || r == '\n' }) {
		if n, ok := strings.CutPrefix(strings.TrimSpace(f), "DNS:"); ok {
			names = append(names, n)
		}
	}
	return names
}

// TestNamesAreNormalisedAndSigned protects issue 9 items 6–9 as an
// administrator meets them: names are normalised once where they enter
// (lower case, no trailing dot, IDN as A-labels), a subject's CN is
// always in the SAN, and cert show prints the subject that is signed.
func TestNamesAreNormalisedAndSigned(t *testing.T) {
	e := newEnv(t)
	testpki.Tool(t, "openssl")
	e.ok("setup", "--fqdn", "Hub1.Contoso.TEST.")
	if f := e.server().Fqdn; f != "hub1.contoso.test" {
		t.Errorf("setup --fqdn Hub1.Contoso.TEST. gave FQDN %q", f)
	}
	cases := []struct {
		name    string
		args    []string
		wantSAN []string
	}{
		{"trailing-dot", []string{"--domain", "Trail.Example.com."}, []string{"trail.example.com"}},
		{"cn-only", []string{"--subject", "cn=only.example.com"}, []string{"only.example.com"}},
		{"cn-and-domain", []string{"--subject", "c=us,o=Contoso,cn=mail.contoso.test", "--domain", "smtp.contoso.test"}, []string{"mail.contoso.test", "smtp.contoso.test"}},
		{"idn", []string{"--domain", "bücher.example"}, []string{"xn--bcher-kva.example"}},
		{"wildcard-dot", []string{"--domain", "*.Wild.Example."}, []string{"*.wild.example"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tp := e.ok(append([]string{"cert", "new", "--services", "SMTP", "--key-type", "ecdsa"}, c.args...)...)
			if san := opensslSAN(e, tp); !reflect.DeepEqual(san, c.wantSAN) {
				t.Errorf("OpenSSL reads the SAN %v, want %v", san, c.wantSAN)
			}
			shown := e.show(tp).CertificateDomains
			if !reflect.DeepEqual(shown, c.wantSAN) {
				t.Errorf("cert show CertificateDomains %v, want %v", shown, c.wantSAN)
			}
		})
	}
	t.Run("searches-normalise-too", func(t *testing.T) {
		if l := e.list("--domain", "TRAIL.example.COM."); len(l) != 1 || l[0].CertificateDomains[0] != "trail.example.com" {
			t.Errorf("cert list --domain TRAIL.example.COM. found %d certificates", len(l))
		}
		var ex struct{ Fqdn, Winner string }
		e.jsonOf(&ex, "cert", "explain", "--fqdn", "Trail.Example.Com.")
		if ex.Fqdn != "trail.example.com" || ex.Winner == "" {
			t.Errorf("explain --fqdn Trail.Example.Com. searched %q and chose %q", ex.Fqdn, ex.Winner)
		}
	})
	t.Run("connector-fqdn", func(t *testing.T) {
		def := "Default " + e.server().Name
		e.ok("connector", "receive", "set", def, "--fqdn", "MAIL.Contoso.Test.")
		var c struct{ Fqdn string }
		e.jsonOf(&c, "connector", "receive", "show", def)
		if c.Fqdn != "mail.contoso.test" {
			t.Errorf("connector FQDN stored as %q", c.Fqdn)
		}
	})
	t.Run("subject-as-signed", func(t *testing.T) {
		tp := e.ok("cert", "new", "--subject", "CN=a.example,CN=b.example", "--services", "SMTP", "--key-type", "ecdsa")
		e.ok("cert", "export", tp, "--out", "two-cn.pem")
		signed := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(e.tool("openssl", "x509", "-in", "two-cn.pem", "-noout", "-subject", "-nameopt", "RFC2253")), "subject="))
		if got := e.show(tp).Subject; got != signed {
			t.Errorf("cert show says Subject %q; the certificate says %q", got, signed)
		}
	})
}

// TestImportsThatDeserveAWord protects issue 9 item 13's warnings: a CA
// certificate with its key goes into the personal store with a warning,
// and so do 1024-bit RSA keys, made or imported.
func TestImportsThatDeserveAWord(t *testing.T) {
	e := newEnv(t)
	e.ok("setup")
	e.write("pw", []byte("pw\n"))
	e.tool("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Some CA", "-days", "30",
		"-addext", "basicConstraints=critical,CA:TRUE")
	e.tool("openssl", "pkcs12", "-export", "-inkey", "ca.key", "-in", "ca.pem", "-out", "ca.pfx", "-passout", "file:pw")
	r := e.run("", "cert", "import", "ca.pfx", "--password-file", "pw")
	if r.code != 0 || !strings.Contains(r.stderr, "WARNING") || !strings.Contains(r.stderr, "CA certificate") {
		t.Errorf("import of a CA certificate with its key: exit %d, %q", r.code, r.stderr)
	}
	r = e.run("", "cert", "new", "--domain", "old.example", "--key-size", "1024", "--services", "SMTP")
	if r.code != 0 || !strings.Contains(r.stderr, "WARNING") || !strings.Contains(r.stderr, "1024 bits") {
		t.Errorf("cert new --key-size 1024: exit %d, %q", r.code, r.stderr)
	}
}
