package admin

import (
	"context"
	"crypto/x509"
	"sort"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/dnsname"
	"certrelay/internal/selection"
	"certrelay/internal/settings"
	"certrelay/internal/store"
)

// The HTTPS console's settings, the selection map and the expiry
// timeline (SPEC I3, S8; issue 16): what `console show|set`, `cert map`
// and `cert timeline` run, and what the console's pages show.

// ConsoleInfo is what Get-CertrelayConsole shows.
type ConsoleInfo struct {
	// Bindings are where the HTTPS console and API listen ([]: off).
	Bindings []string
	// HostName is the name the console selects its certificate for
	// (S8): the setting, or the server's FQDN.
	HostName string
	// MetricsBindings are where /metrics listens, in plain HTTP ([]:
	// off).
	MetricsBindings []string
	// BoundCertificate is the certificate Enable-ExchangeCertificate
	// -Services IIS bound last (M5).
	BoundCertificate string
	// Certificate is the certificate selection gives the console now
	// ("" when none can: handshakes fail), and CertificateWhy why.
	Certificate    string
	CertificateWhy string
	// Accounts counts the console's accounts; Urls are where to point a
	// browser.
	Accounts int
	Urls     []string
}

// ConsoleSetOptions change the console's settings; nil fields stay.
type ConsoleSetOptions struct {
	Bindings        *[]string // [] or [""]: off
	HostName        *string   // "": the server's FQDN
	MetricsBindings *[]string // [] or [""]: off
}

// SplitBindings reads a bindings setting.
func SplitBindings(v string) []string {
	out := []string{}
	for _, b := range strings.Split(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// ConsoleHostName returns the name the console selects its certificate
// for: the setting, or the server's FQDN.
func (a *Admin) ConsoleHostName(ctx context.Context) (string, error) {
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return "", err
	}
	h, err := a.Settings.Get(ctx, settings.ConsoleHostName)
	if err != nil || h != "" {
		return h, err
	}
	return srv.Fqdn, nil
}

// ConsoleShow describes the console's settings and the certificate it
// serves now.
func (a *Admin) ConsoleShow(ctx context.Context) (ConsoleInfo, error) {
	const op = "console"
	host, err := a.ConsoleHostName(ctx)
	if err != nil {
		return ConsoleInfo{}, errorf(op, err)
	}
	b, err := a.Settings.Get(ctx, settings.ConsoleBindings)
	if err != nil {
		return ConsoleInfo{}, errorf(op, err)
	}
	m, err := a.Settings.Get(ctx, settings.MetricsBindings)
	if err != nil {
		return ConsoleInfo{}, errorf(op, err)
	}
	bound, _ := a.Settings.Get(ctx, settings.HTTPSCertificate)
	info := ConsoleInfo{Bindings: SplitBindings(b), HostName: host, MetricsBindings: SplitBindings(m), BoundCertificate: bound, Urls: []string{}}
	cands, now, err := a.NewCandidateBuilder().Build(ctx)
	if err != nil {
		return ConsoleInfo{}, errorf(op, err)
	}
	d := selection.Select(cands, ConsoleRequest(host), now)
	if d.Winner != nil {
		info.Certificate = d.Winner.Thumbprint
	}
	info.CertificateWhy = d.Why
	list, err := a.Accounts.List(ctx)
	if err != nil {
		return ConsoleInfo{}, errorf(op, err)
	}
	info.Accounts = len(list)
	for _, b := range info.Bindings {
		_, port, _ := strings.Cut(b[strings.LastIndex(b, "]")+1:], ":")
		info.Urls = append(info.Urls, "https://"+host+":"+port+"/")
	}
	return info, nil
}

// ConsoleRequest is what the HTTPS console asks selection for (S8): its
// host name, service IIS.
func ConsoleRequest(host string) selection.Request {
	return selection.ForConnector(host, "", "", false, store.IIS)
}

// ConsoleSet changes the console's settings and says what the change
// means (warnings: no certificate for the host name, no account yet).
func (a *Admin) ConsoleSet(ctx context.Context, o ConsoleSetOptions) (ConsoleInfo, []string, error) {
	const op = "console set"
	if _, err := a.requireSetup(ctx); err != nil {
		return ConsoleInfo{}, nil, errorf(op, err)
	}
	read := func(key string) []string { v, _ := a.Settings.Get(ctx, key); return SplitBindings(v) }
	bindings, metrics := read(settings.ConsoleBindings), read(settings.MetricsBindings)
	var err error
	if o.Bindings != nil {
		if bindings, err = optionalBindings(*o.Bindings, "Bindings"); err != nil {
			return ConsoleInfo{}, nil, errorf(op, err)
		}
	}
	if o.MetricsBindings != nil {
		if metrics, err = optionalBindings(*o.MetricsBindings, "MetricsBindings"); err != nil {
			return ConsoleInfo{}, nil, errorf(op, err)
		}
	}
	var host *string
	if o.HostName != nil {
		h := strings.TrimSpace(*o.HostName)
		if h != "" {
			n, err := dnsname.ParseHost(h)
			if err != nil {
				return ConsoleInfo{}, nil, errorf(op, invalidValue("HostName", h, err))
			}
			h = string(n)
		}
		host = &h
	}
	for _, b := range bindings {
		for _, m := range metrics {
			if bindingsOverlap(b, m) {
				return ConsoleInfo{}, nil, errorf(op, invalid("MetricsBindings", m, "%s is also a console binding (%s): give metrics an address of their own", m, b))
			}
		}
	}
	conns, err := a.ListReceiveConnectors(ctx)
	if err != nil {
		return ConsoleInfo{}, nil, errorf(op, err)
	}
	for _, c := range conns {
		for _, cb := range c.Bindings {
			for _, set := range []struct {
				field string
				list  []string
			}{{"Bindings", bindings}, {"MetricsBindings", metrics}} {
				for _, b := range set.list {
					if bindingsOverlap(b, cb) {
						return ConsoleInfo{}, nil, errorf(op, failed(Conflict, "%s overlaps binding %s of receive connector %s", b, cb, c.Name).field(set.field, b).
							fix("choose another port, or move the connector with %s", cmd("Set-ReceiveConnector", c.Name, "-Bindings", "IP:PORT")))
					}
				}
			}
		}
	}
	err = a.atomically(ctx, func(ctx context.Context) error {
		if o.Bindings != nil {
			if err := a.Settings.Set(ctx, settings.ConsoleBindings, strings.Join(bindings, ",")); err != nil {
				return err
			}
		}
		if o.MetricsBindings != nil {
			if err := a.Settings.Set(ctx, settings.MetricsBindings, strings.Join(metrics, ",")); err != nil {
				return err
			}
		}
		if host != nil {
			return a.Settings.Set(ctx, settings.ConsoleHostName, *host)
		}
		return nil
	})
	if err != nil {
		return ConsoleInfo{}, nil, errorf(op, err)
	}
	info, err := a.ConsoleShow(ctx)
	if err != nil {
		return ConsoleInfo{}, nil, err
	}
	var warnings []string
	if len(info.Bindings) > 0 && info.Certificate == "" {
		warnings = append(warnings, msgf("No certificate can serve the console for %s (%s), so browsers get a failed handshake: enable one that holds the name, %s, or make one, %s.",
			info.HostName, info.CertificateWhy, cmd("Enable-ExchangeCertificate", "THUMBPRINT", "-Services", "IIS"), cmd("New-ExchangeCertificate", "-DomainName", info.HostName, "-Services", "IIS")))
	}
	if len(info.Bindings) > 0 && info.Accounts == 0 {
		warnings = append(warnings, msgf("Nobody can log in yet: add an account with %s.", cmd("New-CertrelayAccount", "NAME", "-Role", "server-admin", "-Password", "FILE")))
	}
	return info, warnings, nil
}

// consoleWarning says, when a certificate just enabled for IIS (M5) is
// not the one the HTTPS console selects for its host name (S8), why not.
func (a *Admin) consoleWarning(ctx context.Context, t string) ([]string, error) {
	host, err := a.ConsoleHostName(ctx)
	if err != nil {
		return nil, err
	}
	cands, now, err := a.NewCandidateBuilder().Build(ctx)
	if err != nil {
		return nil, err
	}
	d := selection.Select(cands, ConsoleRequest(host), now)
	if d.Winner != nil && d.Winner.Thumbprint == t {
		return nil, nil
	}
	why := d.Why
	for _, c := range d.Considered {
		if c.Thumbprint == t {
			why = c.Reason
		}
	}
	if d.Winner != nil && why == d.Why {
		why = d.Winner.Thumbprint + " takes precedence: " + d.Why
	}
	return []string{msgf("The HTTPS console will not use this certificate for its host name %s: %s. Change the name it serves with %s if browsers use another.",
		host, why, cmd("Set-CertrelayConsole", "-HostName", "NAME"))}, nil
}

// optionalBindings reads a bindings parameter where nothing (or "")
// means off.
func optionalBindings(list []string, field string) ([]string, error) {
	empty := true
	for _, b := range list {
		empty = empty && strings.TrimSpace(b) == ""
	}
	if empty {
		return []string{}, nil
	}
	out, err := parseBindingList(list)
	if err != nil {
		return nil, invalidValue(field, strings.Join(list, ","), err)
	}
	return out, nil
}

// SelectionMapEntry is one listener or connector of this server with the
// certificate it serves now and why (the selection map).
type SelectionMapEntry struct {
	// Listener says what it is: ReceiveConnector, SendConnector, POP3,
	// IMAP4, HTTPS (the console) or InternalTransport (X-AnonymousTLS
	// with the organisation's servers).
	Listener string
	Name     string
	Bindings []string `json:",omitempty"`
	Service  string
	Fqdn     string
	Explicit string `json:",omitempty"`
	// Winner is the thumbprint of the certificate served ("" when none),
	// with its subject and expiry.
	Winner         string
	WinnerSubject  string     `json:",omitempty"`
	WinnerNotAfter *time.Time `json:",omitempty"`
	How            string     `json:",omitempty"`
	Why            string
	// TLS says what the listener does with the decision.
	TLS        string
	Candidates []selection.Consideration
}

// SelectionMap runs selection for every listener and connector of this
// server, as sessions would now.
func (a *Admin) SelectionMap(ctx context.Context) ([]SelectionMapEntry, error) {
	return a.selectionMap(ctx, nil)
}

// selectionMap is SelectionMap, with what-if: when with is set, that
// candidate stands for its thumbprint among the store's (a staged
// certificate as if activated: SPEC L3's preflight).
func (a *Admin) selectionMap(ctx context.Context, with *selection.Candidate) ([]SelectionMapEntry, error) {
	const op = "selection map"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return nil, errorf(op, err)
	}
	cands, now, err := a.NewCandidateBuilder().Build(ctx)
	if err != nil {
		return nil, errorf(op, err)
	}
	if with != nil {
		kept := make([]selection.Candidate, 0, len(cands)+1)
		for _, c := range cands {
			if c.Thumbprint != with.Thumbprint {
				kept = append(kept, c)
			}
		}
		cands = append(kept, *with)
	}
	byThumb := map[string]*selection.Candidate{}
	for i := range cands {
		byThumb[cands[i].Thumbprint] = &cands[i]
	}
	out := []SelectionMapEntry{}
	add := func(e SelectionMapEntry, req selection.Request) *selection.Decision {
		d := selection.Select(cands, req, now)
		e.Service, e.Fqdn, e.Explicit, e.How, e.Why, e.Candidates = req.Service.String(), req.FQDN, req.Explicit, d.How, d.Why, d.Considered
		if e.Candidates == nil {
			e.Candidates = []selection.Consideration{}
		}
		if w := d.Winner; w != nil {
			na := w.NotAfter.UTC()
			e.Winner, e.WinnerSubject, e.WinnerNotAfter = w.Thumbprint, w.Subject, &na
		}
		if e.TLS == "" {
			e.TLS = "served"
			if d.Winner == nil {
				e.TLS = "no certificate"
			}
		}
		out = append(out, e)
		return &d
	}
	conns, err := a.ListReceiveConnectors(ctx)
	if err != nil {
		return nil, errorf(op, err)
	}
	for _, c := range conns {
		req := selection.ForConnector(c.Fqdn, srv.Fqdn, c.TlsCertificateName, c.TlsWildcardOneLabel, store.SMTP)
		d := selection.Select(cands, req, now)
		tls := startTLSBehaviour(receiveTLSBehaviour(c), &d, now)
		if !c.Enabled {
			tls = "connector disabled"
		}
		add(SelectionMapEntry{Listener: "ReceiveConnector", Name: c.Name, Bindings: c.Bindings, TLS: tls}, req)
	}
	send, err := a.ListSendConnectors(ctx)
	if err != nil {
		return nil, errorf(op, err)
	}
	for _, c := range send {
		req := selection.ForConnector(c.Fqdn, srv.Fqdn, c.TlsCertificateName, false, store.SMTP)
		d := selection.Select(cands, req, now)
		tls := "client certificate offered"
		switch {
		case !c.Enabled:
			tls = "connector disabled"
		case d.Winner == nil && req.Explicit != "":
			tls = "sessions fail with 454 4.7.5: the named certificate is missing"
		case d.Winner == nil:
			tls = "no client certificate offered"
		}
		add(SelectionMapEntry{Listener: "SendConnector", Name: c.Name, TLS: tls}, req)
	}
	for _, s := range []struct {
		listener, key string
		svc           store.Services
	}{{"POP3", settings.PopCertificateName, store.POP}, {"IMAP4", settings.ImapCertificateName, store.IMAP}} {
		if name, _ := a.Settings.Get(ctx, s.key); name != "" {
			add(SelectionMapEntry{Listener: s.listener, Name: s.listener + " (X509CertificateName)"}, selection.ForConnector(name, "", "", false, s.svc))
		}
	}
	info, err := a.ConsoleShow(ctx)
	if err != nil {
		return nil, err
	}
	tls := "console off (no bindings)"
	if len(info.Bindings) > 0 {
		tls = ""
	}
	d := add(SelectionMapEntry{Listener: "HTTPS", Name: "console", Bindings: info.Bindings, TLS: tls}, ConsoleRequest(info.HostName))
	if len(info.Bindings) > 0 {
		out[len(out)-1].TLS = strings.Replace(startTLSBehaviour("offered", d, now), "offered", "served", 1)
		if d.Winner == nil {
			out[len(out)-1].TLS = "handshakes fail: no certificate (event 16084)"
		}
	}
	it := SelectionMapEntry{Listener: "InternalTransport", Name: srv.Name, Service: "SMTP", Fqdn: srv.Fqdn,
		Winner: srv.InternalTransportCertificateThumbprint, How: "directory", Candidates: []selection.Consideration{},
		Why: "the directory names it as this server's internal transport certificate (X1): X-AnonymousTLS with the organisation's servers uses it (S6)",
		TLS: "X-AnonymousTLS"}
	if c := byThumb[it.Winner]; c != nil {
		na := c.NotAfter.UTC()
		it.WinnerSubject, it.WinnerNotAfter = c.Subject, &na
	} else if it.Winner != "" {
		it.Why = "the directory names " + it.Winner + ", which the personal store cannot serve (see " + Render("{Get-CertrelayEvent}", nil, nil) + " for 12013 and 12024)"
	}
	out = append(out, it)
	return out, nil
}

// startTLSBehaviour refines what a listener that offers TLS does with a
// decision: nothing to offer, or a last resort.
func startTLSBehaviour(base string, d *selection.Decision, now time.Time) string {
	if base != "offered" {
		return base
	}
	switch {
	case d.Winner == nil:
		return "not advertised: no certificate (event 12014)"
	case d.LastResort(now) == selection.WonExpired:
		return "offered with an expired certificate (event 12016)"
	case d.LastResort(now) == selection.WonRevocationUnknown:
		return "offered with a certificate whose revocation could not be established, as a last resort (event 16030 when a session uses it)"
	}
	return base
}

// ExpiryWindow is how long before NotAfter a certificate counts as
// expiring soon: the server's default (E5, server.DefaultExpiryWindow).
const ExpiryWindow = 30 * 24 * time.Hour

// CertificateTimeline is every certificate in use across the
// organisation, for one time axis.
type CertificateTimeline struct {
	// WarningWindowDays is E5's window before NotAfter.
	WarningWindowDays int
	Certificates      []TimelineEntry
	// Servers are the organisation's servers with their internal
	// transport certificates, as the directory holds them.
	Servers []TimelineServer
}

// TimelineEntry is one certificate on the timeline.
type TimelineEntry struct {
	Server     string
	Thumbprint string
	Subject    string
	NotBefore  time.Time
	NotAfter   time.Time
	Services   []string
	// Status is this server's judgement ("" for other servers'
	// certificates, which it does not judge).
	Status                         string `json:",omitempty"`
	IsInternalTransportCertificate bool
	// UsedBy names the listeners of this server that serve it now (see
	// SelectionMap).
	UsedBy []string
}

// TimelineServer is a server of the organisation.
type TimelineServer struct {
	Name, Fqdn, Role                       string
	Local                                  bool
	InternalTransportCertificateThumbprint string
	InternalTransportCertificateNotAfter   *time.Time `json:",omitempty"`
}

// Timeline returns every certificate in use across the organisation:
// this server's certificates enabled for a service or serving a
// listener, and the internal transport certificates the directory
// publishes for the other servers; ordered by NotAfter.
func (a *Admin) Timeline(ctx context.Context) (CertificateTimeline, error) {
	const op = "timeline"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return CertificateTimeline{}, errorf(op, err)
	}
	m, err := a.SelectionMap(ctx)
	if err != nil {
		return CertificateTimeline{}, err
	}
	usedBy := map[string][]string{}
	for _, e := range m {
		if e.Winner != "" {
			usedBy[e.Winner] = append(usedBy[e.Winner], e.Listener+" "+e.Name)
		}
	}
	certs, err := a.ListCertificates(ctx, ListOptions{})
	if err != nil {
		return CertificateTimeline{}, errorf(op, err)
	}
	out := CertificateTimeline{WarningWindowDays: int(ExpiryWindow / (24 * time.Hour)), Certificates: []TimelineEntry{}, Servers: []TimelineServer{}}
	for _, c := range certs {
		if c.NotAfter == nil || c.NotBefore == nil || c.Status == "PendingRequest" {
			continue
		}
		if len(c.Services) == 0 && !c.IsInternalTransportCertificate && len(usedBy[c.Thumbprint]) == 0 {
			continue
		}
		out.Certificates = append(out.Certificates, TimelineEntry{Server: srv.Name, Thumbprint: c.Thumbprint, Subject: c.Subject,
			NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Services: orEmpty(c.Services), Status: string(c.Status),
			IsInternalTransportCertificate: c.IsInternalTransportCertificate, UsedBy: orEmpty(usedBy[c.Thumbprint])})
	}
	servers, err := a.Dir.Servers(ctx)
	if err != nil {
		return CertificateTimeline{}, errorf(op, err)
	}
	for _, s := range servers {
		ts := TimelineServer{Name: s.Name, Fqdn: s.Fqdn, Role: s.Role, Local: strings.EqualFold(s.Name, srv.Name),
			InternalTransportCertificateThumbprint: s.InternalTransportCertificateThumbprint}
		var cert *x509.Certificate
		if len(s.InternalTransportCertificate) > 0 {
			cert, _ = x509.ParseCertificate(s.InternalTransportCertificate)
		}
		if cert != nil {
			na := cert.NotAfter.UTC()
			ts.InternalTransportCertificateNotAfter = &na
			if !ts.Local {
				out.Certificates = append(out.Certificates, TimelineEntry{Server: s.Name, Thumbprint: certinfo.Thumbprint(cert.Raw),
					Subject: certinfo.NameString(cert.RawSubject), NotBefore: cert.NotBefore.UTC(), NotAfter: na, Services: []string{"SMTP"},
					IsInternalTransportCertificate: true, UsedBy: []string{}})
			}
		}
		out.Servers = append(out.Servers, ts)
	}
	sort.SliceStable(out.Certificates, func(i, j int) bool {
		x, y := out.Certificates[i], out.Certificates[j]
		if !x.NotAfter.Equal(y.NotAfter) {
			return x.NotAfter.Before(y.NotAfter)
		}
		return x.Server+x.Thumbprint < y.Server+y.Thumbprint
	})
	return out, nil
}
