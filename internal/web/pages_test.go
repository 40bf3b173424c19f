package web

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"certrelay/internal/admin"
)

// TestPagesEscapeEverything: a certificate whose subject and friendly
// name hold markup and quotes is shown as text on every page that shows
// it — list, detail, timeline (table and chart data), selection map,
// events, the result of a change — never as markup.
func TestPagesEscapeEverything(t *testing.T) {
	s := newSite(t)
	evil := s.evilCertificate()
	sam := s.login("sam")
	c, _ := s.a.GetCertificate(ctx, evil)
	subject := template.HTMLEscapeString(c.Subject) // as html/template writes text
	raw := []string{`<script>`, `<img src=x`, `<b>friendly</b>`, `"quoted"`, `alert("o")`}
	pages := []string{"/certificates", "/certificates?q=evil", "/certificates?domain=evil.contoso.test", "/certificates/" + evil,
		"/timeline", "/selection", "/events", "/servers", "/settings"}
	for _, p := range pages {
		b := s.get(sam.c, p, http.StatusOK)
		for _, r := range raw {
			if strings.Contains(b, r) {
				t.Errorf("%s shows %q as markup", p, r)
			}
		}
		if p != "/servers" && p != "/settings" && p != "/events" && !strings.Contains(b, subject) {
			t.Errorf("%s does not show the subject %s", p, subject)
		}
	}
	if b := s.get(sam.c, "/certificates/"+evil, http.StatusOK); !strings.Contains(b, template.HTMLEscapeString(c.FriendlyName)) {
		t.Errorf("the detail page does not show the friendly name %q", c.FriendlyName)
	}
	// Only the console's own scripts, from its own origin.
	for _, p := range pages {
		b := s.get(sam.c, p, http.StatusOK)
		for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(b, -1) {
			if m != `<script src="/assets/htmx.min.js" defer>` && m != `<script src="/assets/uPlot.iife.min.js" defer>` &&
				m != `<script src="/assets/console.js" defer>` && m != `<script type="application/json" id="timeline-data">` {
				t.Errorf("%s has a script element %s", p, m)
			}
		}
	}
	// The chart's data is JSON that decodes to the subject as text.
	b := s.get(sam.c, "/timeline", http.StatusOK)
	m := regexp.MustCompile(`(?s)<script type="application/json" id="timeline-data">(.*?)</script>`).FindStringSubmatch(b)
	var chart chartData
	if m == nil || json.Unmarshal([]byte(m[1]), &chart) != nil {
		t.Fatalf("no chart data in\n%s", b)
	}
	found := false
	for _, r := range chart.Rows {
		found = found || strings.Contains(r.Label, c.Subject)
	}
	if !found {
		t.Errorf("the chart data lost the subject: %+v", chart.Rows)
	}
	// The result page of a change shows it escaped too.
	res := s.post(sam.c, "/do/Enable-ExchangeCertificate", url.Values{"_csrf": {sam.csrf}, "Thumbprint": {evil}, "Services": {"POP"}}, nil)
	rb := body(res)
	if res.StatusCode != http.StatusOK || strings.Contains(rb, "<script>") || !strings.Contains(rb, subject) {
		t.Errorf("result page: %d\n%s", res.StatusCode, rb)
	}
}

// TestPagesForEveryRole: every page reads for every role; a view-only
// account is offered no change, a server-admin is.
func TestPagesForEveryRole(t *testing.T) {
	s := newSite(t)
	certs, _ := s.a.ListCertificates(ctx, admin.ListOptions{})
	detail := "/certificates/" + certs[0].Thumbprint
	for _, who := range []string{"vera", "sam", "olga"} {
		b := s.login(who)
		for _, p := range []string{"/certificates", detail, "/timeline", "/selection", "/events", "/queue", "/servers", "/settings", "/diagnose"} {
			page := s.get(b.c, p, http.StatusOK)
			if !strings.Contains(page, `id="who">`+who) {
				t.Errorf("%s as %s: the page does not say who is logged in", p, who)
			}
		}
		form := s.get(b.c, "/new/import", http.StatusOK)
		if offers := strings.Contains(form, `id="import-form"`); offers != (who != "vera") || (who == "vera") != strings.Contains(form, "may look but not change") {
			t.Errorf("%s: import form offered = %v", who, offers)
		}
		page := s.get(b.c, detail, http.StatusOK)
		if offers := strings.Contains(page, `id="enable-form"`); offers != (who != "vera") {
			t.Errorf("%s: enable form offered = %v", who, offers)
		}
	}
	vera := s.login("vera")
	res := s.post(vera.c, "/do/Enable-ExchangeCertificate", url.Values{"_csrf": {vera.csrf}, "Thumbprint": {certs[0].Thumbprint}, "Services": {"IIS"}}, nil)
	if b := body(res); res.StatusCode != http.StatusForbidden || !strings.Contains(b, "view-only") {
		t.Errorf("view-only enable from a forged form: %d\n%s", res.StatusCode, b)
	}
	if c, _ := s.a.GetCertificate(ctx, certs[0].Thumbprint); strings.Contains(strings.Join(c.Services, ","), "IIS") {
		t.Error("the view-only account enabled a service")
	}
}

// TestConfirmationDialog: removing a certificate from the console asks
// in a dialog (the M8 question), changes nothing until answered; No
// keeps it, Yes removes it.
func TestConfirmationDialog(t *testing.T) {
	s := newSite(t)
	sam := s.login("sam")
	res := s.post(sam.c, "/do/New-ExchangeCertificate", url.Values{"_csrf": {sam.csrf}, "DomainName": {"bye.contoso.test"}, "Services": {"SMTP"}, "Force": {"true"}}, nil)
	m := regexp.MustCompile(`/certificates/([0-9A-F]{40})`).FindStringSubmatch(body(res))
	if m == nil {
		t.Fatal("no new certificate")
	}
	thumb := m[1]
	ask := func() (string, string) {
		res := s.post(sam.c, "/do/Remove-ExchangeCertificate", url.Values{"_csrf": {sam.csrf}, "_back": {"/certificates"}, "Thumbprint": {thumb}}, nil)
		b := body(res)
		tok := regexp.MustCompile(`name="_answer_token" value="([^"]+)"`).FindStringSubmatch(b)
		if res.StatusCode != http.StatusOK || !strings.Contains(b, `<dialog open class="confirm"`) || tok == nil || !strings.Contains(b, thumb) {
			t.Fatalf("no dialog: %d\n%s", res.StatusCode, b)
		}
		return b, tok[1]
	}
	_, tok := ask()
	if _, err := s.a.GetCertificate(ctx, thumb); err != nil {
		t.Fatal("asking removed it")
	}
	res = s.post(sam.c, "/do/Remove-ExchangeCertificate", url.Values{"_csrf": {sam.csrf}, "Thumbprint": {thumb}, "_answer_token": {tok}, "_answer": {"no"}}, nil)
	body(res)
	if _, err := s.a.GetCertificate(ctx, thumb); err != nil {
		t.Fatal("answering no removed it")
	}
	_, tok = ask()
	res = s.post(sam.c, "/do/Remove-ExchangeCertificate", url.Values{"_csrf": {sam.csrf}, "Thumbprint": {thumb}, "_answer_token": {tok}, "_answer": {"yes"}}, nil)
	if b := body(res); res.StatusCode != http.StatusOK || !strings.Contains(b, "Done") {
		t.Fatalf("answering yes: %d\n%s", res.StatusCode, b)
	}
	if _, err := s.a.GetCertificate(ctx, thumb); admin.KindOf(err) != admin.NotFound {
		t.Errorf("answering yes did not remove it: %v", err)
	}
}

// TestOpenAPIFromTheRegistry: the document lists every operation at its
// path and method, with its role and parameters, and the schema of its
// data with the property names of SPEC §2.
func TestOpenAPIFromTheRegistry(t *testing.T) {
	s := newSite(t)
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/api/openapi.json", nil)
	req.Header.Set("Authorization", "Bearer "+s.token("vera"))
	res, err := s.srv.Client().Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("%v %v", res.StatusCode, err)
	}
	var doc struct {
		OpenAPI    string `json:"openapi"`
		Paths      map[string]map[string]map[string]any
		Components struct {
			Schemas map[string]map[string]any
		}
	}
	if err := json.Unmarshal([]byte(body(res)), &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("%v %q", err, doc.OpenAPI)
	}
	for _, op := range admin.Operations() {
		item := doc.Paths["/api/v1/"+op.Name][strings.ToLower(apiMethod(op))]
		if item == nil {
			t.Errorf("%s is not in the document", op.Name)
			continue
		}
		if item["x-certrelay-role"] != op.Role.String() || item["operationId"] != op.Name {
			t.Errorf("%s: %v", op.Name, item)
		}
		for _, p := range op.Params {
			if !strings.Contains(mustJSON(item), `"`+p.Name+`"`) {
				t.Errorf("%s: parameter %s missing", op.Name, p.Name)
			}
		}
		if op.Confirm != admin.ConfirmNever && item["responses"].(map[string]any)["428"] == nil {
			t.Errorf("%s asks but documents no 428", op.Name)
		}
	}
	data := doc.Paths["/api/v1/Get-ExchangeCertificate/Thumbprint"]["get"]["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)["properties"].(map[string]any)["Data"].(map[string]any)
	name := strings.TrimPrefix(data["$ref"].(string), "#/components/schemas/")
	cert := doc.Components.Schemas[name]
	if cert == nil {
		t.Fatalf("no schema %q", name)
	}
	props := cert["properties"].(map[string]any)
	for _, name := range []string{"Thumbprint", "Subject", "Issuer", "CertificateDomains", "NotBefore", "NotAfter", "IsSelfSigned", "RootCAType", "Services",
		"Status", "HasPrivateKey", "PublicKeySize", "SerialNumber", "FriendlyName", "PrivateKeyExportable", "AccessRules", "CertificateRequest"} {
		if props[name] == nil {
			t.Errorf("Certificate schema lacks %s", name)
		}
	}
	if props["NotAfter"].(map[string]any)["format"] != "date-time" || props["Chain"] != nil {
		t.Errorf("NotAfter %v, Chain %v", props["NotAfter"], props["Chain"])
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestCertificatePageShowsRenewal: the internal transport certificate's
// page says when certrelay renews it, and offers "Renew now" to a
// server-admin, whose click renews it (the new certificate's page then
// has the renewal, the old one's names it).
func TestCertificatePageShowsRenewal(t *testing.T) {
	s := newSite(t)
	srv, _ := s.a.LocalServer(ctx)
	old := srv.InternalTransportCertificateThumbprint
	vera := s.login("vera")
	page := s.get(vera.c, "/certificates/"+old, http.StatusOK)
	if !strings.Contains(page, `id="next-renewal"`) || !strings.Contains(page, "30 days before expiry") || strings.Contains(page, `id="renew-form"`) {
		t.Fatalf("view-only page: no next renewal, or a renew form:\n%s", page)
	}
	sam := s.login("sam")
	if !strings.Contains(s.get(sam.c, "/certificates/"+old, http.StatusOK), `id="renew-form"`) {
		t.Fatal("no Renew now for a server-admin")
	}
	res := s.post(sam.c, "/do/Update-CertrelayCertificate", url.Values{"_csrf": {sam.csrf}, "Thumbprint": {old}, "_back": {"/certificates/" + old}}, nil)
	body(res)
	srv, _ = s.a.LocalServer(ctx)
	if srv.InternalTransportCertificateThumbprint == old {
		t.Fatalf("Renew now did not renew: %d", res.StatusCode)
	}
	if p := s.get(vera.c, "/certificates/"+old, http.StatusOK); !strings.Contains(p, "renewed: <a href=\"/certificates/"+srv.InternalTransportCertificateThumbprint) {
		t.Errorf("the old certificate's page does not name its renewal")
	}
}
