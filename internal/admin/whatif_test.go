package admin

import (
	"context"
	"strings"
	"testing"

	"certrelay/internal/events"
)

// TestWhatIf: a WhatIf call runs the operation to its end and changes
// nothing — no certificate, key file, setting or event — while its result
// says what would have happened: the object as it would be, the question
// it would have asked, the file it would have handed over.
func TestWhatIf(t *testing.T) {
	a := newAdmin(t)
	srv, _ := a.LocalServer(ctx)
	internal := srv.InternalTransportCertificateThumbprint
	other, err := call(t, a, serverAdmin, "New-ExchangeCertificate", Params{"DomainName": "mail.contoso.com", "Services": "POP"})
	if err != nil {
		t.Fatal(err)
	}
	otherT := other.Data.(Certificate).Thumbprint
	before := snapshot(t, a)
	evs, _ := a.ListEvents(ctx, events.Filter{})
	whatIf := func(op string, p Params) (*Result, error) {
		t.Helper()
		return a.Call(ctx, Request{Op: op, Caller: serverAdmin, Params: p, WhatIf: true})
	}
	check := func(name string) {
		t.Helper()
		if after := snapshot(t, a); after != before {
			t.Errorf("%s: WhatIf changed the store:\n%s\n%s", name, before, after)
		}
		if after, _ := a.ListEvents(ctx, events.Filter{}); len(after) != len(evs) {
			t.Errorf("%s: WhatIf logged %d events", name, len(after)-len(evs))
		}
	}

	// M1 without arguments would replace the internal transport certificate:
	// the question is reported, not asked.
	res, err := whatIf("New-ExchangeCertificate", nil)
	if err != nil || !res.WhatIf || res.Data.(Certificate).Thumbprint == "" {
		t.Fatalf("new: %+v %v", res, err)
	}
	if len(res.Messages) == 0 || !strings.Contains(res.Messages[0].Text, "It would ask") {
		t.Errorf("new: the question is not reported: %+v", res.Messages)
	}
	check("New-ExchangeCertificate")

	res, err = whatIf("Enable-ExchangeCertificate", Params{"Thumbprint": otherT, "Services": "SMTP"})
	if err != nil || strings.Join(res.Data.(Certificate).Services, ",") != "POP,SMTP" {
		t.Fatalf("enable: %+v %v", res, err)
	}
	check("Enable-ExchangeCertificate")

	if res, err = whatIf("Remove-ExchangeCertificate", Params{"Thumbprint": otherT}); err != nil || res.Data.(Certificate).Thumbprint != otherT {
		t.Fatalf("remove: %+v %v", res, err)
	}
	check("Remove-ExchangeCertificate")

	// What would fail fails, with the operation's own error.
	if _, err := whatIf("Remove-ExchangeCertificate", Params{"Thumbprint": internal}); KindOf(err) != Conflict {
		t.Errorf("remove the internal transport certificate: %v, want Conflict", err)
	}
	check("Remove-ExchangeCertificate (internal)")

	// A request's file is returned, never delivered.
	delivered := false
	res, err = a.Call(ctx, Request{Op: "New-ExchangeCertificate/GenerateRequest", Caller: serverAdmin, WhatIf: true,
		Params:  Params{"DomainName": "pop.contoso.com", "GenerateRequest": true},
		Deliver: func(ctx2 context.Context, f File) (string, error) { delivered = true; return "x", nil }})
	if err != nil || res.File == nil || delivered || !strings.Contains(string(res.File.Data), "CERTIFICATE REQUEST") {
		t.Fatalf("request: %+v %v (delivered %v)", res, err, delivered)
	}
	check("New-ExchangeCertificate -GenerateRequest")

	if _, err := whatIf("Set-EventLogLevel", Params{"Identity": `MSExchangeTransport\*`, "Level": "Expert"}); err != nil {
		t.Fatal(err)
	}
	if lv, _ := a.EventLevels(ctx, `MSExchangeTransport\*`); len(lv) == 0 || lv[0].EventLevel == "Expert" {
		t.Errorf("WhatIf set the level: %+v", lv)
	}

	// The queue keeps its own database: no WhatIf there.
	if _, err := whatIf("Retry-Queue", nil); err == nil || !strings.Contains(err.Error(), "-WhatIf") {
		t.Errorf("Retry-Queue -WhatIf: %v", err)
	}
}
