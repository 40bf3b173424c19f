package admin

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/store"
)

// ImportOptions describe an import (M4).
type ImportOptions struct {
	Data         []byte
	Password     *string // for PKCS#12; nil when none was given
	Exportable   bool    // mark the imported private key exportable
	FriendlyName string
}

// ImportResult says what ImportCertificate did.
type ImportResult struct {
	Certificate     Certificate
	Format          string
	AnsweredRequest string   // thumbprint of the pending request the certificate answered
	Intermediates   []string // thumbprints of intermediates added to the intermediate store
	Roots           []string // subjects of root certificates in the file, which are NOT trusted by importing
	Warnings        []string // what deserves a word although the import went through
}

// ImportCertificate imports a certificate (M4): a CA's answer to a pending
// request of this server (DER, PEM, base64 or PKCS#7, with its chain),
// paired with the request by public key, or a certificate with its
// private key (PKCS#12 with a password, or PEM with the key). The chain's
// intermediates go to the intermediate store; roots in the file are only
// reported, never trusted implicitly. Nothing changes on error.
func (a *Admin) ImportCertificate(ctx context.Context, o ImportOptions) (ImportResult, error) {
	const op = "import certificate"
	if _, err := a.requireSetup(ctx); err != nil {
		return ImportResult{}, errorf(op, err)
	}
	b, err := certinfo.ParseBundle(o.Data, o.Password)
	if err != nil {
		return ImportResult{}, errorf(op, bundleError(err))
	}
	if len(b.Certificates) == 0 {
		return ImportResult{}, errorf(op, invalid("FileData", "", "the file is a certificate request, not a certificate").fix("send it to the CA and import the certificate it returns"))
	}
	leaf, pending, err := a.findLeaf(ctx, b)
	if err != nil {
		return ImportResult{}, errorf(op, err)
	}
	if err := certinfo.CheckPublicKey(leaf.PublicKey); err != nil {
		e := asError(err).field("FileData", "")
		e.Kind = Invalid
		return ImportResult{}, errorf(op, e)
	}
	t := certinfo.Thumbprint(leaf.Raw)
	if _, err := a.Store.Get(ctx, t); err == nil {
		return ImportResult{}, errorf(op, importedBefore(t, ""))
	}
	var inters []*x509.Certificate
	res := ImportResult{Format: b.Format}
	for _, c := range b.Certificates {
		isCA := c.BasicConstraintsValid && c.IsCA
		switch {
		case c == leaf:
		case isCA && certinfo.IsSelfSigned(c):
			res.Roots = append(res.Roots, certinfo.NameString(c.RawSubject))
		case isCA:
			inters = append(inters, c)
		default:
			// A second end-entity certificate is no part of the first's
			// chain: importing one would silently drop the other.
			return ImportResult{}, errorf(op, invalid("FileData", "", "the file holds more than one end-entity certificate: %s (%s) and %s (%s); a file imports one certificate with its chain",
				t, certinfo.NameString(leaf.RawSubject), certinfo.Thumbprint(c.Raw), certinfo.NameString(c.RawSubject)).fix("put each in a file of its own and import them one by one"))
		}
	}
	if leaf.BasicConstraintsValid && leaf.IsCA {
		res.Warnings = append(res.Warnings, msgf("%s is a CA certificate (CA:TRUE): it goes into the personal store with its key, but it is meant to issue certificates, not to serve TLS; to trust this CA instead, use {Add-CertrelayTrustedCertificate}", certinfo.NameString(leaf.RawSubject)))
	}
	res.Warnings = append(res.Warnings, weakKeyWarnings(leaf.PublicKey)...)
	nc := store.NewCertificate{DER: leaf.Raw, Key: b.Key, FriendlyName: o.FriendlyName, Exportable: o.Exportable}
	if pending != nil {
		nc.Answers = pending.Thumbprint
		res.AnsweredRequest = pending.Thumbprint
		nc.Exportable = nc.Exportable || pending.Exportable
		if nc.FriendlyName == "" {
			nc.FriendlyName = pending.FriendlyName
		}
		if b.Key != nil {
			nc.Key = nil // the request's key file is already there
		}
	}
	if b.Key == nil && pending == nil {
		return ImportResult{}, errorf(op, errors.New("internal: no key and no request")) // findLeaf prevents this
	}
	// The certificate, its key, its intermediates and the event commit
	// together, or nothing does.
	err = a.atomically(ctx, func(ctx context.Context) error {
		if _, err := a.Store.AddCertificate(ctx, nc); err != nil {
			return err
		}
		for _, c := range inters {
			added, err := a.Trust.AddIntermediate(ctx, c, a.now())
			if err != nil {
				return fmt.Errorf("store its intermediate %s: %w", c.Subject, err)
			}
			if added {
				res.Intermediates = append(res.Intermediates, certinfo.Thumbprint(c.Raw))
			}
		}
		a.raise(ctx, 16004, "", t, certinfo.NameString(leaf.RawSubject), b.Format, fmt.Sprint(b.Key != nil || pending != nil))
		return nil
	})
	if err != nil {
		return ImportResult{}, errorf(op, err)
	}
	// Establish its revocation status now, so it is known before it is
	// enabled; bounded, and a failure here only shows in its Status.
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, _ = a.RefreshRevocation(rctx, t)
	cancel()
	if res.Certificate, err = a.GetCertificate(ctx, t); err != nil {
		return ImportResult{}, errorf(op, err)
	}
	return res, nil
}

// findLeaf picks the certificate being imported: the one the file's key
// belongs to, or the one that answers a pending request of this server.
func (a *Admin) findLeaf(ctx context.Context, b *certinfo.Bundle) (*x509.Certificate, *store.Entry, error) {
	if b.Key != nil {
		for _, c := range b.Certificates {
			if certinfo.KeyMatches(b.Key, c.PublicKey) {
				p, found, err := a.Store.PendingByKeyID(ctx, certinfo.KeyID(c.RawSubjectPublicKeyInfo))
				if err != nil {
					return nil, nil, err
				}
				if found {
					return c, &p, nil
				}
				return c, nil, nil
			}
		}
		return nil, nil, invalid("FileData", "", "the private key in the file belongs to none of its %d certificate(s)", len(b.Certificates)).fix("export key and certificate together again")
	}
	var ends []*x509.Certificate
	for _, c := range b.Certificates {
		p, found, err := a.Store.PendingByKeyID(ctx, certinfo.KeyID(c.RawSubjectPublicKeyInfo))
		if err != nil {
			return nil, nil, err
		}
		if found {
			return c, &p, nil
		}
		if !(c.BasicConstraintsValid && c.IsCA) {
			ends = append(ends, c)
		}
	}
	for _, c := range b.Certificates {
		t := certinfo.Thumbprint(c.Raw)
		if _, err := a.Store.Get(ctx, t); err == nil {
			return nil, nil, importedBefore(t, certinfo.NameString(c.RawSubject))
		}
	}
	if len(ends) == 0 {
		var names []string
		for _, c := range b.Certificates {
			names = append(names, certinfo.NameString(c.RawSubject))
		}
		return nil, nil, invalid("FileData", "", "the file holds only CA certificates (%s)", strings.Join(names, "; ")).fix("to trust a CA use %s", cmd("Add-CertrelayTrustedCertificate", "FILE"))
	}
	return nil, nil, failed(NotFound, "certificate %s (%s) does not answer a request made on this server, and the file has no private key",
		certinfo.Thumbprint(ends[0].Raw), ends[0].Subject).field("FileData", "").
		fix("import it on the server that made the request, or import a PKCS#12 (.pfx) file that holds its key, with {-Password}")
}

// importedBefore is the refusal of a certificate the store holds already.
func importedBefore(t, subject string) *Error {
	what := t
	if subject != "" {
		what = t + " (" + subject + ")"
	}
	return (&Error{Kind: Conflict, Err: fmt.Errorf("%w: %s was imported before", store.ErrExists, what)}).
		field("FileData", "").fix("see %s", cmd("Get-ExchangeCertificate/Thumbprint", t))
}

// bundleError says which parameter a file that cannot be read is at
// fault for: a password missing or wrong, or the file itself.
func bundleError(err error) *Error {
	e := asError(err)
	switch {
	case errors.Is(err, certinfo.ErrNeedPassword):
		return e.field("Password", "").fix("give it with {-Password}")
	case errors.Is(err, certinfo.ErrWrongPassword):
		return e.field("Password", "").fix("check the password ({-Password})")
	}
	return e.field("FileData", "")
}

// weakKeyWarnings warns of an RSA key under 2048 bits: still accepted
// (SPEC S2 allows 1024 for old peers) but breakable, and refused by many
// clients.
func weakKeyWarnings(pub any) []string {
	if k, ok := pub.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
		return []string{msgf("its RSA key has only %d bits: many mail servers and clients refuse keys under 2048 bits, and such keys can be broken; use 2048 or more", k.N.BitLen())}
	}
	return nil
}
