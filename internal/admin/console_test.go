package admin

import (
	"strings"
	"testing"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/events"
	"certrelay/internal/testpki"
)

// TestConsoleSettings: console set refuses bindings that are no IP:PORT,
// that overlap a receive connector's, or metrics on the console's own
// address — changing nothing; a good one is stored, and warns while no
// certificate can serve the host name and no account exists; "" turns it
// off again.
func TestConsoleSettings(t *testing.T) {
	a := newAdmin(t)
	for _, c := range []struct {
		name   string
		params Params
		kind   Kind
		field  string
	}{
		{"fail/not-an-address", Params{"Bindings": "console:443"}, Invalid, "Bindings"},
		{"fail/receive-connector-port", Params{"Bindings": "0.0.0.0:2525"}, Conflict, "Bindings"},
		{"fail/metrics-on-the-console", Params{"Bindings": "127.0.0.1:8443", "MetricsBindings": "0.0.0.0:8443"}, Invalid, "MetricsBindings"},
		{"fail/bad-host-name", Params{"HostName": "not a name"}, Invalid, "HostName"},
		{"fail/nothing", Params{}, Invalid, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := call(t, a, serverAdmin, "Set-CertrelayConsole", c.params)
			e, ok := err.(*Error)
			if !ok || e.Kind != c.kind || e.Field != c.field {
				t.Fatalf("%v, want %s on %q", err, c.kind, c.field)
			}
			if info, _ := a.ConsoleShow(ctx); len(info.Bindings) != 0 || len(info.MetricsBindings) != 0 {
				t.Errorf("a refused call changed the settings: %+v", info)
			}
		})
	}
	if _, err := call(t, a, viewer, "Set-CertrelayConsole", Params{"Bindings": "127.0.0.1:8443"}); KindOf(err) != Forbidden {
		t.Errorf("view-only console set: %v", err)
	}
	res, err := call(t, a, serverAdmin, "Set-CertrelayConsole", Params{"Bindings": []string{"127.0.0.1:8443"}, "HostName": "Console.Contoso.COM."})
	if err != nil {
		t.Fatal(err)
	}
	info := res.Data.(ConsoleInfo)
	if strings.Join(info.Bindings, ",") != "127.0.0.1:8443" || info.HostName != "console.contoso.com" || info.Certificate != "" ||
		strings.Join(info.Urls, ",") != "https://console.contoso.com:8443/" {
		t.Errorf("after set: %+v", info)
	}
	var warned []string
	for _, m := range res.Messages {
		if m.Level == Warning {
			warned = append(warned, m.Text)
		}
	}
	if len(warned) != 2 || !strings.Contains(warned[0], "console.contoso.com") || !strings.Contains(warned[1], "New-CertrelayAccount") {
		t.Errorf("warnings %q: want no certificate for the name, and no account", warned)
	}
	if res, err := call(t, a, serverAdmin, "Set-CertrelayConsole", Params{"Bindings": ""}); err != nil || len(res.Data.(ConsoleInfo).Bindings) != 0 {
		t.Errorf("turning it off: %+v %v", res, err)
	}
}

// TestEnableIISWarnsWhenTheConsoleServesAnother: enabling IIS (M5) on a
// certificate the console will not use for its host name says why.
func TestEnableIISWarnsWhenTheConsoleServesAnother(t *testing.T) {
	a := newAdmin(t)
	res, err := call(t, a, serverAdmin, "New-ExchangeCertificate", Params{"DomainName": "other.contoso.com", "Services": "SMTP", "Force": true})
	if err != nil {
		t.Fatal(err)
	}
	other := res.Data.(Certificate).Thumbprint
	res, err = call(t, a, serverAdmin, "Enable-ExchangeCertificate", Params{"Thumbprint": other, "Services": "IIS"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range res.Messages {
		found = found || m.Level == Warning && strings.Contains(m.Text, "will not use this certificate for its host name hub1.contoso.com")
	}
	if !found {
		t.Errorf("no warning: %+v", res.Messages)
	}
	srv, _ := a.LocalServer(ctx)
	res, err = call(t, a, serverAdmin, "Enable-ExchangeCertificate", Params{"Thumbprint": srv.InternalTransportCertificateThumbprint, "Services": "IIS"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res.Messages {
		if strings.Contains(m.Text, "will not use") {
			t.Errorf("the console's own certificate got %q", m.Text)
		}
	}
}

// TestSelectionMapAndTimeline: the map names every listener with the
// certificate selection gives it and why; the timeline holds this
// server's certificates in use and the other servers' internal
// certificates from the directory, soonest expiry first, and leaves out
// certificates that serve nothing.
func TestSelectionMapAndTimeline(t *testing.T) {
	a := newAdmin(t)
	srv, _ := a.LocalServer(ctx)
	internal := srv.InternalTransportCertificateThumbprint
	if _, err := call(t, a, serverAdmin, "New-ExchangeCertificate", Params{"DomainName": "idle.contoso.com", "Services": "", "Force": true}); err != nil {
		t.Fatal(err)
	}
	peer := testpki.SelfSigned(t, testpki.Options{CommonName: "hub2", DNSNames: []string{"hub2.contoso.com"}, NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	if err := a.Dir.PutServer(ctx, directory.Server{Name: "hub2", Fqdn: "hub2.contoso.com", Role: "hub", InternalTransportCertificateThumbprint: "X", InternalTransportCertificate: peer.Cert.Raw}); err != nil {
		t.Fatal(err)
	}
	res, err := call(t, a, viewer, "Get-CertrelaySelectionMap", nil)
	if err != nil {
		t.Fatal(err)
	}
	byListener := map[string]SelectionMapEntry{}
	for _, e := range res.Data.([]SelectionMapEntry) {
		byListener[e.Listener] = e
	}
	if e := byListener["ReceiveConnector"]; e.Winner != internal || e.TLS != "offered" || e.Fqdn != "hub1.contoso.com" || len(e.Candidates) == 0 {
		t.Errorf("receive connector: %+v", e)
	}
	if e := byListener["HTTPS"]; e.Winner != "" || !strings.Contains(e.TLS, "console off") || !strings.Contains(e.Why, "IIS") {
		t.Errorf("console: %+v", e)
	}
	if e := byListener["InternalTransport"]; e.Winner != internal || e.WinnerNotAfter == nil {
		t.Errorf("internal transport: %+v", e)
	}
	res, err = call(t, a, viewer, "Get-CertrelayCertificateTimeline", nil)
	if err != nil {
		t.Fatal(err)
	}
	tl := res.Data.(CertificateTimeline)
	if tl.WarningWindowDays != 30 || len(tl.Certificates) != 2 || len(tl.Servers) != 2 {
		t.Fatalf("timeline %+v", tl)
	}
	if first := tl.Certificates[0]; first.Server != "hub2" || !first.IsInternalTransportCertificate || first.Status != "" {
		t.Errorf("the soonest should be hub2's internal certificate: %+v", first)
	}
	if second := tl.Certificates[1]; second.Thumbprint != internal || strings.Join(second.UsedBy, ",") != "ReceiveConnector Default hub1,InternalTransport hub1" {
		t.Errorf("this server's: %+v", second)
	}
}

// TestAuditOfChanges: every change made through Call is an audit event
// saying who, with which role, from where, and what — secrets and file
// contents left out; reads and refused calls are not.
func TestAuditOfChanges(t *testing.T) {
	a := newAdmin(t)
	count := func() int { evs, _ := a.ListEvents(ctx, events.Filter{ID: 16080}); return len(evs) }
	before := count()
	if _, err := a.Call(ctx, Request{Op: "Get-ExchangeCertificate", Caller: Caller{Name: "vera", Role: ViewOnly, From: "192.0.2.7"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Call(ctx, Request{Op: "New-CertrelayAccount", Caller: Caller{Name: "vera", Role: ViewOnly, From: "192.0.2.7"}, Params: Params{"Name": "x", "Role": "org-admin", "Password": "a long password"}}); KindOf(err) != Forbidden {
		t.Fatal(err)
	}
	if n := count(); n != before {
		t.Fatalf("a read and a refused call made %d audit events", n-before)
	}
	if _, err := a.Call(ctx, Request{Op: "New-CertrelayAccount", Caller: Caller{Name: "olga", Role: OrgAdmin, From: "192.0.2.8"},
		Params: Params{"Name": "amy", "Role": "view-only", "Password": "a very secret password"}}); err != nil {
		t.Fatal(err)
	}
	evs, _ := a.ListEvents(ctx, events.Filter{ID: 16080})
	msg := evs[len(evs)-1].Message
	if msg != "olga (org-admin) from 192.0.2.8 ran New-CertrelayAccount -Name amy -Role view-only -Password (secret)." {
		t.Errorf("audit %q", msg)
	}
	root := testpki.NewRoot(t, testpki.Options{CommonName: "Audit Root"})
	if _, err := a.Call(ctx, Request{Op: "Add-CertrelayTrustedCertificate", Caller: Caller{Name: "sam", Role: ServerAdmin, From: "cli"}, Params: Params{"FileData": testpki.PEM(root.Cert)}}); err != nil {
		t.Fatal(err)
	}
	evs, _ = a.ListEvents(ctx, events.Filter{ID: 16080})
	if msg := evs[len(evs)-1].Message; !strings.HasPrefix(msg, "sam (server-admin) from cli ran Add-CertrelayTrustedCertificate -FileData (") || strings.Contains(msg, "BEGIN") {
		t.Errorf("audit %q", msg)
	}
}

// TestBadBindingIsInvalid: a binding that is no IP:PORT is a refused
// value (Invalid, the API's 400), not an internal failure (500) — for a
// receive connector as for the console.
func TestBadBindingIsInvalid(t *testing.T) {
	a := newAdmin(t)
	for _, c := range []struct {
		op     string
		params Params
	}{
		{"New-ReceiveConnector", Params{"Name": "Bad", "Bindings": "nohost:25"}},
		{"Set-ReceiveConnector", Params{"Identity": "Default hub1", "Bindings": "127.0.0.1:99999"}},
		{"Set-CertrelayConsole", Params{"Bindings": "nohost:443"}},
	} {
		_, err := call(t, a, orgAdmin, c.op, c.params)
		if e, ok := err.(*Error); !ok || e.Kind != Invalid || e.Field == "" {
			t.Errorf("%s %v: %v (kind %s), want Invalid naming the field", c.op, c.params, err, KindOf(err))
		}
	}
}
