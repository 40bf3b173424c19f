package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"certrelay/internal/admin"
)

// TestAPINeedsAnAccount: without an account, every API path answers 401
// (with a Bearer challenge) and changes nothing; a wrong token too; the
// console's pages send the browser to the login page.
func TestAPINeedsAnAccount(t *testing.T) {
	s := newSite(t)
	before := s.snapshot()
	for _, op := range admin.Operations() {
		status, out := s.apiCall("", apiMethod(op), op.Name, nil)
		if status != http.StatusUnauthorized || out["Error"].(map[string]any)["Kind"] != "Unauthorized" {
			t.Errorf("%s without an account: %d %v", op.Name, status, out)
		}
	}
	if status, _ := s.apiCall("crt_0000_nope", http.MethodGet, "Get-ExchangeCertificate", nil); status != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d", status)
	}
	res, err := s.srv.Client().Get(s.srv.URL + "/api/openapi.json")
	if err != nil || res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("openapi.json without an account: %v %v", res.StatusCode, err)
	}
	c := s.anonymous()
	for _, p := range []string{"/", "/certificates", "/timeline", "/selection", "/events", "/queue", "/servers", "/settings"} {
		res, err := c.Get(s.srv.URL + p)
		if err != nil || res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
			t.Errorf("GET %s without a session: %v %v", p, res.StatusCode, err)
		}
	}
	if after := s.snapshot(); after != before {
		t.Errorf("calls without an account changed something:\n%s\n%s", before, after)
	}
}

// TestAPIRoles: a view-only account reads everything and may change
// nothing — every operation that changes something answers 403 and
// nothing changes; a server-admin changes this server but not the
// organisation; an org-admin changes the organisation. The statuses
// follow the error kinds.
func TestAPIRoles(t *testing.T) {
	s := newSite(t)
	vera, sam, olga := s.token("vera"), s.token("sam"), s.token("olga")
	before := s.snapshot()
	for _, op := range admin.Operations() {
		status, out := s.apiCall(vera, apiMethod(op), op.Name, map[string]any{})
		if op.Role == admin.ViewOnly {
			continue
		}
		if status != http.StatusForbidden || out["Error"].(map[string]any)["Kind"] != "Forbidden" {
			t.Errorf("%s as view-only: %d %v, want 403 Forbidden", op.Name, status, out)
		}
	}
	// With every parameter right, still refused.
	if status, _ := s.apiCall(vera, http.MethodPost, "New-ExchangeCertificate", map[string]any{"DomainName": []string{"mail.contoso.test"}, "Services": "SMTP", "Force": true}); status != http.StatusForbidden {
		t.Errorf("view-only cert new: %d", status)
	}
	if after := s.snapshot(); after != before {
		t.Fatalf("refused calls changed something:\n%s\n%s", before, after)
	}
	// Reading is allowed, with the data the CLI prints.
	status, out := s.apiCall(vera, http.MethodGet, "Get-ExchangeCertificate", nil)
	if status != http.StatusOK || len(out["Data"].([]any)) != 1 {
		t.Fatalf("view-only cert list: %d %v", status, out)
	}
	internal := out["Data"].([]any)[0].(map[string]any)["Thumbprint"].(string)

	status, out = s.apiCall(sam, http.MethodPost, "New-ExchangeCertificate", map[string]any{"DomainName": []string{"mail.contoso.test"}, "Services": "SMTP,IIS", "Force": true})
	if status != http.StatusOK {
		t.Fatalf("server-admin cert new: %d %v", status, out)
	}
	made := out["Data"].(map[string]any)
	if made["Subject"] != "CN=mail.contoso.test" || strings.Join(asStrings(made["Services"]), ",") != "IIS,SMTP" {
		t.Errorf("made %v", made)
	}
	if status, out := s.apiCall(sam, http.MethodPost, "New-SendConnector", map[string]any{"Name": "Out", "AddressSpaces": []string{"*"}}); status != http.StatusForbidden {
		t.Errorf("server-admin changed the organisation: %d %v", status, out)
	}
	if status, out := s.apiCall(olga, http.MethodPost, "New-SendConnector", map[string]any{"Name": "Out", "AddressSpaces": []string{"*"}}); status != http.StatusOK {
		t.Errorf("org-admin send connector: %d %v", status, out)
	}

	for _, c := range []struct {
		name, method, op string
		params           any
		status           int
		kind             string
	}{
		{"fail/not-found", http.MethodGet, "Get-ExchangeCertificate/Thumbprint", url.Values{"Thumbprint": {strings.Repeat("AB", 20)}}, 404, "NotFound"},
		{"fail/invalid-services", http.MethodPost, "Enable-ExchangeCertificate", map[string]any{"Thumbprint": internal, "Services": "FTP"}, 400, "Invalid"},
		{"fail/usage-unknown-parameter", http.MethodPost, "Enable-ExchangeCertificate", map[string]any{"Thumbprint": internal, "Colour": "red"}, 400, "Invalid"},
		{"fail/conflict-internal-certificate", http.MethodPost, "Remove-ExchangeCertificate", map[string]any{"Thumbprint": internal, "Force": true}, 409, "Conflict"},
		{"fail/wrong-method", http.MethodPost, "Get-ExchangeCertificate", map[string]any{}, 405, "Invalid"},
		{"fail/no-such-operation", http.MethodGet, "Get-Nothing", nil, 404, "NotFound"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, out := s.apiCall(sam, c.method, c.op, c.params)
			e, _ := out["Error"].(map[string]any)
			if status != c.status || e == nil || e["Kind"] != c.kind || e["Message"] == "" {
				t.Errorf("%d %v, want %d %s", status, out, c.status, c.kind)
			}
		})
	}
}

// TestAPIQuestions: an operation that asks answers 428 with the question
// and changes nothing; the same call with the answer's token does it.
func TestAPIQuestions(t *testing.T) {
	s := newSite(t)
	sam := s.token("sam")
	_, out := s.apiCall(sam, http.MethodPost, "New-ExchangeCertificate", map[string]any{"DomainName": []string{"gone.contoso.test"}, "Force": true})
	thumb := out["Data"].(map[string]any)["Thumbprint"].(string)
	before := s.snapshot()
	status, out := s.apiCall(sam, http.MethodPost, "Remove-ExchangeCertificate", map[string]any{"Thumbprint": thumb})
	q, _ := out["Confirmation"].(map[string]any)
	if status != http.StatusPreconditionRequired || q == nil || q["Token"] == "" || !strings.Contains(q["Question"].(string), thumb) {
		t.Fatalf("remove without Force: %d %v, want 428 with a question", status, out)
	}
	if after := s.snapshot(); after != before {
		t.Fatal("asking changed something")
	}
	status, out = s.apiCall(sam, http.MethodPost, "Remove-ExchangeCertificate", map[string]any{"Thumbprint": thumb, "_answer": map[string]any{"Token": q["Token"], "Yes": true}})
	if status != http.StatusOK || out["Data"].(map[string]any)["Thumbprint"] != thumb {
		t.Fatalf("answering yes: %d %v", status, out)
	}
	if _, err := s.a.GetCertificate(ctx, thumb); admin.KindOf(err) != admin.NotFound {
		t.Errorf("the certificate is still there: %v", err)
	}
}

// TestAPIAudit: a change through the API is an audit event naming the
// account, its role and the client's address; secrets never appear.
func TestAPIAudit(t *testing.T) {
	s := newSite(t)
	olga := s.token("olga")
	if status, out := s.apiCall(olga, http.MethodPost, "New-CertrelayAccount", map[string]any{"Name": "newbie", "Role": "view-only", "Password": "secret password 123"}); status != http.StatusOK {
		t.Fatalf("%d %v", status, out)
	}
	list, _ := s.a.ListEvents(ctx, eventsFilter(16080))
	if len(list) == 0 {
		t.Fatal("no audit event")
	}
	last := list[len(list)-1]
	if !strings.Contains(last.Message, "olga (org-admin) from 127.0.0.1 ran New-CertrelayAccount") || strings.Contains(last.Message, "secret password") {
		t.Errorf("audit event %q", last.Message)
	}
}

// TestAPIJSONIsTheRegistrysData: the API's Data is what the registry
// returns, as encoding/json writes it — what the CLI's --json prints
// (test/e2e compares with the CLI itself) — and < > & are escaped.
func TestAPIJSONIsTheRegistrysData(t *testing.T) {
	s := newSite(t)
	evil := s.evilCertificate()
	vera := s.token("vera")
	for _, op := range admin.Operations() {
		if apiMethod(op) != http.MethodGet {
			continue
		}
		p := url.Values{}
		call := admin.Params{}
		switch op.Name {
		case "Get-ExchangeCertificate/Thumbprint", "Get-CertrelayCertificateTlsa":
			p.Set("Thumbprint", evil)
			call["Thumbprint"] = evil
		case "Get-ReceiveConnector/Identity":
			p.Set("Identity", "Default hub1")
			call["Identity"] = "Default hub1"
		case "Get-SendConnector/Identity":
			continue // none exists
		case "Get-CertrelayCertificateSelection":
			p.Set("Fqdn", "evil.contoso.test")
			call["Fqdn"] = "evil.contoso.test"
		}
		status, out := s.apiCall(vera, http.MethodGet, op.Name, p)
		res, err := s.a.Call(ctx, admin.Request{Op: op.Name, Caller: admin.Caller{Name: "vera", Role: admin.ViewOnly}, Params: call})
		if err != nil || status != http.StatusOK {
			t.Errorf("%s: %d %v / %v", op.Name, status, out, err)
			continue
		}
		want, _ := json.Marshal(res.Data)
		var wantAny any
		_ = json.Unmarshal(want, &wantAny)
		got, _ := json.Marshal(out["Data"])
		var gotAny any
		_ = json.Unmarshal(got, &gotAny)
		if op.Name == "Get-CertrelayEvent" {
			continue // the audit of the token just made may differ in time: compared in test/e2e
		}
		if !jsonEqual(gotAny, wantAny) {
			t.Errorf("%s: API Data\n%s\nregistry\n%s", op.Name, got, want)
		}
	}
	raw := s.rawGET(vera, "/api/v1/Get-ExchangeCertificate/Thumbprint?Thumbprint="+evil)
	if strings.ContainsAny(raw, "<>") || !strings.Contains(raw, `\u003cscript`) {
		t.Errorf("the API's JSON does not escape markup:\n%s", raw)
	}
}

func (s *site) rawGET(token, path string) string {
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	return body(res)
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func asStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
