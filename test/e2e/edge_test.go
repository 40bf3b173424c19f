package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/edgesync"
	"certrelay/internal/testpki"
)

// The edge (issue 12): an edge with its embedded directory joins the
// organisation by subscription, and EdgeSync fills it.

// newEdge sets up an edge with the embedded directory (not started), its
// default connector on a free port.
func newEdge(t *testing.T, name string) *hub {
	t.Helper()
	e := newEnv(t)
	e.ok("setup", "--name", name, "--fqdn", name+".org.test", "--role", "edge")
	h := &hub{e: e, name: name, addr: testpki.FreePort(t)}
	e.ok("connector", "receive", "set", "Default "+name, "--bindings", h.addr)
	return h
}

// subscribe writes the edge's subscription file (its EdgeSync endpoint on
// a free port) and returns the file's path.
func (h *hub) subscribe() string {
	h.e.t.Helper()
	path := h.e.path("EdgeSubscription.xml")
	h.e.ok("edge", "subscribe", "--out", path, "--sync-binding", testpki.FreePort(h.e.t))
	return path
}

// waitMailboxes waits until the edge holds the address among its
// replicated recipients, and returns how long it took.
func (h *hub) waitMailbox(addr string, present bool, limit time.Duration) time.Duration {
	h.e.t.Helper()
	start := time.Now()
	for {
		var boxes []struct{ Address, Server string }
		h.e.jsonOf(&boxes, "mailbox", "list")
		found := false
		for _, b := range boxes {
			found = found || b.Address == addr
		}
		if found == present {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			logs := ""
			if h.p != nil {
				logs = h.p.Logs()
			}
			h.e.t.Fatalf("%s: mailbox %s present=%v after %v, want %v; mailboxes %+v\n%s", h.name, addr, found, limit, present, boxes, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEdgeSubscriptionAndMail: hub1 and hub2 on slapd, an edge with its
// embedded directory. After subscribe, import and the first rounds: mail
// from the internet to the edge reaches a mailbox on hub2 over
// X-AnonymousTLS with direct trust; an unknown recipient gets 550 5.1.1
// at the edge, before DATA; a hub mailbox user's mail to the internet
// (a Postfix peer) leaves through the edge; a mailbox added on hub2
// reaches the edge at once; and the replicated objects are read-only on
// the edge, with an error naming the hub-side command.
func TestEdgeSubscriptionAndMail(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test")
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")
	edge := newEdge(t, "edge1")
	file := edge.subscribe()
	data := h1.e.write("EdgeSubscription.xml", mustRead(t, file))
	_ = data
	out := h1.e.ok("edge", "import", "EdgeSubscription.xml")
	if !strings.Contains(out, "edge1") {
		t.Fatalf("edge import: %s", out)
	}
	var subs []struct{ Name, Status, InternalTransportCertificateThumbprint string }
	h2.e.jsonOf(&subs, "edge", "list")
	if len(subs) != 1 || subs[0].Name != "edge1" || subs[0].InternalTransportCertificateThumbprint != edge.internal() {
		t.Fatalf("edge list on hub2: %+v (edge's certificate %s)", subs, edge.internal())
	}
	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.example.net", Mailboxes: []string{"dave@example.net"}, TLS: true})
	h1.e.ok("connector", "send", "set", "EdgeSync - edge1 to Internet", "--smart-host", pf.Addr)

	h1.start()
	h2.start()
	edge.start()
	edge.waitMailbox("bob@contoso.test", true, 20*time.Second)

	// The internet to the organisation, through the edge.
	out, code := swaks(t, "--server", edge.addr, "--from", "carol@example.org", "--to", "bob@contoso.test", "--header", "Subject: from the internet")
	if code != 0 {
		t.Fatalf("swaks to the edge: %d\n%s", code, out)
	}
	msgs := h2.waitMail("contoso.test", "bob", 1, 30*time.Second)
	if auth, sender, _, _ := hop(t, msgs[0]); auth != "direct trust" || sender != "edge1" {
		t.Errorf("the hop from the edge: %s from %s\n%s", auth, sender, msgs[0])
	}

	// An unknown recipient: 550 5.1.1 at RCPT, no DATA.
	out, code = swaks(t, "--server", edge.addr, "--from", "carol@example.org", "--to", "nobody@contoso.test")
	if code == 0 || !strings.Contains(out, "550 5.1.1") || strings.Contains(out, "-> DATA") {
		t.Errorf("unknown recipient at the edge: %d\n%s", code, out)
	}

	// The organisation to the internet, through the edge.
	out, code = swaks(t, "--server", h2.addr, "--from", "bob@contoso.test", "--to", "dave@example.net", "--tls",
		"--auth", "PLAIN", "--auth-user", "bob@contoso.test", "--auth-password", "bob-secret-1", "--header", "Subject: to the internet")
	if code != 0 {
		t.Fatalf("submission on hub2: %d\n%s", code, out)
	}
	box := waitMbox(t, pf, "dave@example.net", "Subject: to the internet")
	if !strings.Contains(box, "from edge1.org.test") {
		t.Errorf("the message did not leave through the edge:\n%s", box)
	}

	// A mailbox added on hub2 is accepted by the edge at once.
	h2.e.write("erin.pw", []byte("erin-secret-1\n"))
	h2.e.ok("mailbox", "add", "erin@contoso.test", "--password-file", "erin.pw")
	took := edge.waitMailbox("erin@contoso.test", true, 10*time.Second)
	t.Logf("a new mailbox reached the edge in %v", took)
	if took > time.Second {
		t.Errorf("a new mailbox took %v to reach the edge, want at most 1 s", took)
	}

	// Replicated objects are read-only on the edge.
	r := edge.e.run("", "domain", "add", "fabrikam.test")
	if r.code == 0 || !strings.Contains(r.stderr, "EdgeSync") || !strings.Contains(r.stderr, "certrelay domain add") {
		t.Errorf("domain add on the edge: %d %s", r.code, r.stderr)
	}
	r = edge.e.run("", "mailbox", "remove", "bob@contoso.test")
	if r.code == 0 || !strings.Contains(r.stderr, "certrelay mailbox remove") {
		t.Errorf("mailbox remove on the edge: %d %s", r.code, r.stderr)
	}

	var rounds []struct {
		Edge, Kind, Hub, Error string
		Objects                int
	}
	h1.e.jsonOf(&rounds, "edge", "status")
	h2rounds := []byte(h2.e.ok("edge", "status", "--json"))
	var r2 []struct{ Kind, Error string }
	_ = json.Unmarshal(h2rounds, &r2)
	if len(rounds)+len(r2) == 0 {
		t.Errorf("edge status shows no round on either hub")
	}
	var er []struct {
		Kind, Hub string
		Objects   int
	}
	edge.e.jsonOf(&er, "edge", "status")
	if len(er) != 2 {
		t.Errorf("edge status on the edge: %+v", er)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEdgeSubscriptionRefusals: bad subscription files — expired,
// truncated, an XML entity bomb, 50 MB, one carrying the hub's own
// certificate, one whose signature or certificate was changed by hand —
// are each refused by edge import with an error that says what is wrong
// and what to do, and the organisation's directory is left as it was.
func TestEdgeSubscriptionRefusals(t *testing.T) {
	o := newOrg(t)
	h1 := o.join("hub1")
	edge := newEdge(t, "edge1")
	good := mustRead(t, edge.subscribe())
	state := func() string {
		return h1.e.ok("server", "list", "--json") + h1.e.ok("connector", "send", "list", "--json") + h1.e.ok("edge", "list", "--json")
	}
	before := state()

	// The hub's own certificate, in a file signed with the hub's key.
	hubThumb := h1.internal()
	h1.e.ok("cert", "export", hubThumb, "--out", "hub.pem")
	hubBundle, err := certinfo.ParseBundle(mustRead(t, h1.e.path("hub.pem")), nil)
	if err != nil {
		t.Fatal(err)
	}
	hubCert := hubBundle.Certificates
	keys, _ := filepath.Glob(filepath.Join(h1.e.data, "keys", "*.key"))
	if len(keys) != 1 {
		t.Fatalf("hub keys: %v", keys)
	}
	hubKey, err := certinfo.ParsePrivateKeyPEM(mustRead(t, keys[0]))
	if err != nil {
		t.Fatal(err)
	}
	own, err := edgesync.New("edge1", "edge1.org.test", hubCert[0], hubKey, "ESRA.edge1.x", "secret", time.Now(), 50636, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := edgesync.New("edge1", "edge1.org.test", hubCert[0], hubKey, "ESRA.edge1.x", "secret", time.Now().Add(-25*time.Hour), 50636, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	otherEdge := newEdge(t, "edge2")
	otherFile := string(mustRead(t, otherEdge.subscribe()))
	blob := func(s string) string {
		i, j := strings.Index(s, "<EdgeCertificateBlob>"), strings.Index(s, "</EdgeCertificateBlob>")
		return s[i:j]
	}
	bomb := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><EdgeSubscriptionData><EdgeServerName>&lol2;</EdgeServerName></EdgeSubscriptionData>`
	for _, c := range []struct {
		name string
		data []byte
		want []string
	}{
		{"expired", expired.Marshal(), []string{"expired at", "certrelay edge subscribe"}},
		{"truncated", good[:len(good)*2/3], []string{"truncated", "certrelay edge subscribe"}},
		{"entity-bomb", []byte(bomb), []string{"entity bomb"}},
		{"50MB", append(good, bytes.Repeat([]byte(" "), 50<<20)...), []string{"bytes; a subscription file is a few kilobytes", "this is not one"}},
		{"hub-certificate", own.Marshal(), []string{"this hub's own", "on the edge"}},
		{"fqdn-changed", bytes.Replace(good, []byte("<EdgeServerFQDN>edge1.org.test"), []byte("<EdgeServerFQDN>mx.evil.test"), 1), []string{"changed after the edge wrote it"}},
		{"certificate-changed", []byte(strings.Replace(string(good), blob(string(good)), blob(otherFile), 1)), []string{"changed after the edge wrote it"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h1.e.write("bad.xml", c.data)
			r := h1.e.run("", "edge", "import", "bad.xml")
			if r.code == 0 {
				t.Fatalf("accepted: %s", r.stdout)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error lacks %q:\n%s", w, r.stderr)
				}
			}
			if after := state(); after != before {
				t.Errorf("the directory changed:\n%s\n%s", before, after)
			}
		})
	}
	// The good file still imports.
	h1.e.write("good.xml", good)
	h1.e.ok("edge", "import", "good.xml")
	if state() == before {
		t.Errorf("the good file changed nothing")
	}
}
