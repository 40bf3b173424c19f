package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/events"
	"certrelay/internal/store"
	"certrelay/internal/testpki"
)

var ctx = context.Background()

const password = "a long enough password"

// site is a console over a data directory set up as hub1, with one
// account per role (vera view-only, sam server-admin, olga org-admin).
type site struct {
	t   *testing.T
	a   *admin.Admin
	h   *Handler
	srv *httptest.Server
}

func newSite(t *testing.T) *site {
	t.Helper()
	a, err := admin.Open(ctx, admin.Options{DataDir: t.TempDir(), Hostname: func() (string, error) { return "hub1", nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Setup(ctx, admin.SetupOptions{Fqdn: "hub1.contoso.test"}); err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]string{"vera": "view-only", "sam": "server-admin", "olga": "org-admin"} {
		if _, err := a.Accounts.Add(ctx, name, role, password); err != nil {
			t.Fatal(err)
		}
	}
	h, err := New(Options{Admin: a})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return &site{t: t, a: a, h: h, srv: srv}
}

// anonymous is a browser-like client without a session.
func (s *site) anonymous() *http.Client {
	c := s.srv.Client()
	jar, _ := cookiejar.New(nil)
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// browser is a client logged in as name, and its CSRF token.
type browser struct {
	s    *site
	c    *http.Client
	csrf string
}

var csrfRE = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

func (s *site) login(name string) *browser {
	s.t.Helper()
	c := s.anonymous()
	body := s.get(c, "/login", http.StatusOK)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		s.t.Fatalf("no login CSRF token in\n%s", body)
	}
	res := s.post(c, "/login", url.Values{"_csrf": {m[1]}, "name": {name}, "password": {password}}, nil)
	if res.StatusCode != http.StatusSeeOther {
		s.t.Fatalf("login as %s: %d", name, res.StatusCode)
	}
	b := &browser{s: s, c: c}
	page := s.get(c, "/certificates", http.StatusOK)
	m = csrfRE.FindStringSubmatch(page)
	if m == nil {
		s.t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	b.csrf = m[1]
	return b
}

func (s *site) get(c *http.Client, path string, want int) string {
	s.t.Helper()
	res, err := c.Get(s.srv.URL + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if want != 0 && res.StatusCode != want {
		s.t.Fatalf("GET %s: %d, want %d\n%s", path, res.StatusCode, want, b)
	}
	return string(b)
}

// post posts a form; headers are added as given.
func (s *site) post(c *http.Client, path string, form url.Values, headers map[string]string) *http.Response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	return res
}

func body(res *http.Response) string {
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// token makes an API token for name.
func (s *site) token(name string) string {
	s.t.Helper()
	tok, err := s.a.Accounts.NewToken(ctx, name, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok.Secret
}

// apiCall calls the API with a bearer token (or none) and decodes the
// answer.
func (s *site) apiCall(token, method, op string, params any) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if params != nil {
		b, _ := json.Marshal(params)
		rd = bytes.NewReader(b)
	}
	u := s.srv.URL + "/api/v1/" + op
	if q, ok := params.(url.Values); ok && method == http.MethodGet {
		u, rd = u+"?"+q.Encode(), nil
	}
	req, _ := http.NewRequest(method, u, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	var out map[string]any
	b := body(res)
	if err := json.Unmarshal([]byte(b), &out); err != nil {
		s.t.Fatalf("%s %s: %d, not JSON: %v\n%s", method, op, res.StatusCode, err, b)
	}
	return res.StatusCode, out
}

// snapshot is what a refused call must leave as it was: the store, the
// settings, the connectors, the accounts, and the event log's changes.
func (s *site) snapshot() string {
	s.t.Helper()
	var b strings.Builder
	certs, _ := s.a.ListCertificates(ctx, admin.ListOptions{})
	for _, c := range certs {
		b.WriteString(c.Thumbprint + " " + strings.Join(c.Services, ",") + "\n")
	}
	info, _ := s.a.ConsoleShow(ctx)
	j, _ := json.Marshal(info)
	b.Write(j)
	conns, _ := s.a.ListReceiveConnectors(ctx)
	j, _ = json.Marshal(conns)
	b.Write(j)
	send, _ := s.a.ListSendConnectors(ctx)
	j, _ = json.Marshal(send)
	b.Write(j)
	accs, _ := s.a.Accounts.List(ctx)
	for _, a := range accs {
		b.WriteString("\n" + a.Name + " " + a.Role + " " + a.PasswordChanged.String())
	}
	evs, _ := s.a.Events.List(ctx, events.Filter{ID: 16080})
	b.WriteString("\naudit events: " + strconv.Itoa(len(evs)))
	return b.String()
}

// evilCertificate imports a certificate whose subject and friendly name
// hold markup and quotes, and returns its thumbprint.
func (s *site) evilCertificate() string {
	s.t.Helper()
	leaf := testpki.SelfSigned(s.t, testpki.Options{DNSNames: []string{"evil.contoso.test"}, Subject: &pkix.Name{
		CommonName: "evil.contoso.test", Organization: []string{`<script>alert("o")</script>`}, OrganizationalUnit: []string{`'"><img src=x onerror=alert(1)>`}}})
	pfx, err := certinfo.EncodePKCS12(leaf.Key, leaf.Cert, nil, "pw", rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	pw := "pw"
	res, err := s.a.ImportCertificate(ctx, admin.ImportOptions{Data: pfx, Password: &pw, FriendlyName: `"quoted" <b>friendly</b> & 'more'`})
	if err != nil {
		s.t.Fatal(err)
	}
	svc, _ := store.ParseServices("SMTP,IIS")
	if _, err := s.a.EnableCertificate(ctx, res.Certificate.Thumbprint, svc, admin.Yes{}); err != nil {
		s.t.Fatal(err)
	}
	return res.Certificate.Thumbprint
}
