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
)

// requireTLSProg submits a message with MAIL's REQUIRETLS (RFC 8689)
// through Python's smtplib: argv host port user password from to tls
// ("tls" runs STARTTLS first). It prints the EHLO features after TLS and
// the server's answer.
const requireTLSProg = `
import smtplib, ssl, sys
host, port, user, pw, frm, to, mode = sys.argv[1:8]
s = smtplib.SMTP(host, int(port), timeout=30)
s.ehlo("client.contoso.test")
if mode == "tls":
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    s.starttls(context=ctx); s.ehlo("client.contoso.test")
    s.login(user, pw)
print("features:", " ".join(sorted(s.esmtp_features)))
try:
    s.sendmail(frm, [to], "Subject: requiretls to " + to + "\r\n\r\nsecret\r\n", mail_options=["REQUIRETLS"])
    print("accepted")
except smtplib.SMTPSenderRefused as e:
    print("refused", e.smtp_code, e.smtp_error.decode())
s.quit()
`

// TestREQUIRETLS (RFC 8689) with Python's smtplib as the submitting
// client, a partner certrelay authenticated by DANE, and Postfix (which
// lacks REQUIRETLS) behind an unsigned MX: REQUIRETLS is advertised only
// under TLS and refused in plain text (530 5.7.10); a REQUIRETLS message
// reaches the partner over DANE with REQUIRETLS passed on; one for a
// domain no DANE or MTA-STS policy authenticates is returned to the
// sender (5.7.10) and never reaches that host.
func TestREQUIRETLS(t *testing.T) {
	partnerEnv := newEnv(t)
	partner := newMailServer(t, partnerEnv, "mx.partner.test")
	partnerEnv.ok("domain", "add", "partner.test")
	partnerEnv.ok("mailbox", "add", "bob@partner.test", "--password-file", "alice.pw")
	var ps struct{ InternalTransportCertificateThumbprint string }
	partnerEnv.jsonOf(&ps, "server", "show")
	_, pport, _ := net.SplitHostPort(partner.addr)
	var tlsa []struct{ Name, Record string }
	partnerEnv.jsonOf(&tlsa, "cert", "tlsa", ps.InternalTransportCertificateThumbprint)
	partner.start()

	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: "mx.other.test", Mailboxes: []string{"bob@other.test"}, TLS: true})
	_, oport, _ := net.SplitHostPort(pf.Addr)
	zone := map[string][]dns.RR{
		"partner.test.":                        {mustRR(t, "partner.test. 60 IN MX 10 mx.partner.test.")},
		"mx.partner.test.":                     {mustRR(t, "mx.partner.test. 60 IN A 127.0.0.1")},
		"_" + pport + "._tcp.mx.partner.test.": {mustRR(t, tlsa[0].Name+". 60 IN TLSA "+tlsa[0].Record)},
		"other.test.":                          {mustRR(t, "other.test. 60 IN MX 10 mx.other.test.")},
		"mx.other.test.":                       {mustRR(t, "mx.other.test. 60 IN A 127.0.0.1")},
	}
	signed := map[string]bool{"partner.test.": true, "mx.partner.test.": true, "_" + pport + "._tcp.mx.partner.test.": true}

	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	e.ok("server", "set", "--dnssec-resolver", startSecureDNS(t, zone, signed))
	e.ok("connector", "send", "add", "Partner", "--address-space", "smtp:partner.test;1", "--port", pport)
	e.ok("connector", "send", "add", "Other", "--address-space", "smtp:other.test;1", "--port", oport)
	m.start()
	host, port, _ := net.SplitHostPort(m.addr)

	plain := python(t, requireTLSProg, host, port, "alice@contoso.test", alicePassword, "alice@contoso.test", "bob@partner.test", "plain")
	if strings.Contains(plain, "requiretls") || !strings.Contains(plain, "refused 530 5.7.10 REQUIRETLS needs TLS") {
		t.Fatalf("REQUIRETLS in plain text:\n%s", plain)
	}
	out := python(t, requireTLSProg, host, port, "alice@contoso.test", alicePassword, "alice@contoso.test", "bob@partner.test", "tls")
	if !strings.Contains(out, " requiretls") || !strings.Contains(out, "accepted") {
		t.Fatalf("REQUIRETLS under TLS:\n%s", out)
	}
	box := filepath.Join(partnerEnv.data, "mail", "partner.test", "bob", "new")
	var got string
	for i := 0; i < 300 && got == ""; i++ {
		if ents, _ := os.ReadDir(box); len(ents) > 0 {
			b, _ := os.ReadFile(filepath.Join(box, ents[0].Name()))
			got = string(b)
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !strings.Contains(got, "Subject: requiretls to bob@partner.test") {
		t.Fatalf("the partner never got the REQUIRETLS message; queue:\n%s", e.ok("queue", "list"))
	}
	var recs []struct{ Host, Policy, Result string }
	e.jsonOf(&recs, "track")
	if len(recs) == 0 || recs[len(recs)-1].Policy != "DANE" || recs[len(recs)-1].Result != "delivered" {
		t.Errorf("trace: %+v", recs)
	}

	out = python(t, requireTLSProg, host, port, "alice@contoso.test", alicePassword, "alice@contoso.test", "bob@other.test", "tls")
	if !strings.Contains(out, "accepted") {
		t.Fatalf("REQUIRETLS to other.test:\n%s", out)
	}
	dsn := m.waitDelivered(1)[0]
	for _, want := range []string{"Action: failed", "Status: 5.7.10", "REQUIRETLS: no DANE or MTA-STS enforce policy authenticates mx.other.test"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("the DSN lacks %q:\n%s", want, dsn)
		}
	}
	if pf.Mailbox("bob@other.test") != "" || strings.Contains(pf.Log(), "from=<alice@contoso.test>") {
		t.Errorf("the unauthenticated host got the REQUIRETLS message:\n%s", pf.Log())
	}
}
