package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/testpki"
)

// consoleSite is a running certrelay serve with its HTTPS console on a
// loopback port, served for hub.contoso.test with a certificate from a
// CA (whose root root.pem is, and which this server trusts), metrics on
// another port, and two accounts: admin (server-admin) and viewer
// (view-only).
type consoleSite struct {
	t             *testing.T
	e             *env
	m             *mailServer
	root          *testpki.CA
	addr, metrics string // 127.0.0.1:PORT
	iis           string // the console's certificate
}

const (
	consoleHost     = "hub.contoso.test"
	consolePassword = "console password 1"
)

func newConsoleSite(t *testing.T) *consoleSite {
	t.Helper()
	e := newEnv(t)
	s := &consoleSite{t: t, e: e}
	s.m = newMailServer(t, e, consoleHost)
	resp := testpki.NewResponder(t)
	now := time.Now()
	s.root = testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Console Root"})
	resp.SetCRL("/root.crl", s.root.CRL(t, nil, now.Add(-time.Hour), now.Add(24*time.Hour)))
	e.write("root.pem", testpki.PEM(s.root.Cert))
	e.ok("trust", "add", "root.pem")
	leaf := s.root.Issue(t, testpki.Options{CommonName: consoleHost, DNSNames: []string{consoleHost}, CRL: []string{resp.URL("/root.crl")}})
	s.iis = e.importLeaf("iis", leaf)
	e.ok("cert", "enable", s.iis, "--services", "IIS")
	s.addr, s.metrics = testpki.FreePort(t), testpki.FreePort(t)
	e.ok("console", "set", "--bindings", s.addr, "--metrics-bindings", s.metrics)
	e.write("console.pw", []byte(consolePassword+"\n"))
	e.ok("account", "add", "admin", "--role", "server-admin", "--password-file", "console.pw")
	e.ok("account", "add", "viewer", "--role", "view-only", "--password-file", "console.pw")
	s.m.start()
	waitPort(t, s.addr)
	waitPort(t, s.metrics)
	return s
}

// url is the console's address as a browser uses it (the name resolves
// to 127.0.0.1 only for the clients these tests make).
func (s *consoleSite) url(path string) string {
	_, port, _ := net.SplitHostPort(s.addr)
	return "https://" + consoleHost + ":" + port + path
}

// client trusts the console's root and dials loopback for its name.
func (s *consoleSite) client() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(s.root.Cert)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr)
		},
	}}
}

// token makes an API token for account.
func (s *consoleSite) token(account string) string {
	return s.e.ok("account", "token", account)
}

// api calls an operation as account's token; Data is returned raw.
func (s *consoleSite) api(token, op string, params map[string]any) (int, json.RawMessage, string) {
	s.t.Helper()
	o := admin.Lookup(op)
	if o == nil {
		s.t.Fatalf("no operation %s", op)
	}
	var req *http.Request
	if strings.HasPrefix(o.Cmdlet, "Get-") {
		q := url.Values{}
		for k, v := range params {
			q.Set(k, fmt.Sprint(v))
		}
		req, _ = http.NewRequest(http.MethodGet, s.url("/api/v1/"+op+"?"+q.Encode()), nil)
	} else {
		b, _ := json.Marshal(params)
		req, _ = http.NewRequest(http.MethodPost, s.url("/api/v1/"+op), bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := s.client().Do(req)
	if err != nil {
		s.t.Fatalf("%s: %v", op, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var env struct{ Data json.RawMessage }
	_ = json.Unmarshal(body, &env)
	return res.StatusCode, env.Data, string(body)
}

// sameJSON compares two JSON texts by value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

// TestAPIJSONEqualsCLI: every read operation answers through the API
// exactly what the CLI's --json prints for the same call; a change made
// through the API returns what the CLI then shows of the object changed;
// a view-only token may read but changes nothing (403).
func TestAPIJSONEqualsCLI(t *testing.T) {
	s := newConsoleSite(t)
	e := s.e
	admTok, viewTok := s.token("admin"), s.token("viewer")
	// Reads: every Get- operation of the registry, with the CLI's own
	// arguments for the same call.
	reads := map[string]struct {
		params map[string]any
		cli    []string
	}{
		"Get-ExchangeCertificate":            {nil, []string{"cert", "list"}},
		"Get-ExchangeCertificate/Thumbprint": {map[string]any{"Thumbprint": s.iis}, []string{"cert", "show", s.iis}},
		"Get-CertrelayCertificateSelection":  {map[string]any{"Fqdn": consoleHost, "Service": "IIS"}, []string{"cert", "explain", "--fqdn", consoleHost, "--service", "IIS"}},
		"Get-CertrelaySelectionMap":          {nil, []string{"cert", "map"}},
		"Get-CertrelayCertificateTimeline":   {nil, []string{"cert", "timeline"}},
		"Get-CertrelayTrustedCertificate":    {nil, []string{"trust", "list"}},
		"Get-ExchangeServer":                 {nil, []string{"server", "show"}},
		"Get-ReceiveConnector":               {nil, []string{"connector", "receive", "list"}},
		"Get-ReceiveConnector/Identity":      {map[string]any{"Identity": s.m.name}, []string{"connector", "receive", "show", s.m.name}},
		"Get-SendConnector":                  {nil, []string{"connector", "send", "list"}},
		"Get-SendConnector/Identity":         {map[string]any{"Identity": "Out"}, []string{"connector", "send", "show", "Out"}},
		"Get-AcceptedDomain":                 {nil, []string{"domain", "list"}},
		"Get-Mailbox":                        {nil, []string{"mailbox", "list"}},
		"Get-Message":                        {nil, []string{"queue", "list"}},
		"Get-CertrelayEvent":                 {map[string]any{"Id": 16005}, []string{"events", "--id", "16005"}},
		"Get-EventLogLevel":                  {nil, []string{"loglevel", "get"}},
		"Get-MessageTrackingLog":             {nil, []string{"track"}},
		"Get-CertrelayAccount":               {nil, []string{"account", "list"}},
		"Get-CertrelayConsole":               {nil, []string{"console", "show"}},
		"Get-POPSettings":                    {nil, []string{"access", "pop", "show"}},
		"Get-IMAPSettings":                   {nil, []string{"access", "imap", "show"}},
		"Get-UMService":                      {nil, []string{"access", "um", "show"}},
		"Get-TransportServer":                {nil, []string{"server", "list"}},
		"Get-CertrelayAcmeAccount":           {nil, []string{"acme", "account", "list"}},
		"Get-CertrelayCertificateRenewal":    {nil, []string{"cert", "renewals"}},
		"Get-CertrelayStagedCertificate":     {nil, []string{"cert", "staged"}},
		"Get-CertrelayCertificateTlsa":       {map[string]any{"Thumbprint": s.iis}, []string{"cert", "tlsa", s.iis}},
		"Get-CertrelayMtaStsPolicy":          {nil, []string{"mtasts", "show"}},
		"Get-CertrelayTlsReport":             {nil, []string{"tlsrpt", "list"}},
		"Get-EdgeSubscription":               {nil, []string{"edge", "list"}},
	}
	e.ok("connector", "send", "add", "Out", "--address-space", "*", "--smart-host", "127.0.0.1:1")
	for _, op := range admin.Operations() {
		if !strings.HasPrefix(op.Cmdlet, "Get-") {
			continue
		}
		r, ok := reads[op.Name]
		if !ok {
			t.Errorf("%s: no comparison with the CLI (add it to the table)", op.Name)
			continue
		}
		t.Run(op.Name, func(t *testing.T) {
			status, data, body := s.api(viewTok, op.Name, r.params)
			if status != http.StatusOK {
				t.Fatalf("API: %d %s", status, body)
			}
			cli := e.ok(append(r.cli, "--json")...)
			if !sameJSON(t, data, []byte(cli)) {
				t.Errorf("the API's Data differs from the CLI's --json:\nAPI %s\nCLI %s", data, cli)
			}
		})
	}

	// Changes: what the API returns is what the CLI then shows.
	leaf := s.root.Issue(t, testpki.Options{CommonName: consoleHost, DNSNames: []string{consoleHost}})
	pfx, err := certinfo.EncodePKCS12(leaf.Key, leaf.Cert, nil, "pw", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	before := e.state()
	if status, _, body := s.api(viewTok, "Import-ExchangeCertificate", map[string]any{"FileData": base64.StdEncoding.EncodeToString(pfx), "Password": "pw"}); status != http.StatusForbidden {
		t.Fatalf("view-only import: %d %s", status, body)
	}
	if after := e.state(); after != before {
		t.Fatalf("a refused import changed the data directory:\n%s\n%s", before, after)
	}
	status, data, body := s.api(admTok, "Import-ExchangeCertificate", map[string]any{"FileData": base64.StdEncoding.EncodeToString(pfx), "Password": "pw"})
	if status != http.StatusOK {
		t.Fatalf("import: %d %s", status, body)
	}
	var imported struct{ Thumbprint string }
	_ = json.Unmarshal(data, &imported)
	status, data, body = s.api(admTok, "Enable-ExchangeCertificate", map[string]any{"Thumbprint": imported.Thumbprint, "Services": "SMTP"})
	if status != http.StatusOK {
		t.Fatalf("enable: %d %s", status, body)
	}
	if cli := e.ok("cert", "show", imported.Thumbprint, "--json"); !sameJSON(t, data, []byte(cli)) {
		t.Errorf("enable through the API returned\n%s\nthe CLI shows\n%s", data, cli)
	}
	status, data, body = s.api(admTok, "Set-ReceiveConnector", map[string]any{"Identity": s.m.name, "MaxMessageSize": "20MB"})
	if status != http.StatusOK {
		t.Fatalf("connector set: %d %s", status, body)
	}
	if cli := e.ok("connector", "receive", "show", s.m.name, "--json"); !sameJSON(t, data, []byte(cli)) {
		t.Errorf("connector set through the API returned\n%s\nthe CLI shows\n%s", data, cli)
	}
	// The audit says who, from where, what.
	var evs []struct{ Message string }
	e.jsonOf(&evs, "events", "--id", "16080")
	if last := evs[len(evs)-1].Message; !strings.Contains(last, "admin (server-admin) from 127.0.0.1 ran Set-ReceiveConnector") {
		t.Errorf("last audit event: %q", last)
	}
}

// TestMetricsWithCurl: curl reads /metrics on its own binding, in the
// Prometheus text format, with the expiry gauge of a certificate just
// enabled.
func TestMetricsWithCurl(t *testing.T) {
	curl := testpki.Tool(t, "curl")
	s := newConsoleSite(t)
	th := s.e.ok("cert", "new", "--domain", "metrics.contoso.test", "--services", "POP")
	scrape := func() string {
		out, err := exec.Command(curl, "-sS", "--max-time", "10", "http://"+s.metrics+"/metrics").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		return string(out)
	}
	gauge := `certrelay_certificate_expiry_seconds{internal="false",services="POP, SMTP",subject="CN=metrics.contoso.test",thumbprint="` + th + `"}`
	if strings.Contains(scrape(), "services=\"POP, SMTP\",subject=\"CN=metrics.contoso.test\"") {
		t.Fatal("the gauge shows SMTP before it was enabled")
	}
	s.e.ok("cert", "enable", th, "--services", "SMTP")
	servedThumbprint(t, s.m.addr) // one STARTTLS handshake, counted
	var m string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m = scrape(); strings.Contains(m, gauge) {
			break
		}
	}
	line := ""
	for _, l := range strings.Split(m, "\n") {
		if strings.HasPrefix(l, gauge) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no %s in\n%s", gauge, m)
	}
	var secs float64
	if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(line, gauge)), &secs); err != nil || secs < 360*24*3600 || secs > 366*24*3600 {
		t.Errorf("expiry %q: want about a year in seconds", line)
	}
	for _, want := range []string{"# TYPE certrelay_certificate_expiry_seconds gauge", "certrelay_starttls_offered{connector=", "certrelay_queue_messages",
		"certrelay_queue_oldest_message_age_seconds", "certrelay_events_total{id=\"16005\"", "certrelay_direct_trust_failures_total", "certrelay_selection_rebuild_seconds_bucket",
		`certrelay_tls_handshakes_total{listener="` + s.m.name + `",protocol="smtp",result="ok"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Off by default, and off again when asked.
	s.e.ok("console", "set", "--metrics-bindings", "")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := exec.Command(curl, "-sS", "--max-time", "2", "http://"+s.metrics+"/metrics").Run(); err != nil {
			return
		}
	}
	t.Error("/metrics still answers after console set --metrics-bindings \"\"")
}

// TestConsoleTestssl: testssl audits the console's HTTPS binding — TLS
// and the HTTP headers (HSTS) — and finds nothing of severity HIGH or
// CRITICAL, the console serving a CA-issued certificate whose root
// testssl is given.
func TestConsoleTestssl(t *testing.T) {
	testssl := testpki.Tool(t, "testssl")
	s := newConsoleSite(t)
	if got := servedHTTPS(t, s.addr); got != s.iis {
		t.Fatalf("the console serves %s, want the CA-issued %s", got, s.iis)
	}
	_, port, _ := net.SplitHostPort(s.addr)
	out := s.e.path("testssl.json")
	cmd := exec.Command(testssl, "--quiet", "--color", "0", "--fast", "--warnings", "batch", "--ip", "127.0.0.1", "--nodns", "none",
		"--add-ca", s.e.path("root.pem"), "--jsonfile-pretty", out, consoleHost+":"+port)
	cmd.Dir = s.e.work
	text, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("testssl: %v", err)
	}
	data, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatalf("testssl wrote no JSON (%v, %v):\n%s", err, rerr, text)
	}
	findings, perr := parseTestssl(data)
	if perr != nil || len(findings) < 20 {
		t.Fatalf("testssl JSON (%d findings): %v\n%s", len(findings), perr, text)
	}
	var bad, notes []string
	hsts := false
	for _, f := range findings {
		line := fmt.Sprintf("%-8s %s: %s", f.Severity, f.ID, f.Finding)
		switch strings.ToUpper(f.Severity) {
		case "HIGH", "CRITICAL", "FATAL":
			bad = append(bad, line)
		case "MEDIUM", "LOW":
			notes = append(notes, line)
		}
		if f.ID == "HSTS_time" || f.ID == "HSTS" {
			hsts = hsts || strings.Contains(f.Finding, "365 days") || strings.Contains(f.Finding, "31536000")
		}
	}
	sort.Strings(notes)
	for _, n := range notes {
		t.Log(n)
	}
	if !hsts {
		t.Errorf("testssl did not see HSTS of a year:\n%s", text)
	}
	if len(bad) > 0 {
		t.Errorf("testssl found %d problems of severity HIGH or CRITICAL:\n%s\nfull output:\n%s", len(bad), strings.Join(bad, "\n"), text)
	}
}

// servedHTTPS returns the thumbprint of the certificate served on addr
// for the console's name.
func servedHTTPS(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: consoleHost, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	return certinfo.Thumbprint(c.ConnectionState().PeerCertificates[0].Raw)
}
