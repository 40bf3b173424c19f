package admin

import (
	"context"
	"sort"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/selection"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// Certificate is a certificate or pending request as Get-ExchangeCertificate
// shows it: the fields of the certificate and the properties of the store
// (SPEC §2). JSON field names are the property names of SPEC I2.
type Certificate struct {
	Thumbprint           string
	Subject              string
	Issuer               string
	CertificateDomains   []string
	NotBefore            *time.Time
	NotAfter             *time.Time
	IsSelfSigned         bool
	RootCAType           trust.RootCAType
	Services             []string
	Status               trust.Status
	HasPrivateKey        bool
	PublicKeySize        int
	SerialNumber         string
	FriendlyName         string
	PrivateKeyExportable bool
	AccessRules          []store.AccessRule
	CertificateRequest   string

	// Beyond the seeds.
	KeyAlgorithm                   string
	IsInternalTransportCertificate bool
	StatusDetail                   string          `json:",omitempty"` // why Status is not Valid
	Fix                            string          `json:",omitempty"` // what to do about it
	Chain                          []trust.Element `json:"-"`

	entry store.Entry
	info  certinfo.Info
}

// ServiceSet returns the services as a set.
func (c Certificate) ServiceSet() store.Services { return c.entry.Services }

// Entry returns the store entry behind the view.
func (c Certificate) Entry() store.Entry { return c.entry }

// Info returns the certificate's fields (zero for a pending request).
func (c Certificate) Info() certinfo.Info { return c.info }

// viewer builds Certificate views against one trust snapshot.
type viewer struct {
	a        *Admin
	snap     *trust.Snapshot
	records  map[string]trust.Record
	now      time.Time
	internal string
}

func (a *Admin) viewer(ctx context.Context) (*viewer, error) {
	snap, err := a.Trust.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	records, err := a.Trust.RevocationRecords(ctx)
	if err != nil {
		return nil, err
	}
	v := &viewer{a: a, snap: snap, records: records, now: a.now()}
	if srv, err := a.LocalServer(ctx); err == nil {
		v.internal = srv.InternalTransportCertificateThumbprint
	}
	return v, nil
}

func (v *viewer) view(e store.Entry) Certificate {
	ki := v.a.Store.KeyInfo(e)
	c := Certificate{
		Thumbprint:           e.Thumbprint,
		Services:             e.Services.Names(),
		HasPrivateKey:        ki.Present,
		FriendlyName:         e.FriendlyName,
		PrivateKeyExportable: e.Exportable,
		AccessRules:          ki.AccessRules,
		entry:                e,
	}
	if c.AccessRules == nil {
		c.AccessRules = []store.AccessRule{}
	}
	if e.Pending() {
		r := e.Request
		c.Subject = r.Subject.ToRDNSequence().String()
		c.CertificateDomains = certinfo.Domains(r.Subject.CommonName, r.DNSNames)
		c.PublicKeySize = certinfo.PublicKeySize(r.PublicKey)
		c.KeyAlgorithm = certinfo.KeyAlgorithm(r.PublicKey)
		c.Status = trust.PendingRequest
		c.RootCAType = trust.RootNone
		c.CertificateRequest = string(certinfo.RequestPEM(r.Raw))
		c.StatusDetail = "the request awaits the CA's certificate"
		c.Fix = "send the request to the CA, then import its answer: certrelay cert import FILE"
		return c
	}
	in := certinfo.Describe(e.Cert)
	c.info = in
	c.Subject, c.Issuer = in.Subject, in.Issuer
	c.CertificateDomains = in.CertificateDomains
	nb, na := in.NotBefore, in.NotAfter
	c.NotBefore, c.NotAfter = &nb, &na
	c.IsSelfSigned = in.IsSelfSigned
	c.PublicKeySize = in.PublicKeySize
	c.SerialNumber = in.SerialNumber
	c.KeyAlgorithm = in.KeyAlgorithm
	c.IsInternalTransportCertificate = v.internal != "" && v.internal == e.Thumbprint
	r := v.snap.Judge(e.Cert, nil, v.now, v.records)
	c.Status, c.RootCAType, c.Chain = r.Status, r.RootCAType, r.Chain
	c.StatusDetail, c.Fix = r.Problem, r.Fix
	return c
}

// ListOptions filter ListCertificates.
type ListOptions struct {
	// Domain keeps the certificates whose CertificateDomains hold this
	// name, directly or through a wildcard (S3), ranked as selection ranks
	// them (S4). A wildcard here matches that wildcard entry literally.
	Domain string
}

// ListCertificates returns the certificates and pending requests of the
// personal store (M6), by thumbprint, or ranked when filtered by domain.
func (a *Admin) ListCertificates(ctx context.Context, o ListOptions) ([]Certificate, error) {
	entries, err := a.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	v, err := a.viewer(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Certificate, 0, len(entries))
	for _, e := range entries {
		c := v.view(e)
		if o.Domain != "" && !holdsName(c.CertificateDomains, o.Domain) {
			continue
		}
		out = append(out, c)
	}
	if o.Domain != "" {
		sort.SliceStable(out, func(i, j int) bool { return rankLess(out[i], out[j]) })
	}
	return out, nil
}

func holdsName(domains []string, name string) bool {
	name = strings.TrimSpace(name)
	if selection.IsWildcard(name) {
		for _, d := range domains {
			if strings.EqualFold(d, name) {
				return true
			}
		}
		return false
	}
	return selection.MatchName(domains, name, false)
}

// rankLess orders certificates as SPEC S4 ranks them: usable before
// unusable; a certificate from a trusted CA before a self-signed one;
// then the latest NotBefore; then the thumbprint.
func rankLess(a, b Certificate) bool {
	ra, rb := rankClass(a), rankClass(b)
	if ra != rb {
		return ra < rb
	}
	if a.NotBefore != nil && b.NotBefore != nil && !a.NotBefore.Equal(*b.NotBefore) {
		return a.NotBefore.After(*b.NotBefore)
	}
	return a.Thumbprint < b.Thumbprint
}

func rankClass(c Certificate) int {
	switch {
	case c.Status == trust.Valid && !c.IsSelfSigned && c.HasPrivateKey:
		return 0
	case c.Status == trust.Valid && c.HasPrivateKey:
		return 1
	case c.Status == trust.PendingRequest:
		return 4
	case c.HasPrivateKey:
		return 2
	}
	return 3
}

// GetCertificate returns one certificate or request by thumbprint.
func (a *Admin) GetCertificate(ctx context.Context, thumbprint string) (Certificate, error) {
	t, ok := certinfo.NormalizeThumbprint(thumbprint)
	if !ok {
		return Certificate{}, badThumbprint(thumbprint)
	}
	e, err := a.Store.Get(ctx, t)
	if err != nil {
		return Certificate{}, err
	}
	v, err := a.viewer(ctx)
	if err != nil {
		return Certificate{}, err
	}
	return v.view(e), nil
}
