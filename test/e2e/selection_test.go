package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"certrelay/internal/testpki"
)

// eventJSON is one event of certrelay events --json.
type eventJSON struct {
	EventId    int
	Parameters []string
	Message    string
}

func (e *env) events(id string) []eventJSON {
	e.t.Helper()
	var evs []eventJSON
	e.jsonOf(&evs, "events", "--id", id)
	return evs
}

// rankedJSON is an entry of cert list --domain --json.
type rankedJSON struct {
	Thumbprint    string
	SelectionRank int
	Selection     string
}

type explainJSON struct {
	Winner, How, Why, STARTTLS string
	Candidates                 []struct{ Thumbprint, Verdict, Reason string }
}

// TestLastResortServedListedAndLogged (issue 9, item 11): a CA-issued
// certificate whose CRL cannot be fetched beats the self-signed one as
// S4's revocation fallback. cert enable says so, cert list --domain puts
// first the certificate openssl s_client receives, the session logs
// 16030 (once: throttled), and cert explain says why, naming 16030.
func TestLastResortServedListedAndLogged(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	self := e.server().InternalTransportCertificateThumbprint
	resp := testpki.NewResponder(t)
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Enterprise Root"})
	e.write("root.pem", testpki.PEM(root.Cert))
	e.ok("trust", "add", "root.pem", "--source", "enterprise")
	revUnk := e.importLeaf("revunk", root.Issue(t, testpki.Options{CommonName: "hub.contoso.test", DNSNames: []string{"hub.contoso.test"},
		CRL: []string{resp.URL("/not-published.crl")}}))
	if c := e.show(revUnk); c.Status != "RevocationCheckFailure" {
		t.Fatalf("the CA-issued certificate is %s, want RevocationCheckFailure", c.Status)
	}
	r := e.run("", "cert", "enable", revUnk, "--services", "SMTP")
	if r.code != 0 || !strings.Contains(r.stderr, "last resort") || !strings.Contains(r.stderr, "16030") || strings.Contains(r.stderr, "will not use it") {
		t.Fatalf("cert enable must say the certificate is used as a last resort with event 16030: exit %d\n%s", r.code, r.stderr)
	}

	m.start()
	served := servedThumbprint(t, m.addr)
	if served != revUnk {
		t.Errorf("openssl s_client got %s, want the revocation fallback %s", served, revUnk)
	}
	var ranked []rankedJSON
	e.jsonOf(&ranked, "cert", "list", "--domain", "hub.contoso.test")
	if len(ranked) != 2 || ranked[0].Thumbprint != served || ranked[0].SelectionRank != 1 || ranked[1].Thumbprint != self || ranked[1].SelectionRank != 2 {
		t.Errorf("cert list --domain: %+v; want the served %s first, then %s", ranked, served, self)
	}
	if out := e.ok("cert", "list", "--domain", "hub.contoso.test"); !strings.Contains(out, "Rank") || !strings.Contains(strings.SplitN(out, "\n", 4)[2], served) {
		t.Errorf("cert list --domain table does not start with the served certificate:\n%s", out)
	}

	evs := e.events("16030")
	if len(evs) != 1 || strings.Join(evs[0].Parameters, "|") != strings.Join([]string{"hub.contoso.test", revUnk, "RevocationCheckFailure", m.name}, "|") ||
		!strings.Contains(evs[0].Message, "certrelay cert verify "+revUnk) {
		t.Fatalf("16030 after a session used the fallback: %+v", evs)
	}
	servedThumbprint(t, m.addr)
	if evs := e.events("16030"); len(evs) != 1 {
		t.Errorf("a second session logged 16030 again within its throttle: %d events", len(evs))
	}

	var ex explainJSON
	e.jsonOf(&ex, "cert", "explain", "--connector", m.name)
	if ex.Winner != revUnk || ex.How != "revocation-unknown" || !strings.Contains(ex.Why, "16030") || !strings.Contains(ex.STARTTLS, "16030") {
		t.Errorf("explain: %+v", ex)
	}
}

// TestKeyFileTroubleVisible (issue 9, item 12): a key file readable by
// everyone, then a deleted one, are named by cert show and cert explain;
// with the key gone, HasPrivateKey is False, STARTTLS is not advertised,
// and 12014 says that a certificate holds the name but has no usable key.
func TestKeyFileTroubleVisible(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	tp := e.server().InternalTransportCertificateThumbprint
	keys, _ := filepath.Glob(filepath.Join(e.data, "keys", "*.key"))
	if len(keys) != 1 {
		t.Fatalf("key files: %v", keys)
	}
	key := keys[0]

	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("cert", "show", tp); !strings.Contains(out, "mode 0644") || !strings.Contains(out, "chmod 600 "+key) {
		t.Errorf("cert show with a key readable by everyone:\n%s", out)
	}
	if out := e.ok("cert", "explain", "--connector", m.name); !strings.Contains(out, "chosen") || !strings.Contains(out, "mode 0644") {
		t.Errorf("cert explain with a key readable by everyone:\n%s", out)
	}

	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	var c struct {
		HasPrivateKey             bool
		Status, StatusDetail, Fix string
	}
	e.jsonOf(&c, "cert", "show", tp)
	if c.HasPrivateKey || !strings.Contains(c.StatusDetail, key+" is missing") || !strings.Contains(c.Fix, "certrelay cert new --from "+tp) {
		t.Errorf("cert show with the key gone: %+v", c)
	}
	if out := e.ok("cert", "show", tp); !strings.Contains(out, "is missing") {
		t.Errorf("cert show (text) with the key gone:\n%s", out)
	}

	m.start()
	if kw := ehlo(t, m.addr); hasKeyword(kw, "STARTTLS") {
		t.Fatalf("STARTTLS advertised without a usable key: %v", kw)
	}
	evs := e.events("12014")
	if len(evs) != 1 || len(evs[0].Parameters) != 4 || !strings.Contains(evs[0].Parameters[3], "none has a usable private key") ||
		!strings.Contains(evs[0].Message, key+" is missing") {
		t.Fatalf("12014 with the key gone: %+v", evs)
	}
	var ex explainJSON
	e.jsonOf(&ex, "cert", "explain", "--connector", m.name)
	if ex.Winner != "" || !strings.Contains(ex.Why, "none has a usable private key") || len(ex.Candidates) != 1 || !strings.Contains(ex.Candidates[0].Reason, key+" is missing") {
		t.Errorf("explain with the key gone: %+v", ex)
	}
}

// TestKeyEnciphermentOnlyRefused (issue 9, item 10): a certificate from a
// trusted CA whose Key Usage is keyEncipherment alone cannot serve the
// ECDHE suites certrelay offers: explain rejects it naming
// digitalSignature, and s_client gets the self-signed one instead.
func TestKeyEnciphermentOnlyRefused(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	self := e.server().InternalTransportCertificateThumbprint
	ca := newOpensslCA(e, "ca", "/CN=Contoso Issuing CA")
	e.ok("trust", "add", "ca.pem")
	e.ok("cert", "request", "--domain", "hub.contoso.test", "--out", "ke.req")
	e.write("ke.cnf", []byte("[v3]\nkeyUsage=critical,keyEncipherment\nextendedKeyUsage=serverAuth\n"))
	ca.sign("ke.req", "ke.pem", false, "-extfile", "ke.cnf", "-extensions", "v3")
	if out := e.tool("openssl", "x509", "-in", "ke.pem", "-noout", "-ext", "keyUsage"); !strings.Contains(out, "Key Encipherment") || strings.Contains(out, "Digital Signature") {
		t.Fatalf("openssl made another Key Usage:\n%s", out)
	}
	ke := e.ok("cert", "import", "ke.pem")
	e.ok("cert", "enable", ke, "--services", "SMTP")
	if c := e.show(ke); c.Status != "Valid" {
		t.Fatalf("the CA-issued certificate is %s", c.Status)
	}
	var ex explainJSON
	e.jsonOf(&ex, "cert", "explain", "--connector", m.name)
	reason := ""
	for _, c := range ex.Candidates {
		if c.Thumbprint == ke {
			reason = c.Verdict + ": " + c.Reason
		}
	}
	if ex.Winner != self || !strings.HasPrefix(reason, "rejected") || !strings.Contains(reason, "digitalSignature") {
		t.Errorf("explain: winner %s (want %s), the keyEncipherment-only certificate: %q", ex.Winner, self, reason)
	}
	m.start()
	if got := servedThumbprint(t, m.addr); got != self {
		t.Errorf("openssl s_client got %s, want the self-signed %s", got, self)
	}
}
