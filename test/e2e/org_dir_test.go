package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"certrelay/internal/testpki"
)

// TestOrgGroupPolicyRoot: a root added on hub1 with --source grouppolicy
// lives in the directory and reaches hub2, whose running server trusts it
// at once: the CA-issued certificate hub2 holds for its FQDN becomes
// Valid with RootCAType GroupPolicy and is served instead of the
// self-signed one, without a restart.
func TestOrgGroupPolicyRoot(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Policy Root"})
	leaf := ca.Issue(t, testpki.Options{CommonName: "hub2.org.test", DNSNames: []string{"hub2.org.test"}})
	tLeaf := h2.e.importLeaf("leaf", leaf)
	h2.e.ok("cert", "enable", tLeaf, "--services", "SMTP")
	if c := h2.e.show(tLeaf); c.Status != "Untrusted" {
		t.Fatalf("before the root: %s", c.Status)
	}
	h2.start()
	if got, err := starttlsOnce(h2.addr); err != nil || got != h2.internal() {
		t.Fatalf("before the root hub2 serves %s (%v), want its self-signed %s", got, err, h2.internal())
	}
	h1.e.write("root.pem", testpki.PEM(ca.Cert))
	h1.e.ok("trust", "add", "root.pem", "--source", "grouppolicy")
	added := time.Now()
	for {
		got, err := starttlsOnce(h2.addr)
		if err == nil && got == tLeaf {
			t.Logf("hub2 served the certificate under the new root %v after trust add returned on hub1", time.Since(added).Round(time.Millisecond))
			break
		}
		if time.Since(added) > 10*time.Second {
			t.Fatalf("hub2 still serves %s (%v)", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := h2.e.show(tLeaf); c.Status != "Valid" || c.RootCAType != "GroupPolicy" {
		t.Errorf("on hub2: Status %s, RootCAType %s; want Valid, GroupPolicy", c.Status, c.RootCAType)
	}
	var roots []struct{ Thumbprint, Source string }
	h2.e.jsonOf(&roots, "trust", "list")
	if len(roots) != 1 || roots[0].Source != "GroupPolicy" {
		t.Errorf("trust list on hub2: %+v", roots)
	}
	// Removed anywhere, it is gone everywhere.
	h2.e.ok("trust", "remove", roots[0].Thumbprint)
	h1.e.jsonOf(&roots, "trust", "list")
	if len(roots) != 0 {
		t.Errorf("trust list on hub1 after removing it on hub2: %+v", roots)
	}
}

// TestOrgJoinErrors: each way of joining wrongly gets its own error
// naming the fix, and writes nothing: not in the data directory, not in
// the directory.
func TestOrgJoinErrors(t *testing.T) {
	o := newOrg(t)
	bare := testpki.StartSlapd(t) // no certrelay schema
	wrongPW := filepath.Join(o.work, "wrong.pw")
	os.WriteFile(wrongPW, []byte("not the password\n"), 0o600)
	entries := func() int {
		conn := o.ldap()
		defer conn.Close()
		res, err := conn.Search(ldap.NewSearchRequest(o.s.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Entries)
	}
	base := o.url()
	dn, pw := o.s.RootDN, o.pwFile
	for _, c := range []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"fail/wrong-password", []string{"--directory", base, "--bind-dn", dn, "--bind-password-file", wrongPW}, 1,
			[]string{"refused the bind DN", "--bind-dn", "--bind-password-file", "nothing was written"}},
		{"fail/unreachable", []string{"--directory", "ldap://" + testpki.FreePort(t) + "/" + o.base, "--bind-dn", dn, "--bind-password-file", pw}, 1,
			[]string{"cannot reach the directory", "--directory", "nothing was written"}},
		{"fail/no-schema", []string{"--directory", bare.URL(bare.Suffix), "--bind-dn", bare.RootDN, "--bind-password-file", pw}, 1,
			[]string{"certrelay's object classes", "schema/certrelay.ldif", "nothing was written"}},
		{"fail/no-such-base", []string{"--directory", o.s.URL("ou=nowhere," + o.s.Suffix), "--bind-dn", dn, "--bind-password-file", pw}, 1,
			[]string{"base DN ou=nowhere,dc=example,dc=test does not exist", "--directory", "nothing was written"}},
		{"fail/not-a-url", []string{"--directory", "ldap.contoso.com", "--bind-dn", dn, "--bind-password-file", pw}, 1,
			[]string{"ldap://HOST:PORT/BASE-DN"}},
		{"fail/no-bind-dn", []string{"--directory", base, "--bind-password-file", pw}, 2,
			[]string{"--bind-dn"}},
		{"fail/ca-not-pem", []string{"--directory", base, "--bind-dn", dn, "--bind-password-file", pw, "--directory-ca", pw}, 1,
			[]string{"CA file holds no PEM certificate"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			before := entries()
			r := e.run("", append([]string{"setup", "--name", "hubx"}, c.args...)...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, c.code, r.stdout, r.stderr)
			}
			for _, w := range c.wants {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("the error does not say %q:\n%s", w, r.stderr)
				}
			}
			if after := entries(); after != before {
				t.Errorf("the directory had %d entries, now %d", before, after)
			}
			// Nothing in the data directory: not set up, no certificate, no
			// key, no event, no password file.
			if r := e.run("", "server", "show"); r.code == 0 {
				t.Errorf("the data directory is set up:\n%s", r.stdout)
			}
			if certs := e.list(); len(certs) != 0 {
				t.Errorf("certificates: %+v", certs)
			}
			keys, _ := os.ReadDir(filepath.Join(e.data, "keys"))
			var evs []map[string]any
			e.jsonOf(&evs, "events")
			if len(keys) != 0 || len(evs) != 0 {
				t.Errorf("%d key files, %d events", len(keys), len(evs))
			}
			for _, f := range []string{"directory.secret", "server-credential.key"} {
				if _, err := os.Stat(filepath.Join(e.data, f)); err == nil {
					t.Errorf("%s was written", f)
				}
			}
		})
	}
	// A name another server has.
	o.join("hubx")
	e := newEnv(t)
	r := e.run("", "setup", "--name", "hubx", "--directory", base, "--bind-dn", dn, "--bind-password-file", pw)
	if r.code != 1 || !strings.Contains(r.stderr, "a server named hubx is in the directory already") || !strings.Contains(r.stderr, "--name") {
		t.Errorf("a name taken: exit %d\n%s", r.code, r.stderr)
	}
	// Joining later is refused: the data directory is set up already.
	e.ok("setup", "--name", "hubz")
	r = e.run("", "setup", "--directory", base, "--bind-dn", dn, "--bind-password-file", pw)
	if r.code != 1 || !strings.Contains(r.stderr, "already set up with the embedded directory") {
		t.Errorf("joining a set-up data directory: exit %d\n%s", r.code, r.stderr)
	}
}

// TestOrgDirectoryObjectsEditedByHand: objects edited by hand into
// nonsense — a server object whose certificate is no certificate, two
// objects claiming one name, this server's own object changed — each
// raise a clear event, and the servers keep running and delivering; this
// server's own object is published again as it holds it.
func TestOrgDirectoryObjectsEditedByHand(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test")
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")
	h1.start()
	h2.start()
	servers := "ou=Servers," + o.base
	o.s.Add(t, "cn=hub9,"+servers, map[string][]string{"objectClass": {"certrelayServer"}, "cn": {"hub9"}, "certrelayRole": {"hub"},
		"certrelayFqdn": {"hub9.org.test"}, "certrelayInternalCertThumbprint": {strings.Repeat("AB", 20)}, "certrelayInternalCert": {"not a certificate"}})
	ev := h1.waitEvent(16052, "cn=hub9", 10*time.Second)
	if !strings.Contains(ev.Message, "not a certificate") {
		t.Errorf("16052 for the damaged object: %s", ev.Message)
	}
	o.s.Add(t, "cn=hub2copy,"+servers, map[string][]string{"objectClass": {"certrelayServer"}, "cn": {"hub2copy"}, "certrelayRole": {"hub"},
		"certrelayFqdn": {"hub2.org.test"}})
	ev = h1.waitEvent(16052, "hub2.org.test", 10*time.Second)
	if !strings.Contains(ev.Message, "hub2 and hub2copy") {
		t.Errorf("16052 for the duplicate name: %s", ev.Message)
	}
	list := h1.e.run("", "server", "list")
	if list.code != 0 || !strings.Contains(list.stderr+list.stdout, "cn=hub9") {
		t.Errorf("server list does not name the damaged object:\n%s%s", list.stdout, list.stderr)
	}

	// hub2's own object: its certificate removed by hand. hub2 says the
	// directory holds none for it (12012) and publishes it again (16053).
	conn := o.ldap()
	defer conn.Close()
	mod := ldap.NewModifyRequest("cn=hub2,"+servers, nil)
	mod.Delete("certrelayInternalCert", nil)
	mod.Replace("certrelayInternalCertThumbprint", []string{})
	if err := conn.Modify(mod); err != nil {
		t.Fatal(err)
	}
	h2.waitEvent(12012, "hub2", 10*time.Second)
	h2.waitEvent(16053, "hub2", 10*time.Second)
	res, err := conn.Search(ldap.NewSearchRequest("cn=hub2,"+servers, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"certrelayInternalCertThumbprint"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("certrelayInternalCertThumbprint") != h2.internal() {
		t.Errorf("hub2's object after it published it again: %v %v", res, err)
	}
	// Through all this, mail still crosses.
	if out, code := swaks(t, "--server", h1.addr, "--from", "carol@example.org", "--to", "bob@contoso.test"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	h2.waitMail("contoso.test", "bob", 1, 20*time.Second)
}

// TestOrgDirectoryOutage: slapd stopped for 30 s while Python's smtplib
// sends mail to hub1 for a mailbox homed on hub2, then restarted: every
// message acknowledged with 250 is delivered, once. The servers say when
// the directory is lost (16050) and back (16051) and run on their copy
// meanwhile; commands that must write to the directory fail and change
// nothing, commands that read answer from the copy.
func TestOrgDirectoryOutage(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test")
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")
	h1.start()
	h2.start()
	time.Sleep(2 * time.Second) // the copies reach the disk

	// The load: one message every 50 ms for 40 s; each acknowledged one
	// is printed with its number.
	script := filepath.Join(h1.e.work, "load.py")
	os.WriteFile(script, []byte(`import smtplib, sys, time
host, port = sys.argv[1].rsplit(":", 1)
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    n += 1
    msg = "Subject: load %d\r\nMessage-Id: <load-%d@example.org>\r\n\r\nmessage %d\r\n" % (n, n, n)
    try:
        s = smtplib.SMTP(host, int(port), timeout=30)
        s.sendmail("carol@example.org", ["bob@contoso.test"], msg)
        s.quit()
        print(n, flush=True)
    except Exception as e:
        print("refused", n, e, file=sys.stderr, flush=True)
    time.sleep(0.05)
`), 0o644)
	load := exec.Command(testpki.Tool(t, "python3"), script, h1.addr, "40")
	var acked, failed strings.Builder
	load.Stdout, load.Stderr = &acked, &failed
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	o.s.Stop()
	h1.waitEvent(16050, o.url(), 10*time.Second)
	h2.waitEvent(16050, o.url(), 10*time.Second)

	// During the outage: writes fail clearly and change nothing; reads
	// answer from the copy.
	r := h1.e.run("", "domain", "add", "fabrikam.test")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot be reached") || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("domain add during the outage: exit %d\n%s", r.code, r.stderr)
	}
	r = h1.e.run("", "server", "set", "--nlb-name", "mail.org.test")
	if r.code != 1 || len(h1.e.server().Name) == 0 {
		t.Errorf("server set during the outage: exit %d\n%s", r.code, r.stderr)
	}
	var info struct{ NLBNames []string }
	h1.e.jsonOf(&info, "server", "show")
	if len(info.NLBNames) != 0 {
		t.Errorf("a failed server set changed the server: %v", info.NLBNames)
	}
	var boxes []struct{ Address, Server string }
	h1.e.jsonOf(&boxes, "mailbox", "list")
	if len(boxes) != 1 || boxes[0].Server != "hub2" {
		t.Errorf("mailbox list during the outage (from the copy): %+v", boxes)
	}

	time.Sleep(25 * time.Second)
	o.s.Restart(t)
	h1.waitEvent(16051, o.url(), 15*time.Second)
	h2.waitEvent(16051, o.url(), 15*time.Second)
	if err := load.Wait(); err != nil {
		t.Fatalf("the load: %v\n%s", err, failed.String())
	}
	want := strings.Fields(acked.String())
	if len(want) < 100 {
		t.Fatalf("only %d messages acknowledged; refused:\n%s", len(want), failed.String())
	}
	msgs := h2.waitMail("contoso.test", "bob", len(want), 60*time.Second)
	got := map[string]int{}
	for _, m := range msgs {
		for _, line := range strings.Split(m, "\n") {
			if n, ok := strings.CutPrefix(strings.TrimSpace(line), "Subject: load "); ok {
				got[n]++
			}
		}
	}
	var missing, twice []string
	for _, n := range want {
		switch got[n] {
		case 0:
			missing = append(missing, n)
		case 1:
		default:
			twice = append(twice, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 || len(twice) > 0 || len(msgs) != len(want) {
		t.Fatalf("%d acknowledged, %d delivered; missing %v, delivered twice %v", len(want), len(msgs), missing, twice)
	}
	t.Log(fmt.Sprintf("%d messages acknowledged during a 30 s outage of the directory, each delivered once", len(want)))
}
