package web

import (
	"net/http"
	"strings"
	"testing"

	"certrelay/internal/admin"
)

// TestDiagnosePage: the console's diagnose page runs diagnose as it
// opens, for a view-only account too, and shows each problem with its
// events, evidence and fix (the CLI's command and the cmdlet).
func TestDiagnosePage(t *testing.T) {
	s := newSite(t)
	vera := s.login("vera")
	if page := s.get(vera.c, "/diagnose", http.StatusOK); !strings.Contains(page, `id="diagnose-clean"`) {
		t.Errorf("a healthy server: the page does not say so\n%s", page)
	}
	nlb := []string{"nlb.contoso.com"}
	if _, err := s.a.ServerSet(ctx, admin.ServerSetOptions{NLBNames: &nlb}); err != nil {
		t.Fatal(err)
	}
	page := s.get(vera.c, "/diagnose", http.StatusOK)
	for _, want := range []string{`id="finding-Q4"`, "nlb.contoso.com", "SmtpReceiveDirectTrustCertificateInvalid", "<code>certrelay cert new --force</code>", "<code>New-ExchangeCertificate -Force</code>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the diagnose page lacks %q", want)
		}
	}
}
