package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"certrelay/internal/db"
	"certrelay/internal/testpki"
)

// readOnlyRunner runs certrelay as an account that may read the data
// directory but not write it: nobody (through setpriv) when the tests run
// as root, which writes everything; otherwise this account, with the
// directory made read-only.
type readOnlyRunner struct {
	t      *testing.T
	binary string
	data   string
	prefix []string
}

func newReadOnlyRunner(t *testing.T, e *env) *readOnlyRunner {
	t.Helper()
	// A copy of the binary and a path every account can traverse.
	dir, err := os.MkdirTemp("", "certrelay-ro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "certrelay")
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Rename(e.data, data); err != nil {
		t.Fatal(err)
	}
	e.data = data
	for _, p := range []string{dir, data} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(data, db.FileName), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &readOnlyRunner{t: t, binary: bin, data: data}
	if os.Geteuid() == 0 {
		r.prefix = []string{testpki.Tool(t, "setpriv"), "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"}
	} else {
		if err := os.Chmod(data, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(data, 0o755) })
	}
	return r
}

func (r *readOnlyRunner) run(args ...string) result {
	r.t.Helper()
	argv := append(append(append([]string{}, r.prefix...), r.binary, "--data", r.data), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "CERTRELAY_SYSTEM_ROOTS=/nonexistent/no-system-roots.pem")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// TestReadOnlyDataDirectory protects issue 9 item 18: from a data
// directory the account cannot write, the commands that only read work;
// the others fail naming the directory and the fix, and change nothing.
func TestReadOnlyDataDirectory(t *testing.T) {
	e := newEnv(t)
	e.ok("setup")
	internal := e.server().InternalTransportCertificateThumbprint
	ro := newReadOnlyRunner(t, e)
	before := e.state()

	for _, args := range [][]string{
		{"cert", "list", "--json"},
		{"cert", "show", internal},
		{"server", "show"},
		{"events"},
		{"trust", "list"},
		{"connector", "receive", "list"},
		{"loglevel", "get"},
	} {
		if r := ro.run(args...); r.code != 0 {
			t.Errorf("read-only %v: exit %d, %s", args, r.code, r.stderr)
		}
	}
	if r := ro.run("cert", "list", "--json"); !strings.Contains(r.stdout, internal) {
		t.Errorf("cert list from a read-only data directory lacks the internal certificate: %s", r.stdout)
	}
	for _, args := range [][]string{
		{"cert", "new", "--domain", "x.example", "--key-type", "ecdsa"},
		{"domain", "add", "contoso.test"},
		{"server", "set", "--proxy", "http://proxy.test:3128"},
	} {
		r := ro.run(args...)
		if r.code == 0 || !strings.Contains(r.stderr, ro.data) || !strings.Contains(r.stderr, "cannot write the data directory") || strings.Contains(r.stderr, "SQLITE") || strings.Contains(r.stderr, "readonly database") {
			t.Errorf("%v on a read-only data directory: exit %d, %q", args, r.code, r.stderr)
		}
	}
	if after := e.state(); after != before {
		t.Errorf("refused commands changed the data directory:\n%s\n%s", before, after)
	}

	// A writer (a running server, say) holds a change in the write-ahead
	// log: a reader that can read the log's index sees it; one that cannot
	// is told why, rather than shown stale data.
	w, err := db.Open(ro.data)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(w)
	if err := db.Tx(context.Background(), w, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES('http.proxy', 'http://wal-only.test:3128') ON CONFLICT(key) DO UPDATE SET value = excluded.value`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if r := ro.run("server", "show"); r.code != 0 || !strings.Contains(r.stdout, "wal-only.test") {
		t.Errorf("a change in the write-ahead log is not seen: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	if os.Geteuid() == 0 {
		if err := os.Chmod(filepath.Join(ro.data, db.FileName+"-shm"), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := ro.run("server", "show"); r.code == 0 || !strings.Contains(r.stderr, "write-ahead log") {
			t.Errorf("reading past a write-ahead log it cannot read: exit %d, %q", r.code, r.stderr)
		}
	}
}

// TestKeyAccessForServiceAccount protects SPEC M5's key-access grant
// (issue 9 item 22) for a real unprivileged service account: enabling a
// certificate for SMTP gives that account the key (mode 0600), so the
// account can read it; a certificate for IIS alone keeps its owner.
func TestKeyAccessForServiceAccount(t *testing.T) {
	if os.Geteuid() != 0 {
		e := newEnv(t)
		e.ok("setup")
		r := e.run("", "server", "set", "--service-account", "nobody")
		if r.code == 0 || !strings.Contains(r.stderr, "run the command as root") {
			t.Errorf("giving keys to another account without root: exit %d, %q", r.code, r.stderr)
		}
		return
	}
	setpriv := testpki.Tool(t, "setpriv")
	e := newEnv(t)
	e.ok("setup")
	keyOf := func(thumbprint string) (string, os.FileInfo) {
		p := filepath.Join(e.data, "keys", e.keyID(thumbprint)+".key")
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return p, fi
	}
	owner := func(fi os.FileInfo) uint32 { return fi.Sys().(*syscall.Stat_t).Uid }
	const nobody = 65534

	e.ok("server", "set", "--service-account", "nobody")
	if _, fi := keyOf(e.server().InternalTransportCertificateThumbprint); owner(fi) != nobody || fi.Mode().Perm() != 0o600 {
		t.Errorf("the internal certificate's key after --service-account nobody: owner %d, mode %v", owner(fi), fi.Mode().Perm())
	}
	tp := e.ok("cert", "new", "--domain", "grant.example", "--services", "IIS", "--key-type", "ecdsa")
	if _, fi := keyOf(tp); owner(fi) != 0 {
		t.Errorf("a key enabled for IIS only was given away (owner %d)", owner(fi))
	}
	e.ok("cert", "enable", tp, "--services", "SMTP")
	path, fi := keyOf(tp)
	if owner(fi) != nobody || fi.Mode().Perm() != 0o600 {
		t.Errorf("after cert enable --services SMTP the key is owner %d mode %v, want nobody 0600", owner(fi), fi.Mode().Perm())
	}
	found := false
	for _, r := range e.show(tp).AccessRules {
		found = found || r["Account"] == "nobody" && r["Rights"] != ""
	}
	if !found {
		t.Errorf("AccessRules do not show nobody: %v", e.show(tp).AccessRules)
	}
	// The service account can really read it: through the key directory
	// too, which is the data directory owner's.
	for _, p := range []string{filepath.Dir(filepath.Dir(e.data)), filepath.Dir(e.data), e.data, filepath.Dir(path)} {
		_ = os.Chmod(p, 0o711)
	}
	if out, err := exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "head", "-c", "10", path).CombinedOutput(); err != nil {
		t.Errorf("the service account cannot read its key: %v %s", err, out)
	}
}
