package admin

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"certrelay/internal/acme"
	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/settings"
	"certrelay/internal/store"
)

// Renewal policy (SPEC L1, C12), stated where it is defined.
const (
	// InternalRenewBefore: the internal self-signed transport certificate
	// is renewed this long before it expires.
	InternalRenewBefore = 30 * 24 * time.Hour
	// RenewMaxAttempts: after this many failed attempts in a row the
	// server stops renewing a certificate by itself (16105) until the
	// administrator runs cert renew.
	RenewMaxAttempts = 8
	// renewBackoffFirst and renewBackoffMax bound the wait after a failed
	// attempt: 10 minutes, doubled at each failure, at most 12 hours.
	renewBackoffFirst = 10 * time.Minute
	renewBackoffMax   = 12 * time.Hour
)

// RenewResult says what RenewCertificate did.
type RenewResult struct {
	Old            string      // the thumbprint renewed
	Certificate    Certificate // the new certificate
	How            string      // "ACME CA URL" or "self-signed"
	Services       string      // the services the new one took over
	BecameInternal bool        // it replaced the old as internal transport certificate
	Notes          []string
	Warnings       []string
}

// fixedAsker answers every question the same way, without a person: a
// renewal takes over the internal transport certificate only when the
// certificate renewed was it.
type fixedAsker struct{ yes bool }

func (f fixedAsker) ask(Question) (bool, error) { return f.yes, nil }
func (fixedAsker) resumed() any                 { return nil }

// RenewCertificate renews a certificate now, whatever its kind: an ACME
// certificate is ordered again from its CA with the same names and
// challenges; a self-signed one is made again (M2) with the same subject,
// names and key type. The new one takes over the old one's services (and
// the internal transport certificate, published in the directory, and the
// HTTPS binding when the old one held them), in one transaction with the
// renewal's record. A certificate a CA issued outside certrelay cannot be
// renewed here: the error says how. A failure is recorded (the console
// shows it) with the next automatic attempt.
func (a *Admin) RenewCertificate(ctx context.Context, thumbprint string) (RenewResult, error) {
	const op = "renew certificate"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return RenewResult{}, errorf(op, err)
	}
	t, ok := certinfo.NormalizeThumbprint(thumbprint)
	if !ok {
		return RenewResult{}, errorf(op, badThumbprint(thumbprint))
	}
	e, err := a.Store.Get(ctx, t)
	if err != nil {
		return RenewResult{}, errorf(op, asError(err).field("Thumbprint", thumbprint))
	}
	if e.Pending() {
		return RenewResult{}, errorf(op, failed(Conflict, "%s is a pending request, not a certificate", t).field("Thumbprint", t).fix("import the CA's answer first"))
	}
	if st, err := a.ACME.Renewal(ctx, t); err != nil {
		return RenewResult{}, errorf(op, err)
	} else if st.RenewedBy != "" {
		return RenewResult{}, errorf(op, failed(Conflict, "%s was renewed already, as %s", t, st.RenewedBy).field("Thumbprint", t).
			fix("renew the new one: %s", cmd("Update-CertrelayCertificate", st.RenewedBy)))
	}
	rec, isACME, err := a.ACME.Lookup(ctx, t)
	if err != nil {
		return RenewResult{}, errorf(op, err)
	}
	var res RenewResult
	switch {
	case isACME:
		res, err = a.renewACME(ctx, e, rec)
	case certinfo.IsSelfSigned(e.Cert):
		res, err = a.renewSelfSigned(ctx, e, srv)
	default:
		return RenewResult{}, errorf(op, failed(Conflict, "%s was issued by %s outside certrelay, which cannot ask that CA again", t, certinfo.NameString(e.Cert.RawIssuer)).field("Thumbprint", t).
			fix("make a request ({New-ExchangeCertificate/GenerateRequest}) for the CA and import its answer, or order one from an ACME CA ({New-ExchangeCertificate -Acme})"))
	}
	if err != nil {
		if st, _ := a.ACME.Renewal(ctx, t); st.RenewedBy == "" { // not lost to a concurrent renewal
			a.renewalFailed(ctx, e, err)
		}
		return RenewResult{}, errorf(op, err)
	}
	return res, nil
}

// renewalFailed records a failed attempt, its back-off, and gives up
// after RenewMaxAttempts, with events 16104 and 16105.
func (a *Admin) renewalFailed(ctx context.Context, e store.Entry, cause error) {
	r, err := a.ACME.Renewal(ctx, e.Thumbprint)
	if err != nil {
		return
	}
	now := a.now()
	r.Failures++
	r.LastError = cause.Error()
	r.LastAttempt = now
	wait := renewBackoffFirst << min(r.Failures-1, 20)
	if wait > renewBackoffMax || wait <= 0 {
		wait = renewBackoffMax
	}
	r.NextTry = now.Add(wait)
	r.GaveUp = r.Failures >= RenewMaxAttempts
	_ = a.ACME.PutRenewal(ctx, r)
	if r.GaveUp {
		a.raise(ctx, 16105, e.Thumbprint, e.Thumbprint, fmt.Sprint(r.Failures), r.LastError, e.Cert.NotAfter.UTC().Format(time.RFC3339))
	} else {
		a.raise(ctx, 16104, e.Thumbprint, e.Thumbprint, fmt.Sprint(r.Failures), r.LastError, r.NextTry.UTC().Format(time.RFC3339))
	}
}

// renewed records, in the renewal's transaction, that old was replaced.
func (a *Admin) renewed(ctx context.Context, old store.Entry, newT, how string, notAfter time.Time, services store.Services) error {
	// Two processes renewing the same certificate at once (the server's
	// check and cert renew): the first to commit wins, the other rolls
	// back, so one certificate never gets two successors.
	if st, err := a.ACME.Renewal(ctx, old.Thumbprint); err != nil {
		return err
	} else if st.RenewedBy != "" {
		return failed(Conflict, "%s was renewed meanwhile, as %s", old.Thumbprint, st.RenewedBy).field("Thumbprint", old.Thumbprint)
	}
	if err := a.ACME.PutRenewal(ctx, acme.Renewal{Thumbprint: old.Thumbprint, RenewedBy: newT, LastAttempt: a.now()}); err != nil {
		return err
	}
	// The HTTPS binding names a thumbprint: it follows the renewal.
	if bound, _ := a.Settings.Get(ctx, settings.HTTPSCertificate); bound == old.Thumbprint {
		if err := a.Settings.Set(ctx, settings.HTTPSCertificate, newT); err != nil {
			return err
		}
	}
	a.raise(ctx, 16103, "", old.Thumbprint, newT, how, notAfter.UTC().Format(time.RFC3339), services.String())
	return nil
}

func (a *Admin) renewSelfSigned(ctx context.Context, e store.Entry, srv directory.Server) (RenewResult, error) {
	wasInternal := srv.InternalTransportCertificateThumbprint == e.Thumbprint
	res := RenewResult{Old: e.Thumbprint, How: "self-signed", Services: e.Services.String()}
	err := a.atomically(ctx, func(ctx context.Context) error {
		made, err := a.newCertificate(ctx, NewOptions{From: e.Thumbprint}, fixedAsker{yes: wasInternal})
		if err != nil {
			return err
		}
		res.Certificate, res.BecameInternal = made.Certificate, made.BecameInternal
		return a.renewed(ctx, e, made.Certificate.Thumbprint, res.How, *made.Certificate.NotAfter, e.Services)
	})
	return res, err
}

func (a *Admin) renewACME(ctx context.Context, e store.Entry, rec acme.Issued) (RenewResult, error) {
	ac, err := a.ACME.Get(ctx, rec.AccountID)
	if err != nil {
		return RenewResult{}, failed(NotFound, "the ACME account %d that obtained %s is gone", rec.AccountID, e.Thumbprint).
			fix("order a new certificate with another account: {New-ExchangeCertificate -Acme}")
	}
	if err := a.onServer(ctx, &rec.Challenges); err != nil {
		return RenewResult{}, err
	}
	spec := certinfo.KeySpec{Type: rec.KeyType, Size: rec.KeySize}
	key, err := certinfo.GenerateKey(spec, a.rand)
	if err != nil {
		return RenewResult{}, err
	}
	got, err := a.ACME.Obtain(ctx, acme.Order{Account: ac, Domains: rec.Domains, Key: key, Challenges: rec.Challenges})
	if err != nil {
		a.raise(ctx, 16102, strings.Join(rec.Domains, ","), strings.Join(rec.Domains, ", "), ac.Directory, err.Error())
		return RenewResult{}, acmeError(err, "Thumbprint", e.Thumbprint)
	}
	res := RenewResult{Old: e.Thumbprint, How: "ACME " + ac.Directory, Services: e.Services.String()}
	rec.IssuedAt = a.now()
	ar, err := a.storeObtained(ctx, ac, got, key, rec, store.NewCertificate{FriendlyName: e.FriendlyName, Exportable: e.Exportable}, e.Services, fixedAsker{}, func(ctx context.Context, t string) error {
		return a.renewed(ctx, e, t, res.How, got.Leaf.NotAfter, e.Services)
	})
	if err != nil {
		return RenewResult{}, err
	}
	res.Certificate, res.Notes, res.Warnings = ar.Certificate, ar.Notes, ar.Warnings
	return res, nil
}

// NextRenewal says when certrelay renews a certificate by itself, and
// why; zero when it does not (a CA's certificate from outside, a
// self-signed one that is not the internal transport certificate, one
// already renewed).
func (a *Admin) NextRenewal(ctx context.Context, e store.Entry, srv directory.Server, st acme.Renewal) (time.Time, string, error) {
	if e.Pending() || st.RenewedBy != "" {
		return time.Time{}, "", nil
	}
	rec, isACME, err := a.ACME.Lookup(ctx, e.Thumbprint)
	if err != nil {
		return time.Time{}, "", err
	}
	var at time.Time
	var why string
	switch {
	case isACME:
		life := e.Cert.NotAfter.Sub(e.Cert.NotBefore)
		at, why = e.Cert.NotBefore.Add(life*2/3), "ACME, at two thirds of its life"
		if rec.RenewBefore > 0 {
			at, why = e.Cert.NotAfter.Add(-rec.RenewBefore), fmt.Sprintf("ACME, %s before expiry", rec.RenewBefore)
		}
	case e.Thumbprint == srv.InternalTransportCertificateThumbprint && certinfo.IsSelfSigned(e.Cert):
		at, why = e.Cert.NotAfter.Add(-InternalRenewBefore), "internal transport certificate, 30 days before expiry"
	default:
		return time.Time{}, "", nil
	}
	if st.Failures > 0 && st.NextTry.After(at) {
		at = st.NextTry
	}
	return at, why, nil
}

// RenewOutcome is one certificate RenewDue tried.
type RenewOutcome struct {
	Thumbprint string
	New        string // "" when it failed
	Err        error
}

// RenewDue renews every certificate whose renewal is due at the admin
// clock's now and which has not given up: the server calls it
// periodically. Each renewal is its own transaction; one failing does not
// stop the others.
func (a *Admin) RenewDue(ctx context.Context) ([]RenewOutcome, error) {
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return nil, nil // nothing to renew before setup
	}
	list, err := a.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	states, err := a.ACME.Renewals(ctx)
	if err != nil {
		return nil, err
	}
	now := a.now()
	var out []RenewOutcome
	for _, e := range list {
		st := states[e.Thumbprint]
		if st.GaveUp {
			continue
		}
		at, _, err := a.NextRenewal(ctx, e, srv, st)
		if err != nil || at.IsZero() || at.After(now) {
			continue
		}
		res, err := a.RenewCertificate(ctx, e.Thumbprint)
		out = append(out, RenewOutcome{Thumbprint: e.Thumbprint, New: res.Certificate.Thumbprint, Err: err})
		if srv, err = a.requireSetup(ctx); err != nil {
			return out, err
		}
	}
	return out, nil
}

// RenewFirstCheck is how long after the server starts the first renewal
// check runs: the server first reports what it found (an expired internal
// certificate is still used, with 12015, C12), then renews.
const RenewFirstCheck = time.Minute

// RunRenewals calls RenewDue RenewFirstCheck after it starts, then every
// interval until ctx ends, logging what it did; certrelay serve runs it.
// An interval of 0 or less turns automatic renewal off.
func (a *Admin) RunRenewals(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(min(RenewFirstCheck, interval)):
	}
	for {
		out, err := a.RenewDue(ctx)
		if err != nil && log != nil {
			log.Warn("renewal check failed", "error", err)
		}
		for _, o := range out {
			if log == nil {
				continue
			}
			if o.Err != nil {
				log.Warn("certificate renewal failed", "thumbprint", o.Thumbprint, "error", o.Err)
			} else {
				log.Info("certificate renewed", "thumbprint", o.Thumbprint, "new", o.New)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// CertificateRenewal is a certificate's renewal as the console and
// cert renewals show it.
type CertificateRenewal struct {
	Thumbprint         string
	CertificateDomains []string
	NotAfter           time.Time
	// NextRenewal is when certrelay renews it by itself (nil: never — it
	// was renewed already, gave up, or is not certrelay's to renew).
	NextRenewal *time.Time
	Policy      string // why then
	Failures    int
	LastError   string
	LastAttempt *time.Time
	RenewedBy   string
	GaveUp      bool
}

// ListRenewals lists every certificate certrelay renews, or tried to.
func (a *Admin) ListRenewals(ctx context.Context) ([]CertificateRenewal, error) {
	const op = "list renewals"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return nil, errorf(op, err)
	}
	list, err := a.Store.List(ctx)
	if err != nil {
		return nil, errorf(op, err)
	}
	states, err := a.ACME.Renewals(ctx)
	if err != nil {
		return nil, errorf(op, err)
	}
	out := []CertificateRenewal{}
	for _, e := range list {
		if e.Pending() {
			continue
		}
		st, has := states[e.Thumbprint]
		at, why, err := a.NextRenewal(ctx, e, srv, st)
		if err != nil {
			return nil, errorf(op, err)
		}
		if at.IsZero() && !has {
			continue
		}
		r := CertificateRenewal{Thumbprint: e.Thumbprint, CertificateDomains: certinfo.CertificateDomains(e.Cert), NotAfter: e.Cert.NotAfter.UTC(), Policy: why,
			Failures: st.Failures, LastError: st.LastError, RenewedBy: st.RenewedBy, GaveUp: st.GaveUp}
		if !at.IsZero() && !st.GaveUp {
			at = at.UTC()
			r.NextRenewal = &at
		}
		if !st.LastAttempt.IsZero() {
			la := st.LastAttempt.UTC()
			r.LastAttempt = &la
		}
		out = append(out, r)
	}
	return out, nil
}
