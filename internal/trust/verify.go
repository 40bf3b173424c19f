package trust

import (
	"certrelay/internal/db"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"certrelay/internal/revocation"
)

// ElementRevocation is what is known of one chain element's revocation.
type ElementRevocation struct {
	Status     revocation.Status
	NotChecked bool                 `json:",omitempty"` // sources exist but no check has run yet
	Stale      bool                 `json:",omitempty"` // the answers it rests on have expired
	CheckedAt  *time.Time           `json:",omitempty"`
	ValidUntil *time.Time           `json:",omitempty"`
	RevokedAt  *time.Time           `json:",omitempty"`
	Reason     string               `json:",omitempty"`
	Attempts   []revocation.Attempt `json:",omitempty"`
	Error      string               `json:",omitempty"`
}

// hasSources reports whether c names any CRL distribution point or OCSP
// responder. A certificate without either has nothing to check (T4); its
// revocation reads as NoSources without a record.
func hasSources(c *x509.Certificate) bool {
	return len(c.OCSPServer) > 0 || len(c.CRLDistributionPoints) > 0
}

// Judge is Evaluate plus revocation (T4), from stored records only: it
// never touches the network, so listing certificates never waits. Each
// element of a verified chain but the root is judged: a revoked leaf is
// Revoked; a revoked intermediate makes the leaf Invalid (C9); an
// element whose revocation could not be established, or whose answers
// have expired, makes it RevocationCheckFailure; one never checked makes it
// Unknown. Self-signed certificates have no revocation.
func (sn *Snapshot) Judge(c *x509.Certificate, extra []*x509.Certificate, now time.Time, records map[string]Record) Result {
	r := sn.Evaluate(c, extra, now)
	applyRevocation(&r, records, now)
	return r
}

func applyRevocation(r *Result, records map[string]Record, now time.Time) {
	if len(r.Chain) < 2 || (r.Status != Valid && r.Status != DateInvalid) {
		return
	}
	worst := Valid
	var problem, fix string
	thumb := r.Chain[0].Thumbprint
	for i := 0; i < len(r.Chain)-1; i++ {
		el := &r.Chain[i]
		if el.Cert == nil {
			continue
		}
		if !hasSources(el.Cert) {
			el.Revocation = &ElementRevocation{Status: revocation.NoSources}
			continue
		}
		rec, ok := records[el.Thumbprint]
		if !ok {
			el.Revocation = &ElementRevocation{Status: revocation.Unknown, NotChecked: true}
			if worst == Valid {
				worst = Unknown
				problem = fmt.Sprintf("the revocation status of %s has not been checked yet", describeElement(i, el))
				fix = "check it now: certrelay cert verify " + thumb
			}
			continue
		}
		er := recordInfo(rec, now)
		el.Revocation = &er
		switch {
		case rec.Result.Status == revocation.Revoked:
			el.Status = Revoked
			el.Problem = revokedText(rec.Result)
			if i == 0 {
				worst, problem = Revoked, "the CA has revoked it: "+revokedText(rec.Result)
				fix = "replace it: request a new certificate (certrelay cert request …), import the CA's answer, enable it, then remove this one"
			} else if worst != Revoked {
				worst, problem = Invalid, fmt.Sprintf("its issuing CA %q is revoked: %s", el.Subject, revokedText(rec.Result))
				fix = "ask the CA for a certificate under its current chain, and import that chain (certrelay trust add … --intermediate)"
			}
		case rec.Result.Status == revocation.Unknown || er.Stale:
			el.Status = RevocationCheckFailure
			el.Problem = failureText(rec, er.Stale)
			if worst == Valid || worst == Unknown {
				worst, problem = RevocationCheckFailure, fmt.Sprintf("the revocation status of %s could not be established: %s", describeElement(i, el), el.Problem)
				fix = "make sure this server reaches the CRL and OCSP URLs (through the HTTP proxy if there is one: certrelay server set --proxy URL), then run certrelay cert verify " + thumb
			}
		}
	}
	if worst == Valid {
		return
	}
	if r.Status == DateInvalid && worst != Revoked && worst != Invalid {
		return // the date problem is reported first; revocation is in the chain
	}
	r.Status, r.Problem, r.Fix = worst, problem, fix
	r.Chain[0].Status = worst
	if r.Chain[0].Problem == "" {
		r.Chain[0].Problem = problem
	}
}

func describeElement(i int, el *Element) string {
	if i == 0 {
		return "the certificate"
	}
	return fmt.Sprintf("its issuing CA %q", el.Subject)
}

func recordInfo(rec Record, now time.Time) ElementRevocation {
	er := ElementRevocation{Status: rec.Result.Status, Attempts: rec.Result.Attempts, Error: rec.Result.Error}
	checked := rec.CheckedAt
	er.CheckedAt = &checked
	if !rec.ValidUntil.IsZero() {
		vu := rec.ValidUntil
		er.ValidUntil = &vu
		er.Stale = rec.Result.Status == revocation.Good && rec.Stale(now)
	}
	if rec.Result.Status == revocation.Revoked {
		ra := rec.Result.RevokedAt
		er.RevokedAt = &ra
		er.Reason = revocation.ReasonText(rec.Result.Reason)
	}
	return er
}

func revokedText(res revocation.Result) string {
	s := "revoked"
	if !res.RevokedAt.IsZero() {
		s += " on " + res.RevokedAt.UTC().Format(time.RFC3339)
	}
	if res.Reason != 0 {
		s += " (" + revocation.ReasonText(res.Reason) + ")"
	}
	return s
}

func failureText(rec Record, stale bool) string {
	if stale {
		return fmt.Sprintf("the revocation answers expired at %s and have not been refreshed", rec.ValidUntil.UTC().Format(time.RFC3339))
	}
	if rec.Result.Error != "" {
		return rec.Result.Error
	}
	var parts []string
	for _, a := range rec.Result.Attempts {
		p := fmt.Sprintf("%s %s: %s", a.Kind, a.URL, a.Result)
		if a.Error != "" {
			p += " (" + a.Error + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "no source answered"
	}
	return strings.Join(parts, "; ")
}

// Verifier checks certificates with the network: chain, then revocation
// of every element against its issuer, storing each result so that Judge
// (and `cert list`) show it afterwards.
type Verifier struct {
	Store   *Store
	Checker *revocation.Checker
	Now     func() time.Time
}

// Verify judges c as Judge does, after checking the revocation of every
// chain element now. fresh fetches every source anew, ignoring cached
// answers (`cert verify`, as certutil -urlfetch does); otherwise cached
// answers are used until they expire. It honours ctx; every fetch is
// bounded by the Checker's timeout.
func (v *Verifier) Verify(ctx context.Context, c *x509.Certificate, extra []*x509.Certificate, fresh bool) (Result, error) {
	snap, err := v.Store.Snapshot(ctx)
	if err != nil {
		return Result{}, err
	}
	now := v.Now()
	r := snap.Evaluate(c, extra, now)
	records := map[string]Record{}
	for i := 0; i < len(r.Chain)-1; i++ {
		el, issuer := r.Chain[i], r.Chain[i+1]
		if el.Cert == nil || issuer.Cert == nil || !hasSources(el.Cert) {
			continue
		}
		res := v.Checker.Check(ctx, el.Cert, issuer.Cert, fresh)
		rec := Record{Thumbprint: el.Thumbprint, CheckedAt: now, Result: res}
		for _, a := range res.Attempts {
			if (a.Result == revocation.ResultGood || a.Result == revocation.ResultRevoked) && !a.NextUpdate.IsZero() &&
				(rec.ValidUntil.IsZero() || a.NextUpdate.Before(rec.ValidUntil)) {
				rec.ValidUntil = a.NextUpdate
			}
		}
		records[el.Thumbprint] = rec
		if err := v.Store.PutRevocationRecord(ctx, rec); err != nil && !errors.Is(err, db.ErrReadOnly) {
			return Result{}, err // on a read-only data directory the result is shown, not kept
		}
	}
	// Elements beyond a broken chain still show what was found.
	for i := range r.Chain {
		if rec, ok := records[r.Chain[i].Thumbprint]; ok && r.Chain[i].Revocation == nil {
			er := recordInfo(rec, now)
			r.Chain[i].Revocation = &er
		}
	}
	applyRevocation(&r, records, now)
	return r, nil
}

// ElementThumbprints lists the thumbprints of c's chain elements whose
// revocation Verify would check, for callers deciding what to refresh.
func (sn *Snapshot) ElementThumbprints(c *x509.Certificate, now time.Time) []string {
	r := sn.Evaluate(c, nil, now)
	var out []string
	for i := 0; i < len(r.Chain)-1; i++ {
		if r.Chain[i].Cert != nil && hasSources(r.Chain[i].Cert) {
			out = append(out, r.Chain[i].Thumbprint)
		}
	}
	return out
}

// VerifyPeer judges a peer's certificate — a partner's, in domain
// security (SPEC DS1) — as Verify does: its chain to a trusted root, then
// the revocation of every element with checker (cached answers used until
// they expire), but stores nothing, since the peer is not in this
// server's store. extra are the certificates the peer sent after its
// leaf. Only Valid passes: a revocation status that cannot be established
// is RevocationCheckFailure, as for the server's own certificates. It
// honours ctx; each fetch is bounded by the checker's timeout.
func (sn *Snapshot) VerifyPeer(ctx context.Context, checker *revocation.Checker, c *x509.Certificate, extra []*x509.Certificate, now time.Time) Result {
	r := sn.Evaluate(c, extra, now)
	if r.Status != Valid {
		return r
	}
	records := map[string]Record{}
	for i := 0; i < len(r.Chain)-1; i++ {
		el, issuer := r.Chain[i], r.Chain[i+1]
		if el.Cert == nil || issuer.Cert == nil || !hasSources(el.Cert) {
			continue
		}
		res := checker.Check(ctx, el.Cert, issuer.Cert, false)
		records[el.Thumbprint] = Record{Thumbprint: el.Thumbprint, CheckedAt: now, Result: res}
	}
	applyRevocation(&r, records, now)
	return r
}
