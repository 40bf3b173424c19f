package admin

import (
	"time"

	"certrelay/internal/access"
	"certrelay/internal/dnsname"
	"certrelay/internal/settings"
	"context"

	"certrelay/internal/certview"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// NewCandidateBuilder returns a builder of selection candidates for this
// data directory (see certview.CandidateBuilder).
func (a *Admin) NewCandidateBuilder() *certview.CandidateBuilder { return a.src.NewCandidateBuilder() }

// ExplainOptions say which session to explain.
type ExplainOptions struct {
	Connector string         // a receive (in) or send (out) connector
	Fqdn      string         // or a name to match directly
	Service   store.Services // default SMTP
	Direction string         // "in" (default) or "out"
	Domain    string         // with Direction out: a destination domain (DomainPolicy)
}

// Explanation is what `cert explain` prints.
type Explanation struct {
	Connector  string `json:",omitempty"`
	Direction  string
	Service    string
	Fqdn       string
	Explicit   string `json:",omitempty"`
	Setting    string `json:",omitempty"` // the setting the FQDN came from (X509CertificateName of POP3/IMAP4)
	Winner     string // thumbprint, "" when none
	How        string `json:",omitempty"`
	Why        string
	Candidates []selection.Consideration
	// NotHolding counts the certificates in the store that hold no name
	// matching Fqdn (exactly or by wildcard): a decision by name does not
	// consider them, so they are not among Candidates.
	NotHolding int `json:",omitempty"`
	// STARTTLS says what the connector does with this decision.
	STARTTLS string
	// DomainPolicy, for a destination domain, is the TLS policy that
	// applies to mail for it and why.
	DomainPolicy *DomainPolicy `json:",omitempty"`

	svc store.Services // the service explained, for explainDomain
}

// Explain runs selection for a connector or a name and returns every
// candidate with the reason it was rejected, passed over or chosen (SPEC
// §5, D2): the decision a session would make now.
func (a *Admin) Explain(ctx context.Context, o ExplainOptions) (Explanation, error) {
	const op = "explain"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return Explanation{}, errorf(op, err)
	}
	if o.Service == store.None {
		o.Service = store.SMTP
	}
	if o.Direction == "" {
		o.Direction = "in"
	}
	var req selection.Request
	ex := Explanation{Direction: o.Direction, Service: o.Service.String(), svc: o.Service}
	switch {
	case o.Domain != "":
		if o.Direction != "out" {
			return ex, errorf(op, usage("Domain", "{-Domain} explains sending: add {-Direction} out"))
		}
		if req, err = a.explainDomain(ctx, srv, o.Domain, &ex); err != nil {
			return ex, errorf(op, err)
		}
	case o.Connector != "" && o.Direction == "out":
		c, err := a.Dir.SendConnector(ctx, o.Connector)
		if err != nil {
			return ex, errorf(op, err)
		}
		req = selection.ForConnector(c.Fqdn, srv.Fqdn, c.TlsCertificateName, false, o.Service)
		ex.Connector = c.Name
	case o.Connector != "":
		c, err := a.GetReceiveConnector(ctx, o.Connector)
		if err != nil {
			return ex, errorf(op, err)
		}
		req = selection.ForConnector(c.Fqdn, srv.Fqdn, c.TlsCertificateName, c.TlsWildcardOneLabel, o.Service)
		ex.Connector = c.Name
		ex.STARTTLS = receiveTLSBehaviour(c)
	case o.Fqdn == "" && (o.Service == store.POP || o.Service == store.IMAP):
		// S8: POP3 and IMAP4 select for their settings' X509CertificateName
		// (the server's FQDN when it is empty), with the S9 switch.
		p := map[store.Services]access.Protocol{store.POP: access.POP3, store.IMAP: access.IMAP4}[o.Service]
		st, err := access.Load(ctx, a.Settings, p)
		if err != nil {
			return ex, errorf(op, err)
		}
		req = selection.ForConnector(st.X509CertificateName, srv.Fqdn, "", false, o.Service)
		req.Compat2007 = st.Exchange2007CertificateSelection
		ex.Setting = map[store.Services]string{store.POP: settings.PopCertificateName, store.IMAP: settings.ImapCertificateName}[o.Service]
		if st.X509CertificateName == "" {
			ex.Setting += " (empty: the server's FQDN)"
		}
	case o.Fqdn == "" && o.Service == store.UM:
		// S10: UM's name, the server's FQDN unless its settings give one.
		st, err := access.LoadUM(ctx, a.Settings)
		if err != nil {
			return ex, errorf(op, err)
		}
		req = selection.ForConnector(st.Fqdn, srv.Fqdn, "", false, store.UM)
		ex.Setting = "UM Fqdn"
		if st.Fqdn == "" {
			ex.Setting += " (empty: the server's FQDN)"
		}
	case o.Fqdn != "":
		n, err := dnsname.ParseHost(o.Fqdn)
		if err != nil {
			return ex, errorf(op, invalidValue("Fqdn", o.Fqdn, err))
		}
		req = selection.ForConnector(string(n), "", "", false, o.Service)
	default:
		return ex, errorf(op, usage("Fqdn", "give {-Connector} or {-Fqdn} (with {-Service} POP or IMAP, the name their X509CertificateName setting holds is the default)"))
	}
	// A decision by name reads only the certificates that may hold the
	// name, and lists those that do: what the server's index decides
	// (selection.SelectHolding).
	b := a.NewCandidateBuilder()
	build := b.Build
	if selection.ByName(req) {
		build = func(ctx context.Context) ([]selection.Candidate, time.Time, error) {
			return b.BuildHolding(ctx, req.FQDN)
		}
	}
	cands, now, err := build(ctx)
	if err != nil {
		return ex, errorf(op, err)
	}
	d := selection.SelectHolding(cands, req, now)
	ex.Fqdn, ex.Explicit, ex.How, ex.Why, ex.Candidates = req.FQDN, req.Explicit, d.How, d.Why, d.Considered
	if ex.Candidates == nil {
		ex.Candidates = []selection.Consideration{}
	}
	if d.Winner != nil {
		ex.Winner = d.Winner.Thumbprint
	}
	if selection.ByName(req) {
		n, err := a.Store.CountCertificates(ctx)
		if err != nil {
			return ex, errorf(op, err)
		}
		ex.NotHolding = max(0, n-len(ex.Candidates))
	}
	ex.STARTTLS = startTLSBehaviour(ex.STARTTLS, &d, now)
	if o.Direction == "out" && d.Winner == nil && req.Explicit != "" {
		ex.STARTTLS = "sessions fail with 454 4.7.5: the named certificate is missing"
	}
	return ex, nil
}

func receiveTLSBehaviour(c directory.ReceiveConnector) string {
	if !contains(c.AuthMechanism, "Tls") {
		return "not offered: the connector's auth mechanisms do not include Tls"
	}
	return "offered"
}
