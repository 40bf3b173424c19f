package admin

import (
	"context"
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
		return ImportResult{}, errorf(op, err)
	}
	if len(b.Certificates) == 0 {
		return ImportResult{}, errorf(op, errors.New("the file is a certificate request, not a certificate: send it to the CA and import the certificate it returns"))
	}
	leaf, pending, err := a.findLeaf(ctx, b)
	if err != nil {
		return ImportResult{}, errorf(op, err)
	}
	if err := certinfo.CheckPublicKey(leaf.PublicKey); err != nil {
		return ImportResult{}, errorf(op, err)
	}
	t := certinfo.Thumbprint(leaf.Raw)
	if _, err := a.Store.Get(ctx, t); err == nil {
		return ImportResult{}, errorf(op, fmt.Errorf("%w: %s was imported before (see certrelay cert show %s)", store.ErrExists, t, t))
	}
	var inters []*x509.Certificate
	res := ImportResult{Format: b.Format}
	for _, c := range b.Certificates {
		if c == leaf {
			continue
		}
		if certinfo.IsSelfSigned(c) {
			res.Roots = append(res.Roots, c.Subject.String())
			continue
		}
		if c.BasicConstraintsValid && c.IsCA {
			inters = append(inters, c)
		}
	}
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
		a.raise(ctx, 16004, "", t, leaf.Subject.String(), b.Format, fmt.Sprint(b.Key != nil || pending != nil))
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
		return nil, nil, fmt.Errorf("the private key in the file belongs to none of its %d certificate(s): export key and certificate together again", len(b.Certificates))
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
	if len(ends) == 0 {
		var names []string
		for _, c := range b.Certificates {
			names = append(names, c.Subject.String())
		}
		return nil, nil, fmt.Errorf("the file holds only CA certificates (%s): to trust a CA use certrelay trust add FILE", strings.Join(names, "; "))
	}
	return nil, nil, fmt.Errorf("certificate %s (%s) does not answer a request made on this server, and the file has no private key: import it on the server that made the request, or import a PKCS#12 (.pfx) file that holds its key, with --password-file",
		certinfo.Thumbprint(ends[0].Raw), ends[0].Subject)
}
