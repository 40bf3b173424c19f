package shell

import (
	"fmt"
	"strings"
	"testing"
)

// show writes a parsed script compactly, to compare with a want string:
// statements separated by " ; ", commands by " | ", each element as
// -Name, -Name:=value or a value; values as w"…" (bare word), s"…"
// (quoted), $true/$false/$null, [a, b] lists, (…).Member, {…} blocks.
func show(sc *Script) string {
	var sts []string
	for _, st := range sc.Statements {
		var cmds []string
		for _, c := range st.Commands {
			parts := []string{c.Name}
			for _, el := range c.Elems {
				switch {
				case el.Param != "" && el.Colon:
					parts = append(parts, "-"+el.Param+":="+showValue(el.Value))
				case el.Param != "":
					parts = append(parts, "-"+el.Param)
				default:
					parts = append(parts, showValue(el.Value))
				}
			}
			cmds = append(cmds, strings.Join(parts, " "))
		}
		sts = append(sts, strings.Join(cmds, " | "))
	}
	return strings.Join(sts, " ; ")
}

func showValue(v *Value) string {
	switch v.Kind {
	case Word:
		return fmt.Sprintf("w%q", v.Text)
	case String:
		return fmt.Sprintf("s%q", v.Text)
	case Bool:
		return fmt.Sprintf("$%v", v.Bool)
	case Null:
		return "$null"
	case List:
		var items []string
		for _, it := range v.Items {
			items = append(items, showValue(it))
		}
		return "[" + strings.Join(items, ", ") + "]"
	case Var:
		return "$_" + strings.Join(append([]string{""}, v.Members...), ".")
	case Sub:
		return "(" + show(&Script{Statements: []*Pipeline{v.Sub}}) + ")" + strings.Join(append([]string{""}, v.Members...), ".")
	case Block:
		return "{" + v.Text + "}"
	}
	return "?"
}

// TestParse: the seeds' command lines and the PowerShell subset of I4,
// each a named case.
func TestParse(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"ok/seed-fl-star", `Get-ExchangeCertificate | fl *`, `Get-ExchangeCertificate | fl w"*"`},
		{"ok/seed-param-colon", `Enable-ExchangeCertificate -Thumbprint <insert_certificate_thumbprint> -Services:SMTP`,
			`Enable-ExchangeCertificate -Thumbprint w"<insert_certificate_thumbprint>" -Services:=w"SMTP"`},
		{"ok/seed-comma-list-quoted-with-space", `New-ExchangeCertificate -DomainName "server1.fourthcoffee.com", "server1" -Services "SMTP"`,
			`New-ExchangeCertificate -DomainName [s"server1.fourthcoffee.com", s"server1"] -Services s"SMTP"`},
		{"ok/seed-comma-list-bare", `Get-ExchangeCertificate T | New-ExchangeCertificate -Services SMTP,POP,IMAP`,
			`Get-ExchangeCertificate w"T" | New-ExchangeCertificate -Services [w"SMTP", w"POP", w"IMAP"]`},
		{"ok/seed-bool-colon", `New-ExchangeCertificate -PrivateKeyExportable:$True -GenerateRequest:$True -Path "C:\CertRequest.req"`,
			`New-ExchangeCertificate -PrivateKeyExportable:=$true -GenerateRequest:=$true -Path s"C:\\CertRequest.req"`},
		{"ok/seed-colon-quoted", `Enable-ExchangeCertificate <thumprint> -Services:"POP"`, `Enable-ExchangeCertificate w"<thumprint>" -Services:=s"POP"`},
		{"ok/seed-backslash-star", `Get-EventLogLevel -Identity msexchangetransport\* | Set-EventLogLevel -Level Expert`,
			`Get-EventLogLevel -Identity w"msexchangetransport\\*" | Set-EventLogLevel -Level w"Expert"`},
		{"ok/seed-pipe-without-space", `Get-ExchangeCertificate |fl`, `Get-ExchangeCertificate | fl`},
		{"ok/seed-en-dash-and-curly-quotes", `New-EdgeSubscription –FileName “C:\EdgeSubscription-1.xml”`, `New-EdgeSubscription -FileName s"C:\\EdgeSubscription-1.xml"`},
		{"ok/em-dash", `Get-Help —Name x`, `Get-Help -Name w"x"`},
		{"ok/seed-list-then-word", `FL name, fqdn, objectClass Get-SendConnector`, `FL [w"name", w"fqdn", w"objectClass"] w"Get-SendConnector"`},
		{"ok/case-insensitive-bools", `X -A:$TRUE -B:$false -C $Null`, `X -A:=$true -B:=$false -C $null`},
		{"ok/colon-then-blank", `X -Services: SMTP`, `X -Services:=w"SMTP"`},
		{"ok/single-quote-doubled", `X 'it''s'`, `X s"it's"`},
		{"ok/double-quote-doubled-and-backtick", "X \"a\"\"b`\"c`td\"", `X s"a\"b\"c\td"`},
		{"ok/dollar-in-double-quotes-literal", `X "pa$word"`, `X s"pa$word"`},
		{"ok/curly-single-quotes", "X ‘a’’b’", `X s"a’b"`},
		{"ok/word-joins-quotes", `X C:\"Program Files"\x`, `X w"C:\\Program Files\\x"`},
		{"ok/backtick-escape-in-word", "X a` b", `X w"a b"`},
		{"ok/semicolons", `A; B ;C`, `A ; B ; C`},
		{"ok/newlines", "A\nB\r\nC", `A ; B ; C`},
		{"ok/comment", "A -X 1 # a comment | B", `A -X w"1"`},
		{"ok/hash-inside-word", "A x#y", `A w"x#y"`},
		{"ok/block-comment", "A <# not | this #> -X 1", `A -X w"1"`},
		{"ok/line-continuation", "A -X 1 `\n  -Y 2", `A -X w"1" -Y w"2"`},
		{"ok/pipe-at-line-end", "A |\n  B", `A | B`},
		{"ok/comma-at-line-end", "A x,\n y", `A [w"x", w"y"]`},
		{"ok/subexpression-member", `Import-ExchangeCertificate -Path a.pfx -Password:(Get-Credential).password`,
			`Import-ExchangeCertificate -Path w"a.pfx" -Password:=(Get-Credential).password`},
		{"ok/subexpression-pipeline", `X -Password (Get-Content pw.txt | ConvertTo-SecureString -AsPlainText -Force)`,
			`X -Password (Get-Content w"pw.txt" | ConvertTo-SecureString -AsPlainText -Force)`},
		{"ok/where-block", `Get-ExchangeCertificate | Where-Object { $_.Services -match 'SMTP' } | ft`,
			`Get-ExchangeCertificate | Where-Object {$_.Services -match 'SMTP'} | ft`},
		{"ok/where-block-with-brace-in-string", `? { $_.Subject -like '*}*' }`, `? {$_.Subject -like '*}*'}`},
		{"ok/array-subexpression-empty", `X @()`, `X []`},
		{"ok/negative-number", `X -1`, `X w"-1"`},
		{"ok/bom-and-blanks", "\ufeff  A  ", `A`},
		{"ok/empty", "  \n ; # nothing\n", ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			sc, err := Parse(c.in)
			if err != nil {
				t.Fatalf("%q: %v", c.in, err)
			}
			if got := show(sc); got != c.want {
				t.Errorf("%q:\n got %s\nwant %s", c.in, got, c.want)
			}
		})
	}
}

// TestParseErrors: quoting, escaping and pipeline errors, each named,
// each with its place and whether more lines could complete it.
func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, in   string
		col        int
		incomplete bool
		want       string
	}{
		{"quote/single-unclosed", `X 'abc`, 3, true, "missing its closing quote (')"},
		{"quote/double-unclosed", `X -P "abc`, 6, true, `missing its closing quote (")`},
		{"quote/curly-unclosed", `X “abc`, 3, true, `missing its closing quote (")`},
		{"quote/double-ends-in-backtick", "X \"abc`", 3, true, "missing its closing quote"},
		{"escape/continuation-at-end", "X -A 1 `", 8, true, "line continuation"},
		{"pipe/trailing", `Get-ExchangeCertificate |`, 25, true, "empty pipe element"},
		{"pipe/leading", `| fl`, 1, false, "unexpected '|'"},
		{"pipe/double", `A | | B`, 5, false, "empty pipe element"},
		{"pipe/or-operator", `A || B`, 3, false, "'||' is not supported"},
		{"pipe/before-semicolon", `A | ; B`, 5, false, "empty pipe element"},
		{"pipe/and-operator", `A && B`, 3, false, "'&&' is not supported"},
		{"pipe/redirection", `A > out.txt`, 3, false, "redirection is not supported"},
		{"pipe/value-as-command", `"Get-ExchangeCertificate"`, 1, false, "a command name was expected"},
		{"pipe/call-operator", `& Get-X`, 1, false, "call operator"},
		{"sub/unclosed", `X (Get-Credential`, 3, true, "missing closing ')'"},
		{"sub/unbalanced-close", `X a)`, 4, false, "nothing opened it"},
		{"block/unclosed", `? { $_.A -eq 1`, 3, true, "missing closing '}'"},
		{"block/empty", `? { }`, 4, false, "script block is empty"},
		{"block/bad-operator", `? { $_.A -bogus 1 }`, 10, false, "unknown operator -bogus"},
		{"block/two-values", `? { $_.A 1 }`, 10, false, "unexpected \"1\""},
		{"block/bad-regex", `? { $_.A -match '(' }`, 10, false, "not a valid regular expression"},
		{"var/unknown", `X $cert`, 3, false, "the variable $cert is not set"},
		{"var/bare-dollar", `X $ y`, 3, false, "'$' without a variable name"},
		{"list/trailing-comma", `X a,`, 4, true, "missing expression after ','"},
		{"list/comma-then-param", `X a, -B`, 4, false, "missing expression after ','"},
		{"param/colon-without-value", `X -A:`, 3, false, "has no value after its colon"},
		{"param/odd-character", `X -A=b`, 3, false, "write -Name value or -Name:value"},
		{"cast/not-supported", `X -FileData [Byte[]]$x`, 13, false, "type casts"},
		{"comment/unclosed-block", `X <# abc`, 3, true, "has no closing #>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.in)
			se, ok := err.(*SyntaxError)
			if !ok {
				t.Fatalf("%q: %v, want a syntax error", c.in, err)
			}
			if !strings.Contains(se.Msg, c.want) {
				t.Errorf("%q: %q, want it to say %q", c.in, se.Msg, c.want)
			}
			if se.Pos.Col != c.col || se.Incomplete != c.incomplete {
				t.Errorf("%q: at col %d incomplete %v, want col %d incomplete %v", c.in, se.Pos.Col, se.Incomplete, c.col, c.incomplete)
			}
		})
	}
}

// FuzzParse: the parser never panics, every error says where it is, and
// what it accepts it accepts again when written back.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`Get-ExchangeCertificate | fl *`,
		`Enable-ExchangeCertificate -Thumbprint <t> -Services:SMTP`,
		`New-ExchangeCertificate -DomainName "server1.fourthcoffee.com", "server1" -Services "SMTP"`,
		`New-ExchangeCertificate -DomainName popserver.fourthcoffee.com -SubjectName "c=us,o=contoso corp, cn=popserver.fourthcoffee.com" -PrivateKeyExportable:$True -GenerateRequest:$True -Path "C:\CertRequest.req"`,
		`Import-ExchangeCertificate -Path "C:\CertificateFile.cer" | Enable-ExchangeCertificate -Services:"POP"`,
		`Get-EventLogLevel -Identity msexchangetransport\* | Set-EventLogLevel -Level Expert`,
		`New-EdgeSubscription –FileName “C:\EdgeSubscription-1.xml”`,
		"Get-ExchangeCertificate | ? { $_.Services -match 'SMTP' -and -not ($_.IsSelfSigned) } | ft Thumbprint",
		"A `\n -B 'x''y' \"a`\"b\" <# c #> # d",
		`X -Password:(Get-Content a.txt | ConvertTo-SecureString -AsPlainText -Force).Length`,
		"X 'unclosed", "X (", "{", "| |", "X -A:", "X @(a;b)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sc, err := Parse(in)
		if err != nil {
			se, ok := err.(*SyntaxError)
			if !ok {
				t.Fatalf("%q: %T %v, want a *SyntaxError", in, err, err)
			}
			if se.Msg == "" || se.Pos.Line < 1 || se.Pos.Col < 1 || se.Pos.Off < 0 || se.Pos.Off > len(in) {
				t.Fatalf("%q: error %+v has no message or a place outside the text", in, se)
			}
			return
		}
		for _, st := range sc.Statements {
			if len(st.Commands) == 0 {
				t.Fatalf("%q: a statement without commands", in)
			}
			for _, c := range st.Commands {
				if c.Name == "" {
					t.Fatalf("%q: a command without a name", in)
				}
			}
		}
	})
}
