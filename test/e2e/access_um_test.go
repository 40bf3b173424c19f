package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// Issue 14, S10: Unified Messaging's SIP listener in secure mode, driven
// by sipsak (TestSipsakOptionsOverTLS, TestUMMakesItsOwnCertificate).

func sipsak(t *testing.T, addr, caFile string, extra ...string) (string, int) {
	t.Helper()
	args := append([]string{"-vv", "-s", "sip:um@127.0.0.1:" + port(addr), "--transport", "tls"}, extra...)
	if caFile != "" {
		args = append(args, "--tls-ca-cert", caFile)
	}
	cmd := exec.Command(testpki.Tool(t, "sipsak"), args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestSipsakOptionsOverTLS (S10): the UM listener in secure mode answers
// sipsak's OPTIONS over TLS with the certificate S10 ranks first — a
// CA-issued one, although a self-signed one is valid for longer — logs
// its issuer, serial number and thumbprint (16065), and moves to a
// CA-issued one with a longer remaining validity when it is enabled,
// without a restart.
func TestSipsakOptionsOverTLS(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso UM Root"})
	ca := e.write("um-root.pem", testpki.PEM(root.Cert))
	e.ok("trust", "add", "um-root.pem")
	now := time.Now()
	short := e.importLeaf("um-short", root.Issue(t, testpki.Options{CommonName: "hub.contoso.test", DNSNames: []string{"hub.contoso.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour)}))
	self := mustThumbprint(t, e.ok("cert", "new", "--domain", "hub.contoso.test", "--services", "UM"))
	e.ok("cert", "enable", short, "--services", "UM")
	um := testpki.FreePort(t)
	e.ok("access", "um", "set", "--enabled", "--sip-tls-bindings", um)
	var show struct{ Certificate, CertificateSelection string }
	e.jsonOf(&show, "access", "um", "show")
	if show.Certificate != short {
		t.Fatalf("access um show: %+v, want the CA-issued %s before the longer self-signed %s", show, short, self)
	}
	if x := e.explain("UM"); x.Winner != short {
		t.Fatalf("cert explain --service UM chose %s", x.Winner)
	}
	m.start()
	waitPort(t, um)
	out, code := sipsak(t, um, ca)
	if code != 0 || !strings.Contains(out, "200 OK") {
		t.Fatalf("sipsak OPTIONS over TLS: exit %d\n%s", code, out)
	}
	if got := servedOver(t, "", um); got != short {
		t.Errorf("the UM TLS port serves %s, want %s", got, short)
	}
	c := e.show(short)
	e.wantEvent("16065", c.Issuer, c.SerialNumber, short)
	// A CA-issued certificate valid for longer takes over (S10), at once.
	long := e.importLeaf("um-long", root.Issue(t, testpki.Options{CommonName: "hub.contoso.test", DNSNames: []string{"hub.contoso.test"},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(300 * 24 * time.Hour)}))
	e.ok("cert", "enable", long, "--services", "UM")
	waitServed(t, "", um, long)
	e.wantEvent("16065", e.show(long).Issuer, e.show(long).SerialNumber, long)
	if out, code := sipsak(t, um, ca); code != 0 || !strings.Contains(out, "200 OK") {
		t.Fatalf("sipsak after the change: exit %d\n%s", code, out)
	}
}

// TestUMMakesItsOwnCertificate (S10): with no valid certificate for UM,
// the listener in secure mode makes a self-signed one (16068) and uses it
// (16065); sipsak, told to accept it, gets its answer.
func TestUMMakesItsOwnCertificate(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	um := testpki.FreePort(t)
	e.ok("access", "um", "set", "--enabled", "--sip-tls-bindings", um)
	m.start()
	waitPort(t, um)
	evs := e.eventParams("16068")
	if len(evs) != 1 {
		t.Fatalf("16068 logged %d times, want once: %q", len(evs), evs)
	}
	made := evs[0][0]
	if c := e.show(made); !c.IsSelfSigned || strings.Join(c.Services, ",") != "UM" || c.Status != "Valid" {
		t.Errorf("the certificate UM made: %+v", c)
	}
	waitServed(t, "", um, made)
	e.wantEvent("16065", "CN=hub.contoso.test", e.show(made).SerialNumber, made)
	if out, code := sipsak(t, um, "", "--tls-ignore-cert-failure"); code != 0 || !strings.Contains(out, "200 OK") {
		t.Fatalf("sipsak: exit %d\n%s", code, out)
	}
	// A restart does not make another.
	m.p.stop()
	m.start()
	waitPort(t, um)
	time.Sleep(300 * time.Millisecond)
	if evs := e.eventParams("16068"); len(evs) != 1 {
		t.Errorf("after a restart 16068 was logged %d times", len(evs))
	}
}
