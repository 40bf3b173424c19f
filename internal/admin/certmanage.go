package admin

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"certrelay/internal/certinfo"
	"certrelay/internal/settings"
	"certrelay/internal/store"
)

// EnableResult says what EnableCertificate did.
type EnableResult struct {
	Certificate    Certificate
	Added          store.Services // services that were not enabled before
	BecameInternal bool
	Previous       string
	Declined       bool
	Notes          []string // side effects, one sentence each (marks allowed)
	Warnings       []string
}

// EnableCertificate adds services to a certificate (M5); it never removes
// any. Side effects: for SMTP, POP and IMAP the service account gets read
// access to the key; SMTP on a self-signed certificate that holds this
// server's name may make it the internal transport certificate (asked as
// for M1); POP and IMAP set the POP3/IMAP4 X509CertificateName to the
// certificate's first domain (S8); IIS binds the HTTPS console to it.
func (a *Admin) EnableCertificate(ctx context.Context, thumbprint string, services store.Services, confirm Confirmer) (EnableResult, error) {
	return a.enableCertificate(ctx, thumbprint, services, confirmerAsker{confirm})
}

func (a *Admin) enableCertificate(ctx context.Context, thumbprint string, services store.Services, ask asker) (EnableResult, error) {
	const op = "enable certificate"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return EnableResult{}, errorf(op, err)
	}
	if services == store.None {
		return EnableResult{}, errorf(op, invalid("Services", "", "no service given").fix("add {-Services} SMTP,POP,IMAP,UM or IIS"))
	}
	t, ok := certinfo.NormalizeThumbprint(thumbprint)
	if !ok {
		return EnableResult{}, errorf(op, badThumbprint(thumbprint))
	}
	e, err := a.Store.Get(ctx, t)
	if err != nil {
		return EnableResult{}, errorf(op, err)
	}
	if e.Pending() {
		return EnableResult{}, errorf(op, failed(Conflict, "%s is a pending request", t).field("Thumbprint", t).
			fix("import the CA's certificate first (%s), then enable that", cmd("Import-ExchangeCertificate", "FILE")))
	}
	if !a.Store.KeyInfo(e).Present {
		return EnableResult{}, errorf(op, (&Error{Kind: Conflict, Err: fmt.Errorf("%w: %s; no service can use a certificate without its key", store.ErrNoKey, t)}).field("Thumbprint", t).
			fix("import it from a PKCS#12 (.pfx) file that holds the key"))
	}
	res := EnableResult{Added: services &^ e.Services}
	out, err := a.withInternalQuestion(ctx, e.Cert, e.Services|services, ask, nil, func(ctx context.Context) (store.Entry, error) {
		var err error
		if e, err = a.Store.EnableServices(ctx, t, services); err != nil {
			return e, err
		}
		res.Notes, err = a.enableSideEffects(ctx, e, services)
		if err != nil {
			return e, err
		}
		a.raise(ctx, 16005, "", t, services.String(), e.Services.String())
		return e, nil
	})
	if err != nil {
		return EnableResult{}, errorf(op, err)
	}
	res.BecameInternal, res.Previous, res.Declined = out.Became, out.Previous, out.Declined
	if services&store.SMTP != 0 {
		w, err := a.precedenceWarnings(ctx, srv, e.Thumbprint)
		if err != nil {
			return EnableResult{}, errorf(op, err)
		}
		res.Warnings = append(res.Warnings, w...)
	}
	if services&store.IIS != 0 {
		w, err := a.consoleWarning(ctx, e.Thumbprint)
		if err != nil {
			return EnableResult{}, errorf(op, err)
		}
		res.Warnings = append(res.Warnings, w...)
	}
	v, err := a.src.Viewer(ctx)
	if err != nil {
		return EnableResult{}, err
	}
	res.Certificate = v.View(e)
	if w := statusWarning(res.Certificate, a.now()); w != "" {
		res.Warnings = append(res.Warnings, w)
	}
	return res, nil
}

// enableSideEffects applies what enabling services sets beside the
// certificate (M5), in the caller's transaction, and says what it set.
func (a *Admin) enableSideEffects(ctx context.Context, e store.Entry, services store.Services) ([]string, error) {
	var notes []string
	if services&(store.SMTP|store.POP|store.IMAP) != 0 {
		notes = append(notes, msgf("The service account %s can read the private key.", a.Store.Account().Name))
	}
	domains := certinfo.CertificateDomains(e.Cert)
	for _, s := range []struct {
		svc  store.Services
		key  string
		name string
	}{{store.POP, settings.PopCertificateName, "POP3"}, {store.IMAP, settings.ImapCertificateName, "IMAP4"}} {
		if services&s.svc != 0 && len(domains) > 0 {
			if err := a.Settings.Set(ctx, s.key, domains[0]); err != nil {
				return nil, err
			}
			notes = append(notes, msgf("Set the %s setting X509CertificateName to %s: %s selects its certificate for that name (%s shows the choice).", s.name, domains[0], s.name,
				cmd("Get-CertrelayCertificateSelection", "-Service", s.svc.String())))
		}
	}
	if services&store.IIS != 0 {
		if err := a.Settings.Set(ctx, settings.HTTPSCertificate, e.Thumbprint); err != nil {
			return nil, err
		}
		notes = append(notes, msgf("Set the HTTPS certificate binding (%s) to %s.", settings.HTTPSCertificate, e.Thumbprint))
	}
	return notes, nil
}

// ExportOptions describe an export (M7).
type ExportOptions struct {
	// Password, when set, exports certificate, chain and private key as
	// PKCS#12; otherwise the certificate alone is exported.
	Password *string
	DER      bool // certificate alone as DER instead of PEM
}

// ExportCertificate returns the file content for an export (M7), and its
// format. A pending request exports its request.
func (a *Admin) ExportCertificate(ctx context.Context, thumbprint string, o ExportOptions) ([]byte, string, error) {
	const op = "export certificate"
	t, ok := certinfo.NormalizeThumbprint(thumbprint)
	if !ok {
		return nil, "", errorf(op, badThumbprint(thumbprint))
	}
	e, err := a.Store.Get(ctx, t)
	if err != nil {
		return nil, "", errorf(op, err)
	}
	if e.Pending() {
		if o.Password != nil {
			return nil, "", errorf(op, failed(Conflict, "%s is a pending request: there is no certificate to export with its key yet", t).field("Thumbprint", t))
		}
		if o.DER {
			return e.Request.Raw, "PKCS#10 DER", nil
		}
		return certinfo.RequestPEM(e.Request.Raw), "PKCS#10 PEM", nil
	}
	if o.Password == nil {
		if o.DER {
			return e.Cert.Raw, "DER", nil
		}
		return certinfo.CertificatePEM(e.Cert.Raw), "PEM", nil
	}
	if !e.Exportable {
		return nil, "", errorf(op, failed(Conflict, "the private key of %s is not exportable (it was made or imported without {New-ExchangeCertificate#PrivateKeyExportable})", t).field("Thumbprint", t).
			fix("export the certificate alone by leaving out {-Password}"))
	}
	if *o.Password == "" {
		return nil, "", errorf(op, invalid("Password", "", "the password is empty: a PKCS#12 export needs a password"))
	}
	key, err := a.Store.PrivateKey(e)
	if err != nil {
		return nil, "", errorf(op, err)
	}
	snap, err := a.Trust.Snapshot(ctx)
	if err != nil {
		return nil, "", errorf(op, err)
	}
	r := snap.Evaluate(e.Cert, nil, a.now())
	chain := r.Chain
	cas := make([]*x509.Certificate, 0, len(chain))
	for _, el := range chain[1:] {
		cas = append(cas, el.Cert)
	}
	out, err := certinfo.EncodePKCS12(key, e.Cert, cas, *o.Password, a.rand)
	if err != nil {
		return nil, "", errorf(op, err)
	}
	return out, "PKCS#12", nil
}

// RemoveResult says what RemoveCertificate did.
type RemoveResult struct {
	Removed  Certificate
	Warnings []string
}

// RemoveCertificate removes a certificate or pending request (M8) after
// confirmation. It refuses to remove the internal transport certificate.
func (a *Admin) RemoveCertificate(ctx context.Context, thumbprint string, confirm Confirmer) (RemoveResult, error) {
	return a.removeCertificate(ctx, thumbprint, confirmerAsker{confirm})
}

func (a *Admin) removeCertificate(ctx context.Context, thumbprint string, ask asker) (RemoveResult, error) {
	const op = "remove certificate"
	t, ok := certinfo.NormalizeThumbprint(thumbprint)
	if !ok {
		return RemoveResult{}, errorf(op, badThumbprint(thumbprint))
	}
	c, err := a.GetCertificate(ctx, t)
	if err != nil {
		return RemoveResult{}, errorf(op, err)
	}
	if err := a.removable(ctx, c); err != nil {
		return RemoveResult{}, errorf(op, err)
	}
	res := RemoveResult{Removed: c}
	if len(c.Services) > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("It is enabled for %s: those services stop using it and fall back to another certificate, or to none.", strings.Join(c.Services, ", ")))
	}
	q := fmt.Sprintf("Remove certificate %s (%s, services: %s)?", t, c.Subject, c.ServiceSet())
	if len(res.Warnings) > 0 {
		q += "\n" + strings.Join(res.Warnings, "\n")
	}
	yes, err := ask.ask(Question{
		Text:    q,
		Details: []Detail{{"Thumbprint", t}, {"Subject", c.Subject}, {"Services", c.ServiceSet().String()}},
		IfNo:    "nothing is changed",
		about:   "remove " + t,
	})
	if err != nil {
		return RemoveResult{}, errorf(op, err)
	}
	if !yes {
		return RemoveResult{}, cancelled()
	}
	// What made it removable is decided again inside the transaction: it
	// may have become the internal transport certificate meanwhile.
	err = a.atomically(ctx, func(ctx context.Context) error {
		c, err := a.GetCertificate(ctx, t)
		if err != nil {
			return err
		}
		if err := a.removable(ctx, c); err != nil {
			return err
		}
		if err := a.Store.Remove(ctx, t); err != nil {
			return err
		}
		a.raise(ctx, 16006, "", t, c.Subject)
		return nil
	})
	if err != nil {
		return RemoveResult{}, errorf(op, err)
	}
	return res, nil
}

// removable refuses to remove the internal transport certificate (M8)
// and a certificate that connectors name (S4a).
func (a *Admin) removable(ctx context.Context, c Certificate) error {
	if c.IsInternalTransportCertificate {
		return failed(Conflict, "%s is this server's internal transport certificate and cannot be removed", c.Thumbprint).field("Thumbprint", c.Thumbprint).
			fix("make a new one first with {New-ExchangeCertificate} (it becomes the internal transport certificate), then remove this one")
	}
	names, err := a.connectorsNaming(ctx, c)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		return failed(Conflict, "%s is the certificate that connectors %s name (TlsCertificateName) and no other certificate has its issuer and subject", c.Thumbprint, strings.Join(names, ", ")).
			field("Thumbprint", c.Thumbprint).fix("change their {Set-ReceiveConnector#TlsCertificateName} first")
	}
	return nil
}

// LogExport records an export the caller has written (event 16007).
func (a *Admin) LogExport(ctx context.Context, thumbprint, format, path string) {
	a.raise(ctx, 16007, "", thumbprint, format, path)
}
