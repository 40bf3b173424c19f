package admin

import (
	"context"
	"crypto/x509"
	"errors"

	"certrelay/internal/certinfo"
	"certrelay/internal/certview"
	"certrelay/internal/directory"
	"certrelay/internal/trust"
	"strings"
)

// TrustAddResult says what TrustAdd did.
type TrustAddResult struct {
	Roots         []trust.Root // trusted now, with their source
	Intermediates []string     // thumbprints added to the intermediate store
	Skipped       []string     // certificates of the file that were not added, and why
}

// TrustAdd adds the certificates of a file to the trusted root store with
// a source (T2), or, with intermediate, to the intermediate store (for
// chains and cross-certificates, T3). Roots must be self-signed CA
// certificates; a non-self-signed one is refused with the hint to add it
// as an intermediate. Nothing changes on error.
func (a *Admin) TrustAdd(ctx context.Context, data []byte, source trust.Source, intermediate bool) (TrustAddResult, error) {
	const op = "trust add"
	b, err := certinfo.ParseBundle(data, nil)
	if err != nil {
		return TrustAddResult{}, errorf(op, asError(err).field("FileData", ""))
	}
	if len(b.Certificates) == 0 {
		return TrustAddResult{}, errorf(op, invalid("FileData", "", "the file holds no certificate"))
	}
	for _, c := range b.Certificates {
		isCA := c.BasicConstraintsValid && c.IsCA
		switch {
		case intermediate && !isCA:
			return TrustAddResult{}, errorf(op, invalid("FileData", "", "%s is not a CA certificate: only CA certificates go to the intermediate store", c.Subject))
		case !intermediate && !certinfo.IsSelfSigned(c):
			return TrustAddResult{}, errorf(op, invalid("FileData", "", "%s is not self-signed, so it is not a root", c.Subject).
				fix("add it with {-Intermediate} (a cross-certificate is an intermediate too), and trust the root that issued it"))
		case !intermediate && !isCA:
			return TrustAddResult{}, errorf(op, invalid("FileData", "", "%s is a self-signed end-entity certificate, not a CA: servers that present it are trusted by the directory (direct trust), not by a root", c.Subject))
		}
	}
	res := TrustAddResult{}
	now := a.now()
	err = a.atomically(ctx, func(ctx context.Context) error {
		for _, c := range b.Certificates {
			if intermediate {
				added, err := a.Trust.AddIntermediate(ctx, c, now)
				if err != nil {
					return err
				}
				if added {
					res.Intermediates = append(res.Intermediates, certinfo.Thumbprint(c.Raw))
				} else {
					res.Skipped = append(res.Skipped, certinfo.Thumbprint(c.Raw)+": already in the intermediate store")
				}
				continue
			}
			if source == trust.RootRegistry {
				if err := a.Trust.AddRoot(ctx, c, source, now); err != nil {
					return err
				}
			} else {
				// The organisation's roots live in the directory, which
				// gives them to every server (T2).
				if !certinfo.IsSelfSigned(c) && !(c.BasicConstraintsValid && c.IsCA) {
					return invalid("FileData", "", "%s is neither self-signed nor a CA certificate: a trusted root must be the CA's own certificate", c.Subject)
				}
				r := directory.TrustedRoot{Thumbprint: certinfo.Thumbprint(c.Raw), Source: string(source), Certificate: c.Raw}
				if err := a.Dir.PutTrustedRoot(ctx, r); err != nil {
					return err
				}
			}
			res.Roots = append(res.Roots, trust.Root{Thumbprint: certinfo.Thumbprint(c.Raw), Subject: c.Subject.String(), NotAfter: c.NotAfter, Source: source, Cert: c})
		}
		return nil
	})
	if err != nil {
		return TrustAddResult{}, errorf(op, err)
	}
	return res, nil
}

// TrustList lists the trusted roots (those added here first, then the
// system bundle's) and the intermediates.
func (a *Admin) TrustList(ctx context.Context) ([]trust.Root, []*x509.Certificate, error) {
	roots, err := a.Trust.Roots(ctx)
	if err != nil {
		return nil, nil, err
	}
	inters, err := a.Trust.Intermediates(ctx)
	if err != nil {
		return nil, nil, err
	}
	return roots, inters, nil
}

// TrustRemove stops trusting a root, or forgets an intermediate.
func (a *Admin) TrustRemove(ctx context.Context, thumbprint string) error {
	const op = "trust remove"
	t, ok := certinfo.NormalizeThumbprint(thumbprint)
	if !ok {
		return errorf(op, badThumbprint(thumbprint))
	}
	err := a.atomically(ctx, func(ctx context.Context) error {
		err := a.Trust.RemoveRoot(ctx, t)
		if errors.Is(err, trust.ErrNotFound) {
			roots, derr := a.Dir.TrustedRoots(ctx)
			if derr != nil {
				return derr
			}
			for _, r := range roots {
				if strings.EqualFold(r.Thumbprint, t) { // the organisation's root (T2)
					return a.Dir.DeleteTrustedRoot(ctx, r.Thumbprint)
				}
			}
			err = a.Trust.RemoveIntermediate(ctx, t)
			if errors.Is(err, trust.ErrNotFound) {
				err = failed(NotFound, "%s is neither a trusted root added here nor an intermediate", t).field("Thumbprint", t).
					fix("list them with {Get-CertrelayTrustedCertificate}")
			}
		}
		if err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return errorf(op, err)
	}
	return nil
}

// DefaultRevocationTimeout bounds each CRL or OCSP fetch.
const DefaultRevocationTimeout = certview.DefaultRevocationTimeout

// Verifier returns a trust.Verifier configured from the settings (see
// certview.Source.Verifier).
func (a *Admin) Verifier(ctx context.Context) (*trust.Verifier, error) { return a.src.Verifier(ctx) }

// RefreshRevocation re-checks missing or stale revocation results (see
// certview.Source.RefreshRevocation).
func (a *Admin) RefreshRevocation(ctx context.Context, only string) (int, error) {
	return a.src.RefreshRevocation(ctx, only)
}

// VerifyResult is what `cert verify` prints.
type VerifyResult struct {
	Thumbprint string
	Subject    string
	InStore    bool
	trust.Result
}

// VerifyCertificate checks a certificate now (T5): its chain, and the
// revocation of every element fetched afresh from each CRL and OCSP URL,
// as certutil -verify -urlfetch does. target is a thumbprint of the store
// or, when data is given, the certificate file's content (its first
// non-CA certificate is verified, the others help build the chain). The
// results are stored, so cert list shows the refreshed Status.
func (a *Admin) VerifyCertificate(ctx context.Context, target string, data []byte) (VerifyResult, error) {
	const op = "verify certificate"
	var cert *x509.Certificate
	var extra []*x509.Certificate
	inStore := false
	if data != nil {
		b, err := certinfo.ParseBundle(data, nil)
		if err != nil {
			return VerifyResult{}, errorf(op, asError(err).field("FileData", ""))
		}
		if len(b.Certificates) == 0 {
			return VerifyResult{}, errorf(op, invalid("FileData", "", "the file holds no certificate"))
		}
		cert = b.Certificates[0]
		for _, c := range b.Certificates {
			if !(c.BasicConstraintsValid && c.IsCA) {
				cert = c
				break
			}
		}
		for _, c := range b.Certificates {
			if c != cert {
				extra = append(extra, c)
			}
		}
	} else {
		t, ok := certinfo.NormalizeThumbprint(target)
		if !ok {
			return VerifyResult{}, errorf(op, badThumbprint(target))
		}
		e, err := a.Store.Get(ctx, t)
		if err != nil {
			return VerifyResult{}, errorf(op, err)
		}
		if e.Pending() {
			return VerifyResult{}, errorf(op, failed(Conflict, "%s is a pending request: there is no certificate to verify until the CA's answer is imported", t).field("Thumbprint", t))
		}
		cert, inStore = e.Cert, true
	}
	v, err := a.Verifier(ctx)
	if err != nil {
		return VerifyResult{}, errorf(op, asError(err).fix("correct it with %s", cmd("Set-ExchangeServer", "-Proxy", "URL")))
	}
	r, err := v.Verify(ctx, cert, extra, true)
	if err != nil {
		return VerifyResult{}, errorf(op, err)
	}
	return VerifyResult{Thumbprint: certinfo.Thumbprint(cert.Raw), Subject: cert.Subject.String(), InStore: inStore, Result: r}, nil
}
