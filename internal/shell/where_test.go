package shell

import (
	"testing"
	"time"
)

// TestWhere: Where-Object's conditions as PowerShell evaluates them —
// case-insensitive unless -c, a list on the left filtered, -and/-or/-not.
func TestWhere(t *testing.T) {
	obj := &Object{Type: "Certificate", Props: []Prop{
		{"Services", []any{"IMAP", "POP", "SMTP"}},
		{"Subject", "CN=mail.contoso.com"},
		{"IsSelfSigned", false},
		{"PublicKeySize", int64(2048)},
		{"NotAfter", time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"Nested", &Object{Props: []Prop{{"Name", "x"}}}},
	}}
	for _, c := range []struct {
		cond string
		want bool
	}{
		{`$_.Services -match 'SMTP'`, true},
		{`$_.Services -match 'smtp'`, true},
		{`$_.Services -cmatch 'smtp'`, false},
		{`$_.Services -match '^S'`, true},
		{`$_.Services -notmatch 'SMTP'`, true}, // IMAP and POP do not match: a non-empty list
		{`$_.Services -eq 'UM'`, false},
		{`$_.Services -contains 'pop'`, true},
		{`$_.Services -notcontains 'IIS'`, true},
		{`'SMTP' -in $_.Services`, true},
		{`$_.Subject -like '*contoso*'`, true},
		{`$_.Subject -notlike 'cn=mail*'`, false},
		{`$_.Subject -clike 'cn=*'`, false},
		{`$_.IsSelfSigned`, false},
		{`-not $_.IsSelfSigned`, true},
		{`!$_.IsSelfSigned -and $_.PublicKeySize -ge 2048`, true},
		{`$_.PublicKeySize -gt 4096 -or $_.Subject -eq 'CN=MAIL.CONTOSO.COM'`, true},
		{`$_.PublicKeySize -lt 1024`, false},
		{`$_.IsSelfSigned -eq $false`, true},
		{`$_.NotAfter -gt '2029-12-31'`, true},
		{`$_.NotAfter -lt '2029-12-31'`, false},
		{`$_.Missing -eq $null`, true},
		{`$_.Missing`, false},
		{`$_.Nested.Name -eq 'X'`, true},
		{`($_.Subject -eq 'a' -or $_.Subject -eq 'b') -and $_.PublicKeySize -eq 2048`, false},
	} {
		e, err := parseExpr(c.cond, Pos{1, 1, 0})
		if err != nil {
			t.Errorf("%s: %v", c.cond, err)
			continue
		}
		if got := e.Eval(obj); got != c.want {
			t.Errorf("%s: %v, want %v", c.cond, got, c.want)
		}
	}
}
