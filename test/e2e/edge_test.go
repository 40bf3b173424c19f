package e2e

import (
	"bytes"
	"fmt"
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

// edgeOrg is the three processes: hub1 and hub2 on slapd, an
// edge with its embedded directory, subscribed through hub1, and a
// Postfix peer standing for the internet (example.net), reached through
// the edge's connector to the internet.
type edgeOrg struct {
	o            *org
	h1, h2, edge *hub
	pf           *testpki.Postfix
}

// rebuildEdge replaces the edge with one rebuilt from scratch — a new
// data directory under the same name, addresses and sync binding, new
// keys, subscribed anew but not imported on the hubs — starts it, and has
// the hubs run a synchronisation round with it.
func (x *edgeOrg) rebuildEdge(t *testing.T) *hub {
	var sub []struct{ SyncAddress string }
	x.edge.e.jsonOf(&sub, "edge", "list")
	x.edge.p.stop()
	rebuilt := newEnv(t)
	rebuilt.ok("setup", "--name", "edge1", "--fqdn", "edge1.org.test", "--role", "edge")
	rebuilt.ok("connector", "receive", "set", "Default edge1", "--bindings", x.edge.addr)
	rebuilt.ok("edge", "subscribe", "--out", "rebuilt.xml", "--sync-binding", sub[0].SyncAddress)
	r := &hub{e: rebuilt, name: "edge1", addr: x.edge.addr}
	r.start()
	x.h1.e.ok("edge", "sync", "--wait", "5")
	return r
}

// newEdgeOrg sets up and starts the three, with contoso.test accepted,
// bob@contoso.test homed on hub2 and alice@contoso.test on hub1, and
// waits until the edge holds both recipients.
func newEdgeOrg(t *testing.T) *edgeOrg {
	t.Helper()
	o := newOrg(t)
	x := &edgeOrg{o: o, h1: o.join("hub1"), h2: o.join("hub2")}
	x.h1.e.ok("domain", "add", "contoso.test")
	x.h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	x.h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")
	x.h1.e.write("alice.pw", []byte(alicePassword+"\n"))
	x.h1.e.ok("mailbox", "add", "alice@contoso.test", "--password-file", "alice.pw")
	x.edge = newEdge(t, "edge1")
	x.h1.e.write("EdgeSubscription.xml", mustRead(t, x.edge.subscribe()))
	if out := x.h1.e.ok("edge", "import", "EdgeSubscription.xml"); !strings.Contains(out, "edge1") {
		t.Fatalf("edge import: %s", out)
	}
	var subs []struct{ Name, Status, InternalTransportCertificateThumbprint string }
	x.h2.e.jsonOf(&subs, "edge", "list")
	if len(subs) != 1 || subs[0].Name != "edge1" || subs[0].InternalTransportCertificateThumbprint != x.edge.internal() {
		t.Fatalf("edge list on hub2: %+v (edge's certificate %s)", subs, x.edge.internal())
	}
	x.pf = testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.example.net", Mailboxes: []string{"dave@example.net"}, TLS: true})
	x.h1.e.ok("connector", "send", "set", "EdgeSync - edge1 to Internet", "--smart-host", x.pf.Addr)
	x.edge.start() // first: the hubs' first round finds its endpoint
	x.h1.start()
	x.h2.start()
	x.edge.waitMailbox("bob@contoso.test", true, 20*time.Second)
	x.edge.waitMailbox("alice@contoso.test", true, 20*time.Second)
	return x
}

// fromInternet sends a message from the internet to the edge.
func (x *edgeOrg) fromInternet(t *testing.T, to, subject string) {
	t.Helper()
	out, code := swaks(t, "--server", x.edge.addr, "--from", "carol@example.org", "--to", to, "--header", "Subject: "+subject)
	if code != 0 {
		t.Fatalf("swaks to the edge: %d\n%s", code, out)
	}
}

// toInternet sends a message from bob, a mailbox user of hub2, to
// dave@example.net, and waits for Postfix to have it.
func (x *edgeOrg) toInternet(t *testing.T, subject string) string {
	t.Helper()
	out, code := swaks(t, "--server", x.h2.addr, "--from", "bob@contoso.test", "--to", "dave@example.net", "--tls",
		"--auth", "PLAIN", "--auth-user", "bob@contoso.test", "--auth-password", "bob-secret-1", "--header", "Subject: "+subject)
	if code != 0 {
		t.Fatalf("submission on hub2: %d\n%s", code, out)
	}
	return waitMbox(t, x.pf, "dave@example.net", "Subject: "+subject)
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
	x := newEdgeOrg(t)
	h1, h2, edge := x.h1, x.h2, x.edge

	// The internet to the organisation, through the edge.
	x.fromInternet(t, "bob@contoso.test", "from the internet")
	msgs := h2.waitMail("contoso.test", "bob", 1, 30*time.Second)
	if auth, sender, _, _ := hop(t, msgs[0]); auth != "direct trust" || sender != "edge1" {
		t.Errorf("the hop from the edge: %s from %s\n%s", auth, sender, msgs[0])
	}

	// An unknown recipient: 550 5.1.1 at RCPT, no DATA.
	out, code := swaks(t, "--server", edge.addr, "--from", "carol@example.org", "--to", "nobody@contoso.test")
	if code == 0 || !strings.Contains(out, "550 5.1.1") || strings.Contains(out, "-> DATA") {
		t.Errorf("unknown recipient at the edge: %d\n%s", code, out)
	}

	// The organisation to the internet, through the edge.
	box := x.toInternet(t, "to the internet")
	if !strings.Contains(box, "from edge1.org.test") {
		t.Errorf("the message did not leave through the edge:\n%s", box)
	}

	// A mailbox added on hub2 is accepted by the edge at once.
	h2.e.write("erin.pw", []byte("erin-secret-1\n"))
	h2.e.ok("mailbox", "add", "erin@contoso.test", "--password-file", "erin.pw")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hub1:\n%s\nhub2:\n%s", h1.p.Logs(), h2.p.Logs())
		}
	})
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

	// edge sync on both hubs: the lease holder runs the rounds, the other
	// names it; the edge shows what it received, and from which hub.
	type round struct {
		Edge, Kind, Hub, Error string
		Objects, Changed       int
	}
	var r1, r2, onEdge []round
	h1.e.jsonOf(&r1, "edge", "sync")
	h2.e.jsonOf(&r2, "edge", "sync")
	holder, ran := "", 0
	for _, rs := range [][]round{r1, r2} {
		for _, r := range rs {
			switch {
			case r.Kind == "lease" && strings.Contains(r.Error, "holds the EdgeSync lease of edge1"):
				holder = r.Hub
			case r.Error == "" && (r.Kind == "configuration" || r.Kind == "recipients"):
				ran++
				if r.Kind == "recipients" && r.Objects != 3 {
					t.Errorf("recipients round: %+v, want 3 recipients", r)
				}
			default:
				t.Errorf("edge sync: %+v", r)
			}
		}
	}
	if ran != 2 || holder == "" {
		t.Errorf("edge sync on hub1: %+v; on hub2: %+v; want one hub's two rounds and the other naming it", r1, r2)
	}
	edge.e.jsonOf(&onEdge, "edge", "status")
	if len(onEdge) != 2 || onEdge[0].Hub != holder || onEdge[1].Hub != holder || onEdge[1].Kind != "recipients" || onEdge[1].Objects != 3 {
		t.Errorf("edge status on the edge: %+v (lease holder %s)", onEdge, holder)
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

// serverThumb returns the internal certificate a server's directory holds
// for name.
func (h *hub) serverThumb(name string) string {
	var servers []struct{ Name, InternalTransportCertificateThumbprint string }
	h.e.jsonOf(&servers, "server", "list")
	for _, s := range servers {
		if s.Name == name {
			return s.InternalTransportCertificateThumbprint
		}
	}
	return ""
}

// waitServerThumb waits until h's directory holds thumb for name, and
// returns how long it took.
func (h *hub) waitServerThumb(name, thumb string, limit time.Duration) time.Duration {
	h.e.t.Helper()
	start := time.Now()
	for h.serverThumb(name) != thumb {
		if time.Since(start) > limit {
			h.e.t.Fatalf("%s: the directory holds %s for %s after %v, want %s\n%s", h.name, h.serverThumb(name), name, limit, thumb, h.p.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// noTrustFailures fails the test if a server logged a failed
// direct-trust session.
func noTrustFailures(t *testing.T, hs ...*hub) {
	t.Helper()
	for _, h := range hs {
		for _, id := range []int{1036, 1037, 2018, 2019} {
			if evs := h.events(id); len(evs) > 0 {
				t.Errorf("%s logged %d: %+v", h.name, id, evs)
			}
		}
	}
}

// TestEdgeRenewalsPropagate (X4): a new internal transport certificate
// on the edge reaches the organisation through EdgeSync, authenticated
// with the old one, and a new one on hub1 reaches the edge; mail keeps
// flowing both ways, with no new subscription and no failed session.
func TestEdgeRenewalsPropagate(t *testing.T) {
	x := newEdgeOrg(t)
	x.fromInternet(t, "bob@contoso.test", "before the renewals")
	x.h2.waitMail("contoso.test", "bob", 1, 30*time.Second)
	x.toInternet(t, "before the renewals")

	// The edge renews.
	oldEdge := x.edge.internal()
	start := time.Now()
	x.edge.e.ok("cert", "new", "--force")
	newEdge := x.edge.internal()
	if newEdge == oldEdge {
		t.Fatal("cert new made no new internal certificate on the edge")
	}
	x.h2.waitServerThumb("edge1", newEdge, 20*time.Second)
	t.Logf("the edge's new certificate reached hub2's directory in %v", time.Since(start))
	x.h1.waitEvent(16093, newEdge, 10*time.Second)
	x.fromInternet(t, "bob@contoso.test", "after the edge renewed")
	msgs := x.h2.waitMail("contoso.test", "bob", 2, 30*time.Second)
	var after string
	for _, m := range msgs {
		if strings.Contains(m, "after the edge renewed") {
			after = m
		}
	}
	if _, sender, senderCert, _ := hop(t, after); sender != "edge1" || senderCert != newEdge {
		t.Errorf("after the edge's renewal, the hop from the edge presented %s (%s), want %s", senderCert, sender, newEdge)
	}
	x.toInternet(t, "after the edge renewed")

	// hub1 renews.
	oldHub := x.h1.internal()
	start = time.Now()
	x.h1.e.ok("cert", "new", "--force")
	newHub := x.h1.internal()
	if newHub == oldHub {
		t.Fatal("cert new made no new internal certificate on hub1")
	}
	x.edge.waitServerThumb("hub1", newHub, 20*time.Second)
	t.Logf("hub1's new certificate reached the edge in %v", time.Since(start))
	x.fromInternet(t, "alice@contoso.test", "after hub1 renewed")
	msgs = x.h1.waitMail("contoso.test", "alice", 1, 30*time.Second)
	if _, sender, _, receiverCert := hop(t, msgs[0]); sender != "edge1" || receiverCert != newHub {
		t.Errorf("after hub1's renewal, hub1 presented %s to %s, want %s", receiverCert, sender, newHub)
	}
	x.toInternet(t, "after hub1 renewed")

	for _, h := range []*hub{x.h1, x.h2} {
		if evs := h.events(16091); len(evs) > 0 {
			t.Errorf("%s: EdgeSync failed: %+v", h.name, evs)
		}
	}

	// hub2 renews while EdgeSync cannot reach the edge (its endpoint moved
	// away), and mail goes both ways: hub2 proves itself to the edge with
	// its server credential, and the edge checks hub2's proof. Then the
	// endpoint comes back and EdgeSync brings the certificate.
	var sub []struct{ SyncAddress string }
	x.edge.e.jsonOf(&sub, "edge", "list")
	x.edge.e.ok("edge", "subscribe", "--out", "moved.xml", "--force", "--sync-binding", testpki.FreePort(t))
	time.Sleep(500 * time.Millisecond)
	x.h2.e.ok("cert", "new", "--force")
	newHub2 := x.h2.internal()
	x.fromInternet(t, "bob@contoso.test", "at once after hub2 renewed")
	x.toInternet(t, "at once after hub2 renewed")
	msgs = x.h2.waitMail("contoso.test", "bob", 3, 30*time.Second)
	for _, m := range msgs {
		if strings.Contains(m, "at once after hub2 renewed") {
			if _, sender, _, receiverCert := hop(t, m); sender != "edge1" || receiverCert != newHub2 {
				t.Errorf("hub2 presented %s to %s, want %s", receiverCert, sender, newHub2)
			}
		}
	}
	if th := x.edge.serverThumb("hub2"); th == newHub2 {
		t.Errorf("the edge had hub2's new certificate while its endpoint was away: the credentials were not needed")
	}
	x.edge.e.ok("edge", "subscribe", "--out", "back.xml", "--force", "--sync-binding", sub[0].SyncAddress)
	x.edge.waitServerThumb("hub2", newHub2, 90*time.Second)
	if n := len(x.h1.events(16090)); n != 1 {
		t.Errorf("%d subscriptions imported, want the first one only", n)
	}
	noTrustFailures(t, x.h1, x.h2, x.edge)
}

// hubOutage is how long the hubs stay down in TestEdgeQueuesWhileHubsAreDown
// (the minute).
const hubOutage = time.Minute

// TestEdgeQueuesWhileHubsAreDown: both hubs stopped for a minute while
// mail from the internet keeps coming into the edge: the edge accepts it
// (its recipients are replicated), queues it, and once the hubs are back
// every message is delivered exactly once.
func TestEdgeQueuesWhileHubsAreDown(t *testing.T) {
	x := newEdgeOrg(t)
	x.h1.p.stop()
	x.h2.p.stop()
	stopped := time.Now()
	const n = 20
	for i := range n {
		to := "bob@contoso.test"
		if i%2 == 1 {
			to = "alice@contoso.test"
		}
		x.fromInternet(t, to, fmt.Sprintf("while the hubs are down %02d", i))
	}
	x.edge.e.waitQueue("every message tried once", func(items []queueItem) bool {
		tried := 0
		for _, it := range items {
			for _, r := range it.Recipients {
				if r.Status == "pending" && r.Attempts >= 1 {
					tried++
				}
			}
		}
		return tried == n
	})
	time.Sleep(time.Until(stopped.Add(hubOutage)))
	x.h1.start()
	x.h2.start()
	x.edge.e.ok("queue", "retry")
	x.edge.e.waitQueue("empty", func(items []queueItem) bool { return len(items) == 0 })
	got := append(x.h2.waitMail("contoso.test", "bob", n/2, 30*time.Second), x.h1.waitMail("contoso.test", "alice", n/2, 30*time.Second)...)
	seen := map[string]int{}
	for _, m := range got {
		for i := range n {
			if strings.Contains(m, fmt.Sprintf("Subject: while the hubs are down %02d", i)) {
				seen[fmt.Sprint(i)]++
			}
		}
	}
	if len(got) != n || len(seen) != n {
		t.Fatalf("delivered %d messages, %d distinct, want %d once each: %v", len(got), len(seen), n, seen)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("message %s delivered %d times", k, c)
		}
	}
}

// TestEdgeRebuiltAndRemoved: an edge rebuilt from scratch (a new data
// directory under the same name and address) no longer proves itself;
// the hub's rounds fail with 16091 naming the repair, and mail waits.
// Removing the subscription on the hub takes the edge's server object and
// connectors out of the organisation; on the edge, what was replicated.
func TestEdgeRebuiltAndRemoved(t *testing.T) {
	x := newEdgeOrg(t)
	r := x.rebuildEdge(t)
	var ev eventJSON
	for _, h := range []*hub{x.h1, x.h2} {
		for _, e := range h.events(16091) {
			ev = e
		}
	}
	if ev.Message == "" {
		deadline := time.Now().Add(20 * time.Second)
		for ev.Message == "" && time.Now().Before(deadline) {
			for _, h := range []*hub{x.h1, x.h2} {
				for _, e := range h.events(16091) {
					ev = e
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !strings.Contains(ev.Message, "direct trust") || !strings.Contains(ev.Message, "certrelay edge remove") || !strings.Contains(ev.Message, "subscribe it again") {
		t.Fatalf("16091 for the rebuilt edge: %+v", ev)
	}
	// diagnose (Q9) on the hub that ran the rounds names the fix.
	found := false
	for _, h := range []*hub{x.h1, x.h2} {
		out := h.e.run("", "diagnose").stdout
		if strings.Contains(out, "EdgeSubscriptionStale") {
			found = true
			for _, w := range []string{"certrelay edge remove edge1 --force", "certrelay edge subscribe", "certrelay edge import EdgeSubscription.xml"} {
				if !strings.Contains(out, w) {
					t.Errorf("diagnose on %s lacks %q:\n%s", h.name, w, out)
				}
			}
		}
	}
	if !found {
		t.Errorf("diagnose found no stale subscription on either hub")
	}
	var boxes []struct{ Address string }
	r.e.jsonOf(&boxes, "mailbox", "list")
	if len(boxes) != 0 {
		t.Errorf("the rebuilt edge got recipients from a hub that could not authenticate it: %+v", boxes)
	}

	// Remove the subscription on the hub, and on the (old) edge.
	x.h2.e.ok("edge", "remove", "edge1", "--force")
	if th := x.h1.serverThumb("edge1"); th != "" {
		t.Errorf("edge1 still in the organisation: %s", th)
	}
	out := x.h1.e.ok("connector", "send", "list", "--json")
	if strings.Contains(out, "EdgeSync - edge1") {
		t.Errorf("the edge's connectors are still there: %s", out)
	}
	x.edge.e.ok("edge", "remove", "--force")
	var left []struct{ Address string }
	x.edge.e.jsonOf(&left, "mailbox", "list")
	if len(left) != 0 {
		t.Errorf("replicated recipients left on the edge: %+v", left)
	}
	x.edge.e.ok("domain", "add", "fabrikam.test") // no longer read-only
}

// TestEdgeLeaseTakeover: exactly one hub synchronises the edge; when it
// is killed (SIGKILL, mid-lease), the other takes the lease once it has
// expired and a mailbox added meanwhile reaches the edge.
func TestEdgeLeaseTakeover(t *testing.T) {
	x := newEdgeOrg(t)
	type round struct{ Kind, Hub, Error string }
	var onEdge []round
	x.edge.e.jsonOf(&onEdge, "edge", "status")
	if len(onEdge) != 2 || onEdge[0].Hub != onEdge[1].Hub {
		t.Fatalf("edge status: %+v", onEdge)
	}
	holder, other := x.h1, x.h2
	if onEdge[0].Hub == "hub2" {
		holder, other = x.h2, x.h1
	}
	holder.p.kill()
	killed := time.Now()
	other.e.write("frank.pw", []byte("frank-secret-1\n"))
	other.e.ok("mailbox", "add", "frank@contoso.test", "--password-file", "frank.pw")
	x.edge.waitMailbox("frank@contoso.test", true, 60*time.Second)
	t.Logf("the mailbox reached the edge %v after the holder was killed", time.Since(killed).Round(time.Millisecond))
	x.edge.e.jsonOf(&onEdge, "edge", "status")
	for _, r := range onEdge {
		if r.Kind == "recipients" && r.Hub != other.name {
			t.Errorf("the recipients round after the takeover came from %s, want %s", r.Hub, other.name)
		}
	}
}
