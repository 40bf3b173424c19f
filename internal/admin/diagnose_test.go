package admin

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiagnoseThroughTheRegistry: Test-CertrelayConfiguration gathers the
// facts of the data directory (the server object, the store, the
// expiry window, the backups of exports) and renders each fix for the CLI
// and for the shell, with every mark resolved; the fix it prints repairs
// what it found.
func TestDiagnoseThroughTheRegistry(t *testing.T) {
	a := newAdmin(t)
	diag := func() Diagnosis {
		t.Helper()
		res, err := a.Call(ctx, Request{Op: "Test-CertrelayConfiguration", Caller: Caller{Name: "test", Role: ViewOnly}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Data.(Diagnosis)
	}
	if d := diag(); !d.Clean || len(d.Findings) != 0 || len(d.Checks) < 8 || d.Server != "hub1" {
		t.Fatalf("a server just set up: %+v", d)
	}

	// Q4: a load-balancer name.
	nlb := []string{"nlb.contoso.com"}
	if _, err := a.ServerSet(ctx, ServerSetOptions{NLBNames: &nlb}); err != nil {
		t.Fatal(err)
	}
	d := diag()
	if d.Clean || len(d.Findings) != 1 {
		t.Fatalf("with an NLB name: %+v", d)
	}
	f := d.Findings[0]
	if f.Check != "Q4" || len(f.Fix) != 1 || f.Fix[0].Command != "certrelay cert new --force" || f.Fix[0].Cmdlet != "New-ExchangeCertificate -Force" ||
		f.Events[0].SymbolicName != "SmtpReceiveDirectTrustCertificateInvalid" || strings.Contains(f.Note, "{") {
		t.Errorf("Q4 finding: %+v", f)
	}
	if _, err := a.Call(ctx, Request{Op: "New-ExchangeCertificate", Caller: Caller{Name: "test", Role: ServerAdmin}, Params: Params{"Force": true}}); err != nil {
		t.Fatal(err)
	}
	if d := diag(); !d.Clean {
		t.Fatalf("after the fix: %+v", d)
	}

	// The expiry window: a year-long certificate is within 400 days.
	days := 400
	if _, err := a.ServerSet(ctx, ServerSetOptions{ExpiryWarningDays: &days}); err != nil {
		t.Fatal(err)
	}
	d = diag()
	soon := map[int]int{}
	for _, f := range d.Findings {
		if f.Check == "Q8" {
			soon[f.Events[0].Id]++
		}
	}
	// The internal certificate (12017) and the one it replaced, still
	// enabled for SMTP (12018).
	if len(d.Findings) != 2 || soon[12017] != 1 || soon[12018] != 1 {
		t.Errorf("with a window of 400 days: %+v", d)
	}
	bad := 0
	var e *Error
	if _, err := a.ServerSet(ctx, ServerSetOptions{ExpiryWarningDays: &bad}); !errors.As(err, &e) || e.Field != "ExpiryWarningDays" {
		t.Errorf("a window of 0 days: %v", err)
	}
	days = 30
	if _, err := a.ServerSet(ctx, ServerSetOptions{ExpiryWarningDays: &days}); err != nil {
		t.Fatal(err)
	}

	// Q6: the configured certificate is not in the store; with a backup
	// (an export whose file is there) the fix restores it, without one it
	// makes a new one.
	srv, _ := a.LocalServer(ctx)
	gone := strings.Repeat("A", 40)
	backup := filepath.Join(t.TempDir(), "internal backup.pfx")
	if err := os.WriteFile(backup, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.LogExport(ctx, gone, "PKCS#12", backup)
	srv.InternalTransportCertificateThumbprint = gone
	if err := a.Dir.PutServer(ctx, srv); err != nil {
		t.Fatal(err)
	}
	d = diag()
	if len(d.Findings) != 1 || d.Findings[0].Check != "Q6" {
		t.Fatalf("the internal certificate missing: %+v", d)
	}
	if f := d.Findings[0].Fix; len(f) != 2 || f[0].Command != "certrelay cert import '"+backup+"' --password-file -" || f[0].Input == "" ||
		f[0].Cmdlet != "Import-ExchangeCertificate '"+backup+"' -Password '-'" || f[1].Command != "certrelay cert enable "+gone+" --services SMTP" {
		t.Errorf("the fix with a backup: %+v", f)
	}
	if err := os.Remove(backup); err != nil {
		t.Fatal(err)
	}
	if f := diag().Findings[0].Fix; len(f) != 1 || f[0].Command != "certrelay cert new --force" {
		t.Errorf("the fix once the backup is gone: %+v", f)
	}

	// Another server: unknown names are refused.
	if _, err := a.Call(ctx, Request{Op: "Test-CertrelayConfiguration", Caller: Caller{Name: "test", Role: ViewOnly}, Params: Params{"Server": "nosuch"}}); !errors.As(err, &e) || e.Kind != NotFound {
		t.Errorf("diagnose --server nosuch: %v", err)
	}
}

// TestFixMarksNameTheOutputFile: a fix may tell an operation that hands
// a file to its caller where to write it (-FileName): the CLI writes
// --out, the shell -FileName; an operation that writes no file does not
// take it (the mark is left as text: no certrelay command for the CLI).
func TestFixMarksNameTheOutputFile(t *testing.T) {
	for _, c := range []struct{ mark, cli, cmdlet string }{
		{"{New-EdgeSubscription -FileName EdgeSubscription.xml}", "certrelay edge subscribe --out EdgeSubscription.xml", "New-EdgeSubscription -FileName EdgeSubscription.xml"},
		{"{New-EdgeSubscription -FileName 'my file.xml'}", "certrelay edge subscribe --out 'my file.xml'", "New-EdgeSubscription -FileName 'my file.xml'"},
		{"{Remove-EdgeSubscription edge1 -FileName x}", "Remove-EdgeSubscription edge1 -FileName x", "Remove-EdgeSubscription edge1 -FileName x"},
	} {
		if got := Render(c.mark, nil, CLISyntax{}); got != c.cli {
			t.Errorf("%s for the CLI: %q, want %q", c.mark, got, c.cli)
		}
		if got := Render(c.mark, nil, CmdletSyntax{}); got != c.cmdlet {
			t.Errorf("%s for the shell: %q, want %q", c.mark, got, c.cmdlet)
		}
	}
}
