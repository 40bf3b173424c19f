package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// opensslCA is a CA run with the openssl command, as an outside CA would
// be: certrelay only ever sees its files.
type opensslCA struct {
	e    *env
	name string // file prefix
}

func newOpensslCA(e *env, name, subject string) *opensslCA {
	e.t.Helper()
	testpki.Tool(e.t, "openssl")
	ca := &opensslCA{e: e, name: name}
	e.tool("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name+".key", "-out", name+".pem",
		"-subj", subject, "-days", "3650",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	return ca
}

func (ca *opensslCA) certPath() string { return ca.e.path(ca.name + ".pem") }

// sign signs a request file (PEM or DER) and returns the certificate's
// path (PEM). extra are openssl x509 options such as -outform DER.
func (ca *opensslCA) sign(req, out string, der bool, extra ...string) string {
	ca.e.t.Helper()
	args := []string{"x509", "-req", "-in", req, "-CA", ca.name + ".pem", "-CAkey", ca.name + ".key", "-CAcreateserial",
		"-out", out, "-days", "365", "-copy_extensions", "copy"}
	if der {
		args = append(args, "-inform", "DER")
	}
	ca.e.tool("openssl", append(args, extra...)...)
	return ca.e.path(out)
}

func fingerprint(e *env, certFile string) string {
	out := e.tool("openssl", "x509", "-in", certFile, "-noout", "-fingerprint", "-sha1")
	_, fp, _ := strings.Cut(strings.TrimSpace(out), "=")
	return strings.ReplaceAll(fp, ":", "")
}

var thumbprintRE = regexp.MustCompile(`^[0-9A-F]{40}$`)

func mustThumbprint(t *testing.T, s string) string {
	t.Helper()
	if !thumbprintRE.MatchString(s) {
		t.Fatalf("%q is not a thumbprint", s)
	}
	return s
}

// TestSeed003Workflow runs the seed's section on creating, importing and
// enabling certificates end to end: a self-signed certificate for SMTP,
// its clone, a request for popserver.fourthcoffee.com with an X.500
// subject and an exportable key, signed by openssl as the CA, imported,
// enabled for POP, and shown with every property the seed lists.
func TestSeed003Workflow(t *testing.T) {
	e := newEnv(t)
	ca := newOpensslCA(e, "ca", "/CN=3rdPartyCAExample.com")
	// The CA is "public": it is in the system bundle certrelay reads.
	e.extra = append(e.extra, "CERTRELAY_SYSTEM_ROOTS="+ca.certPath())
	e.ok("setup", "--fqdn", "hub1.fourthcoffee.com")

	// New-ExchangeCertificate -DomainName "server1.fourthcoffee.com", "server1" -Services "SMTP"
	smtp := mustThumbprint(t, e.ok("cert", "new", "--domain", "server1.fourthcoffee.com", "--domain", "server1", "--services", "SMTP"))
	c := e.show(smtp)
	if c.Subject != "CN=server1.fourthcoffee.com" || c.Issuer != c.Subject || !c.IsSelfSigned || c.RootCAType != "None" ||
		strings.Join(c.Services, ",") != "SMTP" || c.Status != "Valid" || !c.HasPrivateKey ||
		strings.Join(c.CertificateDomains, ",") != "server1.fourthcoffee.com,server1" {
		t.Fatalf("self-signed certificate: %+v", c)
	}
	nb, _ := time.Parse(time.RFC3339, c.NotBefore)
	na, _ := time.Parse(time.RFC3339, c.NotAfter)
	if d := na.Sub(nb); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("validity %v, want one year", d)
	}

	// Get-ExchangeCertificate <thumbprint> | New-ExchangeCertificate
	clone := mustThumbprint(t, e.ok("cert", "new", "--from", smtp))
	cc := e.show(clone)
	if clone == smtp || cc.Subject != c.Subject || strings.Join(cc.CertificateDomains, ",") != strings.Join(c.CertificateDomains, ",") ||
		strings.Join(cc.Services, ",") != "SMTP" || !cc.IsSelfSigned {
		t.Fatalf("clone: %+v", cc)
	}
	// ... -Services SMTP,POP,IMAP
	clone2 := mustThumbprint(t, e.ok("cert", "new", "--from", smtp, "--services", "SMTP,POP,IMAP"))
	if got := strings.Join(e.show(clone2).Services, ","); got != "IMAP,POP,SMTP" {
		t.Errorf("clone with services: %s", got)
	}

	// New-ExchangeCertificate -GenerateRequest -DomainName popserver.fourthcoffee.com
	//   -SubjectName "c=us,o=contoso corp, cn=popserver.fourthcoffee.com" -PrivateKeyExportable:$True
	req := mustThumbprint(t, e.ok("cert", "request", "--domain", "popserver.fourthcoffee.com", "--domain", "fourthcoffee.com",
		"--subject", "c=us,o=contoso corp, cn=popserver.fourthcoffee.com", "--exportable", "--out", "CertRequest.req"))
	pending := e.show(req)
	if pending.Status != "PendingRequest" || !strings.Contains(pending.CertificateRequest, "BEGIN CERTIFICATE REQUEST") || !pending.HasPrivateKey {
		t.Fatalf("pending request: %+v", pending)
	}
	reqText, _ := os.ReadFile(e.path("CertRequest.req"))
	if strings.TrimSpace(string(reqText)) != strings.TrimSpace(pending.CertificateRequest) {
		t.Error("CertificateRequest differs from the request file")
	}
	subj := e.tool("openssl", "req", "-in", "CertRequest.req", "-noout", "-subject", "-nameopt", "RFC2253", "-verify")
	if !strings.Contains(subj, "CN=popserver.fourthcoffee.com,O=contoso corp,C=us") {
		t.Errorf("openssl reads the request subject as %q", subj)
	}

	// The CA signs; Import-ExchangeCertificate -Path C:\CertificateFile.cer | Enable-ExchangeCertificate -Services:"POP"
	ca.sign("CertRequest.req", "CertificateFile.cer", false)
	imported := mustThumbprint(t, e.ok("cert", "import", "CertificateFile.cer"))
	if want := fingerprint(e, e.path("CertificateFile.cer")); imported != want {
		t.Fatalf("thumbprint %s, openssl's SHA-1 fingerprint %s", imported, want)
	}
	e.ok("cert", "enable", imported, "--services", "POP")

	// Get-ExchangeCertificate <thumbprint> | fl *
	got := e.show(imported)
	serial := e.tool("openssl", "x509", "-in", "CertificateFile.cer", "-noout", "-serial")
	_, serial, _ = strings.Cut(strings.TrimSpace(serial), "=")
	checks := []struct {
		name      string
		ok        bool
		got, want any
	}{
		{"CertificateDomains", strings.Join(got.CertificateDomains, ",") == "popserver.fourthcoffee.com,fourthcoffee.com", got.CertificateDomains, "{popserver.fourthcoffee.com, fourthcoffee.com}"},
		{"HasPrivateKey", got.HasPrivateKey, got.HasPrivateKey, true},
		{"IsSelfSigned", !got.IsSelfSigned, got.IsSelfSigned, false},
		{"Issuer", got.Issuer == "CN=3rdPartyCAExample.com", got.Issuer, "CN=3rdPartyCAExample.com"},
		{"PublicKeySize", got.PublicKeySize == 2048, got.PublicKeySize, 2048},
		{"RootCAType", got.RootCAType == "ThirdParty", got.RootCAType, "ThirdParty"},
		{"SerialNumber", strings.EqualFold(got.SerialNumber, serial), got.SerialNumber, serial},
		{"Services", strings.Join(got.Services, ",") == "POP", got.Services, "POP"},
		{"Status", got.Status == "Valid", got.Status, "Valid"},
		{"Subject", got.Subject == "CN=popserver.fourthcoffee.com,O=contoso corp,C=us", got.Subject, "CN=popserver.fourthcoffee.com,O=contoso corp,C=us"},
		{"Thumbprint", got.Thumbprint == imported, got.Thumbprint, imported},
		{"PrivateKeyExportable", got.PrivateKeyExportable, got.PrivateKeyExportable, true},
		{"NotAfter", got.NotAfter != "" && got.NotBefore != "", got.NotAfter, "set"},
		{"AccessRules", len(got.AccessRules) > 0, got.AccessRules, "the key file's owner"},
		{"CertificateRequest", got.CertificateRequest == "", got.CertificateRequest, "empty once answered"},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	// The text form shows the same properties, one per line, as | fl * does.
	text := e.ok("cert", "show", imported)
	for _, prop := range []string{"AccessRules", "CertificateDomains", "HasPrivateKey", "IsSelfSigned", "Issuer", "NotAfter", "NotBefore", "PublicKeySize", "RootCAType", "SerialNumber", "Services", "Status", "Subject", "Thumbprint"} {
		if !regexp.MustCompile(`(?m)^` + prop + ` +: `).MatchString(text) {
			t.Errorf("cert show lacks %s:\n%s", prop, text)
		}
	}
	// The request is gone: it became the certificate.
	for _, c := range e.list() {
		if c.Thumbprint == req {
			t.Error("the pending request is still listed after import")
		}
	}
	// Enabling only ever adds services.
	e.ok("cert", "enable", imported, "--services", "IMAP")
	if s := strings.Join(e.show(imported).Services, ","); s != "IMAP,POP" {
		t.Errorf("services after enabling IMAP: %s", s)
	}
}

// TestImportPipedToEnable: the thumbprint import prints is what enable
// takes (Import-ExchangeCertificate … | Enable-ExchangeCertificate).
func TestImportPipedToEnable(t *testing.T) {
	e := newEnv(t)
	ca := newOpensslCA(e, "ca", "/CN=Pipe CA")
	e.ok("setup")
	e.ok("cert", "request", "--domain", "imap.example.test", "--out", "req.der", "--der")
	e.tool("openssl", "req", "-inform", "DER", "-in", "req.der", "-noout", "-verify")
	ca.sign("req.der", "cert.der", true, "-outform", "DER")
	cmd := "T=$(" + binary + " --data " + e.data + " cert import cert.der) && " + binary + " --data " + e.data + " cert enable \"$T\" --services IMAP"
	e.tool("sh", "-c", cmd)
	cs := e.list("--domain", "imap.example.test")
	if len(cs) != 1 || strings.Join(cs[0].Services, ",") != "IMAP" || cs[0].Status != "Untrusted" {
		t.Fatalf("after import | enable: %+v", cs)
	}
}

// TestImportPKCS7WithIntermediate: a CA answer as a PKCS#7 bundle with its
// intermediate; the intermediate goes to the intermediate store and the
// chain then verifies to the root once that is trusted.
func TestImportPKCS7WithIntermediate(t *testing.T) {
	e := newEnv(t)
	root := newOpensslCA(e, "root", "/CN=Root CA")
	e.tool("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "inter.key", "-out", "inter.csr", "-subj", "/CN=Issuing CA")
	e.write("ca.ext", []byte("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"))
	e.tool("openssl", "x509", "-req", "-in", "inter.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial", "-out", "inter.pem", "-days", "365", "-extfile", "ca.ext")
	inter := &opensslCA{e: e, name: "inter"}
	e.extra = append(e.extra, "CERTRELAY_SYSTEM_ROOTS="+root.certPath())
	e.ok("setup")
	e.ok("cert", "request", "--domain", "mail.example.test", "--out", "req.pem", "--key-type", "ecdsa")
	inter.sign("req.pem", "leaf.pem", false)
	e.tool("openssl", "crl2pkcs7", "-nocrl", "-certfile", "leaf.pem", "-certfile", "inter.pem", "-outform", "DER", "-out", "answer.p7b")
	r := e.run("", "cert", "import", "answer.p7b")
	if r.code != 0 {
		t.Fatalf("import p7b: %s", r.stderr)
	}
	if !strings.Contains(r.stderr, "Added intermediate") {
		t.Errorf("no intermediate reported: %s", r.stderr)
	}
	c := e.show(strings.TrimSpace(r.stdout))
	if c.Status != "Valid" || c.RootCAType != "ThirdParty" || c.PublicKeySize != 256 {
		t.Fatalf("imported through an intermediate: %+v", c)
	}
}

// TestPKCS12RoundTripWithOpenSSL: openssl makes a PKCS#12 we import;
// we export a PKCS#12 openssl reads, with the same certificate and key.
func TestPKCS12RoundTripWithOpenSSL(t *testing.T) {
	e := newEnv(t)
	testpki.Tool(t, "openssl")
	e.ok("setup")
	e.tool("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
		"-subj", "/CN=mail.contoso.com", "-addext", "subjectAltName=DNS:mail.contoso.com,DNS:*.contoso.com", "-days", "30")
	e.write("pw", []byte("correct horse\n"))
	e.tool("openssl", "pkcs12", "-export", "-inkey", "k.pem", "-in", "c.pem", "-out", "in.pfx", "-passout", "file:pw")
	tp := mustThumbprint(t, e.ok("cert", "import", "in.pfx", "--password-file", "pw", "--exportable", "--friendly-name", "Contoso mail"))
	if tp != fingerprint(e, e.path("c.pem")) {
		t.Fatal("imported thumbprint differs from openssl's fingerprint")
	}
	c := e.show(tp)
	if !c.HasPrivateKey || !c.PrivateKeyExportable || c.FriendlyName != "Contoso mail" ||
		strings.Join(c.CertificateDomains, ",") != "mail.contoso.com,*.contoso.com" {
		t.Fatalf("imported: %+v", c)
	}
	// Export, with the password from standard input.
	r := e.run("s3cret-export\n", "cert", "export", tp, "--out", "out.pfx", "--password-file", "-")
	if r.code != 0 {
		t.Fatalf("export: %s", r.stderr)
	}
	fi, _ := os.Stat(e.path("out.pfx"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("PKCS#12 export mode %v, want 0600", fi.Mode().Perm())
	}
	e.write("pw2", []byte("s3cret-export\n"))
	e.tool("openssl", "pkcs12", "-in", "out.pfx", "-passin", "file:pw2", "-nokeys", "-out", "out-cert.pem")
	e.tool("openssl", "pkcs12", "-in", "out.pfx", "-passin", "file:pw2", "-nocerts", "-nodes", "-out", "out-key.pem")
	if fingerprint(e, e.path("out-cert.pem")) != tp {
		t.Error("openssl reads another certificate from our PKCS#12")
	}
	a := e.tool("openssl", "pkey", "-in", "k.pem", "-pubout")
	b := e.tool("openssl", "pkey", "-in", "out-key.pem", "-pubout")
	if a != b {
		t.Error("openssl reads another key from our PKCS#12")
	}
	// The certificate alone, PEM and DER.
	e.ok("cert", "export", tp, "--out", "c-out.pem")
	e.ok("cert", "export", tp, "--out", "c-out.der", "--der")
	if fingerprint(e, e.path("c-out.pem")) != tp {
		t.Error("PEM export differs")
	}
	der := e.tool("openssl", "x509", "-inform", "DER", "-in", "c-out.der", "-noout", "-fingerprint", "-sha1")
	if !strings.Contains(strings.ReplaceAll(der, ":", ""), tp) {
		t.Error("DER export differs")
	}
}

// TestNewInternalTransportCertificate: cert new without arguments makes a
// new internal transport certificate, asking first; without a terminal it
// fails naming --force and makes nothing; --force replaces it, and
// removal of the current one is refused with the way out.
func TestNewInternalTransportCertificate(t *testing.T) {
	e := newEnv(t)
	e.ok("setup", "--fqdn", "hub.example.test")
	srv := e.server()
	first := srv.InternalTransportCertificateThumbprint
	c := e.show(first)
	if !c.IsInternalTransportCertificate || strings.Join(c.Services, ",") != "SMTP" || c.Subject != "CN="+srv.Name ||
		strings.Join(c.CertificateDomains, ",") != srv.Name+",hub.example.test" {
		t.Fatalf("setup's certificate: %+v (server %+v)", c, srv)
	}
	before := e.state()
	r := e.run("", "cert", "new")
	if r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("cert new without a terminal: exit %d, %s", r.code, r.stderr)
	}
	if after := e.state(); after != before {
		t.Fatalf("a refused cert new changed the store:\n%s\n---\n%s", before, after)
	}
	second := mustThumbprint(t, e.ok("cert", "new", "--force"))
	if got := e.server().InternalTransportCertificateThumbprint; got != second {
		t.Fatalf("internal transport certificate %s, want the new %s", got, second)
	}
	if s := strings.Join(e.show(second).Services, ","); s != "IMAP,POP,SMTP" {
		t.Errorf("services of a no-argument cert new: %s", s)
	}
	r = e.run("", "cert", "remove", second, "--force")
	if r.code == 0 || !strings.Contains(r.stderr, "cert new") {
		t.Fatalf("removing the internal transport certificate: exit %d, %s", r.code, r.stderr)
	}
	e.ok("cert", "remove", first, "--force")
	// Setup again changes nothing.
	if out := e.ok("setup", "--fqdn", "hub.example.test"); !strings.Contains(out, "already set up") {
		t.Errorf("second setup: %s", out)
	}
	var evs []struct {
		EventId int
	}
	e.jsonOf(&evs, "events")
	seen := map[int]int{}
	for _, ev := range evs {
		seen[ev.EventId]++
	}
	if seen[16001] != 1 || seen[16008] != 2 || seen[16006] != 1 {
		t.Errorf("events: %v", seen)
	}
}

// TestListByDomainRanks: with --domain, a CA-issued certificate comes
// before a newer self-signed one, and wildcards hold the name. The
// ranking is selection's for SMTP (issue 9, item 11): the CA-issued one
// counts once it is enabled for SMTP, and comes after the self-signed one
// while it is not.
func TestListByDomainRanks(t *testing.T) {
	e := newEnv(t)
	ca := newOpensslCA(e, "ca", "/CN=Rank CA")
	e.extra = append(e.extra, "CERTRELAY_SYSTEM_ROOTS="+ca.certPath())
	e.ok("setup")
	e.ok("cert", "request", "--domain", "*.contoso.com", "--out", "w.req")
	ca.sign("w.req", "w.pem", false)
	wild := e.ok("cert", "import", "w.pem")
	time.Sleep(1100 * time.Millisecond) // a later NotBefore for the self-signed one
	self := e.ok("cert", "new", "--domain", "mail.contoso.com", "--services", "SMTP")
	e.ok("cert", "new", "--domain", "other.example", "--services", "SMTP")
	if cs := e.list("--domain", "MAIL.contoso.com"); len(cs) != 2 || cs[0].Thumbprint != self {
		t.Fatalf("before the CA-issued certificate is enabled for SMTP, the self-signed one must come first: %+v", cs)
	}
	e.ok("cert", "enable", wild, "--services", "SMTP")
	cs := e.list("--domain", "MAIL.contoso.com")
	if len(cs) != 2 || cs[0].Thumbprint != wild || cs[1].Thumbprint != self {
		var got []string
		for _, c := range cs {
			got = append(got, c.Thumbprint+" "+c.Subject)
		}
		t.Fatalf("ranking for mail.contoso.com: %v (want %s then %s)", got, wild, self)
	}
}

// TestBadInput: each bad input gets a clear error naming the problem (and
// the fix), a non-zero exit, and leaves the store exactly as it was.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	ca := newOpensslCA(e, "ca", "/CN=Bad Input CA")
	e.ok("setup")
	internal := e.server().InternalTransportCertificateThumbprint
	selfT := e.ok("cert", "new", "--domain", "noexport.example", "--services", "SMTP")

	// Files the cases use.
	e.write("garbage.cer", []byte("this is not a certificate\n\x00\x01\x02"))
	e.tool("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem", "-subj", "/CN=other.example", "-days", "30")
	e.tool("openssl", "x509", "-in", "other.pem", "-outform", "DER", "-out", "other.der")
	der, _ := os.ReadFile(e.path("other.der"))
	e.write("truncated.der", der[:len(der)*2/3])
	keyOnly, _ := os.ReadFile(e.path("other.key"))
	e.write("key-only.pem", keyOnly)
	e.write("pw", []byte("right\n"))
	e.write("wrong-pw", []byte("wrong\n"))
	e.tool("openssl", "pkcs12", "-export", "-inkey", "other.key", "-in", "other.pem", "-out", "other.pfx", "-passout", "file:pw")
	e.tool("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "third.key", "-out", "third.pem", "-subj", "/CN=third.example", "-days", "30")
	otherCert, _ := os.ReadFile(e.path("other.pem"))
	thirdKey, _ := os.ReadFile(e.path("third.key"))
	e.write("mismatch.pem", append(append([]byte{}, otherCert...), thirdKey...))
	// A CA answer to a request this server never made: another server's request.
	e.tool("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "foreign.key", "-out", "foreign.req", "-subj", "/CN=foreign.example")
	ca.sign("foreign.req", "foreign.pem", false)
	// A 512-bit RSA key, as PKCS#12.
	e.tool("openssl", "genrsa", "-out", "weak.key", "512")
	e.tool("openssl", "req", "-x509", "-new", "-key", "weak.key", "-out", "weak.pem", "-subj", "/CN=weak.example", "-days", "30")
	e.tool("openssl", "pkcs12", "-export", "-inkey", "weak.key", "-in", "weak.pem", "-out", "weak.pfx", "-passout", "file:pw")
	// A certificate imported once, then again.
	e.tool("openssl", "pkcs12", "-export", "-inkey", "third.key", "-in", "third.pem", "-out", "third.pfx", "-passout", "file:pw")
	e.ok("cert", "import", "third.pfx", "--password-file", "pw")
	unknown := strings.Repeat("AB", 20)

	cases := []struct {
		name string
		args []string
		want []string // substrings of stderr, case-insensitive
	}{
		{"garbage-file", []string{"cert", "import", "garbage.cer"}, []string{"not a certificate file", "expected DER, PEM"}},
		{"truncated-der", []string{"cert", "import", "truncated.der"}, []string{"damaged or cut short"}},
		{"pem-without-certificate", []string{"cert", "import", "key-only.pem"}, []string{"no CERTIFICATE block"}},
		{"pkcs12-wrong-password", []string{"cert", "import", "other.pfx", "--password-file", "wrong-pw"}, []string{"password is wrong"}},
		{"pkcs12-without-password", []string{"cert", "import", "other.pfx"}, []string{"--password-file"}},
		{"key-matches-no-certificate", []string{"cert", "import", "mismatch.pem"}, []string{"private key in the file belongs to none"}},
		{"answer-to-request-never-made", []string{"cert", "import", "foreign.pem"}, []string{"does not answer a request made on this server", "PKCS#12"}},
		{"same-certificate-twice", []string{"cert", "import", "third.pfx", "--password-file", "pw"}, []string{"already in the store"}},
		{"unknown-thumbprint-show", []string{"cert", "show", unknown}, []string{"no certificate with that thumbprint", "cert list"}},
		{"unknown-thumbprint-enable", []string{"cert", "enable", unknown, "--services", "SMTP"}, []string{"no certificate with that thumbprint"}},
		{"unknown-thumbprint-remove", []string{"cert", "remove", unknown, "--force"}, []string{"no certificate with that thumbprint"}},
		{"not-a-thumbprint", []string{"cert", "show", "xyz"}, []string{"is not a thumbprint", "40 hexadecimal"}},
		{"unknown-service", []string{"cert", "enable", selfT, "--services", "SMTP,FTP"}, []string{`unknown service "FTP"`, "SMTP, POP, IMAP"}},
		{"services-with-request", []string{"cert", "request", "--domain", "a.example", "--services", "SMTP", "--out", "x.req"}, []string{"services cannot be given with a request"}},
		{"rsa-512-key", []string{"cert", "import", "weak.pfx", "--password-file", "pw"}, []string{"512 bits", "2048"}},
		{"subject-unknown-attribute", []string{"cert", "request", "--domain", "a.example", "--subject", "c=us,zz=bad,cn=a.example", "--out", "x.req"}, []string{`unknown attribute "zz"`}},
		{"domain-invalid-characters", []string{"cert", "new", "--domain", "mail_server!.example", "--services", "SMTP"}, []string{"invalid domain name", "letters, digits, hyphens"}},
		{"export-key-not-exportable", []string{"cert", "export", selfT, "--out", "x.pfx", "--password-file", "pw"}, []string{"not exportable", "--exportable"}},
		{"remove-internal-transport-certificate", []string{"cert", "remove", internal, "--force"}, []string{"internal transport certificate", "cert new"}},
		{"enable-without-services", []string{"cert", "enable", selfT}, []string{"--services"}},
		{"key-size-not-offered", []string{"cert", "new", "--domain", "k.example", "--key-size", "512"}, []string{"512 bits is not offered"}},
		{"export-over-existing-file", []string{"cert", "export", selfT, "--out", "existing.pem"}, []string{"exists already", "--force"}},
		{"export-into-data-directory", []string{"cert", "export", selfT, "--out", filepath.Join(e.data, "certrelay.db"), "--force"}, []string{"inside the data directory"}},
		{"export-into-key-directory", []string{"cert", "export", selfT, "--out", filepath.Join(e.data, "keys", "x.pem")}, []string{"inside the data directory"}},
		{"export-pfx-name-without-password", []string{"cert", "export", selfT, "--out", "x.pfx"}, []string{"PKCS#12", "password"}},
		{"export-pem-name-with-password", []string{"cert", "export", selfT, "--out", "x.pem", "--password-file", "pw"}, []string{"PKCS#12", ".pfx"}},
		{"export-der-with-password", []string{"cert", "export", selfT, "--out", "x.bin", "--der", "--password-file", "pw"}, []string{"--der and --password-file"}},
		{"request-over-existing-file", []string{"cert", "request", "--domain", "a.example", "--out", "existing.pem"}, []string{"exists already"}},
		{"domain-empty", []string{"cert", "new", "--domain", "", "--services", "SMTP"}, []string{"empty"}},
		{"domain-only-commas", []string{"cert", "new", "--domain", ",", "--services", "SMTP"}, []string{"empty"}},
		{"domain-empty-in-list", []string{"cert", "new", "--domain", "a.example,,b.example", "--services", "SMTP"}, []string{"empty"}},
		{"two-unrelated-leaves", []string{"cert", "import", "two-leaves.pem"}, []string{"more than one end-entity certificate", "one by one"}},
		{"stored-certificate-without-key", []string{"cert", "import", "third.pem"}, []string{"already in the store"}},
		{"unknown-command", []string{"enable", selfT}, []string{`unknown command "enable" for certrelay`}},
		{"unknown-subcommand", []string{"cert", "lst"}, []string{`unknown command "lst" for certrelay cert`, "did you mean certrelay cert list"}},
		{"missing-argument-names-the-command", []string{"cert", "enable"}, []string{"see certrelay cert enable --help"}},
		{"setup-other-role", []string{"setup", "--role", "edge"}, []string{"role does not change", "setup --role edge"}},
		{"request-domain-empty", []string{"cert", "request", "--domain", " ", "--out", "x.req"}, []string{"empty"}},
	}
	e.write("existing.pem", []byte("keep me\n"))
	for _, n := range []string{"leaf1", "leaf2"} {
		e.tool("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", n+".key", "-out", n+".pem",
			"-subj", "/CN="+n+".example", "-days", "30", "-addext", "basicConstraints=critical,CA:FALSE")
	}
	leaf1, _ := os.ReadFile(e.path("leaf1.pem"))
	leaf2, _ := os.ReadFile(e.path("leaf2.pem"))
	leaf1Key, _ := os.ReadFile(e.path("leaf1.key"))
	e.write("two-leaves.pem", append(append(append([]byte{}, leaf1...), leaf2...), leaf1Key...))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.state()
			r := e.run("", c.args...)
			if (c.name == "unknown-command" || c.name == "unknown-subcommand") && r.code != 2 {
				t.Errorf("exit %d for a command that does not exist, want 2 (the README's usage error)", r.code)
			}
			if r.code == 0 {
				t.Fatalf("exit 0 for bad input; stdout %q", r.stdout)
			}
			for _, w := range c.want {
				if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(w)) {
					t.Errorf("stderr %q lacks %q", r.stderr, w)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty on error: %q", r.stdout)
			}
			if after := e.state(); after != before {
				t.Errorf("the store changed:\nbefore: %s\nafter:  %s", before, after)
			}
			if _, err := os.Stat(e.path("x.pfx")); err == nil {
				t.Error("a refused export wrote its file")
			}
		})
	}
}
