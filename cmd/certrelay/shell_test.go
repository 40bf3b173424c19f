package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"certrelay/internal/admin"
	"certrelay/internal/testpki"
)

// runIn runs certrelay in-process against data with stdin and returns
// its exit status, standard output and standard error.
func runIn(t *testing.T, data, stdin string, args ...string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	out, _ := os.Create(filepath.Join(dir, "out"))
	errf, _ := os.Create(filepath.Join(dir, "err"))
	testpki.WriteFile(t, dir, "in", []byte(stdin))
	in, _ := os.Open(filepath.Join(dir, "in"))
	defer out.Close()
	defer errf.Close()
	defer in.Close()
	code := (&app{stdout: out, stderr: errf, stdin: in}).run(context.Background(), append([]string{"--data", data}, args...))
	o, _ := os.ReadFile(out.Name())
	e, _ := os.ReadFile(errf.Name())
	return code, string(o), string(e)
}

// volatile are what two runs of the same operation on two copies of a
// data directory may differ in: a new key's thumbprint and serial
// number, its dates, its request; the directories' own paths.
var volatile = regexp.MustCompile(`"(Thumbprint|SerialNumber|NotBefore|NotAfter|CertificateRequest|InternalTransportCertificateNotAfter|Time|Account)": "[^"]*"`)

// TestShellEqualsCLI: every cmdlet's result through the shell
// (| ConvertTo-Json) is the CLI's --json for the same operation. Every
// Get- operation without a required parameter is compared as the registry
// lists it (so a new one is covered without a change here); the others
// run on two copies of one data directory, once through each face.
func TestShellEqualsCLI(t *testing.T) {
	base := t.TempDir()
	t.Setenv("CERTRELAY_SYSTEM_ROOTS", filepath.Join(base, "none.pem"))
	data := filepath.Join(base, "data")
	if code, _, e := runIn(t, data, "", "setup", "--fqdn", "hub1.contoso.test"); code != 0 {
		t.Fatal(e)
	}
	// Something in each list.
	for _, args := range [][]string{
		{"cert", "new", "--domain", "mail.contoso.test", "--services", "POP"},
		{"connector", "send", "add", "Internet", "--address-space", "*"},
		{"domain", "add", "contoso.test"},
	} {
		if code, _, e := runIn(t, data, "", args...); code != 0 {
			t.Fatalf("%v: %s", args, e)
		}
	}
	ad, err := admin.Open(context.Background(), admin.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ad.ServerShow(context.Background())
	list, _ := ad.ListCertificates(context.Background(), admin.ListOptions{})
	ad.Close()
	internal := srv.InternalTransportCertificateThumbprint
	var mail string
	for _, c := range list {
		if c.Subject == "CN=mail.contoso.test" {
			mail = c.Thumbprint
		}
	}
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "Faces CA"})
	leaf := ca.Issue(t, testpki.Options{CommonName: "imap.contoso.test", DNSNames: []string{"imap.contoso.test"}})
	leafFile := testpki.WriteFile(t, base, "leaf.pem", append(testpki.PEM(leaf.Cert), testpki.KeyPEM(t, leaf.Key)...))
	caFile := testpki.WriteFile(t, base, "ca.pem", testpki.PEM(ca.Cert))

	compare := func(t *testing.T, dataA, dataB, line string, cli []string) {
		t.Helper()
		codeC, outC, errC := runIn(t, dataA, "", append(cli, "--json")...)
		codeS, outS, errS := runIn(t, dataB, "", "shell", "-c", line+" | ConvertTo-Json")
		if codeC != 0 && codeC == codeS && dataA == dataB {
			return // a read that needs more than nothing fails the same way in both
		}
		if codeC != 0 || codeS != 0 {
			t.Fatalf("exit: CLI %d (%s), shell %d (%s)", codeC, errC, codeS, errS)
		}
		outC = strings.ReplaceAll(outC, dataA, "DATA")
		outS = strings.ReplaceAll(outS, dataB, "DATA")
		if dataA != dataB {
			outC, outS = volatile.ReplaceAllString(outC, `"$1": "…"`), volatile.ReplaceAllString(outS, `"$1": "…"`)
		}
		if outC != outS {
			t.Errorf("%s\nshell:\n%s\nCLI %v --json:\n%s", line, outS, cli, outC)
		}
		if !json.Valid([]byte(outS)) || len(outS) < 3 {
			t.Errorf("%s: not JSON: %q", line, outS)
		}
	}

	t.Run("reads", func(t *testing.T) {
		n := 0
		for _, op := range admin.Operations() {
			if !strings.HasPrefix(op.Cmdlet, "Get-") || op.Set != "" || op.Returns == nil {
				continue
			}
			required := false
			for _, p := range op.Params {
				required = required || p.Required
			}
			if required {
				continue
			}
			n++
			t.Run(op.Cmdlet, func(t *testing.T) { compare(t, data, data, op.Cmdlet, strings.Fields(op.CLI)) })
		}
		if n < 10 {
			t.Errorf("only %d reads compared", n)
		}
	})
	for _, c := range []struct {
		line string
		cli  []string
	}{
		{"Get-ExchangeCertificate " + mail, []string{"cert", "show", mail}},
		{"Get-ExchangeCertificate -DomainName hub1.contoso.test", []string{"cert", "list", "--domain", "hub1.contoso.test"}},
		{"Get-ReceiveConnector 'Default " + srv.Name + "'", []string{"connector", "receive", "show", "Default " + srv.Name}},
		{"Get-SendConnector Internet", []string{"connector", "send", "show", "Internet"}},
		{"Get-CertrelayCertificateSelection -Fqdn hub1.contoso.test", []string{"cert", "explain", "--fqdn", "hub1.contoso.test"}},
		{"Get-EventLogLevel -Identity msexchangetransport\\*", []string{"loglevel", "get", `msexchangetransport\*`}},
		{"Test-CertrelayCertificate " + internal, []string{"cert", "verify", internal}},
		{"Get-CertrelayEvent -Id 16001", []string{"events", "--id", "16001"}},
		{"Enable-ExchangeCertificate " + mail + " -Services IMAP,UM", []string{"cert", "enable", mail, "--services", "IMAP,UM"}},
		{"New-ExchangeCertificate -DomainName other.contoso.test -Services POP -FriendlyName x", []string{"cert", "new", "--domain", "other.contoso.test", "--services", "POP", "--friendly-name", "x"}},
		{"Get-ExchangeCertificate " + mail + " | New-ExchangeCertificate", []string{"cert", "new", "--from", mail}},
		{"New-ExchangeCertificate -GenerateRequest -DomainName req.contoso.test -SubjectName 'c=us,o=contoso corp, cn=req.contoso.test' -Path " + filepath.Join(base, "s.req"),
			[]string{"cert", "request", "--domain", "req.contoso.test", "--subject", "c=us,o=contoso corp, cn=req.contoso.test", "--out", filepath.Join(base, "c.req")}},
		{"Import-ExchangeCertificate -Path " + leafFile, []string{"cert", "import", leafFile}},
		{"Export-ExchangeCertificate " + mail + " -Path " + filepath.Join(base, "s.pem"), []string{"cert", "export", mail, "--out", filepath.Join(base, "c.pem")}},
		{"Remove-ExchangeCertificate " + mail + " -Confirm:$false", []string{"cert", "remove", mail, "--force"}},
		{"Add-CertrelayTrustedCertificate -Path " + caFile, []string{"trust", "add", caFile}},
		{"Set-EventLogLevel msexchangetransport\\SmtpReceive -Level High", []string{"loglevel", "set", `msexchangetransport\SmtpReceive`, "High"}},
		{"New-ReceiveConnector Partner -Bindings 127.0.0.1:2626 -Fqdn partner.contoso.test -RequireTLS", []string{"connector", "receive", "add", "Partner", "--bindings", "127.0.0.1:2626", "--fqdn", "partner.contoso.test", "--require-tls"}},
		{"Set-ReceiveConnector 'Default " + srv.Name + "' -MaxMessageSize 25MB -TlsCertificateName '<I>CN=x<S>CN=y'", []string{"connector", "receive", "set", "Default " + srv.Name, "--max-message-size", "25MB", "--tls-certificate-name", "<I>CN=x<S>CN=y"}},
		{"Get-SendConnector Internet | Set-SendConnector -Fqdn out.contoso.test", []string{"connector", "send", "set", "Internet", "--fqdn", "out.contoso.test"}},
		{"New-SendConnector Partner -AddressSpaces 'smtp:partner.test;10' -SmartHosts 192.0.2.1", []string{"connector", "send", "add", "Partner", "--address-space", "smtp:partner.test;10", "--smart-host", "192.0.2.1"}},
		{"New-AcceptedDomain fabrikam.test", []string{"domain", "add", "fabrikam.test"}},
		{"Set-ExchangeServer -NLBNames nlb.contoso.test", []string{"server", "set", "--nlb-name", "nlb.contoso.test"}},
		{"Retry-Queue", []string{"queue", "retry"}},
		{"Get-Message -ResultSize Unlimited", []string{"queue", "list", "--result-size", "unlimited"}},
	} {
		t.Run(strings.Fields(c.line)[0]+"/"+strings.Join(c.cli, "_"), func(t *testing.T) {
			a, b := copyData(t, data), copyData(t, data)
			compare(t, a, b, c.line, c.cli)
		})
	}
}

// copyData copies a data directory (closed: no process has it open).
func copyData(t *testing.T, data string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	if out, err := exec.Command("cp", "-a", data, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

// TestShellExitStatus: certrelay shell -c and -f exit 0 when every
// command succeeded, 2 for a line written wrongly, 1 for a command that
// failed; a failed command stops the ones after it.
func TestShellExitStatus(t *testing.T) {
	base := t.TempDir()
	t.Setenv("CERTRELAY_SYSTEM_ROOTS", filepath.Join(base, "none.pem"))
	data := filepath.Join(base, "data")
	if code, _, e := runIn(t, data, "", "setup", "--fqdn", "hub1.contoso.test"); code != 0 {
		t.Fatal(e)
	}
	script := testpki.WriteFile(t, base, "s.ps1", []byte("# a script\nGet-ExchangeCertificate |\n  fl Thumbprint\nGet-Bogus\nNew-AcceptedDomain never.test\n"))
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"shell", "-c", "Get-ExchangeCertificate; Get-ExchangeServer"}, 0, ""},
		{[]string{"shell", "-c", "Get-ExchangeCertificate -Bogus"}, 2, "A parameter cannot be found"},
		{[]string{"shell", "-c", "Get-ExchangeCertificate 'unclosed"}, 2, "ParserError"},
		{[]string{"shell", "-c", "Get-ExchangeCertificate " + strings.Repeat("AB", 20)}, 1, "Get-ExchangeCertificate : "},
		{[]string{"shell", "-c", "Get-UMServer"}, 1, "not available yet"},
		{[]string{"shell", "-f", script}, 2, "(stopped: 1 more command(s)"},
		{[]string{"shell", "-c", "x", "-f", script}, 2, "not both"},
		{[]string{"shell", "-c", "Get-ExchangeServer; exit 3; Get-Bogus"}, 3, ""},
		{[]string{"shell", "-c", "exit 300"}, 2, "from 0 to 255"},
	} {
		code, _, stderr := runIn(t, data, "", c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, want %d; %s", c.args, code, c.code, stderr)
		}
	}
	// The script stopped before its last line.
	_, out, _ := runIn(t, data, "", "domain", "list", "--json")
	if strings.Contains(out, "never.test") {
		t.Error("a command after the failed one ran")
	}
	// Commands from standard input, answers on the lines after them.
	code, out, stderr := runIn(t, data, "New-AcceptedDomain piped.test\nNew-ExchangeCertificate\nN\nGet-AcceptedDomain | ft DomainName\n", "shell")
	if code != 0 || !strings.Contains(out, "piped.test") || !strings.Contains(stderr, "Are you sure") {
		t.Errorf("from standard input: %d\n%s\n%s", code, out, stderr)
	}
}
