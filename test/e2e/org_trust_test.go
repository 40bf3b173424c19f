package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"certrelay/internal/testpki"
)

func (h *hub) queue() []queueItem { return h.e.queue() }

// waitQueued waits until a recipient is pending with an error that
// contains want, and returns the error.
func (h *hub) waitQueued(addr, want string, limit time.Duration) string {
	h.e.t.Helper()
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		for _, it := range h.queue() {
			for _, r := range it.Recipients {
				if r.Address == addr && r.Status == "pending" {
					last = r.LastError
					if strings.Contains(r.LastError, want) {
						return r.LastError
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.e.t.Fatalf("%s: no pending recipient %s with an error mentioning %q within %v (last: %q)", h.name, addr, want, limit, last)
	return ""
}

// copyEntries copies the entries under each DN of from (subtrees) into
// the tree under to, as a rogue administrator who can read the
// organisation's directory could.
func (o *org) copyEntries(from, to string, dns ...string) {
	o.t.Helper()
	conn := o.ldap()
	defer conn.Close()
	for _, dn := range dns {
		res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"*"}, nil))
		if err != nil {
			o.t.Fatalf("read %s: %v", dn, err)
		}
		for _, e := range res.Entries { // parents come before children
			add := ldap.NewAddRequest(strings.Replace(e.DN, from, to, 1), nil)
			for _, a := range e.Attributes {
				add.Attribute(a.Name, a.Values)
			}
			if err := conn.Add(add); err != nil {
				o.t.Fatalf("copy %s: %v", e.DN, err)
			}
		}
	}
}

// TestOrgImpostorRefused: a third server that claims hub2's name (it is
// "hub2" in a directory of its own, into which the organisation's public
// objects were copied) with another key. Sending to hub1 it is refused
// (1036 and 1037 on hub1) and nothing it sends is delivered; answering in
// hub2's place, hub1 refuses it (2018 and 2019) and the mail waits in the
// queue until the real hub2 is back.
func TestOrgImpostorRefused(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test")
	h1.e.write("alice.pw", []byte(alicePassword+"\n"))
	h1.e.ok("mailbox", "add", "alice@contoso.test", "--password-file", "alice.pw")
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")
	t2 := h2.internal()

	o.addOU("rogue")
	rogueBase := "ou=rogue," + o.s.Suffix
	rogue := newEnv(t)
	rogue.ok("setup", "--name", "hub2", "--fqdn", "hub2.org.test", "--directory", o.s.URL(rogueBase), "--bind-dn", o.s.RootDN, "--bind-password-file", o.pwFile)
	o.copyEntries(o.base, rogueBase, "cn=hub1,ou=Servers,"+o.base, "cn=contoso.test,ou=Domains,"+o.base, "cn=alice@contoso.test,ou=Mailboxes,"+o.base)
	imp := &hub{e: rogue, name: "impostor", addr: testpki.FreePort(t)}
	rogue.ok("connector", "receive", "set", "Default hub2", "--bindings", imp.addr)
	tImp := imp.internal()
	if tImp == t2 {
		t.Fatal("the impostor has hub2's certificate")
	}
	h1.start()
	h2.start()
	imp.start()

	// The impostor relays to hub1, claiming to be hub2.
	if out, code := swaks(t, "--server", imp.addr, "--from", "mallory@example.org", "--to", "alice@contoso.test", "--header", "Subject: from an impostor"); code != 0 {
		t.Fatalf("swaks to the impostor: %d\n%s", code, out)
	}
	ev := h1.waitEvent(1036, tImp, 20*time.Second)
	if !strings.Contains(ev.Message, "127.0.0.1") {
		t.Errorf("1036 names no remote address: %s", ev.Message)
	}
	ev = h1.waitEvent(1037, tImp, 5*time.Second)
	if !strings.Contains(ev.Message, "not the certificate the directory holds for server hub2 ("+t2+")") {
		t.Errorf("1037 does not say whose certificate it is not: %s", ev.Message)
	}
	imp.waitQueued("alice@contoso.test", "", 10*time.Second) // 421, or the connection it closed

	// The impostor answers where hub2 listens.
	h2.p.stop()
	rogue.ok("connector", "receive", "set", "Default hub2", "--bindings", h2.addr)
	waitPort(t, h2.addr)
	if out, code := swaks(t, "--server", h1.addr, "--from", "carol@example.org", "--to", "bob@contoso.test", "--header", "Subject: for the real hub2"); code != 0 {
		t.Fatalf("swaks to hub1: %d\n%s", code, out)
	}
	h1.waitEvent(2018, tImp, 20*time.Second)
	ev = h1.waitEvent(2019, tImp, 5*time.Second)
	if !strings.Contains(ev.Message, "hub2") {
		t.Errorf("2019: %s", ev.Message)
	}
	lastErr := h1.waitQueued("bob@contoso.test", "direct trust", 10*time.Second)
	if !strings.Contains(lastErr, tImp) && !strings.Contains(lastErr, "not the certificate the directory holds for server hub2") {
		t.Errorf("the queued message's error: %s", lastErr)
	}
	if n := len(imp.mail("contoso.test", "bob")); n != 0 {
		t.Errorf("the impostor got %d messages for bob", n)
	}

	// The real hub2 is back where it was: the mail waiting goes to it.
	imp.p.stop()
	h2.start()
	h1.e.ok("queue", "retry")
	h2.waitMail("contoso.test", "bob", 1, 20*time.Second)
	time.Sleep(time.Second)
	if n := len(h1.mail("contoso.test", "alice")); n != 0 {
		t.Errorf("alice got %d messages from the impostor", n)
	}
	if n := len(h2.mail("contoso.test", "bob")); n != 1 {
		t.Errorf("bob has %d messages, want 1", n)
	}
}

// hop returns the organisation comment of the last Received header a
// message got: how the sender was authenticated and both certificates.
func hop(t *testing.T, msg string) (auth, sender, senderCert, receiverCert string) {
	t.Helper()
	m := orgComment.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("no organisation hop in\n%s", msg)
	}
	return m[1], m[2], m[3], m[5]
}

// TestOrgInternalCertificateFallbacks: hub1's internal certificate can
// no longer be loaded (its key removed by hand). With nothing else for
// its name hub1 uses an ephemeral certificate (12024, naming the fixes of
// seed 004) and mail to hub2 still flows, the hubs authenticating each
// other with their server credentials; with a certificate for its
// physical FQDN it uses that one (12023); after cert new the new
// certificate is published and used, by direct trust again, without a
// restart.
func TestOrgInternalCertificateFallbacks(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test")
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")
	t1, t2 := h1.internal(), h2.internal()
	h1.start()
	h2.start()
	sent := 0
	send := func(subject string) string {
		t.Helper()
		if out, code := swaks(t, "--server", h1.addr, "--from", "carol@example.org", "--to", "bob@contoso.test", "--header", "Subject: "+subject); code != 0 {
			t.Fatalf("swaks: %d\n%s", code, out)
		}
		sent++
		msgs := h2.waitMail("contoso.test", "bob", sent, 20*time.Second)
		for _, m := range msgs {
			if strings.Contains(m, "Subject: "+subject) {
				return m
			}
		}
		t.Fatalf("%q not delivered", subject)
		return ""
	}
	if auth, _, c1, c2 := hop(t, send("before")); auth != "direct trust" || c1 != t1 || c2 != t2 {
		t.Fatalf("before: %s %s %s", auth, c1, c2)
	}

	// The key of the internal certificate is gone.
	keys, _ := filepath.Glob(filepath.Join(h1.e.data, "keys", "*.key"))
	if len(keys) != 1 {
		t.Fatalf("key files: %v", keys)
	}
	if err := os.Remove(keys[0]); err != nil {
		t.Fatal(err)
	}
	ev := h1.waitEvent(12024, t1, 10*time.Second)
	for _, fix := range []string{"certrelay cert enable " + t1 + " --services SMTP", "certrelay cert import", "certrelay cert new"} {
		if !strings.Contains(ev.Message, fix) {
			t.Errorf("12024 does not name %q: %s", fix, ev.Message)
		}
	}
	auth, sender, eph, c2 := hop(t, send("ephemeral"))
	if auth != "server credential" || sender != "hub1" || eph == t1 || c2 != t2 {
		t.Fatalf("with the ephemeral certificate: %s from %s, %s / %s", auth, sender, eph, c2)
	}
	if !strings.Contains(ev.Message, eph) {
		t.Errorf("12024 does not name the ephemeral certificate %s: %s", eph, ev.Message)
	}

	// A certificate for the physical FQDN stands in before an ephemeral one.
	h1.e.ok("server", "set", "--physical-fqdn", "m1.org.test")
	tFqdn := h1.e.ok("cert", "new", "--domain", "m1.org.test", "--services", "SMTP")
	h1.waitEvent(12023, tFqdn, 10*time.Second)
	if auth, _, c1, _ := hop(t, send("fqdn fallback")); auth != "server credential" || c1 != tFqdn {
		t.Fatalf("with the FQDN's certificate: %s %s", auth, c1)
	}

	// cert new: a new internal certificate, published and used at once.
	start := time.Now()
	t3 := h1.e.ok("cert", "new", "--force")
	if got := h1.internal(); got != t3 {
		t.Fatalf("cert new made %s; the internal certificate is %s", t3, got)
	}
	for i := 0; ; i++ {
		auth, _, c1, _ := hop(t, send("renewed "+strconv.Itoa(i)))
		if auth == "direct trust" && c1 == t3 {
			t.Logf("the new internal certificate was used by direct trust %v after cert new returned (message %d)", time.Since(start).Round(time.Millisecond), i+1)
			break
		}
		if i == 20 {
			t.Fatalf("the new certificate %s is not used by direct trust: %s %s", t3, auth, c1)
		}
	}
	var servers []struct{ Name, InternalTransportCertificateThumbprint string }
	h2.e.jsonOf(&servers, "server", "list")
	if servers[0].Name != "hub1" || servers[0].InternalTransportCertificateThumbprint != t3 {
		t.Errorf("hub2 sees hub1 as %+v", servers[0])
	}
}

// TestOrgEdgeNeedsCertificate: between a hub and an edge only direct
// trust will do (X5): an edge whose internal certificate cannot be loaded
// and has nothing for its FQDN raises 12013, and its mail for the hub
// waits with an error that names the command that repairs it; once it
// has a certificate again (cert new), the mail goes.
func TestOrgEdgeNeedsCertificate(t *testing.T) {
	o := newOrg(t)
	h1, edge := o.join("hub1"), o.join("edge1", "--role", "edge")
	h1.e.ok("domain", "add", "contoso.test")
	h1.e.write("alice.pw", []byte(alicePassword+"\n"))
	h1.e.ok("mailbox", "add", "alice@contoso.test", "--password-file", "alice.pw")
	tEdge := edge.internal()
	keys, _ := filepath.Glob(filepath.Join(edge.e.data, "keys", "*.key"))
	for _, k := range keys {
		os.Remove(k)
	}
	h1.start()
	edge.start()
	edge.waitEvent(12013, tEdge, 10*time.Second)
	if out, code := swaks(t, "--server", edge.addr, "--from", "carol@example.org", "--to", "alice@contoso.test"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	lastErr := edge.waitQueued("alice@contoso.test", "certrelay cert new", 20*time.Second)
	if !strings.Contains(lastErr, "hub server hub1") || !strings.Contains(lastErr, "direct trust") {
		t.Errorf("the queued message's error: %s", lastErr)
	}
	if len(edge.events(12024)) != 0 {
		t.Errorf("an edge used an ephemeral certificate")
	}
	edge.e.ok("cert", "new", "--force")
	edge.e.ok("queue", "retry")
	msgs := h1.waitMail("contoso.test", "alice", 1, 20*time.Second)
	if auth, sender, _, _ := hop(t, msgs[0]); auth != "direct trust" || sender != "edge1" {
		t.Errorf("the hop from the edge: %s from %s", auth, sender)
	}
}

// TestOrgExpiredInternalCertificate: an internal transport certificate
// that has expired is still used (C12), with 12015 on its server, and the
// peer that checks it raises 12019 and still accepts it.
func TestOrgExpiredInternalCertificate(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test")
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")
	old := testpki.SelfSigned(t, testpki.Options{CommonName: "hub1", DNSNames: []string{"hub1", "hub1.org.test"},
		NotBefore: time.Now().Add(-400 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	tOld := h1.e.importLeaf("old", old)
	h1.e.ok("cert", "enable", tOld, "--services", "SMTP", "--force") // it becomes the internal certificate (M5)
	if h1.internal() != tOld {
		t.Fatalf("the internal certificate is %s, want the expired %s", h1.internal(), tOld)
	}
	h1.start()
	h2.start()
	h1.waitEvent(12015, tOld, 10*time.Second)
	if out, code := swaks(t, "--server", h1.addr, "--from", "carol@example.org", "--to", "bob@contoso.test"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	msgs := h2.waitMail("contoso.test", "bob", 1, 20*time.Second)
	if auth, _, c1, _ := hop(t, msgs[0]); auth != "direct trust" || c1 != tOld {
		t.Errorf("the hop: %s with %s", auth, c1)
	}
	h2.waitEvent(12019, tOld, 10*time.Second)
}
