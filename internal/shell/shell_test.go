package shell

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/testpki"
)

var ctx = context.Background()

// answers is an Asker that answers from a list and records the prompts.
type answers struct {
	lines   []string
	prompts []string
}

func (a *answers) Line(p string) (string, error) {
	a.prompts = append(a.prompts, p)
	if len(a.lines) == 0 {
		return "", errors.New("no more answers")
	}
	l := a.lines[0]
	a.lines = a.lines[1:]
	return l, nil
}

func (a *answers) Secret(p string) (string, error) { return a.Line(p) }

type testShell struct {
	*Shell
	t        *testing.T
	out, err bytes.Buffer
}

func newShell(t *testing.T) *testShell {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("CERTRELAY_SYSTEM_ROOTS", filepath.Join(dir, "none.pem"))
	a, err := admin.Open(ctx, admin.Options{DataDir: filepath.Join(dir, "data"), Hostname: func() (string, error) { return "hub1", nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Setup(ctx, admin.SetupOptions{Fqdn: "hub1.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	ts := &testShell{t: t}
	ts.Shell = &Shell{Admin: a, Caller: admin.Caller{Name: "test", Role: admin.OrgAdmin}, Out: &ts.out, Err: &ts.err, Dir: work}
	return ts
}

// run runs a line and returns its output and error text.
func (ts *testShell) run(line string) (string, string, error) {
	ts.t.Helper()
	ts.out.Reset()
	ts.err.Reset()
	err := ts.Run(ctx, line)
	return ts.out.String(), ts.err.String(), err
}

func (ts *testShell) ok(line string) string {
	ts.t.Helper()
	out, errText, err := ts.run(line)
	if err != nil {
		ts.t.Fatalf("%s: %v\n%s", line, err, errText)
	}
	return out
}

func (ts *testShell) certs() []admin.Certificate {
	ts.t.Helper()
	list, err := ts.Admin.ListCertificates(ctx, admin.ListOptions{})
	if err != nil {
		ts.t.Fatal(err)
	}
	return list
}

func (ts *testShell) internal() string {
	srv, err := ts.Admin.LocalServer(ctx)
	if err != nil {
		ts.t.Fatal(err)
	}
	return srv.InternalTransportCertificateThumbprint
}

// state is what a command that must change nothing leaves alone.
func (ts *testShell) state() string {
	ts.t.Helper()
	b, _ := json.Marshal(ts.certs())
	keys, _ := os.ReadDir(filepath.Join(ts.Admin.DataDir(), "keys"))
	var names []string
	for _, k := range keys {
		names = append(names, k.Name())
	}
	lv, _ := ts.Admin.EventLevels(ctx, "")
	l, _ := json.Marshal(lv)
	return string(b) + strings.Join(names, ",") + string(l) + ts.internal()
}

// TestPipelinesPassObjects: the pipelines of the seeds pass objects —
// a certificate into its clone, an import's result into Enable, event
// levels into Set-EventLogLevel — and Where-Object, Select-Object and
// ConvertTo-Json work on them.
func TestPipelinesPassObjects(t *testing.T) {
	ts := newShell(t)
	ts.ok(`New-ExchangeCertificate -DomainName "server1.contoso.com", "server1" -Services "SMTP" -Confirm:$false`)
	var self admin.Certificate
	for _, c := range ts.certs() {
		if c.Subject == "CN=server1.contoso.com" {
			self = c
		}
	}
	if self.Thumbprint == "" || strings.Join(self.CertificateDomains, ",") != "server1.contoso.com,server1" {
		t.Fatalf("new certificate: %+v", ts.certs())
	}
	// Clone (M2): same subject and domains, the services of the old one.
	n := len(ts.certs())
	ts.ok(`Get-ExchangeCertificate ` + self.Thumbprint + ` | New-ExchangeCertificate -Confirm:$false`)
	ts.ok(`Get-ExchangeCertificate ` + self.Thumbprint + ` | New-ExchangeCertificate -Services SMTP,POP,IMAP -Confirm:$false`)
	clones := 0
	for _, c := range ts.certs() {
		if c.Subject == self.Subject && c.Thumbprint != self.Thumbprint {
			clones++
			if s := strings.Join(c.Services, ","); s != "SMTP" && s != "IMAP,POP,SMTP" {
				t.Errorf("clone services %s", s)
			}
		}
	}
	if clones != 2 || len(ts.certs()) != n+2 {
		t.Fatalf("clones: %d", clones)
	}

	// Import … | Enable-ExchangeCertificate -Services:"POP".
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "Shell CA"})
	leaf := ca.Issue(t, testpki.Options{CommonName: "pop.contoso.com", DNSNames: []string{"pop.contoso.com"}})
	pfx, err := certinfo.EncodePKCS12(leaf.Key, leaf.Cert, nil, "secret pw", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, ts.Dir, "pop.pfx", pfx)
	testpki.WriteFile(t, ts.Dir, "pw.txt", []byte("secret pw\n"))
	ts.ok(`Import-ExchangeCertificate -Path C:\pop.pfx -Password (Get-Content C:\pw.txt | ConvertTo-SecureString -AsPlainText -Force) | Enable-ExchangeCertificate -Services:"POP"`)
	thumb := certinfo.Thumbprint(leaf.Cert.Raw)
	var imported admin.Certificate
	for _, c := range ts.certs() {
		if c.Thumbprint == thumb {
			imported = c
		}
	}
	if strings.Join(imported.Services, ",") != "POP" {
		t.Fatalf("imported and enabled: %+v", imported)
	}
	if strings.Count(ts.err.String(), "Windows paths are read as local file names") != 1 {
		t.Errorf("the Windows path note is not said exactly once: %s", ts.err.String())
	}

	// Event levels through the pipe.
	ts.ok(`Get-EventLogLevel -Identity msexchangetransport\* | Set-EventLogLevel -Level Expert`)
	lv, _ := ts.Admin.EventLevels(ctx, `MSExchangeTransport\*`)
	for _, l := range lv {
		if l.EventLevel != "Expert" {
			t.Errorf("%s at %s", l.Identity, l.EventLevel)
		}
	}
	if len(lv) == 0 {
		t.Fatal("no levels")
	}

	// Where-Object, both forms; Select-Object; ConvertTo-Json.
	smtp := 0
	for _, c := range ts.certs() {
		if strings.Contains(strings.Join(c.Services, ","), "SMTP") {
			smtp++
		}
	}
	for _, line := range []string{
		`Get-ExchangeCertificate | Where-Object { $_.Services -match 'SMTP' } | Select-Object -ExpandProperty Thumbprint`,
		`Get-ExchangeCertificate | where Services -contains smtp | select -expand Thumbprint`,
		`Get-ExchangeCertificate | ? { $_.Services -eq 'SMTP' -and $_.Status -eq 'Valid' } | Select-Object -ExpandProperty Thumbprint`,
	} {
		if got := strings.Count(ts.ok(line), "\n"); got != smtp {
			t.Errorf("%s: %d lines, want %d", line, got, smtp)
		}
	}
	if got := ts.ok(`Get-ExchangeCertificate | ? { -not $_.IsSelfSigned } | select -First 1 -ExpandProperty Thumbprint`); strings.TrimSpace(got) != thumb {
		t.Errorf("the CA-issued certificate: %q", got)
	}
	var fromShell []admin.Certificate
	if err := json.Unmarshal([]byte(ts.ok(`Get-ExchangeCertificate | ConvertTo-Json`)), &fromShell); err != nil || len(fromShell) != len(ts.certs()) {
		t.Errorf("ConvertTo-Json: %v, %d certificates", err, len(fromShell))
	}
	if out := ts.ok(`Get-ExchangeCertificate | ? { $_.Subject -eq 'nothing' } | ConvertTo-Json`); strings.TrimSpace(out) != "[]" {
		t.Errorf("an empty list as JSON: %q", out)
	}
	// The default view and Format-List: * shows every property.
	if out := ts.ok(`Get-ExchangeCertificate ` + thumb); !strings.HasPrefix(out, "Thumbprint") || !strings.Contains(out, thumb) {
		t.Errorf("default table: %s", out)
	}
	short, all := ts.ok(`Get-ExchangeCertificate `+thumb+` | fl`), ts.ok(`Get-ExchangeCertificate `+thumb+` | fl *`)
	if strings.Contains(short, "PrivateKeyExportable") || !strings.Contains(all, "PrivateKeyExportable") || !strings.Contains(short, "RootCAType") {
		t.Errorf("fl:\n%s\nfl *:\n%s", short, all)
	}
	if out := ts.ok(`Get-ExchangeCertificate ` + thumb + ` | Format-List subject, *domains`); out != "Subject            : CN=pop.contoso.com\nCertificateDomains : {pop.contoso.com}\n" {
		t.Errorf("fl with names: %q", out)
	}
}

// TestWhatIfAndConfirm: -WhatIf changes nothing and says what would
// happen; a question is asked as PowerShell asks it, answered by
// -Confirm:$false, and refused without anyone to ask.
func TestWhatIfAndConfirm(t *testing.T) {
	ts := newShell(t)
	ts.ok(`New-ExchangeCertificate -DomainName mail.contoso.com -Services POP`)
	var mail string
	for _, c := range ts.certs() {
		if c.Subject == "CN=mail.contoso.com" {
			mail = c.Thumbprint
		}
	}
	before := ts.state()
	for _, line := range []string{
		`Remove-ExchangeCertificate -Thumbprint ` + mail + ` -WhatIf`,
		`New-ExchangeCertificate -WhatIf`,
		`Enable-ExchangeCertificate ` + mail + ` -Services SMTP,IIS -WhatIf`,
		`Get-EventLogLevel | Set-EventLogLevel -Level Expert -WhatIf`,
		`New-ExchangeCertificate -GenerateRequest -DomainName x.contoso.com -Path C:\x.req -WhatIf`,
	} {
		_, errText, err := ts.run(line)
		if err != nil || !strings.Contains(errText, "What if:") {
			t.Errorf("%s: %v %s", line, err, errText)
		}
		if after := ts.state(); after != before {
			t.Fatalf("%s changed something", line)
		}
	}
	if _, err := os.Stat(filepath.Join(ts.Dir, "x.req")); err == nil {
		t.Error("-WhatIf wrote the request file")
	}
	// The question of M1 names both certificates; without anyone to ask,
	// the command fails and names -Confirm:$false.
	_, errText, err := ts.run(`New-ExchangeCertificate`)
	if err == nil || !strings.Contains(errText, "-Confirm:$false") || ts.state() != before {
		t.Fatalf("no one to ask: %v %s", err, errText)
	}
	ans := &answers{lines: []string{"n"}}
	ts.Ask = ans
	ts.ok(`Remove-ExchangeCertificate -Thumbprint ` + mail)
	if len(ans.prompts) != 1 || !strings.Contains(ans.prompts[0], "[Y] Yes  [A] Yes to All  [N] No") || ts.state() != before {
		t.Fatalf("answered no: %q", ans.prompts)
	}
	ans.lines = []string{"y"}
	ts.ok(`Remove-ExchangeCertificate -Thumbprint ` + mail)
	for _, c := range ts.certs() {
		if c.Thumbprint == mail {
			t.Fatal("answered yes: still there")
		}
	}
	// New-ExchangeCertificate with no argument asks to replace the internal
	// transport certificate; answered yes, it does.
	old := ts.internal()
	ans.lines, ans.prompts = []string{"Y"}, nil
	ts.ok(`New-ExchangeCertificate`)
	if ts.internal() == old || len(ans.prompts) != 1 || !strings.Contains(ans.prompts[0], old) {
		t.Errorf("M1 question: %q; internal %s → %s", ans.prompts, old, ts.internal())
	}
	// -Confirm asks even where the operation would not.
	ans.lines, ans.prompts = []string{"n"}, nil
	ts.ok(`Set-EventLogLevel MSExchangeTransport\SmtpReceive -Level High -Confirm`)
	if len(ans.prompts) != 1 || !strings.Contains(ans.prompts[0], "Set-EventLogLevel") {
		t.Errorf("-Confirm: %q", ans.prompts)
	}
	// Over a pipeline, "No to All" and "Yes to All" answer the rest.
	ts.ok(`New-ExchangeCertificate -DomainName d1.contoso.com -Services POP; New-ExchangeCertificate -DomainName d2.contoso.com -Services POP; New-ExchangeCertificate -DomainName d3.contoso.com -Services POP`)
	count := func() int {
		n := 0
		for _, c := range ts.certs() {
			if strings.HasPrefix(c.Subject, "CN=d") {
				n++
			}
		}
		return n
	}
	removeAll := `Get-ExchangeCertificate | ? { $_.Subject -like 'CN=d?.contoso.com' } | Remove-ExchangeCertificate`
	ans.lines, ans.prompts = []string{"L"}, nil
	ts.ok(removeAll)
	if count() != 3 || len(ans.prompts) != 1 {
		t.Errorf("No to All: %d left, %d questions", count(), len(ans.prompts))
	}
	ans.lines, ans.prompts = []string{"n", "A"}, nil
	ts.ok(removeAll)
	if count() != 1 || len(ans.prompts) != 2 {
		t.Errorf("No, then Yes to All: %d left, %d questions", count(), len(ans.prompts))
	}
	// A mandatory parameter left out is asked for.
	ans.lines, ans.prompts = []string{"SMTP"}, nil
	ts.ok(`Enable-ExchangeCertificate ` + ts.internal())
	if len(ans.prompts) != 1 || !strings.HasPrefix(ans.prompts[0], "Services") {
		t.Errorf("mandatory parameter: %q", ans.prompts)
	}
}

// TestErrorsInPowerShellShape: a line written wrongly, or refused, is
// reported as "Cmdlet : message" naming the parameter and the value,
// with the place, and changes nothing.
func TestErrorsInPowerShellShape(t *testing.T) {
	ts := newShell(t)
	it := ts.internal()
	before := ts.state()
	for _, c := range []struct {
		name, line string
		usage      bool
		want       []string
	}{
		{"bind/bad-service", `Enable-ExchangeCertificate -Thumbprint ` + it + ` -Services:SMTPX`, true,
			[]string{"Enable-ExchangeCertificate : Cannot bind parameter 'Services' to the value 'SMTPX'", "use SMTP, POP, IMAP, UM or IIS", "At line:1 char:81", "~"}},
		{"bind/unknown-parameter", `Get-ExchangeCertificate -Bogus 1`, true, []string{"Get-ExchangeCertificate : A parameter cannot be found that matches parameter name 'Bogus'"}},
		{"bind/ambiguous-prefix", `New-ExchangeCertificate -S x`, true, []string{"parameter name 'S' is ambiguous", "-SubjectName", "-Services"}},
		{"bind/missing-argument", `Get-ExchangeCertificate -DomainName`, true, []string{"Missing an argument for parameter 'DomainName'"}},
		{"bind/missing-mandatory", `Enable-ExchangeCertificate ` + it, true, []string{"missing mandatory parameters: Services"}},
		{"bind/extra-positional", `Remove-ExchangeCertificate ` + it + ` extra -Confirm:$false`, true, []string{"A positional parameter cannot be found that accepts argument 'extra'"}},
		{"bind/twice", `Get-ExchangeCertificate -DomainName a -DomainName b`, true, []string{"specified more than once"}},
		{"refused/request-with-services", `New-ExchangeCertificate -GenerateRequest -Services SMTP -DomainName a.b`, false, []string{"Services"}},
		{"bind/literal-password", `Import-ExchangeCertificate -Path x.pfx -Password 'P@ssw0rd'`, true, []string{"Cannot bind parameter 'Password'", "history"}},
		{"bind/plain-securestring", `Import-ExchangeCertificate -Path x.pfx -Password (ConvertTo-SecureString -String 'P@ss' -AsPlainText -Force)`, true, []string{"ConvertTo-SecureString : Cannot bind parameter 'String'"}},
		{"command/unknown", `Get-ExchangeCertificat`, true, []string{"The term 'Get-ExchangeCertificat' is not recognized", "Did you mean Get-ExchangeCertificate?"}},
		{"command/not-yet", `Get-UMServer | fl *`, false, []string{"Get-UMServer : not available yet", "Get-UMService"}},
		{"refused/edge-subscription-on-a-hub", `New-EdgeSubscription –FileName “C:\EdgeSubscription-1.xml”`, false, []string{"New-EdgeSubscription : ", "this server is a hub", "on the edge"}},
		{"refused/remove-internal", `Remove-ExchangeCertificate -Thumbprint ` + it + ` -Confirm:$false`, false, []string{"Remove-ExchangeCertificate : ", "New-ExchangeCertificate"}},
		{"refused/not-found", `Get-ExchangeCertificate ` + strings.Repeat("AB", 20), false, []string{"Get-ExchangeCertificate : ", "Get-ExchangeCertificate"}},
		{"refused/restart-other", `restart-service spooler`, false, []string{"Cannot find any service with service name 'spooler'"}},
		{"parse/unclosed-quote", `Enable-ExchangeCertificate -Services "SMTP`, true, []string{"ParserError: ", "closing quote", "At line:1 char:38"}},
		{"parse/empty-pipe", `Get-ExchangeCertificate | | fl`, true, []string{"ParserError: ", "empty pipe element"}},
		{"where/bad", `Get-ExchangeCertificate | Where-Object Services -bogus SMTP`, true, []string{"Where-Object : A parameter cannot be found that matches parameter name 'bogus'"}},
		{"file/missing", `Import-ExchangeCertificate -Path C:\nothing.cer`, false, []string{"Import-ExchangeCertificate : Cannot read the file 'C:\\nothing.cer'"}},
		{"stop/after-failure", `Get-Bogus; New-ExchangeCertificate -DomainName x.y -Services POP`, true, []string{"(stopped: 1 more command(s)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errText, err := ts.run(c.line)
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("%s: %v, want a failure\n%s", c.line, err, errText)
			}
			if f.Usage != c.usage {
				t.Errorf("usage error: %v, want %v", f.Usage, c.usage)
			}
			for _, w := range c.want {
				if !strings.Contains(errText, w) {
					t.Errorf("%s:\n%s\nlacks %q", c.line, errText, w)
				}
			}
			if strings.Contains(errText, "--") || strings.Contains(errText, "certrelay cert") {
				t.Errorf("the error names the CLI's flags or commands:\n%s", errText)
			}
			if after := ts.state(); after != before {
				t.Errorf("%s changed something", c.line)
			}
		})
	}
}

// TestSecretsNeverKept: a line that writes a password is refused and
// would not be kept in the history; passwords from a prompt or a file
// are.
func TestSecretsNeverKept(t *testing.T) {
	for _, c := range []struct {
		line   string
		secret bool
	}{
		{`Import-ExchangeCertificate -Path a.pfx -Password 'x'`, true},
		{`Import-ExchangeCertificate -Path a.pfx -Password:"x"`, true},
		{`Import-ExchangeCertificate -Path a.pfx -Pass x`, true},
		{`Import-ExchangeCertificate -Path a.pfx -Password (ConvertTo-SecureString 'x' -AsPlainText -Force)`, true},
		{`$p = 1`, false},
		{`Import-ExchangeCertificate -Path a.pfx -Password (Get-Credential).password`, false},
		{`Import-ExchangeCertificate -Path a.pfx -Password (Get-Content pw.txt | ConvertTo-SecureString -AsPlainText -Force)`, false},
		{`Get-ExchangeCertificate | fl *`, false},
	} {
		sc, err := Parse(c.line)
		if err != nil {
			if c.secret {
				t.Errorf("%s: %v", c.line, err)
			}
			continue
		}
		if hasSecret(sc) != c.secret {
			t.Errorf("%s: secret %v, want %v", c.line, !c.secret, c.secret)
		}
	}
	// Get-Credential asks, without echo, through the asker.
	ts := newShell(t)
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "CA"})
	leaf := ca.Issue(t, testpki.Options{CommonName: "imap.contoso.com", DNSNames: []string{"imap.contoso.com"}})
	pfx, _ := certinfo.EncodePKCS12(leaf.Key, leaf.Cert, nil, "pw 2", rand.Reader)
	testpki.WriteFile(t, ts.Dir, "imap.pfx", pfx)
	ans := &answers{lines: []string{"pw 2"}}
	ts.Ask = ans
	out := ts.ok(`Import-ExchangeCertificate -Path imap.pfx -Password:(Get-Credential).password`)
	if !strings.Contains(out, certinfo.Thumbprint(leaf.Cert.Raw)) || len(ans.prompts) != 1 || !strings.Contains(ans.prompts[0], "Password") {
		t.Errorf("Get-Credential: %q %q", out, ans.prompts)
	}
	if strings.Contains(ts.out.String()+ts.err.String(), "pw 2") {
		t.Error("the password was written out")
	}
}

// TestHelpAndCommands: Get-Help and Get-Command come from the registry:
// every cmdlet is listed and has its help; restart-service and certutil
// are there.
func TestHelpAndCommands(t *testing.T) {
	ts := newShell(t)
	list := ts.ok(`Get-Command`)
	for _, op := range admin.Operations() {
		if !strings.Contains(list, op.Cmdlet) {
			t.Errorf("Get-Command lacks %s", op.Cmdlet)
		}
		help := ts.ok(`Get-Help ` + op.Cmdlet + ` -Full`)
		if !strings.Contains(help, "SYNTAX") || !strings.Contains(help, op.Cmdlet) {
			t.Errorf("Get-Help %s:\n%s", op.Cmdlet, help)
		}
		for _, p := range op.Params {
			if !p.Hidden && !strings.Contains(help, "-"+p.Name) {
				t.Errorf("Get-Help %s -Full lacks -%s", op.Cmdlet, p.Name)
			}
		}
	}
	for _, n := range []string{"Restart-Service", "certutil", "Where-Object", "Format-List", "ConvertTo-Json"} {
		if !strings.Contains(list, n) {
			t.Errorf("Get-Command lacks %s", n)
		}
	}
	if out := ts.ok(`Get-Command *ExchangeCertificate`); strings.Contains(out, "ReceiveConnector") || !strings.Contains(out, "Enable-ExchangeCertificate") {
		t.Errorf("Get-Command *ExchangeCertificate:\n%s", out)
	}
	if out := ts.ok(`help Enable-ExchangeCertificate -Parameter Services`); !strings.Contains(out, "-Services <services>") || !strings.Contains(out, "Required") {
		t.Errorf("help -Parameter:\n%s", out)
	}
	if out := ts.ok(`Remove-ExchangeCertificate -?`); !strings.Contains(out, "Remove-ExchangeCertificate [-Thumbprint] <string>") {
		t.Errorf("-?:\n%s", out)
	}
	if out := ts.ok(`Get-ExchangeCertificate | ft Services`); !strings.Contains(out, "\nSMTP\n") {
		t.Errorf("Services as Exchange shows them:\n%s", out)
	}
	if out := ts.ok(`restart-service msexchangetransport`); !strings.Contains(out, "No restart needed") {
		t.Errorf("restart-service: %s", out)
	}
}

// TestCompletion: Tab completes cmdlets, parameters (by the registry),
// parameter values and thumbprints.
func TestCompletion(t *testing.T) {
	ts := newShell(t)
	c := &completer{s: ts.Shell, ctx: ctx}
	it := ts.internal()
	for _, tc := range []struct {
		before string
		want   []string
	}{
		{"Get-ExchangeCert", []string{"Get-ExchangeCertificate "}},
		{"get-exchangecert", []string{"Get-ExchangeCertificate "}},
		{"Get-ExchangeCertificate | fo", []string{"Format-List ", "Format-Table "}},
		{"Enable-ExchangeCertificate -Serv", []string{"-Services "}},
		{"Enable-ExchangeCertificate –serv", []string{"–services "}},
		{"Enable-ExchangeCertificate -Thumbprint x -Services SM", []string{"SMTP"}},
		{"Enable-ExchangeCertificate -Thumbprint x -Services SMTP,PO", []string{"POP"}},
		{"Enable-ExchangeCertificate -Thumbprint " + it[:6], []string{it + " "}},
		{"Get-ExchangeCertificate " + it[:4], []string{it + " "}},
		{"New-ExchangeCertificate -Gen", []string{"-GenerateRequest "}},
		{"New-ExchangeCertificate -WhatI", []string{"-WhatIf "}},
		{"Get-Help Set-EventLog", []string{"Set-EventLogLevel "}},
		{"Set-EventLogLevel x -Level Ex", []string{"Expert"}},
	} {
		got, _ := c.Complete(tc.before)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: %q, want %q", tc.before, got, tc.want)
		}
	}
	// readline's shape: what follows the typed word.
	if rest, n := c.Do([]rune("Get-ExchangeCert"), 16); n != 16 || len(rest) != 1 || string(rest[0]) != "ificate " {
		t.Errorf("Do: %q %d", rest, n)
	}
}

// TestSeedTypos: the seeds' own slips are read as meant, said once.
func TestSeedTypos(t *testing.T) {
	ts := newShell(t)
	it := ts.internal()
	out, errText, err := ts.run(`Get- ExchangeCertificate ` + it + ` | fl *`)
	if err != nil || !strings.Contains(out, "IsInternalTransportCertificate : True") || !strings.Contains(errText, "is read as Get-ExchangeCertificate") {
		t.Fatalf("Get- ExchangeCertificate: %v\n%s\n%s", err, out, errText)
	}
	out, errText, err = ts.run(`Get-ExchangeCertificate | FL * Get-ReceiveConnector | FL name, fqdn, objectClass Get-SendConnector | FL name, fqdn, objectClass`)
	if err != nil || !strings.Contains(out, "Thumbprint") || !strings.Contains(out, "Name : Default hub1") || !strings.Contains(errText, "starts a new command") {
		t.Fatalf("run-on line: %v\n%s\n%s", err, out, errText)
	}
}
