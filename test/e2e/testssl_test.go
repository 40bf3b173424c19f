package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// testsslFinding is one entry of testssl's --jsonfile-pretty output.
type testsslFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// TestSSLAudit: testssl audits certrelay's STARTTLS on the default
// receive connector and finds nothing of severity HIGH or CRITICAL. The
// connector serves what a real deployment would: a CA-issued RSA-2048
// certificate for its FQDN, with a CRL distribution point, whose root
// testssl is given (--add-ca), so the certificate checks pass and what is
// judged is the TLS configuration (internal/transport builds it: TLS 1.2
// and up, Go's defaults). MEDIUM and LOW findings are logged.
//
// testssl's exit status counts ambiguous results (ENVIRONMENT.md), so
// only the severities in its JSON decide.
func TestSSLAudit(t *testing.T) {
	testssl := testpki.Tool(t, "testssl")
	e := newEnv(t)
	resp := testpki.NewResponder(t)
	now := time.Now()
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Audit Root"})
	leaf := root.Issue(t, testpki.Options{CommonName: "hub.contoso.test", DNSNames: []string{"hub.contoso.test"},
		CRL: []string{resp.URL("/root.crl")}})
	resp.SetCRL("/root.crl", root.CRL(t, nil, now.Add(-time.Hour), now.Add(24*time.Hour)))
	ca := e.write("root.pem", testpki.PEM(root.Cert))

	m := newMailServer(t, e, "hub.contoso.test")
	e.ok("trust", "add", "root.pem")
	th := e.importLeaf("hub", leaf)
	e.ok("cert", "enable", th, "--services", "SMTP")
	if c := e.show(th); c.Status != "Valid" {
		t.Fatalf("the audited certificate is %s, not Valid", c.Status)
	}
	m.start()
	if got := servedThumbprint(t, m.addr); got != th {
		t.Fatalf("the connector serves %s, want the CA-issued %s", got, th)
	}

	_, port, _ := strings.Cut(m.addr, ":")
	out := e.path("testssl.json")
	// The URI names the connector's FQDN (so the name check applies);
	// --ip sends the test to loopback without any DNS (--nodns none: the
	// machine's resolver stalls, ENVIRONMENT.md).
	cmd := exec.Command(testssl, "--quiet", "--color", "0", "--fast", "--warnings", "batch", "--starttls", "smtp",
		"--ip", "127.0.0.1", "--nodns", "none", "--add-ca", ca, "--jsonfile-pretty", out, "hub.contoso.test:"+port)
	cmd.Dir = e.work
	text, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("testssl: %v", err)
	}
	data, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatalf("testssl wrote no JSON (%v, %v):\n%s", err, rerr, text)
	}
	findings, perr := parseTestssl(data)
	if perr != nil {
		t.Fatalf("testssl JSON: %v\n%s", perr, data)
	}
	if len(findings) < 20 {
		t.Fatalf("testssl reported only %d findings; did it reach the server?\n%s", len(findings), text)
	}
	var bad, notes []string
	for _, f := range findings {
		line := fmt.Sprintf("%-8s %s: %s", f.Severity, f.ID, f.Finding)
		switch strings.ToUpper(f.Severity) {
		case "HIGH", "CRITICAL":
			bad = append(bad, line)
		case "MEDIUM", "LOW":
			notes = append(notes, line)
		case "FATAL":
			// testssl could not run a check at all: the audit is incomplete.
			bad = append(bad, line)
		}
	}
	sort.Strings(notes)
	for _, n := range notes {
		t.Log(n)
	}
	t.Logf("testssl: %d findings, %d MEDIUM or LOW, exit status %v", len(findings), len(notes), err)
	if len(bad) > 0 {
		t.Errorf("testssl found %d problems of severity HIGH or CRITICAL (or could not test):\n%s\nfull output:\n%s",
			len(bad), strings.Join(bad, "\n"), text)
	}
}

// parseTestssl reads testssl's --jsonfile-pretty file: scanResult holds,
// per target, sections (protocols, ciphers, vulnerabilities, …) that are
// lists of findings.
func parseTestssl(data []byte) ([]testsslFinding, error) {
	var doc struct {
		ScanResult []map[string]json.RawMessage `json:"scanResult"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var out []testsslFinding
	for _, target := range doc.ScanResult {
		for _, raw := range target {
			var list []testsslFinding
			if json.Unmarshal(raw, &list) != nil {
				continue // targetHost, ip, port, service: plain values
			}
			out = append(out, list...)
		}
	}
	return out, nil
}
