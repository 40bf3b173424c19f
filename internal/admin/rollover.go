package admin

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/selection"
	"certrelay/internal/settings"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// Staged rollover (SPEC L3): stage a certificate (imported, used by
// nothing), see what its activation would change, refuse on a problem,
// activate it at once or at a time, roll back within a grace period.

// RollbackGrace is how long after an activation a rollback is allowed.
const RollbackGrace = 7 * 24 * time.Hour

// RolloverChange is one listener and name whose certificate an
// activation changes.
type RolloverChange struct {
	Listener string
	Name     string
	Fqdn     string
	Service  string
	From     string // thumbprint served now ("" when none)
	To       string // thumbprint served after
}

// Preflight is what activating a staged certificate would do, and what
// stops it.
type Preflight struct {
	Thumbprint         string
	Subject            string
	CertificateDomains []string
	Status             trust.Status
	Services           string   // what the activation enables
	Replaces           []string // the certificates it takes over from
	Changes            []RolloverChange
	Refusals           []string   // each problem with its fix; any one refuses
	Warnings           []string   `json:",omitempty"`
	ActivateAt         *time.Time `json:",omitempty"`
	ActivatedAt        *time.Time `json:",omitempty"`
}

// preflight judges cert (with the chain extra) as if activated for
// services (nil: the services of the certificates it would replace).
func (a *Admin) preflight(ctx context.Context, cert *x509.Certificate, extra []*x509.Certificate, services *store.Services) (Preflight, error) {
	t := certinfo.Thumbprint(cert.Raw)
	p := Preflight{Thumbprint: t, Subject: certinfo.NameString(cert.RawSubject), CertificateDomains: certinfo.CertificateDomains(cert)}
	v, err := a.Verifier(ctx)
	if err != nil {
		return p, err
	}
	r, err := v.Verify(ctx, cert, extra, true)
	if err != nil {
		return p, err
	}
	p.Status = r.Status
	switch r.Status {
	case trust.Valid:
	case trust.RevocationCheckFailure:
		p.Refusals = append(p.Refusals, fmt.Sprintf("its revocation cannot be checked (%s): clients that check would refuse it; %s", r.Problem, r.Fix))
	case trust.Untrusted, trust.Invalid:
		p.Refusals = append(p.Refusals, fmt.Sprintf("its chain is incomplete or untrusted (%s): %s", r.Problem, r.Fix))
	default:
		p.Refusals = append(p.Refusals, fmt.Sprintf("its status is %s (%s): %s", r.Status, r.Problem, r.Fix))
	}
	now, err := a.SelectionMap(ctx)
	if err != nil {
		return p, err
	}
	svc := store.None
	if services != nil {
		svc = *services
	} else {
		// The services of what it would replace: the certificates that
		// serve its names today.
		for _, e := range now {
			if e.Winner == "" || e.Listener == "InternalTransport" || !selection.MatchName(p.CertificateDomains, e.Fqdn, false) {
				continue
			}
			if s, err := store.ParseServices(e.Service); err == nil {
				svc |= s
			}
		}
	}
	p.Services = svc.String()
	if svc == store.None {
		p.Refusals = append(p.Refusals, "it serves none of the names certificates serve here today, and no service was given: activating it would change nothing; give the services it should take over")
		return p, nil
	}
	cand := selection.Candidate{Thumbprint: t, Subject: cert.Subject.String(), Issuer: cert.Issuer.String(), Domains: p.CertificateDomains,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, IsSelfSigned: certinfo.IsSelfSigned(cert), Services: svc, Status: r.Status, Cert: cert,
		HasKey: true, KeyReadable: true}
	after, err := a.selectionMap(ctx, &cand)
	if err != nil {
		return p, err
	}
	replaced := map[string]bool{}
	for i := range now {
		if i >= len(after) || now[i].Listener == "InternalTransport" {
			continue
		}
		if now[i].Winner != after[i].Winner {
			p.Changes = append(p.Changes, RolloverChange{Listener: now[i].Listener, Name: now[i].Name, Fqdn: now[i].Fqdn, Service: now[i].Service, From: now[i].Winner, To: after[i].Winner})
			if after[i].Winner == t && now[i].Winner != "" {
				replaced[now[i].Winner] = true
			}
		}
	}
	for r := range replaced {
		p.Replaces = append(p.Replaces, r)
	}
	slices.Sort(p.Replaces)
	if len(p.Changes) == 0 {
		p.Refusals = append(p.Refusals, fmt.Sprintf("activating it for %s would change no listener: the certificates serving its names today rank above it (S4: a CA's certificate beats a self-signed one, then the latest NotBefore wins)", svc))
	}
	// A name served today by a certificate it replaces must stay served
	// by the new one: once the old is removed, clients of that name would
	// get another certificate or none.
	for _, e := range now {
		if e.Listener == "InternalTransport" || !replaced[e.Winner] || e.Fqdn == "" {
			continue
		}
		if !selection.MatchName(p.CertificateDomains, e.Fqdn, false) {
			p.Refusals = append(p.Refusals, fmt.Sprintf("%s %s serves %s today with %s, which it replaces, but %s is not among its names (%s): get a certificate that holds %s too",
				e.Listener, e.Name, e.Fqdn, e.Winner, e.Fqdn, strings.Join(p.CertificateDomains, ", "), e.Fqdn))
		}
	}
	tlsa, warn := a.tlsaRefusals(ctx, now, p.Changes, cert, extra)
	p.Refusals = append(p.Refusals, tlsa...)
	p.Warnings = append(p.Warnings, warn...)
	return p, nil
}

// StageOptions describe a certificate to stage.
type StageOptions struct {
	Data         []byte
	Password     *string
	Services     *store.Services // nil: those of the certificates it replaces
	FriendlyName string
	Force        bool // stage even when the preflight refuses (activation still refuses)
}

// StageCertificate runs the preflight on a certificate file and, when it
// passes, imports it used by nothing (no service) and records it as
// staged with the services its activation enables. A refused preflight
// changes nothing and lists every problem.
func (a *Admin) StageCertificate(ctx context.Context, o StageOptions) (Preflight, error) {
	const op = "stage certificate"
	if _, err := a.requireSetup(ctx); err != nil {
		return Preflight{}, errorf(op, err)
	}
	b, err := certinfo.ParseBundle(o.Data, o.Password)
	if err != nil {
		return Preflight{}, errorf(op, bundleError(err))
	}
	if len(b.Certificates) == 0 {
		return Preflight{}, errorf(op, invalid("FileData", "", "the file holds no certificate"))
	}
	leaf, _, err := a.findLeaf(ctx, b)
	if err != nil {
		return Preflight{}, errorf(op, err)
	}
	var extra []*x509.Certificate
	for _, c := range b.Certificates {
		if c != leaf {
			extra = append(extra, c)
		}
	}
	p, err := a.preflight(ctx, leaf, extra, o.Services)
	if err != nil {
		return p, errorf(op, err)
	}
	if len(p.Refusals) > 0 {
		return p, errorf(op, refused(p))
	}
	res, err := a.ImportCertificate(ctx, ImportOptions{Data: o.Data, Password: o.Password, FriendlyName: o.FriendlyName})
	if err != nil {
		return p, errorf(op, err)
	}
	svc, _ := store.ParseServices(p.Services)
	err = a.atomically(ctx, func(ctx context.Context) error {
		return a.Store.PutStaged(ctx, store.Staged{Thumbprint: res.Certificate.Thumbprint, Services: svc, Replaces: p.Replaces, StagedAt: a.now()})
	})
	if err != nil {
		return p, errorf(op, err)
	}
	return p, nil
}

// refused is the error of a preflight that found problems.
func refused(p Preflight) *Error {
	return (&Error{Kind: Conflict, Field: "Thumbprint", Value: p.Thumbprint,
		Msg: msgf("preflight refused %s (%s): %s", p.Thumbprint, p.Subject, strings.Join(p.Refusals, "; "))})
}

// ActivateCertificate makes a staged certificate live: at once (after
// the preflight passes again, against the configuration of now), or at
// the time at (the server activates it then). The activation enables it
// for its services in one transaction, with M5's side effects, and
// records what they replaced for a rollback.
func (a *Admin) ActivateCertificate(ctx context.Context, thumbprint string, at time.Time) (Preflight, error) {
	const op = "activate certificate"
	t, ok := certinfo.NormalizeThumbprint(thumbprint)
	if !ok {
		return Preflight{}, errorf(op, badThumbprint(thumbprint))
	}
	st, err := a.Store.GetStaged(ctx, t)
	if err != nil {
		return Preflight{}, errorf(op, failed(NotFound, "%s was not staged", t).field("Thumbprint", t).fix("stage it first: %s", cmd("Import-CertrelayStagedCertificate", "FILE")))
	}
	if !st.ActivatedAt.IsZero() && st.RolledBack.IsZero() {
		return Preflight{}, errorf(op, failed(Conflict, "%s is active since %s", t, st.ActivatedAt.UTC().Format(time.RFC3339)).field("Thumbprint", t))
	}
	e, err := a.Store.Get(ctx, t)
	if err != nil {
		return Preflight{}, errorf(op, err)
	}
	p, err := a.preflight(ctx, e.Cert, nil, &st.Services)
	if err != nil {
		return p, errorf(op, err)
	}
	if len(p.Refusals) > 0 {
		return p, errorf(op, refused(p))
	}
	if at.After(a.now()) {
		st.ActivateAt, st.RolledBack = at, time.Time{}
		if err := a.Store.PutStaged(ctx, st); err != nil {
			return p, errorf(op, err)
		}
		at = at.UTC()
		p.ActivateAt = &at
		return p, nil
	}
	err = a.atomically(ctx, func(ctx context.Context) error {
		prev := map[string]string{}
		for _, k := range []string{settings.HTTPSCertificate, settings.PopCertificateName, settings.ImapCertificateName} {
			prev[k], _ = a.Settings.Get(ctx, k)
		}
		pj, _ := json.Marshal(prev)
		st.Added = st.Services &^ e.Services
		if _, err := a.enableCertificate(ctx, t, st.Services, fixedAsker{}); err != nil {
			return err
		}
		st.ActivatedAt, st.ActivateAt, st.RolledBack, st.Previous = a.now(), time.Time{}, time.Time{}, string(pj)
		if err := a.Store.PutStaged(ctx, st); err != nil {
			return err
		}
		a.raise(ctx, 16107, "", t, st.Services.String(), strings.Join(p.Replaces, ", "))
		return nil
	})
	if err != nil {
		return p, errorf(op, err)
	}
	on := st.ActivatedAt.UTC()
	p.ActivatedAt = &on
	return p, nil
}

// ActivateDue activates the staged certificates whose time has come; the
// server calls it periodically. A refused one is logged (16109) and left
// staged.
func (a *Admin) ActivateDue(ctx context.Context) ([]string, error) {
	list, err := a.Store.ListStaged(ctx)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, st := range list {
		if st.ActivateAt.IsZero() || st.ActivateAt.After(a.now()) || !st.ActivatedAt.IsZero() {
			continue
		}
		if _, err := a.ActivateCertificate(ctx, st.Thumbprint, time.Time{}); err != nil {
			a.raise(ctx, 16109, st.Thumbprint, st.Thumbprint, err.Error())
			st.ActivateAt = time.Time{}
			_ = a.Store.PutStaged(ctx, st)
			continue
		}
		done = append(done, st.Thumbprint)
	}
	return done, nil
}

// RollbackCertificate undoes the latest activation (or that of
// thumbprint) within RollbackGrace: the services it added are taken
// away, and the settings its side effects changed get their old values,
// so the certificates it replaced serve again from the next handshake.
func (a *Admin) RollbackCertificate(ctx context.Context, thumbprint string) (string, error) {
	const op = "roll back certificate"
	list, err := a.Store.ListStaged(ctx)
	if err != nil {
		return "", errorf(op, err)
	}
	var st *store.Staged
	for i := range list {
		s := &list[i]
		if s.ActivatedAt.IsZero() || !s.RolledBack.IsZero() {
			continue
		}
		if thumbprint != "" {
			if t, _ := certinfo.NormalizeThumbprint(thumbprint); t == s.Thumbprint {
				st = s
			}
			continue
		}
		if st == nil || s.ActivatedAt.After(st.ActivatedAt) {
			st = s
		}
	}
	if st == nil {
		return "", errorf(op, failed(NotFound, "no activation to roll back").fix("see the staged certificates with %s", cmd("Get-CertrelayStagedCertificate")))
	}
	if a.now().Sub(st.ActivatedAt) > RollbackGrace {
		return "", errorf(op, failed(Conflict, "%s was activated on %s, more than %d days ago: the rollback's grace period is over", st.Thumbprint, st.ActivatedAt.UTC().Format(time.RFC3339), int(RollbackGrace.Hours()/24)).
			fix("enable the previous certificate again, or stage and activate another"))
	}
	err = a.atomically(ctx, func(ctx context.Context) error {
		if _, err := a.Store.WithdrawServices(ctx, st.Thumbprint, st.Added); err != nil {
			return err
		}
		prev := map[string]string{}
		_ = json.Unmarshal([]byte(st.Previous), &prev)
		for k, v := range prev {
			if err := a.Settings.Set(ctx, k, v); err != nil {
				return err
			}
		}
		st.RolledBack = a.now()
		if err := a.Store.PutStaged(ctx, *st); err != nil {
			return err
		}
		a.raise(ctx, 16108, "", st.Thumbprint, st.Added.String())
		return nil
	})
	if err != nil {
		return "", errorf(op, err)
	}
	return st.Thumbprint, nil
}

// ListStaged lists the staged certificates with their state.
func (a *Admin) ListStaged(ctx context.Context) ([]StagedCertificate, error) {
	list, err := a.Store.ListStaged(ctx)
	if err != nil {
		return nil, errorf("list staged certificates", err)
	}
	out := []StagedCertificate{}
	for _, st := range list {
		s := StagedCertificate{Thumbprint: st.Thumbprint, Services: st.Services.String(), Replaces: st.Replaces, StagedAt: st.StagedAt.UTC(), State: "staged"}
		if st.Replaces == nil {
			s.Replaces = []string{}
		}
		tp := func(t time.Time) *time.Time {
			if t.IsZero() {
				return nil
			}
			u := t.UTC()
			return &u
		}
		s.ActivateAt, s.ActivatedAt, s.RolledBackAt = tp(st.ActivateAt), tp(st.ActivatedAt), tp(st.RolledBack)
		switch {
		case !st.RolledBack.IsZero():
			s.State = "rolled back"
		case !st.ActivatedAt.IsZero():
			s.State = "active"
		case !st.ActivateAt.IsZero():
			s.State = "scheduled"
		}
		out = append(out, s)
	}
	return out, nil
}

// StagedCertificate is a staged certificate as cert staged lists it.
type StagedCertificate struct {
	Thumbprint   string
	State        string // staged, scheduled, active, rolled back
	Services     string
	Replaces     []string
	StagedAt     time.Time
	ActivateAt   *time.Time `json:",omitempty"`
	ActivatedAt  *time.Time `json:",omitempty"`
	RolledBackAt *time.Time `json:",omitempty"`
}

// RunActivations calls ActivateDue every interval until ctx ends, logging
// what it activated; certrelay serve runs it.
func (a *Admin) RunActivations(ctx context.Context, interval time.Duration, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		done, err := a.ActivateDue(ctx)
		if err != nil && log != nil {
			log.Warn("scheduled activation check failed", "error", err)
		}
		for _, t := range done {
			if log != nil {
				log.Info("staged certificate activated", "thumbprint", t)
			}
		}
	}
}
