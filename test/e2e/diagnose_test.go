package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"certrelay/internal/testpki"
)

// The seeds' troubleshooting procedures, end to end (issue 13): each test
// builds the broken state, sees the event a running server raises, sees
// certrelay diagnose name the problem with its evidence, runs the fix
// exactly as diagnose printed it (read from its JSON and run by a shell),
// and sees diagnose come back clean and mail flow.

type diagFinding struct {
	Check, Name, Severity, Problem string
	Events                         []struct {
		Id           int
		SymbolicName string
	}
	Evidence []struct{ Name, Value string }
	Fix      []struct{ Command, Cmdlet, Input string }
	Note     string
}

type diagJSON struct {
	Server   string
	Clean    bool
	Findings []diagFinding
}

// diagnose runs certrelay diagnose --json and checks that its exit status
// agrees with what it found.
func (e *env) diagnose(args ...string) diagJSON {
	e.t.Helper()
	r := e.run("", append([]string{"diagnose", "--json"}, args...)...)
	var d diagJSON
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		e.t.Fatalf("certrelay diagnose --json: exit %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if want := map[bool]int{true: 0, false: 1}[d.Clean]; r.code != want || d.Clean != (len(d.Findings) == 0) {
		e.t.Fatalf("diagnose: exit %d with clean %v and %d findings", r.code, d.Clean, len(d.Findings))
	}
	return d
}

// finding returns the only finding of diagnose, which must be check's.
func (e *env) finding(check string) diagFinding {
	e.t.Helper()
	d := e.diagnose()
	if len(d.Findings) != 1 || d.Findings[0].Check != check {
		e.t.Fatalf("diagnose found %+v, want one %s finding", d.Findings, check)
	}
	return d.Findings[0]
}

// evidence returns the value of a finding's evidence name ("" if none).
func (f diagFinding) evidence(name string) string {
	for _, e := range f.Evidence {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func (f diagFinding) hasEvent(id int) bool {
	for _, e := range f.Events {
		if e.Id == id {
			return true
		}
	}
	return false
}

// runFix runs each command of a finding's fix exactly as printed, by
// /bin/sh, with certrelay on the PATH and the data directory in
// CERTRELAY_DATA; input feeds a command that reads its standard input.
// Every command must succeed.
func (e *env) runFix(f diagFinding, input string) {
	e.t.Helper()
	if code, out := e.runFixExit(f, input); code != 0 {
		e.t.Fatalf("the fix %+v: exit %d\n%s", f.Fix, code, out)
	}
}

// runFixExit is runFix that returns the exit status of the first
// command that fails (0 when none does) and the output.
func (e *env) runFixExit(f diagFinding, input string) (int, string) {
	e.t.Helper()
	if len(f.Fix) == 0 {
		e.t.Fatalf("finding %s has no fix: %+v", f.Check, f)
	}
	var out bytes.Buffer
	for _, step := range f.Fix {
		if !strings.HasPrefix(step.Command, "certrelay ") || step.Cmdlet == "" {
			e.t.Fatalf("a fix that is no certrelay command: %+v", step)
		}
		cmd := exec.Command("/bin/sh", "-c", step.Command)
		cmd.Env = append(os.Environ(), e.extra...)
		cmd.Env = append(cmd.Env, "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), "CERTRELAY_DATA="+e.data)
		cmd.Dir = e.work
		if step.Input != "" {
			cmd.Stdin = strings.NewReader(input)
		}
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return ee.ExitCode(), out.String()
			}
			e.t.Fatalf("the fix %q: %v", step.Command, err)
		}
	}
	return 0, out.String()
}

// clean fails unless diagnose finds nothing.
func (e *env) clean(what string) {
	e.t.Helper()
	if d := e.diagnose(); !d.Clean {
		e.t.Fatalf("%s: diagnose still finds %+v", what, d.Findings)
	}
}

// deleteCertificate removes a certificate and its key from a store
// behind certrelay's back, as seed 004's administrator deleted it in the
// certificates console: certrelay itself refuses to remove the internal
// transport certificate (M8).
func (e *env) deleteCertificate(thumbprint string) {
	e.t.Helper()
	key := filepath.Join(e.data, "keys", e.keyID(thumbprint)+".key")
	d, err := sql.Open("sqlite", "file:"+filepath.Join(e.data, "certrelay.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		e.t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Exec(`DELETE FROM certificates WHERE thumbprint = ?`, thumbprint); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Remove(key); err != nil { // the server watches keys/: it looks again at once
		e.t.Fatal(err)
	}
}

// waitEventParam waits up to 20 s for an event id whose first parameter
// is first.
func (e *env) waitEventParam(id int, first string) {
	e.t.Helper()
	var evs []struct{ Parameters []string }
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		e.jsonOf(&evs, "events", "--id", strconv.Itoa(id))
		for _, ev := range evs {
			if len(ev.Parameters) > 0 && ev.Parameters[0] == first {
				return
			}
		}
	}
	e.t.Fatalf("no event %d about %s within 20 s: %+v", id, first, evs)
}

// TestDiagnoseSeed004MissingInternalCertificate: seed 004's 12024 — the
// internal transport certificate deleted from the store. With a backup
// (an export to a PKCS#12 file), diagnose's fix imports it; the
// certificate is then present but not enabled for SMTP, which diagnose
// names next (Q1, seeds 000/001) with the fix that enables it. Without a
// backup, the fix makes a new internal certificate. After each fix
// diagnose is clean and mail crosses the hubs by direct trust again.
func TestDiagnoseSeed004MissingInternalCertificate(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test")
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")
	t0 := h1.internal()
	t1 := h1.e.ok("cert", "new", "--exportable", "--force")
	if h1.internal() != t1 {
		t.Fatalf("cert new --force made %s; the internal certificate is %s", t1, h1.internal())
	}
	// Nothing else for the FQDN, so the fallback is the ephemeral
	// certificate (12024), not the FQDN's (12023).
	h1.e.ok("cert", "remove", t0, "--force")
	h1.e.write("backup.pw", []byte("backup-secret\n"))
	backup := h1.e.path("internal-backup.pfx")
	h1.e.ok("cert", "export", t1, "--out", backup, "--password-file", "backup.pw")
	h1.e.clean("a new organisation")
	h1.start()
	h2.start()
	sent := 0
	send := func(subject string) string {
		t.Helper()
		if out, code := swaks(t, "--server", h1.addr, "--from", "carol@example.org", "--to", "bob@contoso.test", "--header", "Subject: "+subject); code != 0 {
			t.Fatalf("swaks: %d\n%s", code, out)
		}
		sent++
		for _, m := range h2.waitMail("contoso.test", "bob", sent, 20*time.Second) {
			if strings.Contains(m, "Subject: "+subject) {
				return m
			}
		}
		t.Fatalf("%q not delivered", subject)
		return ""
	}
	byDirectTrust := func(what, want string) {
		t.Helper()
		for i := 0; ; i++ {
			auth, _, c1, _ := hop(t, send(what+" "+strconv.Itoa(i)))
			if auth == "direct trust" && c1 == want {
				return
			}
			if i == 20 {
				t.Fatalf("%s: the hop is %s with %s, want direct trust with %s", what, auth, c1, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	byDirectTrust("before", t1)

	// Deleted, with a backup.
	h1.e.deleteCertificate(t1)
	h1.waitEvent(12024, t1, 10*time.Second)
	f := h1.e.finding("Q6")
	if f.evidence("InternalTransportCertificateThumbprint") != t1 || f.evidence("Backup") != backup || !f.hasEvent(12024) || len(f.Fix) != 2 {
		t.Fatalf("Q6 with a backup: %+v", f)
	}
	if want := "certrelay cert import " + backup + " --password-file -"; f.Fix[0].Command != want || f.Fix[0].Input == "" {
		t.Errorf("the restore: %+v, want %q", f.Fix[0], want)
	}
	f.Fix = f.Fix[:1] // the import alone: the certificate is then present, not enabled (seed 004's first case)
	h1.e.runFix(f, "backup-secret\n")
	f = h1.e.finding("Q1")
	if f.evidence("InternalTransportCertificateThumbprint") != t1 || f.evidence("Services") != "None" || !f.hasEvent(1037) || !f.hasEvent(12024) {
		t.Fatalf("Q1 after the import: %+v", f)
	}
	if want := "certrelay cert enable " + t1 + " --services SMTP"; f.Fix[0].Command != want || f.Fix[0].Cmdlet != "Enable-ExchangeCertificate "+t1+" -Services SMTP" {
		t.Errorf("Q1's fix: %+v, want %q", f.Fix[0], want)
	}
	h1.e.runFix(f, "")
	h1.e.clean("the backup imported and enabled")
	byDirectTrust("restored", t1)

	// Deleted, with no backup: a new internal certificate.
	if err := os.Remove(backup); err != nil {
		t.Fatal(err)
	}
	h1.e.deleteCertificate(t1)
	f = h1.e.finding("Q6")
	if f.evidence("Backup") != "" || len(f.Fix) != 1 || f.Fix[0].Command != "certrelay cert new --force" || f.Fix[0].Cmdlet != "New-ExchangeCertificate -Force" {
		t.Fatalf("Q6 with no backup: %+v", f)
	}
	h1.e.runFix(f, "")
	h1.e.clean("a new internal certificate")
	t3 := h1.internal()
	if t3 == t1 || t3 == "" {
		t.Fatalf("the internal certificate after the fix: %s", t3)
	}
	byDirectTrust("renewed", t3)
}

// TestDiagnoseSeeds000001Names: seeds 000/001's 1037 — an edge whose
// internal transport certificate lacks a name of the server: a
// load-balancer name added (Q4), then an FQDN changed (Q3). The hub
// refuses the edge's certificate (1037) and the edge's mail waits;
// diagnose, on the edge and from the hub with --server, names the
// missing name; the printed fix makes a certificate with every name, and
// the mail goes by direct trust.
func TestDiagnoseSeeds000001Names(t *testing.T) {
	o := newOrg(t)
	h1, edge := o.join("hub1"), o.join("edge1", "--role", "edge")
	h1.e.ok("domain", "add", "contoso.test")
	h1.e.write("alice.pw", []byte(alicePassword+"\n"))
	h1.e.ok("mailbox", "add", "alice@contoso.test", "--password-file", "alice.pw")
	h1.e.ok("loglevel", "set", `MSExchangeTransport\MessageSecurity`, "Expert") // each direct-trust check: 16072
	h1.start()
	edge.start()
	delivered := 0
	for _, c := range []struct {
		check, name, set, value, evidence string
	}{
		{"Q4", "load-balancer name", "--nlb-name", "nlb.org.test", "NLBName"},
		{"Q3", "FQDN", "--fqdn", "edge1.fabrikam.test", "DnsFullyQualifiedDomainName"},
	} {
		before := edge.internal()
		edge.e.ok("server", "set", c.set, c.value)
		if out, code := swaks(t, "--server", edge.addr, "--from", "carol@example.org", "--to", "alice@contoso.test", "--header", "Subject: "+c.name); code != 0 {
			t.Fatalf("swaks: %d\n%s", code, out)
		}
		ev := h1.waitEvent(1037, before, 20*time.Second)
		if !strings.Contains(ev.Message, c.value) {
			t.Errorf("1037 does not name the missing %s %s: %s", c.name, c.value, ev.Message)
		}
		checked := false
		for _, ev := range h1.events(16072) {
			checked = checked || strings.Contains(ev.Message, c.value+" MISSING") && strings.Contains(ev.Message, "refused")
		}
		if !checked {
			t.Errorf("no Expert event 16072 shows the check of %s %s: %+v", c.name, c.value, h1.events(16072))
		}
		f := edge.e.finding(c.check)
		if f.evidence(c.evidence) != c.value || f.evidence("InternalTransportCertificateThumbprint") != before || !f.hasEvent(1037) || !f.hasEvent(2019) {
			t.Fatalf("%s: %+v", c.check, f)
		}
		if remote := h1.e.diagnose("--server", "edge1"); len(remote.Findings) != 1 || remote.Findings[0].Check != c.check || remote.Server != "edge1" ||
			!strings.Contains(remote.Findings[0].Note, "Run the fix on server edge1") {
			t.Errorf("diagnose --server edge1 on the hub: %+v", remote)
		}
		edge.e.runFix(f, "")
		edge.e.clean("after " + c.name)
		if after := edge.internal(); after == before {
			t.Fatalf("the fix kept the internal certificate %s", after)
		}
		h1.e.clean("the hub, after the edge's fix")
		edge.e.ok("queue", "retry")
		delivered++
		msgs := h1.waitMail("contoso.test", "alice", delivered, 30*time.Second)
		if auth, sender, c1, _ := hop(t, msgs[len(msgs)-1]); auth != "direct trust" || sender != "edge1" || c1 != edge.internal() {
			t.Errorf("%s: the hop from the edge: %s from %s with %s", c.name, auth, sender, c1)
		}
	}
}

// TestDiagnoseSeed002ConnectorFqdn: seed 002's 12014 — a receive
// connector's FQDN in no certificate (the fix makes one), then in a
// CA-issued certificate not enabled for SMTP (the fix enables it). After
// each fix STARTTLS is offered with the certificate the fix named, and
// swaks --tls delivers.
func TestDiagnoseSeed002ConnectorFqdn(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	m.start()
	e.clean("a new server")
	deliveredTLS := func(n int, want string) {
		t.Helper()
		waitServed(t, "smtp", m.addr, want)
		if out, code := swaks(t, "--server", m.addr, "--tls", "--from", "carol@example.org", "--to", "alice@contoso.test"); code != 0 {
			t.Fatalf("swaks --tls: %d\n%s", code, out)
		}
		m.waitDelivered(n)
	}

	e.ok("connector", "receive", "set", m.name, "--fqdn", "mail.contoso.test")
	e.waitEventParam(12014, "mail.contoso.test")
	f := e.finding("Q5")
	if f.evidence("Connector") != m.name || f.evidence("Fqdn") != "mail.contoso.test" || !f.hasEvent(12014) ||
		f.Fix[0].Command != "certrelay cert new --domain mail.contoso.test --services SMTP" {
		t.Fatalf("Q5, no certificate: %+v", f)
	}
	if hasKeyword(ehlo(t, m.addr), "STARTTLS") {
		t.Error("STARTTLS offered with no certificate for the connector's FQDN")
	}
	e.runFix(f, "")
	e.clean("a certificate for mail.contoso.test")
	made := e.list("--domain", "mail.contoso.test")
	if len(made) != 1 {
		t.Fatalf("certificates for mail.contoso.test: %+v", made)
	}
	deliveredTLS(1, made[0].Thumbprint)

	// A CA-issued certificate for another name, imported but enabled for
	// IIS only.
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Root"})
	e.write("root.pem", testpki.PEM(ca.Cert))
	e.ok("trust", "add", "root.pem")
	leaf := ca.Issue(t, testpki.Options{CommonName: "smtp.contoso.test", DNSNames: []string{"smtp.contoso.test"}})
	tCA := e.importLeaf("smtp", leaf)
	e.ok("cert", "enable", tCA, "--services", "IIS")
	e.ok("connector", "receive", "set", m.name, "--fqdn", "smtp.contoso.test")
	e.waitEventParam(12014, "smtp.contoso.test")
	f = e.finding("Q5")
	if f.evidence("HoldsTheName") != tCA || f.Fix[0].Command != "certrelay cert enable "+tCA+" --services SMTP" {
		t.Fatalf("Q5, a certificate not enabled for SMTP: %+v", f)
	}
	e.runFix(f, "")
	e.clean("the CA certificate enabled for SMTP")
	deliveredTLS(2, tCA)
}

// TestDiagnoseSeeds000001KeyUnreadable: seeds 000/001 — the transport's
// account cannot read the internal certificate's private key. The service
// account is a real non-root account (nobody); the key file is given back
// to root by hand, as a restore from a backup would. The hub uses an
// ephemeral certificate (12024); diagnose names the key, its owner and the
// account; its fix, run as root, gives the key to nobody, which then reads
// it.
func TestDiagnoseSeeds000001KeyUnreadable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test gives a key file to another account, which needs root: run the tests as root, as CI does") // never a skip (TestDiskFull does the same)
	}
	setpriv := testpki.Tool(t, "setpriv")
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	e.ok("server", "set", "--service-account", "nobody")
	internal := e.server().InternalTransportCertificateThumbprint
	key := filepath.Join(e.data, "keys", e.keyID(internal)+".key")
	asNobody := func() error {
		return exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "head", "-c", "1", key).Run()
	}
	for dir := e.data; dir != filepath.Dir(filepath.Dir(filepath.Dir(e.data))); dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil { // nobody may reach the key file, not read it
			t.Fatal(err)
		}
	}
	if err := asNobody(); err != nil {
		t.Fatalf("server set --service-account nobody: nobody cannot read %s: %v", key, err)
	}
	e.clean("the keys given to nobody")
	m.start()
	if err := os.Chown(key, 0, 0); err != nil {
		t.Fatal(err)
	}
	if asNobody() == nil {
		t.Fatal("nobody still reads the key: the test proves nothing")
	}
	e.waitEventParam(12024, internal)
	f := e.finding("Q2")
	if f.evidence("ServiceAccount") != "nobody" || !strings.Contains(f.evidence("AccessRules"), "owner root") || !strings.Contains(f.evidence("KeyProblem"), key) ||
		f.Fix[0].Command != "certrelay cert enable "+internal+" --services SMTP" || !strings.Contains(f.Note, "root") {
		t.Fatalf("Q2: %+v", f)
	}
	e.runFix(f, "")
	if err := asNobody(); err != nil {
		t.Errorf("after the fix nobody cannot read %s: %v", key, err)
	}
	e.clean("the key given back to nobody")
	if out, code := swaks(t, "--server", m.addr, "--tls", "--from", "carol@example.org", "--to", "alice@contoso.test"); code != 0 {
		t.Fatalf("swaks --tls: %d\n%s", code, out)
	}
	m.waitDelivered(1)
}

// TestEventLevelsAndTrace: D1 and D2 on a running server. At Lowest no
// decision event is written; loglevel set 'MSExchangeTransport\*' Expert
// makes each STARTTLS write its selection (16071, High) and its
// negotiation (16070, Medium) within a second, and Lowest stops them.
// certrelay trace, over the data directory's 0600 socket, shows the
// selection of a handshake while swaks --tls runs; without a server it
// says so, and without a data directory it says that.
func TestEventLevelsAndTrace(t *testing.T) {
	e := newEnv(t)
	// Before setup there is no data directory at all: trace says so
	// (as every command that only reads does) and creates nothing.
	if r := e.run("", "trace"); r.code != 1 || !strings.Contains(r.stderr, "no certrelay data directory") {
		t.Errorf("trace before setup: exit %d, %q", r.code, r.stderr)
	}
	if _, err := os.Stat(e.data); !os.IsNotExist(err) {
		t.Errorf("trace before setup created %s (%v)", e.data, err)
	}
	m := newMailServer(t, e, "hub.contoso.test")
	if r := e.run("", "trace"); r.code != 1 || !strings.Contains(r.stderr, "no server runs") || !strings.Contains(r.stderr, "trace.sock") {
		t.Errorf("trace with no server running: exit %d, %q", r.code, r.stderr)
	}
	m.start()
	served := servedThumbprint(t, m.addr)
	count := func(id string) int { return len(e.events(id)) }
	tls := func() {
		t.Helper()
		if out, code := swaks(t, "--server", m.addr, "--tls", "--from", "carol@example.org", "--to", "alice@contoso.test"); code != 0 {
			t.Fatalf("swaks --tls: %d\n%s", code, out)
		}
	}
	tls()
	if n := count("16070") + count("16071"); n != 0 {
		t.Fatalf("%d decision events at level Lowest", n)
	}

	fi, err := os.Stat(filepath.Join(e.data, "trace.sock"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("trace socket: %v %v", fi, err)
	}
	tr := exec.Command(binary, "--data", e.data, "trace", "--json", "--component", `Transport\Certificate`, "--component", `NetworkingLayer\Certificate`)
	tr.Env = append(os.Environ(), e.extra...)
	var out lockedBuffer
	tr.Stdout, tr.Stderr = &out, &out
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	defer tr.Process.Kill()
	// The cmdlet shell streams too, a line per record.
	sh := exec.Command(binary, "--data", e.data, "shell", "-c", `Watch-CertrelayTrace -Component 'Transport\Certificate'`)
	sh.Env = append(os.Environ(), e.extra...)
	var shOut lockedBuffer
	sh.Stdout, sh.Stderr = &shOut, &shOut
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer sh.Process.Kill()

	e.ok("loglevel", "set", `MSExchangeTransport\*`, "Expert")
	changed := time.Now()
	var sel, neg []eventJSON
	for {
		tls()
		if sel, neg = e.events("16071"), e.events("16070"); len(sel) > 0 && len(neg) > 0 {
			break
		}
		if time.Since(changed) > 3*time.Second {
			t.Fatalf("no decision events %v after loglevel set Expert: 16071 %v, 16070 %v", time.Since(changed), sel, neg)
		}
	}
	t.Logf("decision events written %v after loglevel set", time.Since(changed).Round(time.Millisecond))
	if !strings.Contains(sel[0].Message, served) || !strings.Contains(sel[0].Message, "hub.contoso.test") || !strings.Contains(neg[0].Message, served) {
		t.Errorf("the decision events: %s / %s", sel[0].Message, neg[0].Message)
	}

	// The trace saw the selection of a handshake, with the winner.
	var records []struct {
		Component, Tag string
		Fields         map[string]any
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		records = records[:0]
		for _, line := range strings.Split(out.String(), "\n") {
			var r struct {
				Component, Tag string
				Fields         map[string]any
			}
			if json.Unmarshal([]byte(line), &r) == nil {
				records = append(records, r)
			}
		}
		found := 0
		for _, r := range records {
			if r.Tag == "selection" && r.Fields["Winner"] == served && r.Fields["FQDN"] == "hub.contoso.test" && r.Fields["Candidates"] != nil {
				found |= 1
			}
			if r.Tag == "tls" && r.Fields["Certificate"] == served {
				found |= 2
			}
		}
		if found == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace shows no selection and negotiation of %s:\n%s", served, out.String())
		}
		tls()
	}
	for _, r := range records {
		if r.Component == `Common\Certificate` {
			t.Errorf("a component not asked for: %+v", r)
		}
	}
	for want, deadline := `[Transport\Certificate] selection: selection for hub.contoso.test`, time.Now().Add(10*time.Second); !strings.Contains(shOut.String(), want); tls() {
		if time.Now().After(deadline) {
			t.Fatalf("Watch-CertrelayTrace in the shell shows no %q:\n%s", want, shOut.String())
		}
	}
	if err := sh.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := sh.Wait(); err != nil {
		t.Errorf("the shell's trace interrupted: %v\n%s", err, shOut.String())
	}
	if err := tr.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := tr.Wait(); err != nil {
		t.Errorf("trace interrupted: %v\n%s", err, out.String())
	}

	e.ok("loglevel", "set", `MSExchangeTransport\*`, "Lowest")
	time.Sleep(time.Second) // the bound of D1: a running server honours a level within 1 s
	before := count("16070") + count("16071")
	tls()
	tls()
	if after := count("16070") + count("16071"); after != before {
		t.Errorf("%d decision events written at Lowest", after-before)
	}
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
