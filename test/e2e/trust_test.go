package e2e

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/testpki"
)

type verifyJSON struct {
	Thumbprint string
	Status     string
	RootCAType string
	Problem    string
	Fix        string
	Chain      []struct {
		Subject    string
		Thumbprint string
		Status     string
		Revocation *struct {
			Status   string
			Attempts []struct{ Kind, URL, Result, Error string }
		}
	}
}

// importLeaf imports a test-PKI certificate with its key (PKCS#12) and
// returns its thumbprint.
func (e *env) importLeaf(name string, l *testpki.Leaf) string {
	e.t.Helper()
	pfx, err := certinfo.EncodePKCS12(l.Key, l.Cert, nil, "pw", rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	e.write(name+".pfx", pfx)
	e.write("pw", []byte("pw\n"))
	return mustThumbprint(e.t, e.ok("cert", "import", name+".pfx", "--password-file", "pw"))
}

func (e *env) verify(target string) (verifyJSON, result) {
	e.t.Helper()
	r := e.run("", "cert", "verify", target, "--json")
	var v verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		e.t.Fatalf("cert verify --json: %v\n%s\n%s", err, r.stdout, r.stderr)
	}
	return v, r
}

// TestVerifySeedCases: cert verify on the seed's cases prints what an
// administrator needs: status, root type, the chain with each URL tried,
// and the fix; the exit status is 0 only for Valid.
func TestVerifySeedCases(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	resp := testpki.NewResponder(t)
	public := testpki.NewRoot(t, testpki.Options{CommonName: "Public Trust Root"})
	private := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Private Root"})
	nobody := testpki.NewRoot(t, testpki.Options{CommonName: "Unknown CA"})
	e.write("public.pem", testpki.PEM(public.Cert))
	e.write("private.pem", testpki.PEM(private.Cert))
	e.extra = append(e.extra, "CERTRELAY_SYSTEM_ROOTS="+e.path("public.pem"))
	e.ok("setup")
	e.ok("trust", "add", "private.pem")

	pubLeaf := public.Issue(t, testpki.Options{CommonName: "mail.contoso.com", CRL: []string{resp.URL("/public.crl")}})
	regLeaf := private.Issue(t, testpki.Options{CommonName: "pop.contoso.com", CRL: []string{resp.URL("/private.crl")}})
	revLeaf := private.Issue(t, testpki.Options{CommonName: "old-pop.contoso.com", CRL: []string{resp.URL("/private.crl")}})
	resp.SetCRL("/public.crl", public.CRL(t, nil, now.Add(-time.Hour), now.Add(24*time.Hour)))
	resp.SetCRL("/private.crl", private.CRL(t, []*x509.Certificate{revLeaf.Cert}, now.Add(-time.Hour), now.Add(24*time.Hour)))
	expLeaf := private.Issue(t, testpki.Options{CommonName: "expired.contoso.com", NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(-48 * time.Hour)})
	untLeaf := nobody.Issue(t, testpki.Options{CommonName: "stranger.example"})

	cases := []struct {
		name             string
		thumb            string
		status, rootType string
		text             []string // in the text report
	}{
		{"public-root-ThirdParty", e.importLeaf("pub", pubLeaf), "Valid", "ThirdParty", []string{"CRL  " + resp.URL("/public.crl") + ": good", "No problem found"}},
		{"private-root-Registry", e.importLeaf("reg", regLeaf), "Valid", "Registry", []string{"root (Registry)", ": good"}},
		{"revoked", e.importLeaf("rev", revLeaf), "Revoked", "Registry", []string{": revoked on", "Problem: the CA has revoked it", "Fix:     replace it"}},
		{"expired", e.importLeaf("exp", expLeaf), "DateInvalid", "Registry", []string{"it expired on", "renew it"}},
		{"untrusted", e.importLeaf("unt", untLeaf), "Untrusted", "Unknown", []string{"not a trusted root", "certrelay trust add"}},
		{"self-signed-None", e.ok("cert", "new", "--domain", "hub.contoso.com", "--services", "SMTP"), "Valid", "None", []string{"self-signed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, r := e.verify(c.thumb)
			if v.Status != c.status || v.RootCAType != c.rootType || v.Thumbprint != c.thumb || len(v.Chain) == 0 {
				t.Fatalf("verify: Status %s RootCAType %s, want %s %s\n%s", v.Status, v.RootCAType, c.status, c.rootType, r.stdout)
			}
			if (r.code == 0) != (c.status == "Valid") {
				t.Errorf("exit %d for %s", r.code, c.status)
			}
			if c.status != "Valid" && (v.Problem == "" || v.Fix == "") {
				t.Errorf("no problem or fix: %+v", v)
			}
			text := e.run("", "cert", "verify", c.thumb).stdout
			for _, want := range c.text {
				if !strings.Contains(text, want) {
					t.Errorf("report lacks %q:\n%s", want, text)
				}
			}
			if got := e.show(c.thumb).Status; got != c.status {
				t.Errorf("cert show says %s after verify, want %s", got, c.status)
			}
		})
	}
	// A file can be verified without importing it.
	e.write("stranger.pem", testpki.PEM(untLeaf.Cert))
	if v, _ := e.verify("stranger.pem"); v.Status != "Untrusted" {
		t.Errorf("verify FILE: %s", v.Status)
	}
}

// TestRevocationRefreshedByVerify: an unreachable CRL shows as
// RevocationCheckFailure in cert list, which stays until cert verify
// fetches afresh.
func TestRevocationRefreshedByVerify(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	resp := testpki.NewResponder(t)
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Refresh Root"})
	e.write("root.pem", testpki.PEM(root.Cert))
	e.ok("setup")
	e.ok("trust", "add", "root.pem", "--source", "enterprise")
	leaf := root.Issue(t, testpki.Options{CommonName: "smtp.contoso.com", CRL: []string{resp.URL("/later.crl")}})
	tp := e.importLeaf("leaf", leaf) // the CRL is not published yet: 404
	if c := e.show(tp); c.Status != "RevocationCheckFailure" || c.RootCAType != "Enterprise" {
		t.Fatalf("before the CRL exists: %s %s", c.Status, c.RootCAType)
	}
	resp.SetCRL("/later.crl", root.CRL(t, nil, now.Add(-time.Minute), now.Add(time.Hour)))
	if c := e.show(tp); c.Status != "RevocationCheckFailure" {
		t.Fatalf("cert show went to the network: %s", c.Status)
	}
	if v, _ := e.verify(tp); v.Status != "Valid" {
		t.Fatalf("verify: %s %s", v.Status, v.Problem)
	}
	if cs := e.list(); func() string {
		for _, c := range cs {
			if c.Thumbprint == tp {
				return c.Status
			}
		}
		return ""
	}() != "Valid" {
		t.Fatal("cert list does not show the refreshed status")
	}
}

// TestVerifyThroughProxy: with server set --proxy, CRL fetches go through
// the proxy (as WinHTTP's proxy is for Exchange); the CRL's host does not
// even resolve without it.
func TestVerifyThroughProxy(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Proxy Root"})
	crl := root.CRL(t, nil, now.Add(-time.Minute), now.Add(time.Hour))
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A forward proxy receives the absolute URL.
		if r.URL.Host == "crl.contoso.invalid" && r.URL.Path == "/root.crl" {
			proxied.Add(1)
			w.Write(crl)
			return
		}
		io.WriteString(w, "no")
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer proxy.Close()
	e.write("root.pem", testpki.PEM(root.Cert))
	e.ok("setup")
	e.ok("trust", "add", "root.pem")
	leaf := root.Issue(t, testpki.Options{CommonName: "proxied.contoso.com", CRL: []string{"http://crl.contoso.invalid/root.crl"}})
	tp := e.importLeaf("leaf", leaf)
	if v, _ := e.verify(tp); v.Status != "RevocationCheckFailure" || !strings.Contains(v.Fix, "--proxy") {
		t.Fatalf("without the proxy: %s, fix %q", v.Status, v.Fix)
	}
	e.ok("server", "set", "--proxy", proxy.URL)
	if v, _ := e.verify(tp); v.Status != "Valid" {
		t.Fatalf("through the proxy: %s %s", v.Status, v.Problem)
	}
	if proxied.Load() == 0 {
		t.Fatal("the proxy saw no request")
	}
	r := e.run("", "server", "set", "--proxy", "not a url")
	if r.code == 0 || !strings.Contains(r.stderr, "http://proxy.example.com:3128") {
		t.Errorf("bad proxy accepted: %d %s", r.code, r.stderr)
	}
}

// TestTrustCommands: add with each source, list, remove; bad input changes
// nothing.
func TestTrustCommands(t *testing.T) {
	e := newEnv(t)
	e.ok("setup")
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Listed Root"})
	inter := root.NewIntermediate(t, testpki.Options{CommonName: "Listed Issuing CA"})
	leaf := inter.Issue(t, testpki.Options{CommonName: "leaf.example"})
	e.write("root.pem", testpki.PEM(root.Cert))
	e.write("inter.pem", testpki.PEM(inter.Cert))
	e.write("leaf.pem", testpki.PEM(leaf.Cert))
	e.ok("trust", "add", "root.pem", "--source", "grouppolicy")
	e.ok("trust", "add", "inter.pem", "--intermediate")
	var rows []struct{ Thumbprint, Kind, Source, Subject string }
	e.jsonOf(&rows, "trust", "list")
	if len(rows) != 2 || rows[0].Source != "GroupPolicy" || rows[1].Kind != "Intermediate" {
		t.Fatalf("trust list: %+v", rows)
	}
	for _, bad := range []struct {
		name string
		args []string
		want string
	}{
		{"leaf-as-root", []string{"trust", "add", "leaf.pem"}, "not self-signed"},
		{"intermediate-as-root", []string{"trust", "add", "inter.pem"}, "--intermediate"},
		{"leaf-as-intermediate", []string{"trust", "add", "leaf.pem", "--intermediate"}, "not a CA certificate"},
		{"unknown-source", []string{"trust", "add", "root.pem", "--source", "internet"}, "unknown root source"},
		{"thirdparty-by-hand", []string{"trust", "add", "root.pem", "--source", "ThirdParty"}, "system bundle"},
		{"remove-unknown", []string{"trust", "remove", strings.Repeat("0", 40)}, "neither a trusted root"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			before := e.ok("trust", "list", "--json")
			r := e.run("", bad.args...)
			if r.code == 0 || !strings.Contains(r.stderr, bad.want) {
				t.Fatalf("exit %d, stderr %q, want %q", r.code, r.stderr, bad.want)
			}
			if after := e.ok("trust", "list", "--json"); after != before {
				t.Error("the trust store changed")
			}
		})
	}
	e.ok("trust", "remove", rows[0].Thumbprint)
	e.ok("trust", "remove", rows[1].Thumbprint)
	if out := e.ok("trust", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("after removing both: %s", out)
	}
}

// TestPendingRequestStatus: a request is listed with Status PendingRequest
// and cannot be verified.
func TestPendingRequestStatus(t *testing.T) {
	e := newEnv(t)
	e.ok("setup")
	tp := e.ok("cert", "request", "--domain", "pending.example", "--out", "p.req")
	if c := e.show(tp); c.Status != "PendingRequest" {
		t.Fatalf("status %s", c.Status)
	}
	if r := e.run("", "cert", "verify", tp); r.code == 0 || !strings.Contains(r.stderr, "pending request") {
		t.Errorf("verify of a request: %d %s", r.code, r.stderr)
	}
}
