package e2e

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"certrelay/internal/admin"
)

// The command lines of the seed documents (../shared/seeds/), copied
// verbatim: seed 000 (zh-TW) and 001 (ja) on events 1037/2019, seed 002
// (ru) on event 12014, seed 003 (zh-TW) on certificate use, seed 004 (en,
// zh-CN) on event 12024 — including the slips the documents print: the
// en dash and typographic quotes of 004, the blank in "Get-
// ExchangeCertificate" (003), the three commands run together on one line
// (002), <thumprint> (003). The placeholders are replaced when run.
const (
	seedFlStar       = `Get-ExchangeCertificate | fl *`                                                        // 000, 001
	seedEnableSMTP   = `Enable-ExchangeCertificate -Thumbprint <insert_certificate_thumbprint> -Services:SMTP` // 000, 001
	seed002          = `Get-ExchangeCertificate | FL * Get-ReceiveConnector | FL name, fqdn, objectClass Get-SendConnector | FL name, fqdn, objectClass`
	seedNewSMTP      = `New-ExchangeCertificate -DomainName "server1.fourthcoffee.com", "server1" -Services "SMTP"` // 003
	seedClone        = `Get-ExchangeCertificate <thumbprint> | New-ExchangeCertificate`                             // 003
	seedCloneSvcs    = `Get-ExchangeCertificate <thumbprint> | New-ExchangeCertificate -Services SMTP,POP,IMAP`     // 003
	seedEnableBare   = `Enable-ExchangeCertificate <thumbprint>`                                                    // 003
	seedRequest      = `New-ExchangeCertificate -DomainName popserver.fourthcoffee.com -SubjectName "c=us,o=contoso corp, cn=popserver.fourthcoffee.com" -PrivateKeyExportable:$True -GenerateRequest:$True -Path "C:\CertRequest.req"`
	seedImport       = `Import-ExchangeCertificate -Path "C:\CertificateFile.cer"`                                              // 003
	seedEnablePOP    = `Enable-ExchangeCertificate <thumprint> -Services:"POP"`                                                 // 003
	seedImportEnable = `Import-ExchangeCertificate -Path "C:\CertificateFile.cer" | Enable-ExchangeCertificate -Services:"POP"` // 003
	seedVerify       = `Get- ExchangeCertificate <thumbprint> | fl *`                                                           // 003
	seedPOPSettings  = `Get-POPSettings | fl *`                                                                                 // 003
	seedLevel        = `Get-EventLogLevel -Identity msexchangetransport`                                                        // 004
	seedLevelExpert  = `Get-EventLogLevel -Identity msexchangetransport\* | Set-EventLogLevel -Level Expert`                    // 004
	seedFl           = `Get-ExchangeCertificate |fl`                                                                            // 004
	seedEnableCert   = `Enable-ExchangeCertificate -Thumbprint <thumbprint_of_certificate> -Services SMTP`                      // 004
	seedRestart      = `restart-service msexchangetransport`                                                                    // 004
	seedNew          = `New-ExchangeCertificate`                                                                                // 004
	seedEnableNew    = `Enable-ExchangeCertificate -Thumbprint <thumbprint_of_new_certificate> -Services SMTP`                  // 004 (twice)
	seedRemove       = `Remove-ExchangeCertificate -Thumbprint <thumbprint_of_expiring_certificate>`                            // 004
	seedEvent1       = `Enable-ExchangeCertificate %1 -services SMTP`                                                           // 004, event 12024's text
	seedEvent2       = `New-ExchangeCertificate -DomainName serverfqdn -Services SMTP`                                          // 004, event 12024's text
	seedEdge         = `New-EdgeSubscription –FileName “C:\EdgeSubscription-1.xml”`                                             // 004
)

// sh runs one seed line in certrelay shell -c, with placeholders
// replaced; the line must succeed.
func (e *env) sh(line string, repl ...string) result {
	e.t.Helper()
	line = strings.NewReplacer(repl...).Replace(line)
	r := e.run("", "shell", "-c", line)
	if r.code != 0 {
		e.t.Fatalf("%s: exit %d\n%s\n%s", line, r.code, r.stdout, r.stderr)
	}
	return r
}

// shAnswering runs one seed line read from standard input, with the
// answers to its questions on the lines after it.
func (e *env) shAnswering(line string, answers string, repl ...string) result {
	e.t.Helper()
	line = strings.NewReplacer(repl...).Replace(line)
	r := e.run(line+"\n"+answers+"\n", "shell")
	if r.code != 0 {
		e.t.Fatalf("%s: exit %d\n%s\n%s", line, r.code, r.stdout, r.stderr)
	}
	return r
}

func (e *env) certBySubject(subject string) []certJSON {
	var out []certJSON
	for _, c := range e.list() {
		if c.Subject == subject {
			out = append(out, c)
		}
	}
	return out
}

// TestShellRunsEverySeedCommand: every command line of the seeds runs in
// certrelay shell as written, in the order an administrator would follow
// the documents, and does what the document says — checked through the
// CLI's --json after each.
func TestShellRunsEverySeedCommand(t *testing.T) {
	e := newEnv(t)
	ca := newOpensslCA(e, "ca", "/CN=3rdPartyCAExample.com")
	e.extra = append(e.extra, "CERTRELAY_SYSTEM_ROOTS="+ca.certPath())
	e.ok("setup", "--fqdn", "hub1.fourthcoffee.com")
	srv := e.server()
	first := srv.InternalTransportCertificateThumbprint
	before := e.state()

	// 000/001: Get-ExchangeCertificate | fl * lists every certificate with
	// every property, Services among them; nothing changes.
	r := e.sh(seedFlStar)
	for _, w := range []string{"Thumbprint", first, "Services", "IsSelfSigned", "RootCAType", "PrivateKeyExportable", "CertificateRequest"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("%s lacks %s:\n%s", seedFlStar, w, r.stdout)
		}
	}
	if e.state() != before {
		t.Fatalf("%s changed something", seedFlStar)
	}

	// 003: a self-signed certificate for SMTP.
	e.sh(seedNewSMTP)
	s1 := e.certBySubject("CN=server1.fourthcoffee.com")
	if len(s1) != 1 || strings.Join(s1[0].CertificateDomains, ",") != "server1.fourthcoffee.com,server1" || strings.Join(s1[0].Services, ",") != "SMTP" || !s1[0].IsSelfSigned {
		t.Fatalf("%s: %+v", seedNewSMTP, s1)
	}
	server1 := s1[0].Thumbprint
	// Its clones: same subject and domains, services kept or given.
	e.sh(seedClone, "<thumbprint>", server1)
	e.sh(seedCloneSvcs, "<thumbprint>", server1)
	clones := e.certBySubject("CN=server1.fourthcoffee.com")
	if len(clones) != 3 {
		t.Fatalf("clones: %+v", clones)
	}
	var clone2 string
	for _, c := range clones {
		if strings.Join(c.CertificateDomains, ",") != "server1.fourthcoffee.com,server1" {
			t.Errorf("clone domains %v", c.CertificateDomains)
		}
		if strings.Join(c.Services, ",") == "IMAP,POP,SMTP" {
			clone2 = c.Thumbprint
		}
	}
	if clone2 == "" {
		t.Fatalf("no clone with SMTP,POP,IMAP: %+v", clones)
	}
	// Enable-ExchangeCertificate <thumbprint>: the services are asked for,
	// as PowerShell asks for a mandatory parameter.
	r = e.shAnswering(seedEnableBare, "SMTP", "<thumbprint>", clone2)
	if !strings.Contains(r.stderr, "Supply values for the following parameters") || strings.Join(e.show(clone2).Services, ",") != "IMAP,POP,SMTP" {
		t.Errorf("%s: %s", seedEnableBare, r.stderr)
	}

	// 003: a request for a CA, written to C:\CertRequest.req — a local file.
	r = e.sh(seedRequest)
	if !strings.Contains(r.stderr, "Windows paths are read as local file names") {
		t.Errorf("the Windows path is not explained: %s", r.stderr)
	}
	reqText, err := os.ReadFile(e.path("CertRequest.req"))
	if err != nil {
		t.Fatal(err)
	}
	pending := e.certBySubject("CN=popserver.fourthcoffee.com,O=contoso corp,C=us")
	if len(pending) != 1 || pending[0].Status != "PendingRequest" || !pending[0].PrivateKeyExportable ||
		strings.TrimSpace(pending[0].CertificateRequest) != strings.TrimSpace(string(reqText)) {
		t.Fatalf("%s: %+v", seedRequest, pending)
	}
	// The CA answers; Import-ExchangeCertificate prints the thumbprint.
	ca.sign("CertRequest.req", "CertificateFile.cer", false)
	pop1 := fingerprint(e, e.path("CertificateFile.cer"))
	r = e.sh(seedImport)
	if !strings.Contains(r.stdout, pop1) {
		t.Errorf("%s does not show the thumbprint %s:\n%s", seedImport, pop1, r.stdout)
	}
	if c := e.show(pop1); c.Status != "Valid" || c.RootCAType != "ThirdParty" || c.IsSelfSigned || !c.HasPrivateKey {
		t.Fatalf("imported: %+v", c)
	}
	e.sh(seedEnablePOP, "<thumprint>", pop1)
	if s := strings.Join(e.show(pop1).Services, ","); s != "POP" {
		t.Fatalf("%s: services %s", seedEnablePOP, s)
	}
	// Import … | Enable-ExchangeCertificate, for a second request.
	os.Remove(e.path("CertRequest.req"))
	e.sh(seedRequest)
	ca.sign("CertRequest.req", "CertificateFile.cer", false)
	pop2 := fingerprint(e, e.path("CertificateFile.cer"))
	e.sh(seedImportEnable)
	if s := strings.Join(e.show(pop2).Services, ","); s != "POP" {
		t.Fatalf("%s: services %s", seedImportEnable, s)
	}
	// Get- ExchangeCertificate <thumbprint> | fl * shows what the seed lists.
	r = e.sh(seedVerify, "<thumbprint>", pop2)
	for _, prop := range []string{"AccessRules", "CertificateDomains", "HasPrivateKey", "IsSelfSigned", "Issuer", "NotAfter", "NotBefore", "PublicKeySize", "RootCAType", "SerialNumber", "Services", "Status", "Subject", "Thumbprint"} {
		if !regexp.MustCompile(`(?m)^` + prop + ` +: `).MatchString(r.stdout) {
			t.Errorf("%s lacks %s:\n%s", seedVerify, prop, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "ThirdParty") || !strings.Contains(r.stdout, "CN=3rdPartyCAExample.com") || !strings.Contains(r.stdout, pop2) {
		t.Errorf("%s:\n%s", seedVerify, r.stdout)
	}
	// Get-POPSettings | fl *: POP3's settings come with issue 14; until the
	// registry has the cmdlet, the shell says what provides it.
	r = e.run("", "shell", "-c", seedPOPSettings)
	if admin.LookupCmdlet("Get-POPSettings", nil) != nil {
		if r.code != 0 || !strings.Contains(r.stdout, "X509CertificateName") {
			t.Errorf("%s: %d %s %s", seedPOPSettings, r.code, r.stdout, r.stderr)
		}
	} else if r.code != 1 || !strings.Contains(r.stderr, "not available yet") || !strings.Contains(r.stderr, "issue 14") {
		t.Errorf("%s: %d %s", seedPOPSettings, r.code, r.stderr)
	}

	// 002: three commands the document runs together on one line.
	r = e.sh(seed002)
	if !strings.Contains(r.stdout, "Name : Default "+srv.Name) || !strings.Contains(r.stdout, pop2) || !strings.Contains(r.stderr, "starts a new command") {
		t.Errorf("%s:\n%s\n%s", seed002, r.stdout, r.stderr)
	}

	// 000/001: enable SMTP on a certificate that lacks it; services are only
	// added.
	e.sh(seedEnableSMTP, "<insert_certificate_thumbprint>", pop1)
	if s := strings.Join(e.show(pop1).Services, ","); s != "POP,SMTP" {
		t.Errorf("%s: services %s", seedEnableSMTP, s)
	}

	// 004: logging levels.
	r = e.sh(seedLevel)
	if !strings.Contains(r.stdout, `MSExchangeTransport\SmtpReceive`) {
		t.Errorf("%s:\n%s", seedLevel, r.stdout)
	}
	e.sh(seedLevelExpert)
	var levels []struct{ Identity, EventLevel string }
	e.jsonOf(&levels, "loglevel", "get")
	for _, l := range levels {
		if strings.HasPrefix(l.Identity, "MSExchangeTransport") && l.EventLevel != "Expert" {
			t.Errorf("%s: %s is %s", seedLevelExpert, l.Identity, l.EventLevel)
		}
	}
	if r = e.sh(seedFl); !strings.Contains(r.stdout, first) || !strings.Contains(r.stdout, "Services") {
		t.Errorf("%s:\n%s", seedFl, r.stdout)
	}
	e.sh(seedEnableCert, "<thumbprint_of_certificate>", pop2)
	if s := strings.Join(e.show(pop2).Services, ","); s != "POP,SMTP" {
		t.Errorf("%s: services %s", seedEnableCert, s)
	}
	mid := e.state()
	if r = e.sh(seedRestart); !strings.Contains(r.stdout, "No restart needed") || e.state() != mid {
		t.Errorf("%s: %s", seedRestart, r.stdout)
	}

	// 004: a new internal transport certificate: the question shows both
	// thumbprints; answered yes, it replaces the old one.
	r = e.shAnswering(seedNew, "Y")
	newer := e.server().InternalTransportCertificateThumbprint
	if newer == first || !strings.Contains(r.stderr, first) || !strings.Contains(r.stderr, "[Y] Yes") {
		t.Fatalf("%s: internal %s → %s\n%s", seedNew, first, newer, r.stderr)
	}
	if c := e.show(newer); !strings.Contains(strings.Join(c.CertificateDomains, ","), "hub1.fourthcoffee.com") {
		t.Errorf("new internal certificate: %+v", c)
	}
	e.sh(seedEnableNew, "<thumbprint_of_new_certificate>", newer)
	if c := e.show(newer); !strings.Contains(strings.Join(c.Services, ","), "SMTP") || !c.IsInternalTransportCertificate {
		t.Errorf("%s: %+v", seedEnableNew, c)
	}
	// The default certificate cannot be removed…
	r = e.run(strings.ReplaceAll(seedRemove, "<thumbprint_of_expiring_certificate>", newer)+"\nY\n", "shell")
	if r.code != 1 || !strings.Contains(r.stderr, "Remove-ExchangeCertificate : ") || !strings.Contains(r.stderr, "New-ExchangeCertificate") {
		t.Errorf("removing the internal transport certificate: %d %s", r.code, r.stderr)
	}
	// … the expiring one can, once confirmed.
	r = e.shAnswering(seedRemove, "Y", "<thumbprint_of_expiring_certificate>", first)
	for _, c := range e.list() {
		if c.Thumbprint == first {
			t.Fatalf("%s: still there\n%s", seedRemove, r.stderr)
		}
	}

	// 004, event 12024's text: its two commands.
	e.sh(seedEvent1, "%1", server1)
	r = e.shAnswering(seedEvent2, "N", "serverfqdn", "hub1.fourthcoffee.com")
	if e.server().InternalTransportCertificateThumbprint != newer || len(e.certBySubject("CN=hub1.fourthcoffee.com")) < 1 {
		t.Errorf("%s answered no: the internal certificate changed, or none was made\n%s", seedEvent2, r.stderr)
	}

	// 004: the edge subscription, on an edge (issue 12); on this hub it is
	// refused, naming where it runs.
	r = e.run("", "shell", "-c", seedEdge)
	if r.code != 1 || !strings.Contains(r.stderr, "this server is a hub") {
		t.Errorf("%s on a hub: %d %s", seedEdge, r.code, r.stderr)
	}
	edge := newEnv(t)
	edge.ok("setup", "--name", "edge1", "--fqdn", "edge1.fourthcoffee.com", "--role", "edge")
	r = edge.run("", "shell", "-c", seedEdge)
	if b, err := os.ReadFile(edge.path("EdgeSubscription-1.xml")); r.code != 0 || err != nil || !strings.Contains(string(b), "<EdgeServerFQDN>edge1.fourthcoffee.com</EdgeServerFQDN>") {
		t.Errorf("%s on an edge: %d %s %v", seedEdge, r.code, r.stderr, err)
	}

	// certutil -verify -urlfetch (seed 003 names certutil for PKI tests).
	r = e.run("", "shell", "-c", `certutil -verify -urlfetch C:\CertificateFile.cer`)
	if r.code != 0 || !strings.Contains(r.stdout, "completed successfully") || !strings.Contains(r.stdout, "CN=3rdPartyCAExample.com") {
		t.Errorf("certutil: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// TestShellBadInputChangesNothing: lines written wrongly are refused in
// PowerShell's shape and leave the data directory as it was.
func TestShellBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.ok("setup", "--fqdn", "hub1.fourthcoffee.com")
	it := e.server().InternalTransportCertificateThumbprint
	before := e.state()
	for _, c := range []struct {
		line string
		code int
		want string
	}{
		{`Enable-ExchangeCertificate -Thumbprint ` + it + ` -Services:SMTPX`, 2, "Enable-ExchangeCertificate : Cannot bind parameter 'Services' to the value 'SMTPX'"},
		{`Remove-ExchangeCertificate -Thumbprint ` + it, 1, "cannot be removed"},
		{`New-ExchangeCertificate`, 1, "-Confirm:$false"},
		{`Remove-ExchangeCertificate -Thumbprint ` + it + ` -Confirm:$false`, 1, "Remove-ExchangeCertificate : "},
		{`New-ExchangeCertificate -DomainName "a.b", "" -Services SMTP`, 1, "New-ExchangeCertificate : "},
		{`Import-ExchangeCertificate -Path C:\missing.pfx -Password 'secret'`, 2, "Cannot bind parameter 'Password'"},
		{`New-ExchangeCertificate -WhatIf`, 0, "What if:"},
	} {
		r := e.run("", "shell", "-c", c.line)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: exit %d (want %d)\n%s", c.line, r.code, c.code, r.stderr)
		}
		if after := e.state(); after != before {
			t.Fatalf("%s changed the data directory", c.line)
		}
	}
}
