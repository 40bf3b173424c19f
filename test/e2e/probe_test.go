package e2e

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

type probeJSON struct {
	Listener, Name, Address, Fqdn, Intended, Served, Error string
	Match                                                  bool
}

// TestProbeFindsWrongCertificate: another program (openssl s_server, with
// a certificate of its own) holds the console's address, so the console
// cannot bind there; cert probe connects as a browser would and finds the
// listener serving another certificate than selection intends (16106),
// and so does the running server's own periodic probe
// (certrelay_probe_mismatch 1 on /metrics). Once the other program is
// gone and the console binds, both match again. SMTP STARTTLS on the
// receive connector matches throughout.
func TestProbeFindsWrongCertificate(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	console, metricsAddr := testpki.FreePort(t), testpki.FreePort(t)
	e.ok("console", "set", "--bindings", console, "--metrics-bindings", metricsAddr)
	e.ok("cert", "new", "--domain", "hub.contoso.test", "--services", "IIS")

	e.tool("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hub.contoso.test", "-days", "2", "-keyout", "other.key", "-out", "other.pem")
	pemData, _ := os.ReadFile(e.path("other.pem"))
	blk, _ := pem.Decode(pemData)
	sum := sha1.Sum(blk.Bytes)
	other := strings.ToUpper(hex.EncodeToString(sum[:]))
	squatter := exec.Command(testpki.Tool(t, "openssl"), "s_server", "-accept", console, "-cert", "other.pem", "-key", "other.key", "-quiet")
	squatter.Dir = e.work
	if err := squatter.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { squatter.Wait(); close(exited) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			syscall.Kill(squatter.Process.Pid, syscall.SIGTERM)
			<-exited
		}
	}
	t.Cleanup(stop)
	waitPort(t, console)

	m.p = e.serve("--probe-interval", "200ms")
	waitPort(t, m.addr)
	waitPort(t, metricsAddr)

	var rs []probeJSON
	e.jsonOf(&rs, "cert", "probe")
	var smtpOK, consoleBad bool
	for _, r := range rs {
		switch r.Listener {
		case "ReceiveConnector":
			smtpOK = smtpOK || (r.Match && r.Address == m.addr && r.Served == r.Intended && r.Intended != "")
		case "HTTPS":
			consoleBad = !r.Match && r.Served == other && r.Intended != "" && r.Intended != other
		}
	}
	if !smtpOK || !consoleBad {
		t.Fatalf("cert probe: %+v (want SMTP matching, the console served %s)", rs, other)
	}
	var evs []map[string]any
	e.jsonOf(&evs, "events", "--id", "16106")
	if len(evs) == 0 {
		t.Error("no CertificateProbeMismatch event")
	}
	metric := func() string {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "certrelay_probe_mismatch{") && strings.Contains(l, `listener="HTTPS"`) {
				return l[strings.LastIndexByte(l, ' ')+1:]
			}
		}
		return ""
	}
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); metric() != want; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("certrelay_probe_mismatch for the console is %q, want %s\n%s", metric(), want, m.p.Logs())
			}
		}
	}
	waitFor("1")
	// diagnose reports it too (L2), with the fix.
	var diag struct {
		Findings []struct {
			Check, Problem string
			Fix            []struct{ Command string }
		}
	}
	r := e.run("", "diagnose", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &diag); err != nil {
		t.Fatalf("diagnose --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	found := false
	for _, f := range diag.Findings {
		if f.Check == "L2" && strings.Contains(f.Problem, other) && len(f.Fix) > 0 && strings.Contains(f.Fix[0].Command, "cert probe") {
			found = true
		}
	}
	if !found {
		t.Errorf("diagnose has no L2 finding naming %s: %s", other, r.stdout)
	}

	stop() // the console binds (its retries) and serves its own certificate
	waitFor("0")
	e.jsonOf(&rs, "cert", "probe")
	for _, r := range rs {
		if !r.Match {
			t.Errorf("after the other program left: %+v", r)
		}
	}
}

// TestProbeAccessListeners: cert probe speaks POP3 STLS, IMAP4 STARTTLS
// and TLS from the first byte to certrelay's own POP3 and IMAP4 listeners,
// asking for their X509CertificateName, and finds the CA-issued
// certificate selection intends on each.
func TestProbeAccessListeners(t *testing.T) {
	e := newEnv(t)
	a := newAccessServer(t, e)
	metricsAddr := testpki.FreePort(t)
	e.ok("console", "set", "--metrics-bindings", metricsAddr)
	a.p = e.serve("--probe-interval", "200ms")
	for _, addr := range []string{a.addr, a.pop, a.pops, a.imap, a.imaps, metricsAddr} {
		waitPort(t, addr)
	}
	var rs []probeJSON
	e.jsonOf(&rs, "cert", "probe")
	seen := map[string]bool{}
	for _, r := range rs {
		if r.Listener != "POP3" && r.Listener != "IMAP4" {
			continue
		}
		if !r.Match || r.Served != a.cert || r.Fqdn != "mail.contoso.test" {
			t.Errorf("%+v", r)
		}
		seen[r.Address] = true
	}
	for _, addr := range []string{a.pop, a.pops, a.imap, a.imaps} {
		if !seen[addr] {
			t.Errorf("%s was not probed: %+v", addr, rs)
		}
	}
	// The server's own periodic probe covers them too: a gauge of 0
	// (matching) for each.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		n := 0
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(b), "\n") {
				if (strings.Contains(l, `listener="POP3"`) || strings.Contains(l, `listener="IMAP4"`)) && strings.HasPrefix(l, "certrelay_probe_mismatch{") && strings.HasSuffix(l, " 0") {
					n++
				}
			}
		}
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's probe shows %d matching POP3/IMAP4 bindings, want 4", n)
		}
	}
}
