package web

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"certrelay/internal/admin"
	"certrelay/internal/events"
	"certrelay/internal/queue"
)

// The console's pages. Each reads through the registry (admin.Call with
// the account as caller), exactly as the CLI's commands do; the page
// only arranges the result.

// call runs an operation for the client.
func (h *Handler) call(r *http.Request, c *client, op string, p admin.Params) (*admin.Result, error) {
	return h.a.Call(r.Context(), admin.Request{Op: op, Caller: c.caller(), Params: p})
}

// diagnoseOp is the operation the diagnose page runs: the one at CLI path
// "diagnose" (issue 13), or nil until it exists.
func diagnoseOp() *admin.Operation {
	for _, op := range admin.Operations() {
		if op.CLI == "diagnose" {
			return op
		}
	}
	return nil
}

func (h *Handler) data(r *http.Request, c *client, title, nav string, d any) pageData {
	return pageData{Title: title, Nav: nav, User: c, Data: d, Now: h.o.Now(), Diagnose: diagnoseOp() != nil}
}

// errorPage shows a failure with its status.
func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, c *client, status int, msg string) {
	w.WriteHeader(status)
	d := h.data(r, c, "Error", "", nil)
	d.Error = msg
	h.pages.render(w, "error", d)
}

// callError shows an operation's failure with its kind's status.
func (h *Handler) callError(w http.ResponseWriter, r *http.Request, c *client, op string, err error) {
	var e *admin.Error
	if !errors.As(err, &e) {
		e = &admin.Error{Kind: admin.KindOf(err), Err: err}
	}
	status := kindStatus[e.Kind]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	h.errorPage(w, r, c, status, e.Render(webSyntax{}))
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	c, _, _ := h.authenticate(r, false)
	if c == nil {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	h.errorPage(w, r, c, http.StatusNotFound, "There is no page "+r.URL.Path+".")
}

// certRow is a line of the certificates table.
type certRow struct {
	admin.Certificate
	Rank      int    // with a domain filter: selection's order (0: not used)
	Selection string // why, with a domain filter
}

type certsPage struct {
	Rows                     []certRow
	Domain, Status, Service  string
	Query                    string
	Total                    int
	Statuses, Services       []string
	InternalTransport        string
	HasDomain, FilterApplied bool
}

func (h *Handler) certificatesPage(w http.ResponseWriter, r *http.Request, c *client) {
	q := r.URL.Query()
	d := certsPage{Domain: strings.TrimSpace(q.Get("domain")), Status: q.Get("status"), Service: q.Get("service"), Query: strings.TrimSpace(q.Get("q")),
		Statuses: []string{"Valid", "Unknown", "RevocationCheckFailure", "Revoked", "DateInvalid", "Untrusted", "Invalid", "PendingRequest"},
		Services: []string{"SMTP", "POP", "IMAP", "UM", "IIS"}}
	p := admin.Params{}
	if d.Domain != "" {
		p["DomainName"] = d.Domain
		if d.Service != "" {
			p["Service"] = d.Service
		}
		d.HasDomain = true
	}
	res, err := h.call(r, c, "Get-ExchangeCertificate", p)
	if err != nil {
		h.callError(w, r, c, "Get-ExchangeCertificate", err)
		return
	}
	var rows []certRow
	switch list := res.Data.(type) {
	case []admin.Certificate:
		for _, x := range list {
			rows = append(rows, certRow{Certificate: x})
		}
	case []admin.RankedCertificate:
		for _, x := range list {
			rows = append(rows, certRow{Certificate: x.Certificate, Rank: x.SelectionRank, Selection: x.Selection})
		}
	}
	d.Total = len(rows)
	for _, row := range rows {
		if d.Status != "" && string(row.Status) != d.Status {
			continue
		}
		if d.Service != "" && !d.HasDomain && !contains(row.Services, d.Service) {
			continue
		}
		if d.Query != "" && !strings.Contains(strings.ToLower(row.Subject+" "+row.Thumbprint+" "+row.FriendlyName+" "+strings.Join(row.CertificateDomains, " ")), strings.ToLower(d.Query)) {
			continue
		}
		d.Rows = append(d.Rows, row)
	}
	d.FilterApplied = d.Status != "" || d.Service != "" || d.Query != "" || d.Domain != ""
	h.pages.render(w, "certificates", h.data(r, c, "Certificates", "certificates", d))
}

type certPage struct {
	Cert   admin.Certificate
	Props  []Prop
	UsedBy []admin.SelectionMapEntry
	// Renewal: when certrelay renews it by itself and the last error
	// (nil when it does not renew this certificate).
	Renewal *admin.CertificateRenewal
}

func (h *Handler) certificatePage(w http.ResponseWriter, r *http.Request, c *client) {
	t := r.PathValue("thumbprint")
	res, err := h.call(r, c, "Get-ExchangeCertificate/Thumbprint", admin.Params{"Thumbprint": t})
	if err != nil {
		h.callError(w, r, c, "Get-ExchangeCertificate/Thumbprint", err)
		return
	}
	cert := res.Data.(admin.Certificate)
	d := certPage{Cert: cert}
	for _, p := range props(cert) {
		if p.Name == "StatusDetail" || p.Name == "Fix" || p.Name == "CertificateRequest" {
			continue // shown on their own
		}
		d.Props = append(d.Props, p)
	}
	if m, err := h.call(r, c, "Get-CertrelaySelectionMap", nil); err == nil {
		for _, e := range m.Data.([]admin.SelectionMapEntry) {
			if e.Winner == cert.Thumbprint {
				d.UsedBy = append(d.UsedBy, e)
			}
		}
	}
	if rs, err := h.call(r, c, "Get-CertrelayCertificateRenewal", nil); err == nil {
		for _, x := range rs.Data.([]admin.CertificateRenewal) {
			if x.Thumbprint == cert.Thumbprint {
				d.Renewal = &x
			}
		}
	}
	h.pages.render(w, "certificate", h.data(r, c, "Certificate "+cert.Thumbprint, "certificates", d))
}

// certificateFile hands over the certificate (PEM or DER, through
// Export-ExchangeCertificate) or a pending request's CSR.
func (h *Handler) certificateFile(w http.ResponseWriter, r *http.Request, c *client) {
	t := r.PathValue("thumbprint")
	var data []byte
	name, ctype := t, "application/octet-stream"
	switch r.URL.Query().Get("format") {
	case "request":
		res, err := h.call(r, c, "Get-ExchangeCertificate/Thumbprint", admin.Params{"Thumbprint": t})
		if err != nil {
			h.callError(w, r, c, "Get-ExchangeCertificate/Thumbprint", err)
			return
		}
		data = []byte(res.Data.(admin.Certificate).CertificateRequest)
		if len(data) == 0 {
			h.errorPage(w, r, c, http.StatusNotFound, t+" is no pending request.")
			return
		}
		name, ctype = name+".req", "application/pkcs10"
	case "der":
		res, err := h.call(r, c, "Export-ExchangeCertificate", admin.Params{"Thumbprint": t, "BinaryEncoded": true})
		if err != nil {
			h.callError(w, r, c, "Export-ExchangeCertificate", err)
			return
		}
		data, name, ctype = res.File.Data, name+".cer", "application/pkix-cert"
	default:
		res, err := h.call(r, c, "Export-ExchangeCertificate", admin.Params{"Thumbprint": t})
		if err != nil {
			h.callError(w, r, c, "Export-ExchangeCertificate", err)
			return
		}
		data, name, ctype = res.File.Data, name+".pem", "application/x-pem-file"
	}
	sendFile(w, name, ctype, data)
}

func sendFile(w http.ResponseWriter, name, ctype string, data []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="`+strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, name)+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}

// formPage shows the forms that add certificates.
func (h *Handler) formPage(w http.ResponseWriter, r *http.Request, c *client) {
	titles := map[string]string{"import": "Import a certificate", "request": "Request a certificate from a CA", "selfsigned": "Make a self-signed certificate"}
	form := r.PathValue("form")
	title, ok := titles[form]
	if !ok {
		h.notFound(w, r)
		return
	}
	op := map[string]string{"import": "Import-ExchangeCertificate", "request": "New-ExchangeCertificate/GenerateRequest", "selfsigned": "New-ExchangeCertificate"}[form]
	d := h.data(r, c, title, "certificates", nil)
	if o := admin.Lookup(op); !c.may(o.Role) {
		// A page, not a refusal: there is nothing to refuse yet.
		d.Error = "Your account (" + c.role.String() + ") may look but not change: " + o.Cmdlet + " needs the " + o.Role.String() + " role."
		h.pages.render(w, "error", d)
		return
	}
	h.pages.render(w, "form-"+form, d)
}

type timelinePage struct {
	Timeline admin.CertificateTimeline
	Chart    chartData
}

// chartData is what console.js draws with uPlot: seconds since the
// epoch.
type chartData struct {
	Now    int64
	Window int64
	Rows   []chartRow
}

type chartRow struct {
	Label               string
	Thumbprint          string
	NotBefore, NotAfter int64
	Internal, Local     bool
}

func (h *Handler) timelinePage(w http.ResponseWriter, r *http.Request, c *client) {
	res, err := h.call(r, c, "Get-CertrelayCertificateTimeline", nil)
	if err != nil {
		h.callError(w, r, c, "Get-CertrelayCertificateTimeline", err)
		return
	}
	tl := res.Data.(admin.CertificateTimeline)
	now := h.o.Now()
	d := timelinePage{Timeline: tl, Chart: chartData{Now: now.Unix(), Window: int64(admin.ExpiryWindow.Seconds()), Rows: []chartRow{}}}
	local := map[string]bool{}
	for _, s := range tl.Servers {
		local[s.Name] = s.Local
	}
	for _, e := range tl.Certificates {
		d.Chart.Rows = append(d.Chart.Rows, chartRow{Label: e.Server + ": " + e.Subject, Thumbprint: e.Thumbprint,
			NotBefore: e.NotBefore.Unix(), NotAfter: e.NotAfter.Unix(), Internal: e.IsInternalTransportCertificate, Local: local[e.Server]})
	}
	h.pages.render(w, "timeline", h.data(r, c, "Expiry timeline", "timeline", d))
}

func (h *Handler) selectionPage(w http.ResponseWriter, r *http.Request, c *client) {
	res, err := h.call(r, c, "Get-CertrelaySelectionMap", nil)
	if err != nil {
		h.callError(w, r, c, "Get-CertrelaySelectionMap", err)
		return
	}
	h.pages.render(w, "selection", h.data(r, c, "Selection map", "selection", res.Data))
}

type eventsPage struct {
	Events                 []events.Event
	ID, Level, Since       string
	Limit                  int
	Levels                 []string
	Shown, AskedFor        int
	NewestFirst, Truncated bool
}

func (h *Handler) eventsPage(w http.ResponseWriter, r *http.Request, c *client) {
	q := r.URL.Query()
	d := eventsPage{ID: strings.TrimSpace(q.Get("id")), Level: q.Get("level"), Since: strings.TrimSpace(q.Get("since")), Limit: 200,
		Levels: []string{"Error", "Warning", "Information"}}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 && n <= 5000 {
		d.Limit = n
	}
	p := admin.Params{"Limit": d.Limit}
	if d.ID != "" {
		p["Id"] = d.ID
	}
	if d.Level != "" {
		p["Level"] = d.Level
	}
	if d.Since != "" {
		p["Since"] = d.Since
	}
	res, err := h.call(r, c, "Get-CertrelayEvent", p)
	if err != nil {
		h.callError(w, r, c, "Get-CertrelayEvent", err)
		return
	}
	list := res.Data.([]events.Event)
	for i := len(list) - 1; i >= 0; i-- { // newest first
		d.Events = append(d.Events, list[i])
	}
	d.Shown = len(list)
	h.pages.render(w, "events", h.data(r, c, "Events", "events", d))
}

func (h *Handler) queuePage(w http.ResponseWriter, r *http.Request, c *client) {
	res, err := h.call(r, c, "Get-Message", nil)
	if err != nil {
		h.callError(w, r, c, "Get-Message", err)
		return
	}
	h.pages.render(w, "queue", h.data(r, c, "Queue", "queue", res.Data.([]queue.Item)))
}

type serversPage struct {
	Servers []admin.TimelineServer
	This    admin.ServerInfo
}

func (h *Handler) serversPage(w http.ResponseWriter, r *http.Request, c *client) {
	res, err := h.call(r, c, "Get-CertrelayCertificateTimeline", nil)
	if err != nil {
		h.callError(w, r, c, "Get-CertrelayCertificateTimeline", err)
		return
	}
	me, err := h.call(r, c, "Get-ExchangeServer", nil)
	if err != nil {
		h.callError(w, r, c, "Get-ExchangeServer", err)
		return
	}
	d := serversPage{Servers: res.Data.(admin.CertificateTimeline).Servers, This: me.Data.(admin.ServerInfo)}
	sort.SliceStable(d.Servers, func(i, j int) bool { return d.Servers[i].Local && !d.Servers[j].Local })
	h.pages.render(w, "servers", h.data(r, c, "Organisation servers", "servers", d))
}

// diagnosePage is the hook for diagnose (issue 13): once an operation
// at CLI path "diagnose" is registered, the page offers to run it (to the
// roles it declares) and shows what it returns.
func (h *Handler) diagnosePage(w http.ResponseWriter, r *http.Request, c *client) {
	op := diagnoseOp()
	d := map[string]any{}
	if op != nil {
		d["Op"] = op.Name
		d["Summary"] = admin.Render(op.Summary, op, webSyntax{})
		d["May"] = c.may(op.Role)
		d["Role"] = op.Role.String()
		if c.may(op.Role) { // it changes nothing: the page runs it as it opens
			res, err := h.call(r, c, op.Name, nil)
			if err != nil {
				h.callError(w, r, c, op.Name, err)
				return
			}
			if dg, ok := res.Data.(admin.Diagnosis); ok {
				d["Result"] = dg
			}
		}
	}
	h.pages.render(w, "diagnose", h.data(r, c, "Diagnose", "diagnose", d))
}

type settingsPage struct {
	Console  admin.ConsoleInfo
	Accounts any
}

func (h *Handler) settingsPage(w http.ResponseWriter, r *http.Request, c *client) {
	res, err := h.call(r, c, "Get-CertrelayConsole", nil)
	if err != nil {
		h.callError(w, r, c, "Get-CertrelayConsole", err)
		return
	}
	acc, err := h.call(r, c, "Get-CertrelayAccount", nil)
	if err != nil {
		h.callError(w, r, c, "Get-CertrelayAccount", err)
		return
	}
	h.pages.render(w, "settings", h.data(r, c, "Console and accounts", "settings", settingsPage{Console: res.Data.(admin.ConsoleInfo), Accounts: acc.Data}))
}
