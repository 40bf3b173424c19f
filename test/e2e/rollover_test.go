package e2e

import (
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// caCert makes a key and a certificate for names signed by ca, as a
// PKCS#12 file with the password in pw.txt, and returns the file's name
// and the certificate's thumbprint.
func caCert(e *env, ca *opensslCA, name string, names ...string) (string, string) {
	e.t.Helper()
	san := "subjectAltName=DNS:" + strings.Join(names, ",DNS:")
	e.tool("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+names[0], "-addext", san)
	pem := ca.sign(name+".csr", name+".pem", false)
	e.write("pw.txt", []byte("staging-pw\n"))
	e.tool("openssl", "pkcs12", "-export", "-in", name+".pem", "-inkey", name+".key", "-out", name+".pfx", "-passout", "pass:staging-pw")
	return name + ".pfx", fingerprint(e, pem)
}

// TestStagedRollover: a staged certificate is used by nothing; the
// preflight refuses one that lacks a name served today by the certificate
// it replaces, and one whose chain is untrusted, changing nothing; a good
// one is staged with the list of what changes, activated at a time by the
// running server (STARTTLS serves it from then on), and rolled back (the
// old one serves again).
func TestStagedRollover(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	ca := newOpensslCA(e, "ca", "/CN=Rollover CA")
	e.ok("trust", "add", "ca.pem", "--source", "registry")
	altAddr := testpki.FreePort(t)
	e.ok("connector", "receive", "add", "Alt", "--bindings", altAddr, "--fqdn", "alt.contoso.test")
	oldPfx, old := caCert(e, ca, "old", "hub.contoso.test", "alt.contoso.test")
	e.ok("cert", "import", oldPfx, "--password-file", "pw.txt")
	e.ok("cert", "enable", old, "--services", "SMTP")

	before := e.state()
	time.Sleep(1100 * time.Millisecond) // a later NotBefore second: each new one ranks above the old (S4)
	lackPfx, _ := caCert(e, ca, "lack", "hub.contoso.test")
	r := e.run("", "cert", "stage", lackPfx, "--password-file", "pw.txt")
	if r.code == 0 || !strings.Contains(r.stderr, "alt.contoso.test") || !strings.Contains(r.stderr, old) {
		t.Fatalf("a certificate lacking a served name: exit %d\n%s", r.code, r.stderr)
	}
	other := newOpensslCA(e, "other", "/CN=Untrusted CA")
	badPfx, _ := caCert(e, other, "bad", "hub.contoso.test", "alt.contoso.test")
	r = e.run("", "cert", "stage", badPfx, "--password-file", "pw.txt")
	if r.code == 0 || !strings.Contains(r.stderr, "untrusted") {
		t.Fatalf("a certificate with an untrusted chain: exit %d\n%s", r.code, r.stderr)
	}
	if after := e.state(); after != before {
		t.Errorf("a refused preflight changed something:\n%s\n---\n%s", before, after)
	}

	time.Sleep(1100 * time.Millisecond) // a later NotBefore second: the new one ranks above the old (S4)
	goodPfx, good := caCert(e, ca, "good", "hub.contoso.test", "alt.contoso.test")
	var pf struct {
		Thumbprint string
		Replaces   []string
		Changes    []struct{ Listener, Name, Fqdn, From, To string }
	}
	e.jsonOf(&pf, "cert", "stage", goodPfx, "--password-file", "pw.txt")
	if pf.Thumbprint != good || len(pf.Replaces) != 1 || pf.Replaces[0] != old || len(pf.Changes) < 2 {
		t.Fatalf("preflight %+v", pf)
	}
	for _, c := range pf.Changes {
		if c.From != old || c.To != good {
			t.Errorf("change %+v", c)
		}
	}
	if s := e.show(good); len(s.Services) != 0 && !(len(s.Services) == 1 && s.Services[0] == "None") {
		t.Errorf("a staged certificate is enabled for %v", s.Services)
	}

	m.p = e.serve("--activation-check", "100ms")
	waitPort(t, m.addr)
	waitPort(t, altAddr)
	if th, err := starttlsOnce(m.addr); err != nil || th != old {
		t.Fatalf("before activation: served %s (%v), want %s", th, err, old)
	}
	at := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)
	e.ok("cert", "activate", good, "--at", at)
	if th, _ := starttlsOnce(m.addr); th != old {
		t.Fatalf("activated before its time: %s", th)
	}
	serves := func(addr, want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			th, err := starttlsOnce(addr)
			if err == nil && th == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s serves %s (%v), want %s\n%s", addr, th, err, want, m.p.Logs())
			}
		}
	}
	serves(m.addr, good)
	serves(altAddr, good)
	var staged []struct{ Thumbprint, State string }
	e.jsonOf(&staged, "cert", "staged")
	if len(staged) != 1 || staged[0].State != "active" {
		t.Errorf("cert staged: %+v", staged)
	}

	e.ok("cert", "rollback")
	serves(m.addr, old)
	serves(altAddr, old)
	e.jsonOf(&staged, "cert", "staged")
	if len(staged) != 1 || staged[0].State != "rolled back" {
		t.Errorf("cert staged after the rollback: %+v", staged)
	}
	var evs []map[string]any
	for _, id := range []string{"16107", "16108"} {
		e.jsonOf(&evs, "events", "--id", id)
		if len(evs) != 1 {
			t.Errorf("event %s logged %d times", id, len(evs))
		}
	}
}
