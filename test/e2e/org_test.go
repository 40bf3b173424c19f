package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"certrelay/internal/testpki"
)

// The organisation: servers joined to one OpenLDAP directory (issue 11).

// org is a slapd with certrelay's schema, and an organisation under
// ou=org of its suffix.
type org struct {
	t      *testing.T
	s      *testpki.Slapd
	base   string
	pwFile string // the bind password, in a file
	work   string
}

func newOrg(t *testing.T) *org {
	t.Helper()
	s := testpki.StartSlapdWith(t, testpki.SlapdOptions{Certrelay: true})
	o := &org{t: t, s: s, base: "ou=org," + s.Suffix, work: t.TempDir()}
	o.addOU("org")
	o.pwFile = filepath.Join(o.work, "bind.pw")
	if err := os.WriteFile(o.pwFile, []byte(s.RootPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *org) addOU(name string) {
	o.s.Add(o.t, "ou="+name+","+o.s.Suffix, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {name}})
}

func (o *org) url() string { return o.s.URL(o.base) }

// hub is one server of the organisation: its env, and its default
// connector's address.
type hub struct {
	e    *env
	name string
	addr string
	p    *proc
}

// join sets a server up in the organisation (not started): name, FQDN
// NAME.org.test, its default connector on a free port.
func (o *org) join(name string, extra ...string) *hub {
	o.t.Helper()
	e := newEnv(o.t)
	args := append([]string{"setup", "--name", name, "--fqdn", name + ".org.test", "--directory", o.url(), "--bind-dn", o.s.RootDN, "--bind-password-file", o.pwFile}, extra...)
	e.ok(args...)
	h := &hub{e: e, name: name, addr: testpki.FreePort(o.t)}
	e.ok("connector", "receive", "set", "Default "+name, "--bindings", h.addr)
	return h
}

func (h *hub) start() *hub {
	h.p = h.e.serve()
	waitPort(h.e.t, h.addr)
	return h
}

func (h *hub) internal() string { return h.e.server().InternalTransportCertificateThumbprint }

// mail returns the messages in a mailbox of this hub.
func (h *hub) mail(domain, user string) []string {
	var out []string
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(h.e.data, "mail", domain, user, sub)
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			b, _ := os.ReadFile(filepath.Join(dir, ent.Name()))
			out = append(out, string(b))
		}
	}
	return out
}

// waitMail waits until a mailbox holds n messages.
func (h *hub) waitMail(domain, user string, n int, limit time.Duration) []string {
	h.e.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := h.mail(domain, user)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			queue := ""
			if h.p != nil {
				queue = h.p.Logs()
			}
			h.e.t.Fatalf("%s: %d messages for %s@%s after %v, want %d\n%s", h.name, len(got), user, domain, limit, n, queue)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// events returns the events with id on a server.
func (h *hub) events(id int) []eventJSON { return h.e.events(strconv.Itoa(id)) }

// waitEvent waits until the server logged an event id whose message
// contains want, and returns it.
func (h *hub) waitEvent(id int, want string, limit time.Duration) eventJSON {
	h.e.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, ev := range h.events(id) {
			if strings.Contains(ev.Message, want) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			h.e.t.Fatalf("%s: no event %d mentioning %q within %v; events %d: %+v", h.name, id, want, limit, id, h.events(id))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type trackJSON struct {
	MessageID, Connector, Host, TLS, PeerThumb, ClientCert, PeerServer, Auth, Result string
}

func (h *hub) track() []trackJSON {
	var recs []trackJSON
	h.e.jsonOf(&recs, "track")
	return recs
}

// receivedOrg returns the Received header's organisation comment of a
// message ("direct trust: hub1 presented …; hub2 presented …").
var orgComment = regexp.MustCompile(`\((direct trust|server credential): (\S+) presented ([0-9A-F]{40})[^;]*; (\S+) presented ([0-9A-F]{40})`)

// ldapConn binds to the org's slapd as its root.
func (o *org) ldap() *ldap.Conn { return o.s.DialRoot(o.t) }

// TestOrgMailCrossesHubs: two hubs on one slapd; mail for a mailbox homed
// on hub2, sent by swaks to hub1, arrives in hub2's Maildir over
// X-AnonymousTLS with direct trust both ways, and the Received header and
// certrelay track show it with both internal certificates' thumbprints.
func TestOrgMailCrossesHubs(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test") // the organisation's, from any server
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw") // homed on hub2
	t1, t2 := h1.internal(), h2.internal()
	if t1 == "" || t2 == "" || t1 == t2 {
		t.Fatalf("internal certificates %q %q", t1, t2)
	}
	var servers []struct {
		Name                                   string
		InternalTransportCertificateThumbprint string
		IsThisServer                           bool
	}
	h1.e.jsonOf(&servers, "server", "list")
	if len(servers) != 2 || servers[0].Name != "hub1" || !servers[0].IsThisServer || servers[1].InternalTransportCertificateThumbprint != t2 {
		t.Fatalf("server list on hub1: %+v", servers)
	}
	h1.start()
	h2.start()

	out, code := swaks(t, "--server", h1.addr, "--from", "carol@example.org", "--to", "bob@contoso.test", "--header", "Subject: across the organisation")
	if code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	msgs := h2.waitMail("contoso.test", "bob", 1, 20*time.Second)
	if len(h1.mail("contoso.test", "bob")) != 0 {
		t.Errorf("hub1 kept a copy of mail homed on hub2")
	}
	m := orgComment.FindStringSubmatch(msgs[0])
	if m == nil || !strings.Contains(msgs[0], "(X-AnonymousTLS version=TLS") {
		t.Fatalf("the Received header shows no X-AnonymousTLS hop:\n%s", msgs[0])
	}
	if m[1] != "direct trust" || m[2] != "hub1" || m[3] != t1 || m[4] != "hub2" || m[5] != t2 {
		t.Errorf("Received header's hop: %q, want direct trust, hub1 %s, hub2 %s", m[0], t1, t2)
	}
	var hop *trackJSON
	for _, r := range h1.track() {
		if r.PeerServer == "hub2" {
			hop = &r
		}
	}
	if hop == nil || !strings.HasPrefix(hop.TLS, "X-AnonymousTLS TLS") || hop.PeerThumb != t2 || hop.ClientCert != t1 || hop.Auth != "direct trust" || hop.Result != "delivered" {
		t.Fatalf("certrelay track on hub1: %+v", hop)
	}
	human := h1.e.ok("track")
	if !strings.Contains(human, "X-AnonymousTLS") || !strings.Contains(human, t2) || !strings.Contains(human, t1) || !strings.Contains(human, "hub2 authenticated by direct trust") {
		t.Errorf("certrelay track for people:\n%s", human)
	}
}
