package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// TestDiagnoseSeed003ChainAndRevocation: seed 003's procedure — a CA
// certificate enabled for SMTP whose chain lacks its intermediate, then
// whose CRL can only be fetched through the proxy. diagnose names the
// Status and what repairs it; once the intermediate is added and the
// proxy set as it says, the printed fix (cert verify, which fetches
// afresh) makes the certificate Valid, diagnose comes back clean, and
// STARTTLS serves it.
func TestDiagnoseSeed003ChainAndRevocation(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Root"})
	inter := root.NewIntermediate(t, testpki.Options{CommonName: "Contoso Issuing CA"})
	crl := inter.CRL(t, nil, now.Add(-time.Minute), now.Add(time.Hour))
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host == "crl.contoso.invalid" && r.URL.Path == "/issuing.crl" {
			proxied.Add(1)
			w.Write(crl)
			return
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer proxy.Close()
	m := newMailServer(t, e, "hub.contoso.test")
	e.write("root.pem", testpki.PEM(root.Cert))
	e.write("issuing.pem", testpki.PEM(inter.Cert))
	e.ok("trust", "add", "root.pem")
	leaf := inter.Issue(t, testpki.Options{CommonName: "smtp.contoso.test", DNSNames: []string{"smtp.contoso.test"}, CRL: []string{"http://crl.contoso.invalid/issuing.crl"}})
	tp := e.importLeaf("smtp", leaf) // without its chain
	e.ok("cert", "enable", tp, "--services", "SMTP")
	e.ok("connector", "receive", "set", m.name, "--fqdn", "smtp.contoso.test")
	m.start()

	// The intermediate missing.
	f := e.finding("Q8")
	if f.evidence("Thumbprint") != tp || f.evidence("Status") == "Valid" || f.Fix[0].Command != "certrelay cert verify "+tp {
		t.Fatalf("Q8 with no intermediate: %+v", f)
	}
	if !strings.Contains(f.Note, "--intermediate") {
		t.Errorf("the note does not say how to add the intermediate: %q", f.Note)
	}
	t.Logf("missing intermediate: %s: %s", f.evidence("Status"), f.evidence("StatusDetail"))
	e.ok("trust", "add", "issuing.pem", "--intermediate") // as the note says
	if code, out := e.runFixExit(f, ""); code != 1 || !strings.Contains(out, "--proxy") {
		t.Fatalf("cert verify with the intermediate but no proxy: exit %d\n%s", code, out) // not Valid yet: the CRL
	}
	// Now the CRL cannot be fetched: no proxy.
	f = e.finding("Q8")
	if f.evidence("Status") != "RevocationCheckFailure" || !strings.Contains(f.Note, "--proxy") {
		t.Fatalf("Q8 with the CRL unreachable: %+v", f)
	}
	e.ok("server", "set", "--proxy", proxy.URL) // as the note says
	e.runFix(f, "")
	if proxied.Load() == 0 {
		t.Fatal("the CRL was not fetched through the proxy")
	}
	e.clean("the chain complete and the CRL fetched")
	waitServed(t, "smtp", m.addr, tp)
	if out, code := swaks(t, "--server", m.addr, "--tls", "--from", "carol@example.org", "--to", "alice@contoso.test"); code != 0 {
		t.Fatalf("swaks --tls: %d\n%s", code, out)
	}
	m.waitDelivered(1)
}
