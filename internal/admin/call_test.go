package admin

import (
	"context"
	"errors"
	"strings"
	"testing"

	"certrelay/internal/certinfo"
	"certrelay/internal/events"
	"certrelay/internal/store"
	"certrelay/internal/testpki"
	"certrelay/internal/tracking"
)

var (
	viewer      = Caller{Name: "vera", Role: ViewOnly}
	serverAdmin = Caller{Name: "sam", Role: ServerAdmin}
	orgAdmin    = Caller{Name: "olga", Role: OrgAdmin}
)

func call(t *testing.T, a *Admin, who Caller, op string, p Params) (*Result, error) {
	t.Helper()
	return a.Call(ctx, Request{Op: op, Caller: who, Params: p})
}

// asConfirmation returns the question err carries, or fails the test.
func asConfirmation(t *testing.T, err error) *ConfirmationRequired {
	t.Helper()
	var cr *ConfirmationRequired
	if !errors.As(err, &cr) || cr.Token == "" {
		t.Fatalf("want a confirmation-required answer with a token, got %v", err)
	}
	return cr
}

func detail(cr *ConfirmationRequired, name string) string {
	for _, d := range cr.Details {
		if d.Name == name {
			return d.Value
		}
	}
	return ""
}

// TestCallRefusesRoles: a caller whose role is below an operation's is
// refused (Forbidden) before anything happens — for every operation that
// changes something — and may still read.
func TestCallRefusesRoles(t *testing.T) {
	a := newAdmin(t)
	before := snapshot(t, a)
	evs, _ := a.ListEvents(ctx, events.Filter{})
	for _, op := range Operations() {
		if op.Role == ViewOnly {
			continue
		}
		_, err := call(t, a, viewer, op.Name, Params{})
		var e *Error
		if !errors.As(err, &e) || e.Kind != Forbidden || e.Op != op.Name || !strings.Contains(e.Error(), "view-only") {
			t.Errorf("%s as view-only: %v, want Forbidden", op.Name, err)
		}
	}
	// With every parameter right, still refused, and nothing made.
	if _, err := call(t, a, viewer, "New-ExchangeCertificate", Params{"DomainName": "mail.contoso.com", "Services": "SMTP", "Force": true}); KindOf(err) != Forbidden {
		t.Errorf("view-only cert new: %v", err)
	}
	if _, err := call(t, a, serverAdmin, "New-SendConnector", Params{"Name": "Out", "AddressSpaces": "*"}); KindOf(err) != Forbidden {
		t.Errorf("server-admin changed the organisation's send connectors: %v", err)
	}
	if after := snapshot(t, a); after != before {
		t.Errorf("refused calls changed the store:\n%s\n%s", before, after)
	}
	if after, _ := a.ListEvents(ctx, events.Filter{}); len(after) != len(evs) {
		t.Errorf("refused calls logged %d events", len(after)-len(evs))
	}
	// Reading is allowed.
	res, err := call(t, a, viewer, "Get-ExchangeCertificate", nil)
	if err != nil || len(res.Data.([]Certificate)) != 1 {
		t.Fatalf("view-only cert list: %+v %v", res, err)
	}
	// Some operations need more depending on what they are asked.
	tp := res.Data.([]Certificate)[0].Thumbprint
	if _, err := call(t, a, viewer, "Export-ExchangeCertificate", Params{"Thumbprint": tp}); err != nil {
		t.Errorf("view-only export of the certificate alone: %v", err)
	}
	if _, err := call(t, a, viewer, "Export-ExchangeCertificate", Params{"Thumbprint": tp, "Password": "pw"}); KindOf(err) != Forbidden {
		t.Errorf("view-only export of a private key: %v", err)
	}
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Policy Root"})
	if _, err := call(t, a, serverAdmin, "Add-CertrelayTrustedCertificate", Params{"FileData": testpki.PEM(root.Cert), "Source": "grouppolicy"}); KindOf(err) != Forbidden {
		t.Errorf("server-admin added an organisation-wide root: %v", err)
	}
	if _, err := call(t, a, orgAdmin, "Add-CertrelayTrustedCertificate", Params{"FileData": testpki.PEM(root.Cert), "Source": "grouppolicy"}); err != nil {
		t.Errorf("org-admin adding an organisation-wide root: %v", err)
	}
}

// TestCallConfirmsNewInternalCertificate: cert new that would replace
// the internal transport certificate answers with a question showing
// both thumbprints and expiry dates, and changes nothing; answering yes
// stores the very certificate the question showed and makes it the
// internal one; answering no still makes a certificate.
func TestCallConfirmsNewInternalCertificate(t *testing.T) {
	a := newAdmin(t)
	srv, _ := a.LocalServer(ctx)
	old := srv.InternalTransportCertificateThumbprint
	oldCert, _ := a.GetCertificate(ctx, old)
	before := snapshot(t, a)
	params := Params{"KeyType": "ecdsa"}

	_, err := call(t, a, serverAdmin, "New-ExchangeCertificate", params)
	cr := asConfirmation(t, err)
	newT := detail(cr, "NewThumbprint")
	if detail(cr, "CurrentThumbprint") != old || newT == "" || detail(cr, "CurrentNotAfter") != oldCert.NotAfter.UTC().Format("2006-01-02T15:04:05Z07:00") || detail(cr, "NewNotAfter") == "" {
		t.Errorf("details %+v", cr.Details)
	}
	if !strings.Contains(cr.Question, old) || !strings.Contains(cr.Question, newT) || cr.Op != "New-ExchangeCertificate" || cr.Action != "new certificate" {
		t.Errorf("question %+v", cr)
	}
	if after := snapshot(t, a); after != before {
		t.Fatalf("asking changed the store:\n%s\n%s", before, after)
	}

	res, err := a.Call(ctx, Request{Op: "New-ExchangeCertificate", Caller: serverAdmin, Params: params, Answer: &Answer{Token: cr.Token, Yes: true}})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Data.(Certificate); c.Thumbprint != newT || !c.IsInternalTransportCertificate {
		t.Errorf("stored %s (internal %v), the question showed %s", c.Thumbprint, c.IsInternalTransportCertificate, newT)
	}
	if srv, _ := a.LocalServer(ctx); srv.InternalTransportCertificateThumbprint != newT {
		t.Error("the internal transport certificate was not replaced")
	}
	if len(res.Messages) == 0 || !strings.Contains(res.Messages[0].Text, old) {
		t.Errorf("messages %+v", res.Messages)
	}
	// An answer is used once.
	if _, err := a.Call(ctx, Request{Op: "New-ExchangeCertificate", Caller: serverAdmin, Params: params, Answer: &Answer{Token: cr.Token, Yes: true}}); !errors.As(err, &cr) {
		t.Errorf("a used answer was taken again: %v", err)
	}

	// No: made anyway, the internal one kept.
	_, err = call(t, a, serverAdmin, "New-ExchangeCertificate", params)
	cr = asConfirmation(t, err)
	res, err = a.Call(ctx, Request{Op: "New-ExchangeCertificate", Caller: serverAdmin, Params: params, Answer: &Answer{Token: cr.Token, Yes: false}})
	if err != nil || res.Data.(Certificate).Thumbprint != detail(cr, "NewThumbprint") || res.Data.(Certificate).IsInternalTransportCertificate {
		t.Fatalf("answered no: %+v %v", res, err)
	}
	if srv, _ := a.LocalServer(ctx); srv.InternalTransportCertificateThumbprint != newT {
		t.Error("answering no replaced the internal transport certificate")
	}
	// Force answers yes without a question.
	res, err = call(t, a, serverAdmin, "New-ExchangeCertificate", Params{"KeyType": "ecdsa", "Force": true})
	if err != nil || !res.Data.(Certificate).IsInternalTransportCertificate {
		t.Fatalf("forced: %+v %v", res, err)
	}
}

// TestCallAnswerIsCheckedAgain: the answer holds for what was asked. If
// another process replaced the internal transport certificate between
// question and answer, the answer does not replace the new one: the
// question is asked again, about it, and nothing changed meanwhile.
func TestCallAnswerIsCheckedAgain(t *testing.T) {
	dir := t.TempDir()
	open := func() *Admin {
		a, err := Open(ctx, Options{DataDir: dir, Hostname: func() (string, error) { return "hub1", nil }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	a, other := open(), open()
	if _, err := a.Setup(ctx, SetupOptions{Fqdn: "hub1.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	params := Params{"KeyType": "ecdsa"}
	_, err := call(t, a, serverAdmin, "New-ExchangeCertificate", params)
	first := asConfirmation(t, err)

	res, err := call(t, other, serverAdmin, "New-ExchangeCertificate", Params{"KeyType": "ecdsa", "Force": true})
	if err != nil {
		t.Fatal(err)
	}
	meanwhile := res.Data.(Certificate).Thumbprint
	before := snapshot(t, a)

	_, err = a.Call(ctx, Request{Op: "New-ExchangeCertificate", Caller: serverAdmin, Params: params, Answer: &Answer{Token: first.Token, Yes: true}})
	second := asConfirmation(t, err)
	if detail(second, "CurrentThumbprint") != meanwhile || detail(second, "NewThumbprint") != detail(first, "NewThumbprint") {
		t.Errorf("asked again about %s → %s; want %s → %s", detail(second, "CurrentThumbprint"), detail(second, "NewThumbprint"), meanwhile, detail(first, "NewThumbprint"))
	}
	if after := snapshot(t, a); after != before {
		t.Fatalf("an answer to an outdated question changed the store:\n%s\n%s", before, after)
	}
	if _, err := a.Call(ctx, Request{Op: "New-ExchangeCertificate", Caller: serverAdmin, Params: params, Answer: &Answer{Token: second.Token, Yes: true}}); err != nil {
		t.Fatal(err)
	}
	if srv, _ := a.LocalServer(ctx); srv.InternalTransportCertificateThumbprint != detail(first, "NewThumbprint") {
		t.Errorf("internal %s, want %s", srv.InternalTransportCertificateThumbprint, detail(first, "NewThumbprint"))
	}
}

// TestCallConfirmsRemove: cert remove always asks; no cancels; yes
// removes; an answer only holds for the call that was asked (same
// operation, parameters and caller).
func TestCallConfirmsRemove(t *testing.T) {
	a := newAdmin(t)
	res, err := call(t, a, serverAdmin, "New-ExchangeCertificate", Params{"DomainName": "mail.contoso.com", "KeyType": "ecdsa", "Services": "POP"})
	if err != nil {
		t.Fatal(err)
	}
	tp := res.Data.(Certificate).Thumbprint
	other, err := call(t, a, serverAdmin, "New-ExchangeCertificate", Params{"DomainName": "other.contoso.com", "KeyType": "ecdsa", "Services": "POP"})
	if err != nil {
		t.Fatal(err)
	}
	remove := Params{"Thumbprint": tp}
	_, err = call(t, a, serverAdmin, "Remove-ExchangeCertificate", remove)
	cr := asConfirmation(t, err)
	if detail(cr, "Thumbprint") != tp || !strings.Contains(cr.Question, "POP") {
		t.Errorf("question %+v", cr)
	}
	if _, err := a.GetCertificate(ctx, tp); err != nil {
		t.Fatal("asking removed the certificate")
	}
	// The answer does not carry over to another certificate, or caller.
	otherT := other.Data.(Certificate).Thumbprint
	_, err = a.Call(ctx, Request{Op: "Remove-ExchangeCertificate", Caller: serverAdmin, Params: Params{"Thumbprint": otherT}, Answer: &Answer{Token: cr.Token, Yes: true}})
	asConfirmation(t, err)
	_, err = call(t, a, serverAdmin, "Remove-ExchangeCertificate", remove)
	cr = asConfirmation(t, err)
	_, err = a.Call(ctx, Request{Op: "Remove-ExchangeCertificate", Caller: orgAdmin, Params: remove, Answer: &Answer{Token: cr.Token, Yes: true}})
	asConfirmation(t, err)
	if _, err := a.GetCertificate(ctx, otherT); err != nil {
		t.Fatal("an answer about one certificate removed another")
	}

	_, err = call(t, a, serverAdmin, "Remove-ExchangeCertificate", remove)
	cr = asConfirmation(t, err)
	_, err = a.Call(ctx, Request{Op: "Remove-ExchangeCertificate", Caller: serverAdmin, Params: remove, Answer: &Answer{Token: cr.Token, Yes: false}})
	if KindOf(err) != Cancelled || !errors.Is(err, ErrCancelled) {
		t.Fatalf("answered no: %v", err)
	}
	_, err = call(t, a, serverAdmin, "Remove-ExchangeCertificate", remove)
	cr = asConfirmation(t, err)
	res, err = a.Call(ctx, Request{Op: "Remove-ExchangeCertificate", Caller: serverAdmin, Params: remove, Answer: &Answer{Token: cr.Token, Yes: true}})
	if err != nil || res.Data.(Certificate).Thumbprint != tp {
		t.Fatalf("answered yes: %+v %v", res, err)
	}
	if _, err := a.GetCertificate(ctx, tp); KindOf(err) != NotFound {
		t.Errorf("still there after yes: %v", err)
	}
}

// TestCallErrorKinds: each failure has its kind, the parameter at fault
// and its value, and texts that name no CLI flag or command (faces render
// the marks in their own syntax).
func TestCallErrorKinds(t *testing.T) {
	a := newAdmin(t)
	srv, _ := a.LocalServer(ctx)
	unset, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer unset.Close()
	unknown := strings.Repeat("AB", 20)
	for _, c := range []struct {
		name         string
		a            *Admin
		op           string
		p            Params
		kind         Kind
		field, value string
		usage        bool
		fix          string // a word of the fix, rendered in the cmdlet syntax
	}{
		{"invalid/not-a-thumbprint", a, "Get-ExchangeCertificate/Thumbprint", Params{"Thumbprint": "xyz"}, Invalid, "Thumbprint", "xyz", false, "Get-ExchangeCertificate"},
		{"invalid/domain-name", a, "New-ExchangeCertificate", Params{"DomainName": "bad_name!", "Force": true}, Invalid, "DomainName", "bad_name!", false, ""},
		{"invalid/limits", a, "Set-ReceiveConnector", Params{"Identity": "Default hub1", "MaxInboundConnection": "10", "MaxInboundConnectionPerSource": "20"}, Invalid, "MaxInboundConnectionPerSource", "20", false, "lower the first"},
		{"invalid/missing-services", a, "Enable-ExchangeCertificate", Params{"Thumbprint": unknown}, Invalid, "Services", "", true, ""},
		{"invalid/bad-service", a, "Enable-ExchangeCertificate", Params{"Thumbprint": unknown, "Services": "FTP"}, Invalid, "Services", "FTP", true, ""},
		{"not-found/thumbprint", a, "Enable-ExchangeCertificate", Params{"Thumbprint": unknown, "Services": "SMTP"}, NotFound, "Thumbprint", "", false, "Get-ExchangeCertificate"},
		{"not-found/connector", a, "Set-ReceiveConnector", Params{"Identity": "Nope", "Fqdn": "a.contoso.com"}, NotFound, "Identity", "Nope", false, "Get-ReceiveConnector"},
		{"not-found/mailbox-domain", a, "New-Mailbox", Params{"Address": "bob@elsewhere.test", "Password": "long enough"}, NotFound, "Address", "bob@elsewhere.test", false, "New-AcceptedDomain elsewhere.test"},
		{"conflict/connector-name", a, "New-ReceiveConnector", Params{"Name": "Default hub1", "Bindings": "127.0.0.1:2600"}, Conflict, "Name", "Default hub1", false, "Set-ReceiveConnector"},
		{"conflict/remove-internal", a, "Remove-ExchangeCertificate", Params{"Thumbprint": srv.InternalTransportCertificateThumbprint, "Force": true}, Conflict, "Thumbprint", srv.InternalTransportCertificateThumbprint, false, "New-ExchangeCertificate"},
		{"conflict/setup-role", a, "Install-CertrelayServer", Params{"Role": "edge"}, Conflict, "Role", "edge", false, "Install-CertrelayServer -Role edge"},
		{"forbidden/role", a, "Set-ExchangeServer", Params{"Fqdn": "x.contoso.com"}, Forbidden, "", "", false, ""},
		{"unavailable/not-set-up", unset, "Get-ExchangeServer", nil, Unavailable, "", "", false, "Install-CertrelayServer"},
		{"usage/unknown-operation", a, "Format-Disk", nil, Invalid, "", "", true, ""},
		{"usage/nothing-to-set", a, "Set-ExchangeServer", nil, Invalid, "", "", true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			who := orgAdmin
			if c.kind == Forbidden {
				who = viewer
			}
			_, err := call(t, c.a, who, c.op, c.p)
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("%T %v, want *Error", err, err)
			}
			if e.Kind != c.kind || e.Field != c.field || e.Usage != c.usage || (c.value != "" && e.Value != c.value) {
				t.Errorf("kind %s field %q value %q usage %v; want %s %q %q %v (%v)", e.Kind, e.Field, e.Value, e.Usage, c.kind, c.field, c.value, c.usage, e)
			}
			text := e.Error()
			if !strings.Contains(Render(e.Fix, Lookup(e.Op), nil)+" "+text, c.fix) {
				t.Errorf("fix %q lacks %q", e.Fix, c.fix)
			}
			if strings.Contains(text, "--") || strings.Contains(text, "certrelay ") {
				t.Errorf("names a CLI flag or command: %s", text)
			}
		})
	}
}

// TestCallIsOneTransaction: an operation run through Call keeps the
// guarantee of its typed method (issue 9 item 3): a failure at its
// second step undoes the first.
func TestCallIsOneTransaction(t *testing.T) {
	a := newAdmin(t)
	res, err := call(t, a, serverAdmin, "New-ExchangeCertificate", Params{"DomainName": "pop.contoso.com", "Services": "", "KeyType": "ecdsa"})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, a)
	lift := failWrites(t, a, "settings")
	_, err = call(t, a, serverAdmin, "Enable-ExchangeCertificate", Params{"Thumbprint": res.Data.(Certificate).Thumbprint, "Services": "POP,SMTP", "Force": true})
	lift()
	if KindOf(err) != Internal {
		t.Fatalf("enable with the settings unwritable: %v", err)
	}
	if after := snapshot(t, a); after != before {
		t.Errorf("a failed enable changed the store:\n%s\n%s", before, after)
	}
}

// TestEventsAndTraceThroughTheRegistry: the event log, its levels and
// the message trace are read (and the levels set) through Call.
func TestEventsAndTraceThroughTheRegistry(t *testing.T) {
	a := newAdmin(t)
	res, err := call(t, a, viewer, "Get-CertrelayEvent", Params{"Id": 16001})
	if err != nil || len(res.Data.([]events.Event)) != 1 {
		t.Fatalf("setup's event: %+v %v", res, err)
	}
	if _, err := call(t, a, serverAdmin, "Set-EventLogLevel", Params{"Identity": `MSExchangeTransport\SmtpReceive`, "Level": "expert"}); err != nil {
		t.Fatal(err)
	}
	res, err = call(t, a, viewer, "Get-EventLogLevel", Params{"Identity": `msexchangetransport\smtpreceive`})
	if levels := res.Data.([]EventLevelSetting); err != nil || len(levels) != 1 || levels[0].EventLevel != "Expert" {
		t.Fatalf("levels %+v %v", res.Data, err)
	}
	if _, err := call(t, a, serverAdmin, "Set-EventLogLevel", Params{"Identity": `Nope\Nope`, "Level": "Low"}); KindOf(err) != NotFound {
		t.Errorf("unknown category: %v", err)
	}
	res, err = call(t, a, viewer, "Get-MessageTrackingLog", nil)
	if err != nil || res.Data == nil || len(res.Data.([]tracking.Record)) != 0 {
		t.Errorf("empty trace: %+v %v", res, err)
	}
}

// TestCallDeliversFiles: an operation that produces a file hands it to
// the face (Request.Deliver) or returns it; a request whose file cannot
// be delivered is not kept, and an export is logged once delivered.
func TestCallDeliversFiles(t *testing.T) {
	a := newAdmin(t)
	srv, _ := a.LocalServer(ctx)
	res, err := call(t, a, viewer, "Export-ExchangeCertificate", Params{"Thumbprint": srv.InternalTransportCertificateThumbprint, "BinaryEncoded": true})
	if err != nil || res.File == nil || res.File.Format != "DER" || res.File.Secret || len(res.File.Data) == 0 {
		t.Fatalf("export without Deliver: %+v %v", res, err)
	}
	evs, _ := a.ListEvents(ctx, events.Filter{ID: 16007})
	if len(evs) != 1 || !strings.Contains(evs[0].Message, "returned to vera") {
		t.Errorf("export events %+v", evs)
	}

	before := snapshot(t, a)
	failing := func(context.Context, File) (string, error) { return "", errors.New("disk full") }
	_, err = a.Call(ctx, Request{Op: "New-ExchangeCertificate/GenerateRequest", Caller: serverAdmin, Params: Params{"DomainName": "pop.contoso.com", "KeyType": "ecdsa"}, Deliver: failing})
	if err == nil || !strings.Contains(err.Error(), "nothing was kept") {
		t.Fatalf("request with its file undeliverable: %v", err)
	}
	if after := snapshot(t, a); after != before {
		t.Errorf("an undelivered request was kept:\n%s\n%s", before, after)
	}
	var got File
	res, err = a.Call(ctx, Request{Op: "New-ExchangeCertificate/GenerateRequest", Caller: serverAdmin, Params: Params{"DomainName": "pop.contoso.com", "KeyType": "ecdsa"},
		Deliver: func(_ context.Context, f File) (string, error) { got = f; return "req.pem", nil }})
	if err != nil || res.File != nil || got.Format != "PKCS#10 PEM" || !strings.Contains(string(got.Data), "CERTIFICATE REQUEST") || res.Data.(Certificate).Status != "PendingRequest" {
		t.Fatalf("request delivered: %+v %v %+v", res, err, got)
	}
}

// TestCloneKeepsTheKeyType protects M2 (Get-ExchangeCertificate T |
// New-ExchangeCertificate): a renewal copies the original's key type and
// size unless others are given — an ECDSA certificate is not renewed as
// RSA 2048 because the key-type parameter has a default.
func TestCloneKeepsTheKeyType(t *testing.T) {
	a := newAdmin(t)
	orig, err := a.NewCertificate(ctx, NewOptions{Domains: []string{"ec.contoso.com"}, Services: servicesPtr(store.None), Key: certinfo.KeySpec{Type: "ecdsa", Size: 384}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := call(t, a, serverAdmin, "New-ExchangeCertificate", Params{"Instance": orig.Certificate.Thumbprint})
	if err != nil {
		t.Fatal(err)
	}
	clone := res.Data.(Certificate)
	if clone.KeyAlgorithm != "ECDSA P-384" || clone.Thumbprint == orig.Certificate.Thumbprint {
		t.Errorf("the renewal of an ECDSA P-384 certificate has a %s key", clone.KeyAlgorithm)
	}
	res, err = call(t, a, serverAdmin, "New-ExchangeCertificate", Params{"Instance": orig.Certificate.Thumbprint, "KeyType": "rsa"})
	if err != nil {
		t.Fatal(err)
	}
	if k := res.Data.(Certificate).KeyAlgorithm; k != "RSA" {
		t.Errorf("a renewal asked for RSA has a %s key", k)
	}
}
