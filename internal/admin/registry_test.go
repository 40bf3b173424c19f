package admin

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// exchangeNouns are the nouns of Exchange's own cmdlets certrelay keeps;
// any other cmdlet is certrelay's own and says so (Verb-CertrelayNoun).
var exchangeNouns = map[string]bool{
	"ExchangeCertificate": true, "ReceiveConnector": true, "SendConnector": true, "ExchangeServer": true,
	"AcceptedDomain": true, "Mailbox": true, "Message": true, "Queue": true, "EventLogLevel": true, "MessageTrackingLog": true,
	"POPSettings": true, "IMAPSettings": true, "UMService": true, // issue 14
	"TransportServer":  true,                              // issue 11
	"EdgeSubscription": true, "EdgeSynchronization": true, // issue 12
}

// TestRegistryDeclarations: every registered operation has a cmdlet
// name, a CLI path, a role and documented parameters, and its texts name
// only operations and parameters that exist.
func TestRegistryDeclarations(t *testing.T) {
	ops := Operations()
	if len(ops) < 39 {
		t.Fatalf("%d operations registered; the CLI had 39 commands besides serve", len(ops))
	}
	cmdlet := regexp.MustCompile(`^(Get|Set|New|Remove|Enable|Import|Export|Add|Test|Install|Retry|Watch|Update|Disable|Send|Start)-([A-Z][A-Za-z]+)$`)
	sets := map[string]bool{}
	for _, op := range ops {
		t.Run(op.Name, func(t *testing.T) {
			m := cmdlet.FindStringSubmatch(op.Cmdlet)
			switch {
			case m == nil:
				t.Errorf("cmdlet %q is not Verb-Noun with a PowerShell verb", op.Cmdlet)
			case !exchangeNouns[m[2]] && !strings.HasPrefix(m[2], "Certrelay"):
				t.Errorf("cmdlet %q: Exchange has no such noun, so it must be certrelay's own (Verb-Certrelay…)", op.Cmdlet)
			}
			want := op.Cmdlet
			if op.Set != "" {
				want += "/" + op.Set
				if op.Param(op.Set) == nil {
					t.Errorf("the parameter set %q is no parameter of the operation", op.Set)
				}
				if Lookup(op.Cmdlet) == nil {
					t.Errorf("a parameter set of %s, which has no default operation", op.Cmdlet)
				}
			}
			if op.Name != want {
				t.Errorf("name %q, want %q", op.Name, want)
			}
			if sets[want] {
				t.Errorf("cmdlet and parameter set declared twice")
			}
			sets[want] = true
			if op.CLI == "" || strings.TrimSpace(op.CLI) != op.CLI || strings.Contains(op.CLI, "  ") {
				t.Errorf("CLI path %q", op.CLI)
			}
			if op.Role < ViewOnly || op.Role > OrgAdmin {
				t.Errorf("role %v", op.Role)
			}
			if strings.HasPrefix(op.Cmdlet, "Get-") && op.Role != ViewOnly {
				t.Errorf("a Get- operation needs the %s role; view-only administrators may read everything (SPEC I3)", op.Role)
			}
			if !strings.HasPrefix(op.Cmdlet, "Get-") && !strings.HasPrefix(op.Cmdlet, "Test-") && !strings.HasPrefix(op.Cmdlet, "Watch-") && op.Name != "Export-ExchangeCertificate" && op.Role == ViewOnly {
				t.Errorf("%s changes something but a view-only caller may run it", op.Cmdlet)
			}
			if op.Summary == "" || op.Run == nil {
				t.Error("no summary or no Run")
			}
			if op.Confirm != ConfirmNever {
				if p := op.Param("Force"); p == nil || p.Type.Kind != KindBool {
					t.Error("it asks for confirmation but has no Force switch to answer yes")
				}
			}
			texts := []string{op.Summary, op.Description}
			names := map[string]bool{}
			positions := 0
			for i, p := range op.Params {
				texts = append(texts, p.Help)
				if p.Name == "" || p.CLI == "" || p.Help == "" || p.Type.Name == "" {
					t.Errorf("parameter %d (%q) lacks a name, a CLI name, help or a type", i, p.Name)
				}
				if names[strings.ToLower(p.Name)] {
					t.Errorf("parameter %s declared twice", p.Name)
				}
				names[strings.ToLower(p.Name)] = true
				if p.Position > 0 {
					positions++
					if p.Position != positions {
						t.Errorf("parameter %s at position %d, want %d (positions are 1, 2, … in declaration order)", p.Name, p.Position, positions)
					}
					if p.CLI != strings.ToUpper(p.CLI) {
						t.Errorf("positional parameter %s: its CLI placeholder %q is not upper case", p.Name, p.CLI)
					}
				}
				for _, x := range p.Excludes {
					if op.Param(x) == nil {
						t.Errorf("parameter %s excludes %s, which does not exist", p.Name, x)
					}
				}
				if p.Prompt != "" && p.Type.Kind != KindSecret {
					t.Errorf("parameter %s has a prompt but is no secret", p.Name)
				}
			}
			for _, text := range texts {
				if bad := unresolvedMarks(text, op); len(bad) > 0 {
					t.Errorf("marks the registry does not know: %q in %q", bad, text)
				}
			}
		})
	}
}

// TestExchangeCmdletNames: the operations the seeds show carry
// Exchange's own cmdlet names, at the CLI paths of SPEC I2.
func TestExchangeCmdletNames(t *testing.T) {
	for cli, want := range map[string]string{
		"cert new": "New-ExchangeCertificate", "cert request": "New-ExchangeCertificate", "cert list": "Get-ExchangeCertificate",
		"cert show": "Get-ExchangeCertificate", "cert enable": "Enable-ExchangeCertificate", "cert import": "Import-ExchangeCertificate",
		"cert export": "Export-ExchangeCertificate", "cert remove": "Remove-ExchangeCertificate",
		"connector receive add": "New-ReceiveConnector", "connector receive set": "Set-ReceiveConnector", "connector receive list": "Get-ReceiveConnector",
		"connector send add": "New-SendConnector", "loglevel get": "Get-EventLogLevel", "loglevel set": "Set-EventLogLevel",
		"server show": "Get-ExchangeServer", "domain list": "Get-AcceptedDomain",
	} {
		var found *Operation
		for _, op := range Operations() {
			if op.CLI == cli {
				found = op
			}
		}
		if found == nil || found.Cmdlet != want {
			t.Errorf("%s: %+v, want cmdlet %s", cli, found, want)
		}
	}
}

// TestBind: parameters are checked against the declaration before an
// operation runs, and refusals are usage errors naming the parameter.
func TestBind(t *testing.T) {
	enable := Lookup("Enable-ExchangeCertificate")
	p, err := enable.Bind(Params{"thumbprint": "ab", "Services": "smtp,pop"})
	if err != nil || p["Thumbprint"] != "ab" || p["Services"] == nil {
		t.Fatalf("bind: %v %v", p, err)
	}
	for _, c := range []struct {
		name  string
		op    string
		raw   Params
		field string
	}{
		{"fail/missing-required", "Enable-ExchangeCertificate", Params{"Thumbprint": "ab"}, "Services"},
		{"fail/empty-required", "Enable-ExchangeCertificate", Params{"Thumbprint": "ab", "Services": ""}, "Services"},
		{"fail/unknown-service", "Enable-ExchangeCertificate", Params{"Thumbprint": "ab", "Services": "SMTP,FTP"}, "Services"},
		{"fail/unknown-parameter", "Get-ExchangeCertificate", Params{"Color": "red"}, "Color"},
		{"fail/excluded", "Export-ExchangeCertificate", Params{"Thumbprint": "ab", "Password": "pw", "BinaryEncoded": true}, "BinaryEncoded"},
		{"fail/not-a-number", "Set-SendConnector", Params{"Identity": "x", "Port": "lots"}, "Port"},
		{"fail/two-services-for-one", "Get-ExchangeCertificate", Params{"Service": "SMTP,POP"}, "Service"},
		{"fail/bad-enum", "Get-CertrelayCertificateSelection", Params{"Fqdn": "a.example", "Direction": "sideways"}, "Direction"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Lookup(c.op).Bind(c.raw)
			e, ok := err.(*Error)
			if !ok || !e.Usage || e.Kind != Invalid || e.Field != c.field {
				t.Fatalf("got %#v, want a usage error for %s", err, c.field)
			}
		})
	}
	// Lists: repeats and commas; names keep their empty items for the
	// operation to refuse.
	p, _ = Lookup("New-ExchangeCertificate").Bind(Params{"DomainName": []string{"a.example,,b.example", "c.example"}})
	if got := strings.Join(p["DomainName"].([]string), "|"); got != "a.example||b.example|c.example" {
		t.Errorf("names %q", got)
	}
	p, _ = Lookup("Set-ReceiveConnector").Bind(Params{"Identity": "x", "Bindings": []any{"127.0.0.1:25, ", "[::1]:25"}})
	if got := strings.Join(p["Bindings"].([]string), "|"); got != "127.0.0.1:25|[::1]:25" {
		t.Errorf("list %q", got)
	}
}

// testSyntax renders marks so a test can see each kind.
type testSyntax struct{}

func (testSyntax) Operation(op *Operation) string          { return "<" + op.CLI + ">" }
func (testSyntax) Parameter(_ *Operation, p *Param) string { return "<--" + p.CLI + ">" }
func (testSyntax) Command(op *Operation, args []Arg) string {
	s := "<" + op.CLI
	for _, a := range args {
		if a.Param != nil {
			s += " --" + a.Param.CLI
		}
		if a.Value != "" {
			s += " [" + a.Value + "]"
		}
	}
	return s + ">"
}

// TestTextMarks: texts name operations and parameters with marks each
// face renders its own way; values are never read as marks.
func TestTextMarks(t *testing.T) {
	enable := Lookup("Enable-ExchangeCertificate")
	for _, c := range []struct{ name, text, cmdlet, test string }{
		{"ok/parameter-of-the-operation", "add {-Services}", "add -Services", "add <--services>"},
		{"ok/parameter-of-another", "made without {New-ExchangeCertificate#PrivateKeyExportable}", "made without -PrivateKeyExportable", "made without <--exportable>"},
		{"ok/operation", "list them with {Get-ExchangeCertificate}", "list them with Get-ExchangeCertificate", "list them with <cert list>"},
		{"ok/command", string(cmd("Enable-ExchangeCertificate", "AB", "-Services", "SMTP", "-Force")), "Enable-ExchangeCertificate AB -Services SMTP -Force", "<cert enable [AB] --services [SMTP] --force>"},
		{"ok/quoted-value", string(cmd("Set-ReceiveConnector", "Default hub1", "-Fqdn", "-odd")), "Set-ReceiveConnector 'Default hub1' -Fqdn '-odd'", "<connector receive set [Default hub1] --fqdn [-odd]>"},
		{"ok/escaped-value", msgf("subject %s: see %s", "CN={Get-ExchangeCertificate}", markup("{Get-ExchangeCertificate}")), "subject CN={Get-ExchangeCertificate}: see Get-ExchangeCertificate", "subject CN={Get-ExchangeCertificate}: see <cert list>"},
		{"ok/unknown-left-as-written", "{-Nope} {No-Such}", "-Nope No-Such", "-Nope No-Such"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Render(c.text, enable, nil); got != c.cmdlet {
				t.Errorf("cmdlet syntax: %q, want %q", got, c.cmdlet)
			}
			if got := Render(c.text, enable, testSyntax{}); got != c.test {
				t.Errorf("test syntax: %q, want %q", got, c.test)
			}
		})
	}
}

// TestLookupCmdlet: the cmdlet shell finds an operation by its cmdlet and
// the parameters given, as PowerShell picks a parameter set.
func TestLookupCmdlet(t *testing.T) {
	for _, c := range []struct {
		cmdlet string
		given  []string
		want   string
	}{
		{"Get-ExchangeCertificate", nil, "Get-ExchangeCertificate"},
		{"get-exchangecertificate", []string{"-Thumbprint"}, "Get-ExchangeCertificate/Thumbprint"},
		{"New-ExchangeCertificate", []string{"DomainName", "GenerateRequest"}, "New-ExchangeCertificate/GenerateRequest"},
		{"New-ExchangeCertificate", []string{"DomainName"}, "New-ExchangeCertificate"},
		{"Get-ReceiveConnector", []string{"Identity"}, "Get-ReceiveConnector/Identity"},
	} {
		if op := LookupCmdlet(c.cmdlet, c.given); op == nil || op.Name != c.want {
			t.Errorf("%s %v: %v, want %s", c.cmdlet, c.given, op, c.want)
		}
	}
	if op := LookupCmdlet("Format-Disk", nil); op != nil {
		t.Errorf("found %s", op.Name)
	}
}

// TestPipedProperties: a parameter that takes a piped object's property
// names one that some operation returns.
func TestPipedProperties(t *testing.T) {
	returned := map[string]bool{}
	for _, op := range Operations() {
		if op.Returns == nil {
			continue
		}
		rt := reflect.TypeOf(op.Returns)
		if rt.Kind() == reflect.Slice {
			rt = rt.Elem()
		}
		for i := 0; i < rt.NumField(); i++ {
			returned[rt.Field(i).Name] = true
		}
		// Embedded structs (RankedCertificate, VerifyResult) promote theirs.
		for i := 0; i < rt.NumField(); i++ {
			if f := rt.Field(i); f.Anonymous && f.Type.Kind() == reflect.Struct {
				for j := 0; j < f.Type.NumField(); j++ {
					returned[f.Type.Field(j).Name] = true
				}
			}
		}
	}
	for _, op := range Operations() {
		for _, p := range op.Params {
			if p.Pipe != "" && !returned[p.Pipe] {
				t.Errorf("%s -%s is piped from %s, which no operation returns", op.Name, p.Name, p.Pipe)
			}
		}
	}
	if !returned["Thumbprint"] {
		t.Error("no operation returns a Thumbprint")
	}
}
