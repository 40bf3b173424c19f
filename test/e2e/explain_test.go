package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// TestExplainAsAnotherAccount protects issue 10's "cert explain answers
// what the server serves": explain never reads a private key, so run as
// nobody (who may read the data directory, not the keys) it names the
// certificate openssl s_client receives from the running server — with
// both keys unreadable to nobody, with the key directory closed to it
// (then it says what it could not check), with the newest key file
// damaged (the server records what loading it showed: 16040) and
// restored, and, as root, after the service account became nobody and
// the newest key was made unreadable to it, which both pass over.
func TestExplainAsAnotherAccount(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	e.ok("connector", "receive", "set", m.name, "--fqdn", "mail.contoso.test")
	older := e.ok("cert", "new", "--domain", "mail.contoso.test", "--services", "SMTP", "--key-type", "ecdsa")
	time.Sleep(1100 * time.Millisecond) // a later NotBefore: the new certificate wins (S4)
	newer := e.ok("cert", "new", "--domain", "mail.contoso.test", "--services", "SMTP", "--key-type", "ecdsa")
	ro := newReadOnlyRunner(t, e)
	m.start()
	root := os.Geteuid() == 0

	explain := func() explainJSON {
		t.Helper()
		r := ro.run("cert", "explain", "--connector", m.name, "--json")
		var ex explainJSON
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ex) != nil {
			t.Fatalf("cert explain as another account: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		return ex
	}
	reasonOf := func(ex explainJSON, tp string) string {
		for _, c := range ex.Candidates {
			if c.Thumbprint == tp {
				return c.Verdict + ": " + c.Reason
			}
		}
		return ""
	}
	agree := func(want, what string) explainJSON {
		t.Helper()
		got := ""
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if got = servedThumbprint(t, m.addr); got == want {
				break
			}
		}
		if got != want {
			t.Fatalf("%s: openssl s_client gets %s, want %s\n%s", what, got, want, m.p.Logs())
		}
		// What only the server can find out (a key that does not load) is
		// recorded just after the handshake that found it: explain agrees
		// once the record is there.
		ex := explain()
		for deadline := time.Now().Add(20 * time.Second); ex.Winner != got && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			ex = explain()
		}
		if ex.Winner != got {
			t.Errorf("%s: cert explain as another account names %s, the server serves %s\n%+v", what, ex.Winner, got, ex)
		}
		return ex
	}
	keyFile := func(tp string) string { return filepath.Join(e.data, "keys", e.keyID(tp)+".key") }

	agree(newer, "both keys readable by the service account")
	if root {
		// The account explain runs as cannot read the key it names.
		setpriv := testpki.Tool(t, "setpriv")
		if out, err := exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "head", "-c", "1", keyFile(newer)).CombinedOutput(); err == nil {
			t.Fatalf("nobody can read %s: the test proves nothing (%s)", keyFile(newer), out)
		}
	}

	// A key directory this account may not search: explain cannot check
	// the key files, says so, and still names what the server serves.
	keys := filepath.Join(e.data, "keys")
	if err := os.Chmod(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	if root {
		ex := agree(newer, "the key directory closed to other accounts")
		if r := reasonOf(ex, newer); !strings.Contains(ex.Why, "may not look into the key directory") || !strings.HasPrefix(r, "chosen") {
			t.Errorf("explain with the key directory closed: why %q, %s: %q", ex.Why, newer, r)
		}
	}
	if err := os.Chmod(keys, 0o711); err != nil {
		t.Fatal(err)
	}

	// A damaged key file, which only loading it shows: the server passes
	// the certificate over and records why (16040), and explain, which
	// never loads it, agrees and says why — until the file is restored.
	orig, err := os.ReadFile(keyFile(newer))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile(newer), []byte("-----BEGIN PRIVATE KEY-----\nZGFtYWdlZA==\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ex explainJSON
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		// The fact is recorded just after the server passes the key over.
		if ex = agree(older, "the newest key file damaged"); strings.Contains(reasonOf(ex, newer), "cannot be loaded") {
			break
		}
	}
	if r := reasonOf(ex, newer); !strings.HasPrefix(r, "rejected") || !strings.Contains(r, keyFile(newer)+" cannot be loaded") {
		t.Errorf("explain names the damaged %s with %q", newer, r)
	}
	if evs := e.events("16040"); len(evs) != 1 || !strings.Contains(evs[0].Message, newer) {
		t.Errorf("16040 events: %+v", evs)
	}
	if err := os.WriteFile(keyFile(newer), orig, 0o600); err != nil {
		t.Fatal(err)
	}
	agree(newer, "the key file restored")
	if !root {
		return // the rest makes nobody the service account
	}

	// The service account becomes nobody (its keys are given to it), then
	// the newest key is taken back: the service cannot read it, so the
	// server passes it over, and explain says why.
	e.ok("server", "set", "--service-account", "nobody")
	agree(newer, "the service account is nobody")
	if err := os.Chown(keyFile(newer), 0, 0); err != nil {
		t.Fatal(err)
	}
	ex = agree(older, "the newest key unreadable by the service account")
	if r := reasonOf(ex, newer); !strings.HasPrefix(r, "rejected") || !strings.Contains(r, "cannot read its private key file") {
		t.Errorf("explain names %s with %q, want rejected because the service account cannot read it", newer, r)
	}
}
