package e2e

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"certrelay/internal/certinfo"
	"certrelay/internal/testpki"
)

// browser is Debian's chromium driven through chromedp, headless, kept
// off the network: every name but the console's resolves to nothing, and
// the background services that call home are off. It collects what
// pages write to the console as errors (console.error, uncaught
// exceptions, the browser's own log at level error: failed loads,
// Content Security Policy violations).
type browser struct {
	t      *testing.T
	ctx    context.Context
	shots  string
	mu     sync.Mutex
	errors []string
	n      int
}

func newBrowser(t *testing.T, s *consoleSite) *browser {
	t.Helper()
	path := testpki.Tool(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.IgnoreCertErrors, // trust is testssl's to judge; the browser follows the console
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("host-resolver-rules", "MAP "+consoleHost+" 127.0.0.1, MAP * ~NOTFOUND"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater"),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	b := &browser{t: t, ctx: ctx, shots: t.ArtifactDir()}
	if err := chromedp.Do(ctx); err != nil { // start the browser before listening
		t.Fatalf("start chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errors = append(b.errors, m.String()+" ("+m.URL+")")
				b.mu.Unlock()
			}
		}
	}()
	t.Logf("screenshots in %s", b.shots)
	return b
}

// do runs actions, failing the test on error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// text returns an element's text.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// eval evaluates a JavaScript expression.
func (b *browser) eval(expr string) bool {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot writes a screenshot of the whole page to the test's output
// directory.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.n++
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// consoleErrors returns the errors pages wrote since the last call.
func (b *browser) consoleErrors() []string {
	time.Sleep(200 * time.Millisecond) // messages arrive after the page settles
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.errors
	b.errors = nil
	return out
}

// visit opens a page, waits for sel, takes its screenshot, and fails the
// test if the page wrote an error to the console.
func (b *browser) visit(s *consoleSite, path, sel, name string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(s.url(path)), chromedp.WaitVisible(chromedp.CSS(sel)))
	b.shot(name)
	if errs := b.consoleErrors(); len(errs) > 0 {
		b.t.Errorf("%s wrote to the console:\n%s", path, strings.Join(errs, "\n"))
	}
}

func (b *browser) login(s *consoleSite, name string) {
	b.t.Helper()
	b.do("log in as "+name,
		chromedp.Navigate(s.url("/login")),
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("password"), consolePassword),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("certificates")),
	)
}

// winner returns the certificate the selection map shows for a listener.
func (b *browser) winner(listener string) string {
	b.t.Helper()
	return b.text(`tbody[data-listener="` + listener + `"] td.winner a`)
}

// TestConsoleInBrowser drives the console in a real browser as an
// administrator would: log in, import a PFX, enable it for SMTP, see the
// selection map change for the connector's FQDN and the certificate on
// the timeline, answer M1's question in its dialog; then a view-only
// colleague looks but is offered nothing to touch. Every page is
// photographed, and any page that writes an error to the browser's
// console fails the test.
func TestConsoleInBrowser(t *testing.T) {
	s := newConsoleSite(t)
	b := newBrowser(t, s)

	// The console-error check works: a page that writes an error is seen.
	b.do("open the login page", chromedp.Navigate(s.url("/login")), chromedp.WaitVisible(chromedp.ID("login")))
	b.eval(`console.error("probe of the console-error check"), true`)
	if errs := b.consoleErrors(); len(errs) != 1 || !strings.Contains(errs[0], "probe of the console-error check") {
		t.Fatalf("the console-error check did not see a console.error: %q", errs)
	}
	b.visit(s, "/login", "#login", "01-login")

	b.login(s, "admin")
	b.shot("02-certificates")
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Errorf("logging in wrote to the console:\n%s", strings.Join(errs, "\n"))
	}

	// The connector serves the internal, self-signed certificate for now.
	internal := s.e.server().InternalTransportCertificateThumbprint
	b.visit(s, "/selection", "#selection", "03-selection-before")
	if got := b.winner("ReceiveConnector"); got != internal {
		t.Fatalf("before: the selection map shows %s for the connector, want the internal %s", got, internal)
	}

	// Import a PFX from the CA, holding the connector's FQDN.
	leaf := s.root.Issue(t, testpki.Options{CommonName: consoleHost, DNSNames: []string{consoleHost}})
	pfx, err := certinfo.EncodePKCS12(leaf.Key, leaf.Cert, nil, "pfx password", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	file := s.e.write("browser.pfx", pfx)
	b.visit(s, "/new/import", "#import-form", "04-import-form")
	b.do("import the PFX",
		chromedp.SetUploadFiles(chromedp.ID("file"), []string{file}),
		chromedp.SendKeys(chromedp.ID("pfx-password"), "pfx password"),
		chromedp.Click(chromedp.ID("import")),
		chromedp.WaitVisible(chromedp.ID("done")),
	)
	b.shot("05-imported")
	th := b.text("#result-link")
	if th != certinfo.Thumbprint(leaf.Cert.Raw) {
		t.Fatalf("imported %q, want %s", th, certinfo.Thumbprint(leaf.Cert.Raw))
	}

	// Enable it for SMTP on its page.
	b.visit(s, "/certificates/"+th, "#enable-form", "06-certificate")
	b.do("enable for SMTP",
		chromedp.Click(chromedp.ID("svc-SMTP")),
		chromedp.Click(chromedp.ID("enable")),
		chromedp.WaitVisible(chromedp.ID("done")),
	)
	b.shot("07-enabled")
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Errorf("enabling wrote to the console:\n%s", strings.Join(errs, "\n"))
	}

	// The selection map changes for the connector's FQDN, and the
	// connector really serves it.
	b.visit(s, "/selection", "#selection", "08-selection-after")
	if got := b.winner("ReceiveConnector"); got != th {
		t.Errorf("after: the selection map shows %s for the connector, want %s", got, th)
	}
	if got := servedThumbprint(t, s.m.addr); got != th {
		t.Errorf("STARTTLS serves %s, want %s", got, th)
	}

	// The timeline draws it (uPlot's canvas) and lists it.
	b.visit(s, "/timeline", "#timeline-chart canvas", "09-timeline")
	if !strings.Contains(b.text("#timeline"), th) {
		t.Errorf("the timeline does not list %s", th)
	}

	// M1's question as a dialog: a new internal transport certificate.
	b.visit(s, "/new/selfsigned", "#new-form", "10-new-form")
	b.do("ask for a new internal certificate", chromedp.Click(chromedp.ID("make")), chromedp.WaitVisible(chromedp.ID("confirm")))
	b.shot("11-dialog")
	if !b.eval(`document.querySelector("#confirm").open && document.querySelector("#confirm").matches(":modal")`) {
		t.Error("the question is not shown as a modal dialog")
	}
	if q := b.text("#question"); !strings.Contains(q, internal) {
		t.Errorf("the question does not name the current internal certificate: %q", q)
	}
	b.do("answer no", chromedp.Click(chromedp.ID("answer-no")), chromedp.WaitVisible(chromedp.ID("done")))
	b.shot("12-answered-no")
	if got := s.e.server().InternalTransportCertificateThumbprint; got != internal {
		t.Errorf("answering no replaced the internal certificate with %s", got)
	}

	for i, p := range []struct{ path, sel string }{
		{"/certificates", "#certificates"}, {"/events", "#events"}, {"/queue", "#queue"}, {"/servers", "#servers"}, {"/settings", "#accounts"}, {"/diagnose", "main"},
	} {
		b.visit(s, p.path, p.sel, "13-"+string(rune('a'+i))+"-"+strings.TrimPrefix(p.path, "/"))
	}

	// A view-only colleague can look but is offered nothing to touch.
	b.do("log out", chromedp.Click(chromedp.CSS(`form.who button`)), chromedp.WaitVisible(chromedp.ID("login")))
	b.login(s, "viewer")
	b.visit(s, "/certificates/"+th, "#properties", "14-viewer-certificate")
	if b.eval(`document.querySelector("#enable-form") !== null || document.querySelector("#remove-form") !== null`) {
		t.Error("a view-only account is offered to enable or remove")
	}
	b.visit(s, "/new/import", "#error", "15-viewer-import")
	if b.eval(`document.querySelector("#import-form") !== null`) {
		t.Error("a view-only account is offered the import form")
	}
	b.visit(s, "/timeline", "#timeline-chart canvas", "16-viewer-timeline")
	if b.n < 16 {
		t.Errorf("%d screenshots", b.n)
	}
}
