package testpki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PebbleVersion is the ACME test CA the tests build and run.
const PebbleVersion = "v2.10.3"

// Pebble is a running ACME test CA (github.com/letsencrypt/pebble) with
// its DNS server, pebble-challtestsrv: every name resolves to 127.0.0.1,
// and TXT records are set through its management API.
type Pebble struct {
	Directory string // the ACME directory URL
	CAPEM     []byte // the root of pebble's HTTPS certificate
	CAFile    string // CAPEM in a file
	// HTTPPort and TLSPort are where pebble's validation authority
	// connects for http-01 and tls-alpn-01 (instead of 80 and 443).
	HTTPPort, TLSPort string
	Management        string // pebble's management address (roots, intermediates)
	ChallSrv          string // challtestsrv's management URL (http://…)
	DNS               string // challtestsrv's DNS address
	Dir               string
	logs              *LockedBuffer
}

// pebbleBin builds (once per machine) pebble and pebble-challtestsrv at
// PebbleVersion with the Go toolchain, from the module proxy, and
// returns the directory holding them.
func pebbleBin(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "certrelay-test", "pebble-"+PebbleVersion)
	goBin := Tool(t, "go")
	for _, cmd := range []string{"pebble", "pebble-challtestsrv"} {
		if _, err := os.Stat(filepath.Join(dir, cmd)); err == nil {
			continue
		}
		c := exec.Command(goBin, "install", "github.com/letsencrypt/pebble/v2/cmd/"+cmd+"@"+PebbleVersion)
		c.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=", "CGO_ENABLED=0")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("build %s %s: %v\n%s", cmd, PebbleVersion, err, out)
		}
	}
	return dir
}

// StartPebble builds and starts pebble and pebble-challtestsrv on free
// 127.0.0.1 ports, and stops both (by PID) when the test ends. Pebble's
// HTTPS certificate is made here, at run time.
func StartPebble(t testing.TB) *Pebble { return StartPebbleWith(t, PebbleOptions{}) }

// PebbleOptions configure StartPebbleWith.
type PebbleOptions struct {
	// EAB, when set, makes pebble require an external account binding
	// with one of these key IDs and MAC keys (base64url).
	EAB map[string]string
}

// StartPebbleWith starts pebble as StartPebble does, configured by o.
func StartPebbleWith(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	bin := pebbleBin(t)
	dir := t.TempDir()
	root := NewRoot(t, Options{CommonName: "pebble WFE test root"})
	leaf := root.Issue(t, Options{CommonName: "localhost", DNSNames: []string{"localhost"}, Key: ECKey(t)})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Cert.Raw})
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pebble{Dir: dir, logs: &LockedBuffer{}}
	p.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw})
	p.CAFile = filepath.Join(dir, "wfe-ca.pem")
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("wfe-ca.pem", p.CAPEM)
	certFile := write("wfe.pem", certPEM)
	keyFile := write("wfe.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))

	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	listen, mgmt := FreePort(t), FreePort(t)
	p.HTTPPort, p.TLSPort = port(FreePort(t)), port(FreePort(t))
	p.DNS = FreePort(t) // free for UDP too
	chall := FreePort(t)
	p.ChallSrv, p.Management = "http://"+chall, mgmt
	p.Directory = "https://" + strings.Replace(listen, "127.0.0.1", "localhost", 1) + "/dir"
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": certFile, "privateKey": keyFile,
		"httpPort": atoi(p.HTTPPort), "tlsPort": atoi(p.TLSPort),
		"ocspResponderURL": "", "externalAccountBindingRequired": o.EAB != nil, "externalAccountMACKeys": o.EAB,
		"domainBlocklist": []string{"blocked-domain.example"},
		"retryAfter":      map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":    "ecdsa",
		"profiles":        map[string]any{"default": map[string]any{"description": "test", "validityPeriod": 7776000}},
	}}
	cj, _ := json.Marshal(conf)
	confFile := write("pebble.json", cj)

	start := func(name string, env []string, args ...string) {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Stdout, cmd.Stderr = p.logs, p.logs
		cmd.Env = append(os.Environ(), env...)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { stopByPID(t, cmd.Process.Pid, exited) })
	}
	start("pebble-challtestsrv", nil, "-dnsserver", p.DNS, "-management", chall, "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	start("pebble", []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		"-config", confFile, "-dnsserver", p.DNS)
	for _, a := range []string{listen, mgmt, chall} {
		if !waitListening(a, nil, 20*time.Second) {
			t.Fatalf("pebble did not start listening on %s; output:\n%s", a, p.logs)
		}
	}
	return p
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

// Log is what pebble and challtestsrv wrote.
func (p *Pebble) Log() string { return p.logs.String() }

func (p *Pebble) mgmtClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// Root returns the root that issues pebble's certificates (PEM), from its
// management interface; it changes at every start.
func (p *Pebble) Root(t testing.TB) []byte {
	t.Helper()
	resp, err := p.mgmtClient().Get("https://" + p.Management + "/roots/0")
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pebble root: %v %s", err, resp.Status)
	}
	return b
}

// HookScript writes a dns-01 hook (a shell script calling curl) that sets
// and clears TXT records in challtestsrv, and returns its path.
func (p *Pebble) HookScript(t testing.TB) string {
	t.Helper()
	curl := Tool(t, "curl")
	script := fmt.Sprintf(`#!/bin/sh
# certrelay dns-01 hook for tests: $1 = present|cleanup, $2 = name, $3 = value
set -eu
case "$1" in
present) path=set-txt ;;
cleanup) path=clear-txt ;;
*) echo "unknown verb $1" >&2; exit 2 ;;
esac
exec %s -fsS -X POST -d "{\"host\":\"$2.\",\"value\":\"$3\"}" %s/$path
`, curl, p.ChallSrv)
	path := filepath.Join(p.Dir, "dns-hook.sh")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// SetTXT publishes a TXT record in challtestsrv directly.
func (p *Pebble) SetTXT(t testing.TB, name, value string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"host": name + ".", "value": value})
	resp, err := http.Post(p.ChallSrv+"/set-txt", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
