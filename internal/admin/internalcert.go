package admin

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// couldBeInternal reports whether cert, with services, qualifies as this
// server's internal transport certificate: self-signed, enabled for SMTP,
// holding the server's host name or FQDN.
func (a *Admin) couldBeInternal(srv directory.Server, cert *x509.Certificate, services store.Services) bool {
	if !services.Has(store.SMTP) || !certinfo.IsSelfSigned(cert) {
		return false
	}
	domains := certinfo.CertificateDomains(cert)
	return selection.MatchName(domains, srv.Fqdn, true) || selection.MatchName(domains, srv.Name, true)
}

// askInternal decides whether cert replaces the internal transport
// certificate srv names: without a current one it simply does; otherwise
// the question of M1 is asked, showing both thumbprints and expiry dates.
// keep is what the operation prepared, kept with the question for the
// call that answers it.
func (a *Admin) askInternal(ctx context.Context, srv directory.Server, cert *x509.Certificate, services store.Services, ask asker, keep any) (bool, error) {
	if !a.couldBeInternal(srv, cert, services) {
		return false, nil
	}
	newT := certinfo.Thumbprint(cert.Raw)
	cur := srv.InternalTransportCertificateThumbprint
	if cur == newT {
		return false, nil
	}
	if cur == "" {
		return true, nil
	}
	curExpiry, curNotAfter := "(not in the personal store)", ""
	if e, err := a.Store.Get(ctx, cur); err == nil && e.Cert != nil {
		curNotAfter = e.Cert.NotAfter.UTC().Format(time.RFC3339)
		curExpiry = "expires " + curNotAfter
	}
	newNotAfter := cert.NotAfter.UTC().Format(time.RFC3339)
	return ask.ask(Question{
		Text: fmt.Sprintf("Replace the internal transport certificate of %s?\n  current: %s, %s\n  new:     %s, expires %s\nThe other servers of the organisation will authenticate this server with the new one.",
			srv.Name, cur, curExpiry, newT, newNotAfter),
		Details: []Detail{
			{"Server", srv.Name},
			{"CurrentThumbprint", cur}, {"CurrentNotAfter", curNotAfter},
			{"NewThumbprint", newT}, {"NewNotAfter", newNotAfter},
		},
		IfNo:  "the internal transport certificate stays as it is; the new certificate is made or enabled all the same",
		about: "internal " + srv.Name + " " + cur + " " + newT,
		keep:  keep,
	})
}

// internalOutcome says what became of the internal transport certificate.
type internalOutcome struct {
	Became   bool   // the certificate is now the internal transport certificate
	Previous string // the one it replaced ("" when there was none)
	Declined bool   // it could have replaced it and the administrator said no
}

// errInternalMoved: the internal transport certificate changed between
// the question and the transaction that would act on the answer.
var errInternalMoved = errors.New("the internal transport certificate changed meanwhile")

// withInternalQuestion runs change — which adds or enables a certificate
// and returns it — in one transaction with the question of M1/M5: may it
// replace the internal transport certificate? The question is asked before
// the transaction (nobody is kept waiting with the database locked), about
// the internal certificate of that moment, and answered inside it: the
// replacement happens only if that certificate is still the current one,
// so two processes can never both claim to replace the same certificate
// (issue 9 item 4). If it changed meanwhile, everything rolls back and the
// question is asked again about the new one. services are the services
// the certificate will have; keep goes with the question (see Question).
func (a *Admin) withInternalQuestion(ctx context.Context, cert *x509.Certificate, services store.Services, ask asker, keep any, change func(ctx context.Context) (store.Entry, error)) (internalOutcome, error) {
	for attempt := 0; ; attempt++ {
		srv, err := a.requireSetup(ctx)
		if err != nil {
			return internalOutcome{}, err
		}
		becomes, err := a.askInternal(ctx, srv, cert, services, ask, keep)
		if err != nil {
			return internalOutcome{}, err
		}
		out := internalOutcome{Declined: !becomes && a.couldBeInternal(srv, cert, services) && srv.InternalTransportCertificateThumbprint != certinfo.Thumbprint(cert.Raw)}
		err = a.atomically(ctx, func(ctx context.Context) error {
			e, err := change(ctx)
			if err != nil || !becomes {
				return err
			}
			out.Previous, err = a.replaceInternal(ctx, srv.InternalTransportCertificateThumbprint, e)
			out.Became = err == nil
			return err
		})
		if errors.Is(err, errInternalMoved) && attempt < 100 {
			continue // every retry means another process made progress
		}
		return out, err
	}
}

// replaceInternal makes e this server's internal transport certificate
// and publishes its public part in the directory (X1), if the current one
// is still expected; otherwise it fails with errInternalMoved. It runs in
// the caller's transaction and returns the certificate it replaced.
func (a *Admin) replaceInternal(ctx context.Context, expected string, e store.Entry) (string, error) {
	var prev string
	err := a.atomically(ctx, func(ctx context.Context) error {
		srv, err := a.requireSetup(ctx)
		if err != nil {
			return err
		}
		prev = srv.InternalTransportCertificateThumbprint
		if prev != expected {
			return errInternalMoved
		}
		if prev == e.Thumbprint {
			return nil
		}
		srv.InternalTransportCertificateThumbprint = e.Thumbprint
		srv.InternalTransportCertificate = e.Cert.Raw
		if err := a.Dir.PutServer(ctx, srv); err != nil {
			return err
		}
		old := prev
		if old == "" {
			old = "none"
		}
		a.raise(ctx, 16008, "", srv.Name, old, e.Thumbprint)
		return nil
	})
	return prev, err
}
