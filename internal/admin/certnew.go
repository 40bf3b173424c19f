package admin

import (
	"certrelay/internal/dnsname"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
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

// NewCertificate makes a self-signed certificate (M1), or clones one (M2)
// with From. With no domain and no subject it makes a new internal
// transport certificate for this server (host name and FQDN). When the new
// certificate is enabled for SMTP and holds this server's name, it may
// replace the internal transport certificate: confirm is asked, showing
// both thumbprints and expiry dates; on no the certificate is still made.
// An error from confirm (nobody to answer) fails the operation and
// nothing is made.
func (a *Admin) NewCertificate(ctx context.Context, o NewOptions, confirm Confirmer) (NewResult, error) {
	return a.newCertificate(ctx, o, confirmerAsker{confirm})
}

func (a *Admin) newCertificate(ctx context.Context, o NewOptions, ask asker) (NewResult, error) {
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
			return NewResult{}, errorf(op, asError(err).field("SubjectName", o.Subject))
		}
	}
	if o.From != "" {
		if err := a.cloneSpec(ctx, o, &spec); err != nil {
			return NewResult{}, errorf(op, err)
		}
	} else if len(spec.domains) == 0 && o.Subject == "" {
		spec.domains = internalDomains(srv)
	}
	// A call that answers the question of M1 stores the certificate the
	// question showed, not a new one.
	made, resumed := ask.resumed().(*preparedCert)
	if !resumed {
		p, err := a.prepareSelfSigned(spec)
		if err != nil {
			return NewResult{}, errorf(op, err)
		}
		made = &p
	}
	var c Certificate
	out, err := a.withInternalQuestion(ctx, made.cert, spec.services, ask, made, func(ctx context.Context) (store.Entry, error) {
		var err error
		c, err = a.storeSelfSigned(ctx, *made, spec)
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
		return badThumbprint(o.From).field("Instance", o.From)
	}
	e, err := a.Store.Get(ctx, t)
	if err != nil {
		return err
	}
	if e.Pending() {
		return invalid("Instance", o.From, "%s is a pending request, not a certificate: there is nothing to renew yet", t)
	}
	if len(o.Domains) > 0 || o.Subject != "" {
		return invalid("Instance", o.From, "{-Instance} copies the subject and domains of the original").fix("drop {-DomainName} and {-SubjectName}, or make a new certificate without {-Instance}")
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
		return preparedCert{}, keyError(s.key, err)
	}
	if _, err := dnsname.ParseList(s.domains, true); err != nil {
		return preparedCert{}, asError(err).field("DomainName", strings.Join(s.domains, ","))
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
		return RequestResult{}, errorf(op, invalid("Services", o.Services, "services cannot be given with a request").
			fix("import the CA's certificate, then enable it with %s", cmd("Enable-ExchangeCertificate", "THUMBPRINT", "-Services", "…")))
	}
	if _, err := a.requireSetup(ctx); err != nil {
		return RequestResult{}, errorf(op, err)
	}
	var subject certinfo.Subject
	var err error
	if o.Subject != "" {
		if subject, err = certinfo.ParseSubject(o.Subject); err != nil {
			return RequestResult{}, errorf(op, asError(err).field("SubjectName", o.Subject))
		}
	}
	if len(o.Domains) == 0 {
		return RequestResult{}, errorf(op, invalid("DomainName", "", "no domain name").fix("give the names the certificate must hold with {-DomainName} (repeat it, or separate names with commas)"))
	}
	if _, err := dnsname.ParseList(o.Domains, true); err != nil {
		return RequestResult{}, errorf(op, asError(err).field("DomainName", strings.Join(o.Domains, ",")))
	}
	if _, err := o.Key.Normalize(); err != nil {
		return RequestResult{}, errorf(op, keyError(o.Key, err))
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

func badThumbprint(t string) *Error {
	return invalid("Thumbprint", t, "%q is not a thumbprint", t).fix("a thumbprint is 40 hexadecimal digits, as {Get-ExchangeCertificate} shows them")
}

// keyError names the key parameter a refused key specification came
// from: its size when the type is one certrelay makes.
func keyError(k certinfo.KeySpec, err error) *Error {
	e := asError(err)
	e.Kind = Invalid
	if t := strings.ToLower(strings.TrimSpace(k.Type)); t == "" || t == "rsa" || t == "ecdsa" || t == "ec" {
		return e.field("KeySize", fmt.Sprint(k.Size))
	}
	return e.field("KeyType", k.Type)
}

// internalDomains are the domains of a new internal transport
// certificate: the server's host name and FQDN, and every other name
// direct trust checks it for (D3: the physical names, load-balancer
// names), so the other servers accept it.
func internalDomains(srv directory.Server) []string {
	out := []string{srv.Name, srv.Fqdn}
	for _, n := range srv.DNSNames() {
		if n.Name != "" && !slices.Contains(out, n.Name) {
			out = append(out, n.Name)
		}
	}
	return out
}
