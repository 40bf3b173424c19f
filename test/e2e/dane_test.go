package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"certrelay/internal/testpki"
)

// startSecureDNS serves zone over UDP and TCP on 127.0.0.1 as a
// DNSSEC-validating resolver would: answers for names in signed carry the
// AD bit, others do not.
func startSecureDNS(t *testing.T, zone map[string][]dns.RR, signed map[string]bool) string {
	t.Helper()
	return startSecureDNSAt(t, "127.0.0.1:0", zone, signed)
}

// startSecureDNSAt is startSecureDNS on the address addr.
func startSecureDNSAt(t *testing.T, addr string, zone map[string][]dns.RR, signed map[string]bool) string {
	t.Helper()
	pc, ln := listenUDPAndTCP(t, addr)
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		msg := new(dns.Msg)
		msg.SetReply(r)
		msg.RecursionAvailable = true
		msg.AuthenticatedData = true
		if o := r.IsEdns0(); o != nil {
			msg.SetEdns0(4096, o.Do())
		}
		for _, q := range r.Question {
			name := strings.ToLower(q.Name)
			rrs, found := zone[name]
			if !signed[name] {
				msg.AuthenticatedData = false
			}
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					msg.Answer = append(msg.Answer, rr)
				}
			}
			if !found {
				msg.Rcode = dns.RcodeNameError
			}
		}
		w.WriteMsg(msg)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return pc.LocalAddr().String()
}

// TestDANEOutbound (RFC 7672) with a DNS responder that sets the AD bit
// for the signed names and Postfix as the receiving MTA: mail to a domain
// whose validated MX host publishes a DANE-EE TLSA record matching its
// certificate is delivered, and the trace says DANE applied and which
// record matched; when the record does not match the certificate the
// message waits with the reason and the host never gets it; the same
// mismatching record under an unsigned answer is ignored (the AD bit is
// what makes TLSA usable) and the mail goes opportunistically.
func TestDANEOutbound(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	good := testpki.SelfSigned(t, testpki.Options{CommonName: "mx.match.test", DNSNames: []string{"mx.match.test"}, Key: testpki.ECKey(t)})
	other := testpki.SelfSigned(t, testpki.Options{CommonName: "mx.other.test", DNSNames: []string{"mx.other.test"}, Key: testpki.ECKey(t)})
	pfMatch := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.match.test", Mailboxes: []string{"bob@match.test"}, TLS: true, TLSLeaf: good})
	pfOther := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.other.test", Mailboxes: []string{"bob@mismatch.test", "bob@unsigned.test"}, TLS: true, TLSLeaf: other})
	_, portMatch, _ := net.SplitHostPort(pfMatch.Addr)
	_, portOther, _ := net.SplitHostPort(pfOther.Addr)
	spki := sha256.Sum256(good.Cert.RawSubjectPublicKeyInfo)
	tlsa := "3 1 1 " + hex.EncodeToString(spki[:])
	zone := map[string][]dns.RR{
		"match.test.":                               {mustRR(t, "match.test. 60 IN MX 10 mx.match.test.")},
		"mx.match.test.":                            {mustRR(t, "mx.match.test. 60 IN A 127.0.0.1")},
		"_" + portMatch + "._tcp.mx.match.test.":    {mustRR(t, "_"+portMatch+"._tcp.mx.match.test. 60 IN TLSA "+tlsa)},
		"mismatch.test.":                            {mustRR(t, "mismatch.test. 60 IN MX 10 mx.mismatch.test.")},
		"mx.mismatch.test.":                         {mustRR(t, "mx.mismatch.test. 60 IN A 127.0.0.1")},
		"_" + portOther + "._tcp.mx.mismatch.test.": {mustRR(t, "_"+portOther+"._tcp.mx.mismatch.test. 60 IN TLSA "+tlsa)},
		"unsigned.test.":                            {mustRR(t, "unsigned.test. 60 IN MX 10 mx.unsigned.test.")},
		"mx.unsigned.test.":                         {mustRR(t, "mx.unsigned.test. 60 IN A 127.0.0.1")},
		"_" + portOther + "._tcp.mx.unsigned.test.": {mustRR(t, "_"+portOther+"._tcp.mx.unsigned.test. 60 IN TLSA "+tlsa)},
	}
	signed := map[string]bool{}
	for name := range zone {
		if !strings.Contains(name, "unsigned") {
			signed[name] = true
		}
	}
	e.ok("server", "set", "--dnssec-resolver", startSecureDNS(t, zone, signed))
	e.ok("connector", "send", "add", "Match", "--address-space", "smtp:match.test;1", "--port", portMatch)
	e.ok("connector", "send", "add", "Other", "--address-space", "smtp:mismatch.test;1", "--address-space", "smtp:unsigned.test;1", "--port", portOther)
	m.start()

	m.sendAsAlice(t, "bob@match.test", "DANE match")
	waitMbox(t, pfMatch, "bob@match.test", "Subject: DANE match")
	m.sendAsAlice(t, "bob@unsigned.test", "unsigned TLSA")
	waitMbox(t, pfOther, "bob@unsigned.test", "Subject: unsigned TLSA")
	m.sendAsAlice(t, "bob@mismatch.test", "DANE mismatch")
	items := e.waitQueue("the DANE mismatch deferred", func(items []queueItem) bool {
		return len(items) == 1 && items[0].Recipients[0].Attempts >= 1
	})
	if r := items[0].Recipients[0]; r.Status != "pending" || !strings.HasPrefix(r.LastError, "4.7.5 DANE: the certificate ") ||
		!strings.Contains(r.LastError, "of mx.mismatch.test matches none of its 1 usable TLSA record(s) at _"+portOther+"._tcp.mx.mismatch.test ("+tlsa+")") {
		t.Fatalf("DANE mismatch: %+v", r)
	}
	if box := pfOther.Mailbox("bob@mismatch.test"); box != "" {
		t.Fatalf("the host whose certificate matches no TLSA record got the message:\n%s", box)
	}
	var recs []struct{ Host, Policy, PolicyWhy, Result string }
	e.jsonOf(&recs, "track")
	byHost := map[string]string{}
	for _, r := range recs {
		byHost[r.Host] += r.Policy + ": " + r.PolicyWhy + " → " + r.Result + "\n"
	}
	if got := byHost["mx.match.test:"+portMatch]; !strings.Contains(got, "DANE: the certificate ") || !strings.Contains(got, "matches TLSA "+tlsa+", DNSSEC-validated") || !strings.Contains(got, "→ delivered") {
		t.Errorf("trace of the DANE delivery: %q", got)
	}
	if got := byHost["mx.unsigned.test:"+portOther]; !strings.HasPrefix(got, "opportunistic: ") || !strings.Contains(got, "→ delivered") {
		t.Errorf("trace of the unsigned delivery: %q", got)
	}
	for _, c := range []struct{ domain, policy, why, last string }{
		{"match.test", "DANE", "mx.match.test publishes usable, DNSSEC-validated TLSA records at _" + portMatch + "._tcp.mx.match.test (" + tlsa + ")", "delivered"},
		{"mismatch.test", "DANE", "mx.mismatch.test publishes usable", "deferred: 4.7.5 DANE: the certificate"},
		{"unsigned.test", "opportunistic", "the MX answer for unsigned.test from", "delivered"},
	} {
		var ex explainOut
		e.jsonOf(&ex, "cert", "explain", "--direction", "out", "--domain", c.domain)
		p := ex.DomainPolicy
		if p.Policy != c.policy || !strings.Contains(strings.Join(p.Why, "\n"), c.why) || p.LastAttempt == nil || !strings.HasPrefix(p.LastAttempt.Result, c.last) {
			t.Errorf("cert explain --domain %s: %+v", c.domain, p)
		}
	}

	// RFC 8689 5: a message that says "TLS-Required: No" goes despite
	// the TLSA mismatch, and the trace says why.
	out, code := swaks(t, "--server", m.addr, "--from", "alice@contoso.test", "--to", "bob@mismatch.test", "--tls",
		"--auth", "PLAIN", "--auth-user", "alice@contoso.test", "--auth-password", alicePassword,
		"--header", "Subject: opting out", "--add-header", "TLS-Required: No")
	if code != 0 {
		t.Fatalf("submission: %s", out)
	}
	waitMbox(t, pfOther, "bob@mismatch.test", "Subject: opting out")
	e.jsonOf(&recs, "track")
	if last := recs[len(recs)-1]; last.Result != "delivered" || !strings.Contains(last.PolicyWhy, "TLS-Required: No (RFC 8689), so DANE and MTA-STS were not applied") {
		t.Errorf("trace of the opted-out message: %+v", last)
	}
}

// TestTLSARecordWithPosttlsFinger: the record cert tlsa prints for the
// certificate a receive connector serves is what a DANE client validates.
// posttls-finger (Postfix's DANE implementation) runs in a mount namespace
// whose /etc/resolv.conf names a DNSSEC-answering responder serving the
// printed record: it reports a verified connection matched by DANE-EE;
// with the record of another key it does not. (cert tlsa is issue 18's;
// this test checks what DANE clients make of it.)
func TestTLSARecordWithPosttlsFinger(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	finger := testpki.Tool(t, "posttls-finger")
	unshare := testpki.Tool(t, "unshare")
	var srv struct{ InternalTransportCertificateThumbprint string }
	e.jsonOf(&srv, "server", "show")
	served := srv.InternalTransportCertificateThumbprint
	_, port, _ := net.SplitHostPort(m.addr)
	var recs []struct{ Name, Record string }
	e.jsonOf(&recs, "cert", "tlsa", served)
	if len(recs) != 1 || recs[0].Name != "_"+port+"._tcp.hub.contoso.test" || !strings.HasPrefix(recs[0].Record, "3 1 1 ") {
		t.Fatalf("cert tlsa: %+v", recs)
	}
	printed := recs[0].Name + ". 60 IN TLSA " + recs[0].Record
	m.start()
	if got := servedThumbprint(t, m.addr); got != served {
		t.Fatalf("the connector serves %s, not %s", got, served)
	}
	other := testpki.SelfSigned(t, testpki.Options{CommonName: "hub.contoso.test", Key: testpki.ECKey(t)})
	otherSum := sha256.Sum256(other.Cert.RawSubjectPublicKeyInfo)

	run := func(record string) string {
		t.Helper()
		zone := map[string][]dns.RR{
			"hub.contoso.test.":                    {mustRR(t, "hub.contoso.test. 60 IN A 127.0.0.1")},
			"_" + port + "._tcp.hub.contoso.test.": {mustRR(t, record)},
		}
		signed := map[string]bool{"hub.contoso.test.": true, "_" + port + "._tcp.hub.contoso.test.": true}
		var ip string
		for i := 0; ; i++ {
			ip = fmt.Sprintf("127.0.%d.%d", 10+rand.Intn(200), 2+rand.Intn(250))
			if c, err := net.ListenPacket("udp", ip+":53"); err == nil {
				c.Close()
				break
			} else if i == 20 {
				t.Fatalf("no loopback address has port 53 free (the test runs as root, as CI does): %v", err)
			}
		}
		startSecureDNSAt(t, ip+":53", zone, signed)
		// posttls-finger reads it after giving up root: readable by all.
		resolv := filepath.Join(t.TempDir(), "resolv.conf")
		if err := os.WriteFile(resolv, []byte("nameserver "+ip+"\noptions trust-ad\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfgDir := t.TempDir()
		if err := os.WriteFile(filepath.Join(cfgDir, "main.cf"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(unshare, "-m", "sh", "-c", `mount --bind "$1" /etc/resolv.conf && exec "$2" -c -l dane -t 10 -T 10 "[hub.contoso.test]:$3"`, "sh", resolv, finger, port)
		cmd.Env = append(os.Environ(), "MAIL_CONFIG="+cfgDir)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if out := run(printed); !strings.Contains(out, "Matched DANE EE certificate") || !strings.Contains(out, "Verified TLS connection established") {
		t.Errorf("posttls-finger with the record cert tlsa printed:\n%s", out)
	}
	if out := run(recs[0].Name + ". 60 IN TLSA 3 1 1 " + hex.EncodeToString(otherSum[:])); strings.Contains(out, "Verified TLS connection established") || !strings.Contains(out, "Untrusted TLS connection established") {
		t.Errorf("posttls-finger with another key's record:\n%s", out)
	}
}
