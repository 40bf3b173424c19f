package e2e

import (
	"crypto/tls"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/mjl-/mox/mtasts"

	"certrelay/internal/testpki"
)

// policyServer is the HTTPS server of mta-sts.DOMAIN hosts: it listens on
// port 443 of a loopback address of its own (the DNS responder points the
// policy hosts there) with a certificate from ca, and serves each domain's
// policy by the Host header.
type policyServer struct {
	ip       string
	mu       sync.Mutex
	policies map[string]string // host → policy text
	fetches  map[string]int
}

func startPolicyServer(t *testing.T, ca *testpki.CA, policies map[string]string) *policyServer {
	t.Helper()
	ps := &policyServer{policies: policies, fetches: map[string]int{}}
	var names []string
	for h := range policies {
		names = append(names, h)
	}
	leaf := ca.Issue(t, testpki.Options{CommonName: names[0], DNSNames: names, Key: testpki.ECKey(t)})
	var ln net.Listener
	var err error
	for i := 0; i < 20; i++ {
		ps.ip = fmt.Sprintf("127.0.%d.%d", 10+rand.Intn(200), 2+rand.Intn(250))
		if ln, err = net.Listen("tcp", ps.ip+":443"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no loopback address has port 443 free (the test runs as root, as CI does): %v", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ps.mu.Lock()
			defer ps.mu.Unlock()
			p, ok := ps.policies[strings.ToLower(r.Host)]
			if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(w, r)
				return
			}
			ps.fetches[strings.ToLower(r.Host)]++
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, p)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}}},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ps
}

// TestMTASTSOutbound (RFC 8461) with a DNS responder serving the MX and
// _mta-sts records, an HTTPS policy server whose CA certrelay trusts, and
// Postfix as the receiving MTA: under an enforce policy, a host whose
// certificate is not valid for its name gets nothing and the message waits
// with the reason; a host with a valid certificate gets it; under a
// testing policy the same bad host gets the message and the trace reports
// what enforce would have refused. The policy is fetched once and cached.
func TestMTASTSOutbound(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "Web Root CA"})
	goodLeaf := ca.Issue(t, testpki.Options{CommonName: "mx.enforce-good.test", DNSNames: []string{"mx.enforce-good.test"}, Key: testpki.ECKey(t)})
	pfBad := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.bad.test", Mailboxes: []string{"bob@enforce-bad.test", "bob@testing.test"}, TLS: true})
	pfGood := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.enforce-good.test", Mailboxes: []string{"bob@enforce-good.test"}, TLS: true, TLSLeaf: goodLeaf})
	ps := startPolicyServer(t, ca, map[string]string{
		"mta-sts.enforce-bad.test":  "version: STSv1\r\nmode: enforce\r\nmx: mx.enforce-bad.test\r\nmax_age: 86400\r\n",
		"mta-sts.testing.test":      "version: STSv1\r\nmode: testing\r\nmx: mx.testing.test\r\nmax_age: 86400\r\n",
		"mta-sts.enforce-good.test": "version: STSv1\r\nmode: enforce\r\nmx: *.enforce-good.test\r\nmax_age: 86400\r\n",
	})
	zone := map[string][]dns.RR{}
	for _, d := range []string{"enforce-bad.test", "testing.test", "enforce-good.test"} {
		zone[d+"."] = []dns.RR{mustRR(t, d+". 60 IN MX 10 mx."+d+".")}
		zone["mx."+d+"."] = []dns.RR{mustRR(t, "mx."+d+". 60 IN A 127.0.0.1")}
		zone["_mta-sts."+d+"."] = []dns.RR{mustRR(t, "_mta-sts."+d+`. 60 IN TXT "v=STSv1; id=20261130"`)}
		zone["mta-sts."+d+"."] = []dns.RR{mustRR(t, "mta-sts."+d+". 60 IN A "+ps.ip)}
	}
	e.write("web-root.pem", testpki.PEM(ca.Cert))
	e.ok("trust", "add", "web-root.pem")
	e.ok("server", "set", "--dns-resolver", startDNS(t, zone))
	_, portBad, _ := net.SplitHostPort(pfBad.Addr)
	_, portGood, _ := net.SplitHostPort(pfGood.Addr)
	e.ok("connector", "send", "add", "Bad", "--address-space", "smtp:enforce-bad.test;1", "--address-space", "smtp:testing.test;1", "--port", portBad)
	e.ok("connector", "send", "add", "Good", "--address-space", "smtp:enforce-good.test;1", "--port", portGood)
	m.start()

	m.sendAsAlice(t, "bob@testing.test", "testing mode")
	waitMbox(t, pfBad, "bob@testing.test", "Subject: testing mode")
	m.sendAsAlice(t, "bob@enforce-good.test", "enforce good")
	waitMbox(t, pfGood, "bob@enforce-good.test", "Subject: enforce good")
	m.sendAsAlice(t, "bob@enforce-bad.test", "enforce bad")
	items := e.waitQueue("the enforce deferral", func(items []queueItem) bool {
		return len(items) == 1 && items[0].Recipients[0].Attempts >= 1
	})
	if r := items[0].Recipients[0]; r.Status != "pending" || !strings.HasPrefix(r.LastError, "4.7.5 MTA-STS: the policy of enforce-bad.test is enforce and the certificate ") ||
		!strings.Contains(r.LastError, "of mx.enforce-bad.test is not valid for it") {
		t.Fatalf("enforce with a bad certificate: %+v", r)
	}
	if box := pfBad.Mailbox("bob@enforce-bad.test"); box != "" {
		t.Fatalf("the host with a bad certificate got mail under an enforce policy:\n%s", box)
	}
	e.ok("queue", "retry")
	e.waitQueue("a second attempt", func(items []queueItem) bool {
		return len(items) == 1 && items[0].Recipients[0].Attempts >= 2
	})
	var recs []struct{ Host, Policy, PolicyWhy, Result string }
	e.jsonOf(&recs, "track")
	byHost := map[string]string{}
	for _, r := range recs {
		byHost[r.Host] += r.Policy + ": " + r.PolicyWhy + " → " + r.Result + "\n"
	}
	if got := byHost["mx.testing.test:"+portBad]; !strings.HasPrefix(got, "MTA-STS testing: mode testing (policy id 20261130 fetched now, cached for max_age 86400s): the certificate of mx.testing.test is not valid for it") ||
		!strings.Contains(got, "which enforce would refuse; delivered anyway → delivered") {
		t.Errorf("trace of the testing delivery: %q", got)
	}
	if got := byHost["mx.enforce-good.test:"+portGood]; !strings.HasPrefix(got, "MTA-STS: mode enforce (policy id 20261130 fetched now") || !strings.Contains(got, "is a listed MX host and its certificate") || !strings.Contains(got, "→ delivered") {
		t.Errorf("trace of the enforce delivery: %q", got)
	}
	if got := byHost["mx.enforce-bad.test:"+portBad]; strings.Count(got, "MTA-STS: mode enforce") != 2 || !strings.Contains(got, "(cached policy id 20261130") {
		t.Errorf("trace of the enforce deferrals (the second from the cache): %q", got)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if n := ps.fetches["mta-sts.enforce-bad.test"]; n != 1 {
		t.Errorf("the enforce-bad.test policy was fetched %d times, want once (cached for max_age)", n)
	}
	ps.mu.Unlock()
	for _, c := range []struct{ domain, policy, why, last string }{
		{"enforce-bad.test", "MTA-STS", "MTA-STS: mode enforce, MX hosts mx.enforce-bad.test (policy id 20261130", "deferred: 4.7.5 MTA-STS"},
		{"testing.test", "MTA-STS testing", "MTA-STS: mode testing", "delivered"},
	} {
		var ex explainOut
		e.jsonOf(&ex, "cert", "explain", "--direction", "out", "--domain", c.domain)
		p := ex.DomainPolicy
		if p.Policy != c.policy || !strings.Contains(strings.Join(p.Why, "\n"), c.why) || p.LastAttempt == nil || !strings.HasPrefix(p.LastAttempt.Result, c.last) {
			t.Errorf("cert explain --domain %s: %+v", c.domain, p)
		}
	}
	ps.mu.Lock()
}

// TestMTASTSPolicyPublished: mtasts set publishes a policy for the
// accepted domains; curl fetches it from https://mta-sts.DOMAIN/ on the
// HTTPS listener, which presents the certificate enabled for IIS that
// holds mta-sts.DOMAIN (checked by curl against that certificate), and the
// text parses back in certrelay's own MTA-STS reader with the mode and MX
// hosts set. Another host name gets 404, and bad input changes nothing.
func TestMTASTSPolicyPublished(t *testing.T) {
	e := newEnv(t)
	newMailServer(t, e, "hub.contoso.test")
	curl := testpki.Tool(t, "curl")
	addr := testpki.FreePort(t)
	e.ok("console", "set", "--bindings", addr)
	th := mustThumbprint(t, e.ok("cert", "new", "--domain", "mta-sts.contoso.test", "--services", "IIS", "--force"))
	e.ok("cert", "export", th, "--out", "sts.pem")
	before := e.ok("mtasts", "show", "--json")
	if r := e.run("", "mtasts", "set", "--mode", "enforcing", "--mx", "mx1.contoso.test"); r.code != 1 || !strings.Contains(r.stderr, `"enforcing" is not an MTA-STS mode`) {
		t.Fatalf("bad mode: %+v", r)
	}
	if r := e.run("", "mtasts", "set", "--mode", "enforce"); r.code != 1 || !strings.Contains(r.stderr, "needs at least one MX host") {
		t.Fatalf("enforce without MX: %+v", r)
	}
	if after := e.ok("mtasts", "show", "--json"); after != before {
		t.Fatalf("refused input changed the policy:\n%s\n%s", before, after)
	}
	var p struct {
		ID      string
		Policy  string
		Records []string
	}
	e.jsonOf(&p, "mtasts", "set", "--mode", "enforce", "--mx", "mx1.contoso.test", "--mx", "*.backup.contoso.test", "--max-age", "86400")
	if len(p.Records) != 1 || p.Records[0] != `_mta-sts.contoso.test. IN TXT "v=STSv1; id=`+p.ID+`"` {
		t.Fatalf("records: %+v", p)
	}
	e.serve()
	_, port, _ := net.SplitHostPort(addr)
	fetch := func(host string) (string, error) {
		out, err := exec.Command(curl, "-sS", "--fail", "--max-time", "10", "--cacert", e.path("sts.pem"),
			"--resolve", host+":"+port+":127.0.0.1", "https://"+host+":"+port+"/.well-known/mta-sts.txt").CombinedOutput()
		return string(out), err
	}
	var body string
	for i := 0; i < 100; i++ {
		var err error
		if body, err = fetch("mta-sts.contoso.test"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if body != p.Policy {
		t.Fatalf("served %q, want %q", body, p.Policy)
	}
	pol, err := mtasts.ParsePolicy(body)
	if err != nil || pol.Mode != mtasts.ModeEnforce || pol.MaxAgeSeconds != 86400 || len(pol.MX) != 2 || !pol.MX[1].Wildcard {
		t.Fatalf("parsed back: %+v, %v", pol, err)
	}
	out, err := exec.Command(curl, "-sS", "--fail", "--max-time", "10", "--cacert", e.path("sts.pem"), "-H", "Host: mta-sts.other.test",
		"--resolve", "mta-sts.contoso.test:"+port+":127.0.0.1", "https://mta-sts.contoso.test:"+port+"/.well-known/mta-sts.txt").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "404") {
		t.Errorf("a host that is not an accepted domain's got: %v %s", err, out)
	}
}
