// Package e2e drives the built certrelay binary the way an administrator
// does, with real outside tools (openssl as the CA, later swaks, Postfix
// and others) and compares what they see with what certrelay reports.
package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// binary is the certrelay built once for the whole test run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "certrelay-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "certrelay")
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	build := exec.Command("go", "build", "-o", binary, "./cmd/certrelay")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build certrelay:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one server's data directory and a work directory for files.
type env struct {
	t     *testing.T
	data  string
	work  string
	extra []string // extra environment variables
	wrap  []string // a command serve runs under, such as prlimit and its options
}

func newEnv(t *testing.T) *env {
	t.Helper()
	base := t.TempDir()
	e := &env{t: t, data: filepath.Join(base, "data"), work: filepath.Join(base, "work")}
	if err := os.MkdirAll(e.work, 0o755); err != nil {
		t.Fatal(err)
	}
	// An empty system bundle by default, so no test depends on the
	// machine's roots; tests that want "public" roots set their own.
	e.extra = append(e.extra, "CERTRELAY_SYSTEM_ROOTS="+e.path("no-system-roots.pem"))
	return e
}

func (e *env) path(name string) string { return filepath.Join(e.work, name) }

func (e *env) write(name string, data []byte) string {
	e.t.Helper()
	p := e.path(name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// result is what one command did.
type result struct {
	stdout, stderr string
	code           int
}

// run runs certrelay with args against the env's data directory, with no
// terminal on standard input.
func (e *env) run(stdin string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(binary, append([]string{"--data", e.data}, args...)...)
	cmd.Env = append(os.Environ(), e.extra...)
	cmd.Dir = e.work
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run certrelay %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs a command that must succeed and returns its trimmed stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run("", args...)
	if r.code != 0 {
		e.t.Fatalf("certrelay %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// jsonOf runs a command with --json and decodes its output into v.
func (e *env) jsonOf(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("certrelay %v --json: %v\n%s", args, err, out)
	}
}

// state captures everything a failed command must leave unchanged: the
// store as cert list --json shows it, the key files with their modes and
// contents, the intermediates and the event log.
func (e *env) state() string {
	e.t.Helper()
	var b strings.Builder
	b.WriteString(e.ok("cert", "list", "--json"))
	b.WriteString(e.ok("server", "show", "--json"))
	keys := filepath.Join(e.data, "keys")
	ents, _ := os.ReadDir(keys)
	var names []string
	for _, ent := range ents {
		fi, _ := ent.Info()
		data, _ := os.ReadFile(filepath.Join(keys, ent.Name()))
		sum := sha256.Sum256(data)
		names = append(names, fmt.Sprintf("%s %v %s", ent.Name(), fi.Mode(), hex.EncodeToString(sum[:8])))
	}
	sort.Strings(names)
	b.WriteString(strings.Join(names, "\n"))
	var evs []map[string]any
	e.jsonOf(&evs, "events")
	fmt.Fprintf(&b, "\nevents: %d", len(evs))
	return b.String()
}

// tool runs an outside program that must succeed, in the work directory.
func (e *env) tool(name string, args ...string) string {
	e.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = e.work
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// certJSON is the JSON of cert show / cert list, with the property names
// of SPEC I2.
type certJSON struct {
	Thumbprint                     string
	Subject                        string
	Issuer                         string
	CertificateDomains             []string
	NotBefore                      string
	NotAfter                       string
	IsSelfSigned                   bool
	RootCAType                     string
	Services                       []string
	Status                         string
	HasPrivateKey                  bool
	PublicKeySize                  int
	SerialNumber                   string
	FriendlyName                   string
	PrivateKeyExportable           bool
	AccessRules                    []map[string]string
	CertificateRequest             string
	IsInternalTransportCertificate bool
}

func (e *env) show(thumbprint string) certJSON {
	e.t.Helper()
	var c certJSON
	e.jsonOf(&c, "cert", "show", thumbprint)
	return c
}

func (e *env) list(args ...string) []certJSON {
	e.t.Helper()
	var cs []certJSON
	e.jsonOf(&cs, append([]string{"cert", "list"}, args...)...)
	return cs
}

type serverJSON struct {
	Name, Fqdn, Role                       string
	InternalTransportCertificateThumbprint string
}

func (e *env) server() serverJSON {
	e.t.Helper()
	var s serverJSON
	e.jsonOf(&s, "server", "show")
	return s
}
