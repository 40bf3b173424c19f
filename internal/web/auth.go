package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"certrelay/internal/accounts"
	"certrelay/internal/admin"
)

// Who may do what: every request but the login page and the assets needs
// an account. Browsers log in with a password and get a session cookie;
// scripts send an API token (Authorization: Bearer crt_…). A request
// that changes something (any method but GET and HEAD) with a session
// cookie must carry the session's CSRF token, in the form field _csrf or
// the X-CSRF-Token header, and come from this origin (Sec-Fetch-Site,
// Origin); a token in the Authorization header is no ambient credential,
// so API calls with a token need no CSRF token.

const (
	sessionCookie = "__Host-certrelay-session"
	loginCookie   = "__Host-certrelay-login"
	csrfField     = "_csrf"
	csrfHeader    = "X-CSRF-Token"
)

// client is who makes a request: the account (read again at each
// request), how it authenticated, and the session's CSRF token.
type client struct {
	account accounts.Account
	role    admin.Role
	from    string
	sess    *session // nil for a token
	csrf    string
}

func (c *client) caller() admin.Caller {
	return admin.Caller{Name: c.account.Name, Role: c.role, From: c.from}
}

// may reports whether the client's role reaches r.
func (c *client) may(r admin.Role) bool { return c.role >= r }

// session is a browser's login.
type session struct {
	id, account, csrf string
	created, seen     time.Time
}

// sessions are kept in memory: a restart logs everyone out. Bounded, and
// each ends after an idle time or a maximum life. Safe for concurrent
// use.
type sessions struct {
	mu        sync.Mutex
	m         map[string]*session
	now       func() time.Time
	idle, max time.Duration
}

const maxSessions = 10000

func newSessions(now func() time.Time, idle, max time.Duration) *sessions {
	return &sessions{m: map[string]*session{}, now: now, idle: idle, max: max}
}

func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("web: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// start makes a new session for account (a new ID at every login: no
// fixation).
func (s *sessions) start(account string) *session {
	now := s.now()
	ss := &session{id: randomToken(), account: account, csrf: randomToken(), created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		var oldest *session
		for _, x := range s.m {
			if oldest == nil || x.seen.Before(oldest.seen) {
				oldest = x
			}
		}
		delete(s.m, oldest.id)
	}
	s.m[ss.id] = ss
	return ss
}

// get returns the live session with id, or nil; it counts as use.
func (s *sessions) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	now := s.now()
	if now.Sub(ss.seen) > s.idle || now.Sub(ss.created) > s.max {
		delete(s.m, id)
		return nil
	}
	ss.seen = now
	return ss
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// limiter is the login rate limit: after maxFailures failed logins (or
// API tokens) from one address within failureWindow, that address is
// refused for lockout without checking anything; so is an account name
// after maxFailures*2 failures from anywhere. Bounded; safe for
// concurrent use.
type limiter struct {
	mu  sync.Mutex
	m   map[string]*failures
	now func() time.Time
}

type failures struct {
	times  []time.Time
	locked time.Time // refused until then
}

const (
	maxFailures   = 5
	failureWindow = 15 * time.Minute
	lockout       = 15 * time.Minute
	maxTracked    = 10000
)

func newLimiter(now func() time.Time) *limiter { return &limiter{m: map[string]*failures{}, now: now} }

// blocked returns how long key is still refused (0: not).
func (l *limiter) blocked(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.m[key]
	if f == nil {
		return 0
	}
	if d := f.locked.Sub(l.now()); d > 0 {
		return d
	}
	return 0
}

// fail records a failure for key; it returns the failures within the
// window, and whether key is now locked.
func (l *limiter) fail(key string, limit int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.m) >= maxTracked {
		for k, f := range l.m {
			if len(f.times) == 0 || now.Sub(f.times[len(f.times)-1]) > failureWindow && now.After(f.locked) {
				delete(l.m, k)
			}
		}
		if len(l.m) >= maxTracked { // under attack from everywhere: forget the oldest half at random
			n := 0
			for k := range l.m {
				if n++; n > maxTracked/2 {
					break
				}
				delete(l.m, k)
			}
		}
	}
	f := l.m[key]
	if f == nil {
		f = &failures{}
		l.m[key] = f
	}
	kept := f.times[:0]
	for _, t := range f.times {
		if now.Sub(t) < failureWindow {
			kept = append(kept, t)
		}
	}
	f.times = append(kept, now)
	if len(f.times) >= limit {
		f.locked = now.Add(lockout)
		return len(f.times), true
	}
	return len(f.times), false
}

// succeed forgets key's failures.
func (l *limiter) succeed(key string) {
	l.mu.Lock()
	delete(l.m, key)
	l.mu.Unlock()
}

// authenticate finds the client of a request: a token (when tokens is
// set and the request has one) or a session cookie. It returns nil with
// a status and message when there is none (401) or the address is
// locked out (429).
func (h *Handler) authenticate(r *http.Request, tokens bool) (*client, int, string) {
	ctx, from := r.Context(), clientAddr(r)
	if auth := r.Header.Get("Authorization"); auth != "" && tokens {
		scheme, tok, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return nil, http.StatusUnauthorized, "use Authorization: Bearer TOKEN (certrelay account token NAME makes one)"
		}
		if d := h.limiter.blocked("ip:" + from); d > 0 {
			return nil, http.StatusTooManyRequests, "too many failed logins from this address: try again in " + d.Round(time.Second).String()
		}
		a, err := h.a.Accounts.AuthenticateToken(ctx, strings.TrimSpace(tok))
		if err != nil {
			h.loginFailed(ctx, "(token)", from)
			return nil, http.StatusUnauthorized, "the token is wrong, expired or revoked"
		}
		return h.clientFor(a, from, nil)
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, http.StatusUnauthorized, "log in first"
	}
	ss := h.sessions.get(ck.Value)
	if ss == nil {
		return nil, http.StatusUnauthorized, "the session ended: log in again"
	}
	a, err := h.a.Accounts.Get(ctx, ss.account)
	if err != nil {
		h.sessions.end(ss.id)
		return nil, http.StatusUnauthorized, "the account no longer exists"
	}
	return h.clientFor(a, from, ss)
}

func (h *Handler) clientFor(a accounts.Account, from string, ss *session) (*client, int, string) {
	role, err := admin.ParseRole(a.Role)
	if err != nil {
		return nil, http.StatusForbidden, "the account's role is unknown: " + a.Role
	}
	c := &client{account: a, role: role, from: from, sess: ss}
	if ss != nil {
		c.csrf = ss.csrf
	}
	return c, 0, ""
}

// checkCSRF refuses a change made with a session cookie that does not
// carry the session's CSRF token, or that comes from another site.
func checkCSRF(r *http.Request, c *client) error {
	if c.sess == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return errors.New("the request comes from another site (Sec-Fetch-Site: " + site + ")")
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || !strings.EqualFold(u.Host, r.Host) {
			return errors.New("the request comes from another origin (" + o + ")")
		}
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField) // parses the body (multipart too: see parseForm)
	}
	if got == "" {
		return errors.New("the CSRF token is missing: reload the page and try again")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(c.csrf)) != 1 {
		return errors.New("the CSRF token is wrong: reload the page and try again")
	}
	return nil
}

// loginFailed counts a failed login (or token) from an address and for a
// name, and raises 16082 (and 16083 when the address is now locked out).
func (h *Handler) loginFailed(ctx context.Context, name, from string) {
	n, locked := h.limiter.fail("ip:"+from, maxFailures)
	if name != "(token)" {
		h.limiter.fail("name:"+strings.ToLower(name), 2*maxFailures)
	}
	h.log.Warn("console login failed", "account", name, "from", from, "failures", n)
	_, _ = h.a.Events.Raise(context.WithoutCancel(ctx), 16082, from+"|"+strings.ToLower(name), name, from, strconv.Itoa(n))
	if locked {
		_, _ = h.a.Events.Raise(context.WithoutCancel(ctx), 16083, from, from, lockout.String())
	}
}

// loginPage shows the login form, with a fresh login CSRF token in a
// cookie and the form (double submit: no session exists yet).
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.renderLogin(w, r, http.StatusOK, "")
}

func (h *Handler) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	next := r.FormValue("next")
	if !safeNext(next) {
		next = "/certificates"
	}
	w.WriteHeader(status)
	h.pages.render(w, "login", pageData{Title: "Log in", Error: msg, Data: map[string]string{"CSRF": tok, "Next": next}})
}

// safeNext accepts only a path of this site to go to after login.
func safeNext(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "/\\") && !strings.ContainsAny(p, "\r\n")
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	ctx, from := r.Context(), clientAddr(r)
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	name, pw := r.PostFormValue("name"), r.PostFormValue("password")
	ck, err := r.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue(csrfField))) != 1 {
		h.renderLogin(w, r, http.StatusForbidden, "The login form expired or came from another site: try again.")
		return
	}
	for _, key := range []string{"ip:" + from, "name:" + strings.ToLower(name)} {
		if d := h.limiter.blocked(key); d > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(d.Seconds())+1))
			h.renderLogin(w, r, http.StatusTooManyRequests, "Too many failed logins: try again in "+d.Round(time.Minute).String()+".")
			return
		}
	}
	a, err := h.a.Accounts.Authenticate(ctx, name, pw)
	if err != nil {
		h.loginFailed(ctx, name, from)
		h.renderLogin(w, r, http.StatusUnauthorized, "Wrong account name or password.")
		return
	}
	h.limiter.succeed("ip:" + from)
	h.limiter.succeed("name:" + a.Name)
	ss := h.sessions.start(a.Name)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: ss.id, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	h.log.Info("console login", "account", a.Name, "role", a.Role, "from", from)
	_, _ = h.a.Events.Raise(context.WithoutCancel(ctx), 16081, "", a.Name, a.Role, from)
	next := r.PostFormValue("next")
	if !safeNext(next) {
		next = "/certificates"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, c *client) {
	if c.sess != nil {
		h.sessions.end(c.sess.id)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// page wraps a console page: a session is needed (else the login page),
// and changes need the CSRF token.
func (h *Handler) page(fn func(http.ResponseWriter, *http.Request, *client)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, status, msg := h.authenticate(r, false)
		if c == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.renderLogin(w, r, status, msg)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := parseForm(w, r); err != nil {
				h.errorPage(w, r, c, http.StatusBadRequest, err.Error())
				return
			}
			if err := checkCSRF(r, c); err != nil {
				h.log.Warn("console change refused", "account", c.account.Name, "from", c.from, "path", r.URL.Path, "why", err)
				h.errorPage(w, r, c, http.StatusForbidden, err.Error())
				return
			}
		}
		fn(w, r, c)
	})
}

// api wraps an API endpoint: a token or a session, CSRF for sessions;
// failures are JSON.
func (h *Handler) api(fn func(http.ResponseWriter, *http.Request, *client)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, status, msg := h.authenticate(r, true)
		if c == nil {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="certrelay"`)
			}
			writeAPIError(w, status, apiError{Kind: "Unauthorized", Message: msg})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			if c.sess != nil {
				if err := checkCSRFAPI(r, c); err != nil {
					h.log.Warn("API change refused", "account", c.account.Name, "from", c.from, "path", r.URL.Path, "why", err)
					writeAPIError(w, http.StatusForbidden, apiError{Kind: "Forbidden", Message: err.Error()})
					return
				}
			}
		}
		fn(w, r, c)
	})
}

// checkCSRFAPI is checkCSRF for JSON calls, whose token must come in the
// header (their body is the operation's).
func checkCSRFAPI(r *http.Request, c *client) error {
	if r.Header.Get(csrfHeader) == "" {
		return errors.New("the CSRF token is missing: send the session's token in the " + csrfHeader + " header (or call with an API token)")
	}
	return checkCSRF(r, c)
}

// maxBody bounds request bodies (a PKCS#12 file is a few KiB).
const maxBody = 4 << 20

// parseForm reads a form body (urlencoded or multipart), bounded.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if err := r.ParseMultipartForm(maxBody); err != nil {
			return errors.New("cannot read the form: " + err.Error())
		}
		return nil
	}
	if err := r.ParseForm(); err != nil {
		return errors.New("cannot read the form: " + err.Error())
	}
	return nil
}
