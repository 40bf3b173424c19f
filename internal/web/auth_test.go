package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"certrelay/internal/events"
)

func eventsFilter(id int) events.Filter { return events.Filter{ID: id} }

// TestCSRF: a change made with a session cookie is refused (403, nothing
// changed) without the session's CSRF token, with a wrong one, or from
// another site; with the token it is done. API calls with a session need
// the token in a header; API calls with a token need none.
func TestCSRF(t *testing.T) {
	s := newSite(t)
	sam := s.login("sam")
	form := url.Values{"DomainName": {"csrf.contoso.test"}, "Services": {"SMTP"}, "Force": {"true"}}
	before := s.snapshot()
	with := func(v url.Values, k, val string) url.Values {
		out := url.Values{}
		for a, b := range v {
			out[a] = b
		}
		out.Set(k, val)
		return out
	}
	for _, c := range []struct {
		name    string
		form    url.Values
		headers map[string]string
	}{
		{"fail/missing", form, nil},
		{"fail/wrong", with(form, "_csrf", strings.Repeat("x", 43)), nil},
		{"fail/empty", with(form, "_csrf", ""), nil},
		{"fail/cross-site", with(form, "_csrf", sam.csrf), map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"fail/other-origin", with(form, "_csrf", sam.csrf), map[string]string{"Origin": "https://evil.example"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := s.post(sam.c, "/do/New-ExchangeCertificate", c.form, c.headers)
			b := body(res)
			if res.StatusCode != http.StatusForbidden || !strings.Contains(b, "request") && !strings.Contains(b, "CSRF") {
				t.Errorf("%d\n%s", res.StatusCode, b)
			}
		})
	}
	// The API with the session cookie: the token must come in the header.
	apiPost := func(headers map[string]string) int {
		req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/api/v1/New-ExchangeCertificate", strings.NewReader(`{"DomainName":["api.contoso.test"],"Force":true}`))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		res, err := sam.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body(res)
		return res.StatusCode
	}
	if st := apiPost(nil); st != http.StatusForbidden {
		t.Errorf("API call with the session and no CSRF header: %d", st)
	}
	if st := apiPost(map[string]string{csrfHeader: "wrong"}); st != http.StatusForbidden {
		t.Errorf("API call with the session and a wrong CSRF header: %d", st)
	}
	if after := s.snapshot(); after != before {
		t.Fatalf("refused changes changed something:\n%s\n%s", before, after)
	}
	res := s.post(sam.c, "/do/New-ExchangeCertificate", with(form, "_csrf", sam.csrf), nil)
	if b := body(res); res.StatusCode != http.StatusOK || !strings.Contains(b, "csrf.contoso.test") {
		t.Fatalf("with the CSRF token: %d\n%s", res.StatusCode, b)
	}
	if st := apiPost(map[string]string{csrfHeader: sam.csrf}); st != http.StatusOK {
		t.Errorf("API call with the session and its CSRF header: %d", st)
	}
	// The login form is protected too (login CSRF): no cookie, no login.
	c := s.anonymous()
	res = s.post(c, "/login", url.Values{"_csrf": {"forged"}, "name": {"sam"}, "password": {password}}, nil)
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("a login without the login form's cookie: %d", res.StatusCode)
	}
}

// TestLoginRateLimit: after 5 failed logins from an address, even the
// right password is refused (429 with Retry-After) until the lockout
// ends; failures raise 16082 and the lockout 16083.
func TestLoginRateLimit(t *testing.T) {
	s := newSite(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s.h.limiter.now = func() time.Time { return now }
	try := func(pw string) *http.Response {
		c := s.anonymous()
		m := csrfRE.FindStringSubmatch(s.get(c, "/login", http.StatusOK))
		return s.post(c, "/login", url.Values{"_csrf": {m[1]}, "name": {"sam"}, "password": {pw}}, nil)
	}
	for i := 0; i < maxFailures; i++ {
		if res := try("wrong password!!"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, res.StatusCode)
		}
	}
	res := try(password)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("the right password after %d failures: %d, want 429 with Retry-After", maxFailures, res.StatusCode)
	}
	if status, _ := s.apiCall("crt_0_x", http.MethodGet, "Get-ExchangeCertificate", nil); status != http.StatusTooManyRequests {
		t.Errorf("a token from a locked-out address: %d, want 429", status)
	}
	for _, id := range []int{16082, 16083} {
		if evs, _ := s.a.ListEvents(ctx, eventsFilter(id)); len(evs) == 0 {
			t.Errorf("no event %d", id)
		}
	}
	now = now.Add(lockout + time.Second)
	if res := try(password); res.StatusCode != http.StatusSeeOther {
		t.Errorf("after the lockout: %d", res.StatusCode)
	}
}

// TestSessionCookieAndHeaders: the session cookie is __Host-, Secure,
// HttpOnly, SameSite=Strict; every answer carries HSTS and a Content
// Security Policy without inline scripts; logging out ends the session.
func TestSessionCookieAndHeaders(t *testing.T) {
	s := newSite(t)
	c := s.anonymous()
	m := csrfRE.FindStringSubmatch(s.get(c, "/login", http.StatusOK))
	res := s.post(c, "/login", url.Values{"_csrf": {m[1]}, "name": {"vera"}, "password": {password}}, nil)
	var sess *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == sessionCookie && ck.Value != "" {
			sess = ck
		}
	}
	if sess == nil || !sess.Secure || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" || sess.Domain != "" || !strings.HasPrefix(sess.Name, "__Host-") {
		t.Fatalf("session cookie %+v", sess)
	}
	for _, p := range []string{"/login", "/certificates", "/api/v1/Get-ExchangeCertificate", "/assets/htmx.min.js"} {
		r, err := c.Get(s.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body(r)
		if hsts := r.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=31536000") {
			t.Errorf("%s: HSTS %q", p, hsts)
		}
		csp := r.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", p)
		}
	}
	b := s.login("vera")
	res = s.post(b.c, "/logout", url.Values{"_csrf": {b.csrf}}, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	if r, _ := b.c.Get(s.srv.URL + "/certificates"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("after logout: %d", r.StatusCode)
	}
}

// TestAccountChangesApplyAtOnce: a session whose account is removed
// ends at its next request; one whose role is lowered may no longer
// change anything.
func TestAccountChangesApplyAtOnce(t *testing.T) {
	s := newSite(t)
	sam := s.login("sam")
	role := "view-only"
	if _, err := s.a.Accounts.Update(ctx, "sam", &role, nil, false); err != nil {
		t.Fatal(err)
	}
	res := s.post(sam.c, "/do/New-ExchangeCertificate", url.Values{"_csrf": {sam.csrf}, "DomainName": {"x.contoso.test"}, "Force": {"true"}}, nil)
	if b := body(res); res.StatusCode != http.StatusForbidden || !strings.Contains(b, "view-only") {
		t.Errorf("a change after the role was lowered: %d\n%s", res.StatusCode, b)
	}
	if _, err := s.a.Accounts.Remove(ctx, "sam"); err != nil {
		t.Fatal(err)
	}
	if r, _ := sam.c.Get(s.srv.URL + "/certificates"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("a removed account's session: %d", r.StatusCode)
	}
}
