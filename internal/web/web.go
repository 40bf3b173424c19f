// Package web is certrelay's HTTPS face (SPEC I3, the IIS service of the
// seeds): a REST API over the operation registry of internal/admin, with
// an OpenAPI 3.1 document generated from it, and a console of
// server-rendered pages (html/template; htmx and uPlot, embedded, make
// them livelier but every page reads without JavaScript).
//
// It is a face like the CLI: every management operation runs through
// admin.Call with the logged-in account as the Caller — its name, its
// role (read again at each request, so a removed account or a lowered
// role takes effect at once) and the client's address — so roles, typed
// errors, questions and audit events are the registry's, never the web's
// own. What is the web's own: accounts' sessions (cookies that are
// __Host-, Secure, HttpOnly and SameSite=Strict), CSRF tokens on every
// change, a login rate limit, API tokens for scripts, security headers
// (HSTS, a Content Security Policy without inline scripts or styles), and
// escaping everything it writes (html/template).
//
// The package serves HTTP only: certrelay serve (internal/server) runs it
// on the serving layer's TLS listeners with the certificate selected for
// the console's host name (S8), and never imports this package — the
// serve command hands the Handler over.
package web

import (
	"embed"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"certrelay/internal/admin"
)

//go:embed assets
var assetFS embed.FS

// Options configure New. Zero values take the defaults stated.
type Options struct {
	Admin *admin.Admin // required: an open data directory
	// Logger receives the web's logs (logins, refusals): default discard.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// SessionIdle ends a session unused this long (default 30 minutes);
	// SessionMax ends any session this long after its login (default 12
	// hours).
	SessionIdle, SessionMax time.Duration
	// HSTSMaxAge is the max-age of Strict-Transport-Security (default one
	// year).
	HSTSMaxAge time.Duration
}

// Handler is the console and the API. Safe for concurrent use.
type Handler struct {
	o        Options
	a        *admin.Admin
	log      *slog.Logger
	sessions *sessions
	limiter  *limiter
	pages    *pages
	mux      *http.ServeMux
	hsts     string
}

// New returns the console and API over an open data directory.
func New(o Options) (*Handler, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionIdle <= 0 {
		o.SessionIdle = 30 * time.Minute
	}
	if o.SessionMax <= 0 {
		o.SessionMax = 12 * time.Hour
	}
	if o.HSTSMaxAge <= 0 {
		o.HSTSMaxAge = 365 * 24 * time.Hour
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	h := &Handler{o: o, a: o.Admin, log: o.Logger, pages: p,
		sessions: newSessions(o.Now, o.SessionIdle, o.SessionMax),
		limiter:  newLimiter(o.Now),
		hsts:     "max-age=" + strconv.Itoa(int(o.HSTSMaxAge/time.Second)),
	}
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	assets, _ := fs.Sub(assetFS, "assets")
	files := http.FileServerFS(assets)
	m.Handle("GET /assets/", http.StripPrefix("/assets/", cacheForever(files)))
	m.HandleFunc("GET /.well-known/mta-sts.txt", h.mtaSTSPolicy)
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login", h.login)
	m.Handle("POST /logout", h.page(h.logout))

	// The API: the registry's operations, and its description.
	m.Handle("GET /api/openapi.json", h.api(h.openAPI))
	m.Handle("GET /api/v1/", h.api(h.callAPI))
	m.Handle("POST /api/v1/", h.api(h.callAPI))
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, apiError{Kind: "NotFound", Message: "no such API path: see /api/openapi.json"})
	})

	// The console's pages.
	m.Handle("GET /{$}", h.page(func(w http.ResponseWriter, r *http.Request, c *client) {
		http.Redirect(w, r, "/certificates", http.StatusSeeOther)
	}))
	m.Handle("GET /certificates", h.page(h.certificatesPage))
	m.Handle("GET /certificates/{thumbprint}", h.page(h.certificatePage))
	m.Handle("GET /certificates/{thumbprint}/file", h.page(h.certificateFile))
	m.Handle("GET /new/{form}", h.page(h.formPage))
	m.Handle("GET /timeline", h.page(h.timelinePage))
	m.Handle("GET /selection", h.page(h.selectionPage))
	m.Handle("GET /events", h.page(h.eventsPage))
	m.Handle("GET /queue", h.page(h.queuePage))
	m.Handle("GET /servers", h.page(h.serversPage))
	m.Handle("GET /diagnose", h.page(h.diagnosePage))
	m.Handle("GET /settings", h.page(h.settingsPage))
	m.Handle("POST /do/", h.page(h.do))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.notFound(w, r)
	})
	h.mux = m
}

// ServeHTTP implements http.Handler: security headers on every answer,
// then the routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Strict-Transport-Security", h.hsts)
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	if !strings.HasPrefix(r.URL.Path, "/assets/") {
		hd.Set("Cache-Control", "no-store")
	}
	h.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows the console's own scripts and styles
// only: no inline script or style, no eval, no framing, forms to itself.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func cacheForever(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		h.ServeHTTP(w, r)
	})
}

// clientAddr is the client's IP address, as the connection says (proxy
// headers are not trusted: the console is served directly).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
