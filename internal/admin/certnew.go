package admin

import (
	"certrelay/internal/dnsname"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/store"
)

// DefaultServices are the services of a new certificate made without
// --services (SPEC M1).
const DefaultServices = store.IMAP | store.POP | store.SMTP

// NewOptions describe a new self-signed certificate (M1) or a clone (M2).
type NewOptions struct {
	Domains      []string
	Subject      string          // X.500 subject; "" takes CN = the first domain
	Services     *store.Services // nil: DefaultServices (a clone: the original's)
	Key          certinfo.KeySpec
	FriendlyName string
	Exportable   bool
	From         string        // thumbprint of the certificate to clone (M2)
	Validity     time.Duration // 0: the admin default (one year)
}

// NewResult says what NewCertificate made.
type NewResult struct {
	Certificate Certificate
	// BecameInternal: the new certificate is now the server's internal
	// transport certificate; Previous names the one it replaced ("" if none).
	BecameInternal bool
	Previous       string
	// Declined: it could have replaced the internal transport certificate
	// and the administrator said no.
	Declined bool
	Warnings []string // what deserves a word although it was made
}

// ErrCancelled is returned when the administrator answers no to a question
// that guards the whole operation.
var ErrCancelled = errors.New("cancelled: nothing was changed")

// NewCertificate makes a self-signed certificate (M1), or clones one (M2)
// with From. With no domain and no subject it makes a new internal
// transport certificate for this server (host name and FQDN). When the new
// certificate is enabled for SMTP and holds this server's name, it may
// replace the internal transport certificate: confirm is asked, showing
// both thumbprints and expiry dates; on no the certificate is still made.
// An error from confirm (nobody to answer) fails the operation and
// nothing is made.
func (a *Admin) NewCertificate(ctx context.Context, o NewOptions, confirm Confirmer) (NewResult, error) {
	const op = "new certificate"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return NewResult{}, errorf(op, err)
	}
	spec := selfSignedSpec{domains: o.Domains, services: DefaultServices, key: o.Key, friendlyName: o.FriendlyName, exportable: o.Exportable, validity: o.Validity}
	if o.Services != nil {
		spec.services = *o.Services
	}
	if o.Subject != "" {
		if spec.subject, err = certinfo.ParseSubject(o.Subject); err != nil {
			return NewResult{}, errorf(op, err)
		}
	}
	if o.From != "" {
		if err := a.cloneSpec(ctx, o, &spec); err != nil {
			return NewResult{}, errorf(op, err)
		}
	} else if len(spec.domains) == 0 && o.Subject == "" {
		spec.domains = []string{srv.Name, srv.Fqdn}
	}
	made, err := a.prepareSelfSigned(spec)
	if err != nil {
		return NewResult{}, errorf(op, err)
	}
	var c Certificate
	out, err := a.withInternalQuestion(ctx, made.cert, spec.services, confirm, func(ctx context.Context) (store.Entry, error) {
		var err error
		c, err = a.storeSelfSigned(ctx, made, spec)
		return c.Entry(), err
	})
	if err != nil {
		return NewResult{}, errorf(op, err)
	}
	c.IsInternalTransportCertificate = c.IsInternalTransportCertificate || out.Became
	return NewResult{Certificate: c, BecameInternal: out.Became, Previous: out.Previous, Declined: out.Declined, Warnings: weakKeyWarnings(made.cert.PublicKey)}, nil
}

// cloneSpec fills spec from the certificate o.From (M2): same subject and
// domains, same key type and size, the original's services unless given.
func (a *Admin) cloneSpec(ctx context.Context, o NewOptions, spec *selfSignedSpec) error {
	t, ok := certinfo.NormalizeThumbprint(o.From)
	if !ok {
		return badThumbprint(o.From)
	}
	e, err := a.Store.Get(ctx, t)
	if err != nil {
		return err
	}
	if e.Pending() {
		return fmt.Errorf("%s is a pending request, not a certificate: there is nothing to renew yet", t)
	}
	if len(o.Domains) > 0 || o.Subject != "" {
		return errors.New("--from copies the subject and domains of the original: drop --domain and --subject, or make a new certificate without --from")
	}
	var rdn = e.Cert.Subject.ToRDNSequence()
	spec.subject = certinfo.Subject{RDNs: rdn}
	spec.domains = e.Cert.DNSNames
	if len(spec.domains) == 0 && e.Cert.Subject.CommonName != "" {
		spec.domains = []string{e.Cert.Subject.CommonName}
	}
	if o.Services == nil {
		spec.services = e.Services
	}
	if o.Key == (certinfo.KeySpec{}) {
		switch k := e.Cert.PublicKey.(type) {
		case *rsa.PublicKey:
			spec.key = certinfo.KeySpec{Type: "rsa", Size: k.N.BitLen()}
		case *ecdsa.PublicKey:
			spec.key = certinfo.KeySpec{Type: "ecdsa", Size: k.Curve.Params().BitSize}
		}
		if _, err := spec.key.Normalize(); err != nil {
			spec.key = certinfo.KeySpec{}
		}
	}
	if spec.friendlyName == "" {
		spec.friendlyName = e.FriendlyName
	}
	return nil
}

type selfSignedSpec struct {
	subject      certinfo.Subject
	domains      []string
	services     store.Services
	key          certinfo.KeySpec
	friendlyName string
	exportable   bool
	validity     time.Duration
}

type preparedCert struct {
	der  []byte
	cert *x509.Certificate
	key  crypto.Signer
}

// prepareSelfSigned makes key and certificate in memory.
func (a *Admin) prepareSelfSigned(s selfSignedSpec) (preparedCert, error) {
	if _, err := s.key.Normalize(); err != nil {
		return preparedCert{}, err
	}
	if _, err := dnsname.ParseList(s.domains, true); err != nil {
		return preparedCert{}, err
	}
	key, err := certinfo.GenerateKey(s.key, a.rand)
	if err != nil {
		return preparedCert{}, fmt.Errorf("generate key: %w", err)
	}
	validity := s.validity
	if validity == 0 {
		validity = a.validity
	}
	der, err := certinfo.NewSelfSigned(certinfo.SelfSignedOptions{Subject: s.subject, Domains: s.domains, Key: key, Now: a.now(), Validity: validity}, a.rand)
	if err != nil {
		return preparedCert{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return preparedCert{}, err
	}
	return preparedCert{der: der, cert: cert, key: key}, nil
}

// storeSelfSigned adds a prepared certificate to the store and logs it,
// in one transaction (joining the one ctx carries).
func (a *Admin) storeSelfSigned(ctx context.Context, p preparedCert, s selfSignedSpec) (Certificate, error) {
	return a.addLogged(ctx, func(ctx context.Context) (store.Entry, error) {
		return a.Store.AddCertificate(ctx, store.NewCertificate{DER: p.der, Key: p.key, Services: s.services, FriendlyName: s.friendlyName, Exportable: s.exportable})
	}, func(ctx context.Context, c Certificate) {
		a.raise(ctx, 16002, "", c.Thumbprint, c.Subject, strings.Join(c.CertificateDomains, ", "), s.services.String(), c.NotAfter.Format(time.RFC3339))
	})
}

// addLogged runs add, then logs what it added with raise, in one
// transaction (joining the one ctx carries), and returns the new entry's
// view.
func (a *Admin) addLogged(ctx context.Context, add func(context.Context) (store.Entry, error), raise func(context.Context, Certificate)) (Certificate, error) {
	var c Certificate
	err := a.atomically(ctx, func(ctx context.Context) error {
		e, err := add(ctx)
		if err != nil {
			return err
		}
		v, err := a.src.Viewer(ctx)
		if err != nil {
			return err
		}
		c = v.View(e)
		raise(ctx, c)
		return nil
	})
	return c, err
}

// RequestOptions describe a PKCS#10 request (M3).
type RequestOptions struct {
	Domains      []string
	Subject      string
	Key          certinfo.KeySpec
	FriendlyName string
	Exportable   bool
	DER          bool // write the request as binary DER instead of base64 (PEM)
	// Services must stay empty: SPEC M1 forbids combining services with a
	// request (they are enabled after import).
	Services string
}

// RequestResult says what RequestCertificate made.
type RequestResult struct {
	Certificate Certificate // the pending request (Status PendingRequest)
	Data        []byte      // the request file's content: PEM, or DER when asked
	Warnings    []string
}

// RequestCertificate makes a key and a PKCS#10 request (M3). The key stays
// in the store; the request is listed as PendingRequest. It returns the
// pending entry and the request file's content.
func (a *Admin) RequestCertificate(ctx context.Context, o RequestOptions) (RequestResult, error) {
	const op = "certificate request"
	if strings.TrimSpace(o.Services) != "" {
		return RequestResult{}, errorf(op, errors.New("services cannot be given with a request: import the CA's certificate, then enable it with certrelay cert enable THUMBPRINT --services …"))
	}
	if _, err := a.requireSetup(ctx); err != nil {
		return RequestResult{}, errorf(op, err)
	}
	var subject certinfo.Subject
	var err error
	if o.Subject != "" {
		if subject, err = certinfo.ParseSubject(o.Subject); err != nil {
			return RequestResult{}, errorf(op, err)
		}
	}
	if len(o.Domains) == 0 {
		return RequestResult{}, errorf(op, errors.New("give the names the certificate must hold with --domain (repeat it, or separate names with commas)"))
	}
	if _, err := dnsname.ParseList(o.Domains, true); err != nil {
		return RequestResult{}, errorf(op, err)
	}
	if _, err := o.Key.Normalize(); err != nil {
		return RequestResult{}, errorf(op, err)
	}
	key, err := certinfo.GenerateKey(o.Key, a.rand)
	if err != nil {
		return RequestResult{}, errorf(op, err)
	}
	der, err := certinfo.NewRequest(certinfo.RequestOptions{Subject: subject, Domains: o.Domains, Key: key}, a.rand)
	if err != nil {
		return RequestResult{}, errorf(op, err)
	}
	c, err := a.addLogged(ctx, func(ctx context.Context) (store.Entry, error) {
		return a.Store.AddRequest(ctx, der, key, o.FriendlyName, o.Exportable)
	}, func(ctx context.Context, c Certificate) {
		a.raise(ctx, 16003, "", c.Thumbprint, c.Subject, strings.Join(c.CertificateDomains, ", "))
	})
	if err != nil {
		return RequestResult{}, errorf(op, err)
	}
	res := RequestResult{Certificate: c, Data: certinfo.RequestPEM(der), Warnings: weakKeyWarnings(key.Public())}
	if o.DER {
		res.Data = der
	}
	return res, nil
}

func badThumbprint(t string) error {
	return fmt.Errorf("%q is not a thumbprint: a thumbprint is 40 hexadecimal digits, as certrelay cert list shows them", t)
}
