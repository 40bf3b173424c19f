package admin

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/certprop"
	"certrelay/internal/certview"
	"certrelay/internal/diagnose"
	"certrelay/internal/directory"
	"certrelay/internal/edgesync"
	"certrelay/internal/events"
	"certrelay/internal/probe"
	"certrelay/internal/selection"
	"certrelay/internal/settings"
	"certrelay/internal/trust"
)

// Diagnosis is what Test-CertrelayConfiguration (certrelay diagnose)
// found on a server: every check run, and each problem with its evidence
// and the commands that repair it.
type Diagnosis struct {
	Server   string
	Checks   []string // the checks run, "Q1 InternalCertificateNotEnabledForSMTP", …
	Clean    bool     // no problem found
	Findings []DiagnosisFinding
}

// DiagnosisFinding is one problem diagnose found (see diagnose.Finding),
// its fix rendered for the CLI and for the cmdlet shell.
type DiagnosisFinding struct {
	Check    string
	Name     string
	Severity string
	Events   []DiagnosisEvent
	Problem  string
	Evidence []diagnose.Evidence
	Fix      []FixCommand
	Note     string `json:",omitempty"`
}

// DiagnosisEvent is an event a problem causes.
type DiagnosisEvent struct {
	Id           int
	SymbolicName string
}

// FixCommand is one command of a fix: Command as the CLI runs it,
// Cmdlet as the shell does; Input is what it reads on standard input.
type FixCommand struct {
	Command string
	Cmdlet  string
	Input   string `json:",omitempty"`
}

// Diagnose runs every check of SPEC §8 on this server, or, with server
// naming another server of the organisation, the checks its directory
// object allows (its names against its published internal transport
// certificate). It changes nothing, and works whether a server runs or
// not.
func (a *Admin) Diagnose(ctx context.Context, server string) (Diagnosis, error) {
	f, err := a.diagnoseFacts(ctx, server)
	if err != nil {
		return Diagnosis{}, err
	}
	out := Diagnosis{Server: f.Server.Name, Findings: []DiagnosisFinding{}}
	for _, c := range diagnose.Checks {
		out.Checks = append(out.Checks, c.ID+" "+c.Name)
	}
	remote := !strings.EqualFold(f.Server.Name, a.localName(ctx))
	for _, x := range diagnose.Run(f) {
		if remote { // its fixes are to be run there
			x.Note = strings.TrimSpace(msgf("Run the fix on server %s. ", f.Server.Name) + x.Note)
		}
		out.Findings = append(out.Findings, renderFinding(x))
	}
	out.Clean = len(out.Findings) == 0
	return out, nil
}

// renderFinding renders a finding's marks for the faces.
func renderFinding(x diagnose.Finding) DiagnosisFinding {
	d := DiagnosisFinding{Check: x.Check, Name: x.Name, Severity: string(x.Severity), Problem: x.Problem, Evidence: x.Evidence,
		Events: []DiagnosisEvent{}, Fix: []FixCommand{}, Note: Render(x.Note, nil, CLISyntax{})}
	for _, id := range x.Events {
		ev := DiagnosisEvent{Id: id}
		if def, ok := events.Lookup(id); ok {
			ev.SymbolicName = def.Name
		}
		d.Events = append(d.Events, ev)
	}
	for _, s := range x.Fix {
		d.Fix = append(d.Fix, FixCommand{Command: Render(s.Command, nil, CLISyntax{}), Cmdlet: Render(s.Command, nil, CmdletSyntax{}), Input: s.Input})
	}
	return d
}

// diagnoseFacts gathers what the checks look at.
func (a *Admin) diagnoseFacts(ctx context.Context, server string) (*diagnose.Facts, error) {
	me, err := a.requireSetup(ctx)
	if err != nil {
		return nil, errorf("diagnose", err)
	}
	servers, err := a.Dir.Servers(ctx)
	if err != nil {
		return nil, errorf("diagnose: read the organisation's servers", err)
	}
	window := 30 * 24 * time.Hour
	if n, _ := a.ExpiryWarningDays(ctx); n > 0 {
		window = time.Duration(n) * 24 * time.Hour
	}
	f := &diagnose.Facts{Now: a.now(), ExpiryWindow: window, Server: me, Servers: servers, Backups: map[string]string{}}
	if server != "" && !strings.EqualFold(server, me.Name) {
		for _, s := range servers {
			if strings.EqualFold(s.Name, server) {
				return remoteFacts(f, s), nil
			}
		}
		return nil, failed(NotFound, "the organisation has no server named %q", server).field("Server", server).fix("list them with {Get-TransportServer}")
	}
	if f.Certificates, err = a.ListCertificates(ctx, ListOptions{}); err != nil {
		return nil, errorf("diagnose: read the personal store", err)
	}
	if f.Candidates, _, err = a.NewCandidateBuilder().Build(ctx); err != nil {
		return nil, errorf("diagnose: read the personal store", err)
	}
	if f.Receive, err = a.Dir.ReceiveConnectors(ctx, me.Name); err != nil {
		return nil, errorf("diagnose: read the receive connectors", err)
	}
	send, err := a.Dir.SendConnectors(ctx)
	if err != nil {
		return nil, errorf("diagnose: read the send connectors", err)
	}
	for _, c := range send {
		if len(c.SourceTransportServers) == 0 || containsFold(c.SourceTransportServers, me.Name) {
			f.Send = append(f.Send, c)
		}
	}
	f.ServiceAccount = a.Store.Account().Name
	// Q9: the EdgeSync rounds recorded here, and on an edge whether it is
	// subscribed.
	if rounds, err := edgesync.Rounds(ctx, a.db); err == nil {
		for _, r := range rounds {
			f.EdgeRounds = append(f.EdgeRounds, diagnose.EdgeRound{Edge: r.Edge, Kind: r.Kind, Hub: r.Hub, Time: r.Time, Error: r.Error})
		}
	}
	if v, _ := a.Settings.Get(ctx, settings.EdgeSubscribed); v != "" {
		f.EdgeSubscribed, _ = time.Parse(time.RFC3339, v)
	}
	// Backups: PKCS#12 exports (16007) whose file is still there.
	exports, err := a.Events.List(ctx, events.Filter{ID: 16007})
	if err != nil {
		return nil, errorf("diagnose: read the event log", err)
	}
	for _, e := range exports {
		if len(e.Params) < 3 || e.Params[1] != "PKCS#12" || !filepath.IsAbs(e.Params[2]) {
			continue
		}
		if _, err := os.Stat(e.Params[2]); err == nil {
			f.Backups[e.Params[0]] = e.Params[2]
		}
	}
	// L2: what the listeners serve, probed as a client would (a server
	// not running answers nothing, which is no finding).
	if rs, ts, err := a.ProbeTargets(ctx); err == nil {
		for i, t := range ts {
			r := probe.Run(ctx, t)
			f.Probes = append(f.Probes, diagnose.Probe{Listener: rs[i].Listener, Name: rs[i].Name, Address: rs[i].Address, Fqdn: rs[i].Fqdn, Intended: rs[i].Intended, Served: r.Thumbprint})
		}
	}
	return f, nil
}

// remoteFacts are the facts of another server of the organisation: its
// object and its published internal transport certificate, as the
// directory holds them (its store and connectors are its own: run
// diagnose there for them).
func remoteFacts(f *diagnose.Facts, s directory.Server) *diagnose.Facts {
	f.Server = s
	if c, err := x509.ParseCertificate(s.InternalTransportCertificate); err == nil {
		in := certinfo.Describe(c)
		t := certinfo.Thumbprint(c.Raw)
		nb, na := c.NotBefore, c.NotAfter
		status := trust.Valid
		if f.Now.After(na) {
			status = trust.DateInvalid
		}
		f.Certificates = []certview.Certificate{{Thumbprint: t, Subject: in.Subject, Issuer: in.Issuer, CertificateDomains: in.CertificateDomains,
			NotBefore: &nb, NotAfter: &na, IsSelfSigned: in.IsSelfSigned, RootCAType: trust.RootNone, Services: certprop.SMTP.Names(), Status: status, HasPrivateKey: true}}
		f.Candidates = []selection.Candidate{{Thumbprint: t, Domains: in.CertificateDomains, NotBefore: nb, NotAfter: na, IsSelfSigned: in.IsSelfSigned,
			Services: certprop.SMTP, Status: status, HasKey: true, KeyReadable: true, Cert: c}}
		f.Server.InternalTransportCertificateThumbprint = t
	}
	return f
}

// localName is this server's name ("" before setup).
func (a *Admin) localName(ctx context.Context) string {
	me, err := a.requireSetup(ctx)
	if err != nil {
		return ""
	}
	return me.Name
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// ExpiryWarningDays returns the expiry warning window in days (E5):
// the setting, or 30 when it is not set.
func (a *Admin) ExpiryWarningDays(ctx context.Context) (int, error) {
	return settings.ExpiryWarningDays(ctx, a.Settings)
}
