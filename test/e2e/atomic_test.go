package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/testpki"
)

// checkStore asserts SPEC P2 from the outside, as an administrator would
// see it: every certificate and request has its key (all of this test's
// have one), every key file belongs to one of them, no temporary file is
// left, and the internal transport certificate is in the store. It runs
// commands, so whatever an open cleans up is cleaned before it looks.
func (e *env) checkStore() {
	e.t.Helper()
	list := e.list()
	want := map[string]string{}
	for _, c := range list {
		if !c.HasPrivateKey {
			e.t.Errorf("%s (%s) has no private key", c.Thumbprint, c.Subject)
		}
		want[e.keyID(c.Thumbprint)+".key"] = c.Thumbprint
	}
	ents, err := os.ReadDir(filepath.Join(e.data, "keys"))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ent := range ents {
		if _, ok := want[ent.Name()]; !ok {
			e.t.Errorf("keys/%s belongs to no certificate or request", ent.Name())
		}
		delete(want, ent.Name())
	}
	for name, t := range want {
		e.t.Errorf("%s has no key file %s", t, name)
	}
	internal := e.server().InternalTransportCertificateThumbprint
	found := false
	for _, c := range list {
		found = found || c.Thumbprint == internal
	}
	if !found {
		e.t.Errorf("the internal transport certificate %s is not in the store", internal)
	}
}

// keyID returns the key file name certrelay gives the key of a
// certificate or request: the SHA-256 of its public key (README, Files).
func (e *env) keyID(thumbprint string) string {
	e.t.Helper()
	out := e.ok("cert", "export", thumbprint, "--out", "-")
	block, _ := pem.Decode([]byte(out))
	if block == nil {
		e.t.Fatalf("cert export %s --out - printed no PEM: %q", thumbprint, out)
	}
	var spki []byte
	if c, err := x509.ParseCertificate(block.Bytes); err == nil {
		spki = c.RawSubjectPublicKeyInfo
	} else if r, err := x509.ParseCertificateRequest(block.Bytes); err == nil {
		spki = r.RawSubjectPublicKeyInfo
	} else {
		e.t.Fatalf("export of %s: %v", thumbprint, err)
	}
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

// start starts certrelay without waiting for it.
func (e *env) start(args ...string) *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(binary, append([]string{"--data", e.data}, args...)...)
	cmd.Env = append(os.Environ(), e.extra...)
	cmd.Dir = e.work
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return cmd
}

// pfx writes a new certificate with its key as PKCS#12 (password "pw")
// and returns the file name.
func (e *env) pfx(name, cn string) string {
	e.t.Helper()
	l := testpki.SelfSigned(e.t, testpki.Options{CommonName: cn, Key: testpki.ECKey(e.t)})
	data, err := certinfo.EncodePKCS12(l.Key, l.Cert, nil, "pw", rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	e.write(name, data)
	return name
}

// TestConcurrentImportsOfOneCertificate protects issue 9 item 1: eight
// processes importing the same PKCS#12 file at once — one wins, the
// others say it is already in the store, and the certificate keeps its
// key.
func TestConcurrentImportsOfOneCertificate(t *testing.T) {
	e := newEnv(t)
	e.ok("setup")
	e.write("pw", []byte("pw\n"))
	for round := 0; round < 3; round++ {
		f := e.pfx(fmt.Sprintf("same-%d.pfx", round), "same.example")
		var wg sync.WaitGroup
		results := make([]result, 8)
		for i := range results {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = e.run("", "cert", "import", f, "--password-file", "pw")
			}(i)
		}
		wg.Wait()
		won := ""
		for _, r := range results {
			switch {
			case r.code == 0 && won == "":
				won = strings.TrimSpace(r.stdout)
			case r.code == 0:
				t.Errorf("two imports of one certificate succeeded")
			case !strings.Contains(r.stderr, "already in the store"):
				t.Errorf("a losing import says %q, not that the certificate is already in the store", r.stderr)
			}
		}
		if won == "" {
			t.Fatal("no import succeeded")
		}
		if !e.show(won).HasPrivateKey {
			t.Fatalf("round %d: the imported certificate lost its key (HasPrivateKey: false)", round)
		}
	}
	e.checkStore()
}

// TestKilledCommandsLeaveNoHalfChanges protects issue 9 items 2 and 3:
// each command that changes the store is killed (SIGKILL) at random
// moments of its run, 50 times; afterwards every certificate has its key,
// every key file has its certificate, no temporary file holding a private
// key is left, and the internal transport certificate is in the store.
func TestKilledCommandsLeaveNoHalfChanges(t *testing.T) {
	e := newEnv(t)
	e.ok("setup")
	e.write("pw", []byte("pw\n"))
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(uint64(seed), 0))
	kills := 50
	if testing.Short() {
		kills = 10
	}
	commands := []struct {
		name string
		args func(i int) []string
	}{
		{"import", func(i int) []string {
			return []string{"cert", "import", e.pfx(fmt.Sprintf("k%d.pfx", i), fmt.Sprintf("k%d.example", i)), "--password-file", "pw"}
		}},
		{"new", func(i int) []string {
			return []string{"cert", "new", "--domain", fmt.Sprintf("n%d.example", i), "--key-type", "ecdsa", "--services", "SMTP"}
		}},
		{"new-internal", func(int) []string { return []string{"cert", "new", "--force", "--key-type", "ecdsa"} }},
		{"request", func(i int) []string {
			return []string{"cert", "request", "--domain", fmt.Sprintf("r%d.example", i), "--key-type", "ecdsa", "--out", fmt.Sprintf("r%d.req", i)}
		}},
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			// How long one run takes, so the kills fall across all of it.
			start := time.Now()
			e.ok(c.args(-1)...)
			span := time.Since(start)
			leftovers := 0
			for i := 0; i < kills; i++ {
				cmd := e.start(c.args(i)...)
				time.Sleep(time.Duration(rng.Int64N(int64(span))))
				_ = cmd.Process.Signal(syscall.SIGKILL)
				_ = cmd.Wait()
				ents, _ := os.ReadDir(filepath.Join(e.data, "keys"))
				for _, ent := range ents {
					if strings.Contains(ent.Name(), ".tmp-") {
						leftovers++
					}
				}
			}
			t.Logf("%d kills within %v runs; %d left a temporary key file for the next command to sweep", kills, span, leftovers)
			e.checkStore()
		})
	}
}

// TestParallelNewForceTellsTheTruth protects issue 9 item 4 with the real
// binary: 20 parallel `cert new --force` may each replace the internal
// transport certificate, but every 16008 event names the certificate it
// really replaced.
func TestParallelNewForceTellsTheTruth(t *testing.T) {
	e := newEnv(t)
	e.ok("setup")
	original := e.server().InternalTransportCertificateThumbprint
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := e.run("", "cert", "new", "--force", "--key-type", "ecdsa"); r.code != 0 {
				t.Errorf("cert new --force: %s", r.stderr)
			}
		}()
	}
	wg.Wait()
	var evs []struct{ Parameters []string }
	e.jsonOf(&evs, "events", "--id", "16008")
	next := map[string]string{}
	for _, ev := range evs {
		old, nw := ev.Parameters[1], ev.Parameters[2]
		if old == "none" {
			continue
		}
		if _, dup := next[old]; dup {
			t.Errorf("two 16008 events claim to replace %s", old)
		}
		next[old] = nw
	}
	cur := original
	for steps := 0; steps < len(next); steps++ {
		cur = next[cur]
	}
	final := e.server().InternalTransportCertificateThumbprint
	if len(next) != 20 || cur != final {
		olds := make([]string, 0, len(next))
		for k := range next {
			olds = append(olds, k)
		}
		sort.Strings(olds)
		t.Errorf("%d replacement events do not chain from %s to %s: %v", len(next), original, final, olds)
	}
	e.checkStore()
}

// TestExportOutput protects issue 9 item 5: --out - writes standard
// output, an existing file is replaced only with --force, and the format
// follows what was asked.
func TestExportOutput(t *testing.T) {
	e := newEnv(t)
	e.ok("setup")
	tp := e.server().InternalTransportCertificateThumbprint
	out := e.ok("cert", "export", tp, "--out", "-")
	if b, _ := pem.Decode([]byte(out)); b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("--out - printed %q", out)
	}
	if _, err := os.Stat(e.path("-")); err == nil {
		t.Error("--out - made a file named -")
	}
	e.write("existing.pem", []byte("keep me\n"))
	if r := e.run("", "cert", "export", tp, "--out", "existing.pem"); r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("export over an existing file: exit %d, %q", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(e.path("existing.pem")); string(b) != "keep me\n" {
		t.Error("a refused export changed the existing file")
	}
	e.ok("cert", "export", tp, "--out", "existing.pem", "--force")
	if b, _ := os.ReadFile(e.path("existing.pem")); !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Error("--force did not replace the file")
	}
	e.ok("cert", "export", tp, "--out", "cert.cer", "--der")
	if b, _ := os.ReadFile(e.path("cert.cer")); len(b) == 0 || b[0] != 0x30 {
		t.Error("--der to a .cer file is not DER")
	}
}
