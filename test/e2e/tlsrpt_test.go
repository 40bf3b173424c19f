package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"certrelay/internal/testpki"
	"certrelay/internal/tlsrpt"
)

// TestTLSReportsBetweenTwoServers (RFC 8460): certrelay delivers to a
// partner certrelay under the partner's MTA-STS testing policy, whose MX
// certificate is not trusted — delivered, and counted as failures; then
// tlsrpt send assembles the day's report and mails it to the rua of the
// partner's _smtp._tls record, through the queue and SMTP; the partner
// recognises it on delivery, stores it, and tlsrpt list there shows who
// sent it and the counts.
func TestTLSReportsBetweenTwoServers(t *testing.T) {
	pe := newEnv(t)
	partner := newMailServer(t, pe, "mx.partner.test")
	pe.ok("domain", "add", "partner.test")
	pe.ok("mailbox", "add", "bob@partner.test", "--password-file", "alice.pw")
	pe.ok("mailbox", "add", "tlsrpt@partner.test", "--password-file", "alice.pw")
	partner.start()
	_, pport, _ := net.SplitHostPort(partner.addr)

	ca := testpki.NewRoot(t, testpki.Options{CommonName: "Web Root CA"})
	ps := startPolicyServer(t, ca, map[string]string{"mta-sts.partner.test": "version: STSv1\r\nmode: testing\r\nmx: mx.partner.test\r\nmax_age: 86400\r\n"})
	zone := map[string][]dns.RR{
		"partner.test.":            {mustRR(t, "partner.test. 60 IN MX 10 mx.partner.test.")},
		"mx.partner.test.":         {mustRR(t, "mx.partner.test. 60 IN A 127.0.0.1")},
		"_mta-sts.partner.test.":   {mustRR(t, `_mta-sts.partner.test. 60 IN TXT "v=STSv1; id=1"`)},
		"mta-sts.partner.test.":    {mustRR(t, "mta-sts.partner.test. 60 IN A "+ps.ip)},
		"_smtp._tls.partner.test.": {mustRR(t, `_smtp._tls.partner.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@partner.test"`)},
	}
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	e.write("web-root.pem", testpki.PEM(ca.Cert))
	e.ok("trust", "add", "web-root.pem")
	e.ok("server", "set", "--dns-resolver", startDNS(t, zone))
	e.ok("connector", "send", "add", "Internet", "--address-space", "*", "--port", pport)
	m.start()
	for _, subj := range []string{"first", "second"} {
		m.sendAsAlice(t, "bob@partner.test", subj)
	}
	box := func(user string) []string {
		var out []string
		dir := filepath.Join(pe.data, "mail", "partner.test", user, "new")
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			b, _ := os.ReadFile(filepath.Join(dir, ent.Name()))
			out = append(out, string(b))
		}
		return out
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for i := 0; i < 300; i++ {
			if ok() {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s; queue:\n%s", what, e.ok("queue", "list"))
	}
	waitFor("both messages at the partner", func() bool { return len(box("bob")) == 2 })

	today := tlsrpt.Day(time.Now())
	var sent []struct {
		Day, Domain  string
		Destinations []string
		Problems     []string
	}
	e.jsonOf(&sent, "tlsrpt", "send", "--day", today, "--domain", "partner.test")
	if len(sent) != 1 || sent[0].Domain != "partner.test" || strings.Join(sent[0].Destinations, ",") != "mailto:tlsrpt@partner.test" || len(sent[0].Problems) != 0 {
		t.Fatalf("tlsrpt send: %+v", sent)
	}
	e.ok("queue", "retry")
	waitFor("the report at the partner", func() bool { return len(box("tlsrpt")) == 1 })
	msg := box("tlsrpt")[0]
	for _, want := range []string{"Subject: Report Domain: partner.test Submitter: hub.contoso.test", "report-type=\"tlsrpt\"", "Content-Type: application/tlsrpt+gzip", "Return-Path: <>"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the report message lacks %q:\n%s", want, msg)
		}
	}
	var got []struct {
		Organization, ReportID string
		Policies               []struct {
			Type, Domain     string
			Success, Failure int64
			Failures         []string
		}
	}
	waitFor("the partner to list the report", func() bool { pe.jsonOf(&got, "tlsrpt", "list"); return len(got) == 1 })
	r := got[0]
	if r.Organization != "hub.contoso.test" || r.ReportID != today+"_partner.test@hub.contoso.test" || len(r.Policies) != 1 {
		t.Fatalf("received report: %+v", r)
	}
	p := r.Policies[0]
	if p.Type != "sts" || p.Domain != "partner.test" || p.Success != 0 || p.Failure != 2 || len(p.Failures) != 1 || !strings.HasPrefix(p.Failures[0], "certificate-not-trusted x2 at mx.partner.test") {
		t.Errorf("received report's policy: %+v", p)
	}
	if out := pe.ok("tlsrpt", "list"); !strings.Contains(out, "sts partner.test: 0 successful, 2 failed certificate-not-trusted x2 at mx.partner.test") {
		t.Errorf("tlsrpt list:\n%s", out)
	}
}
