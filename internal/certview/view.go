package certview

import (
	"certrelay/internal/parallel"
	"context"
	"crypto/x509"
	"sync"
	"time"

	"certrelay/internal/certinfo"
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
	// StatusDetail says why the certificate cannot serve as it stands:
	// why Status is not Valid, and what is wrong with its private key
	// (missing, unreadable by the service account, or open to other
	// accounts); Fix says what to do about each.
	StatusDetail string          `json:",omitempty"`
	Fix          string          `json:",omitempty"`
	Chain        []trust.Element `json:"-"`

	entry store.Entry
	info  certinfo.Info
}

// ServiceSet returns the services as a set.
func (c Certificate) ServiceSet() store.Services { return c.entry.Services }

// Entry returns the store entry behind the view.
// For a self-signed certificate from a listing (ViewListed), Entry.Cert
// is nil: the listing never parsed it (Store.Parse does).
func (c Certificate) Entry() store.Entry { return c.entry }

// Info returns the certificate's fields (zero for a pending request).
func (c Certificate) Info() certinfo.Info { return c.info }

// Viewer builds Certificate views against one state of the trust store
// and revocation results. Safe for concurrent use.
type Viewer struct {
	src      *Source
	snap     *trust.Snapshot
	records  map[string]trust.Record
	faults   map[string]store.KeyFault // keys a server could not load
	now      time.Time
	internal string
	keys     sync.Map // key ID → store.KeyInfo: one stat per key file per viewer
}

// Viewer reads the trust state and returns a viewer as of now.
func (s *Source) Viewer(ctx context.Context) (*Viewer, error) {
	snap, err := s.Trust.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	records, err := s.Trust.RevocationRecords(ctx)
	if err != nil {
		return nil, err
	}
	faults, err := s.Store.KeyFaults(ctx)
	if err != nil {
		return nil, err
	}
	v := &Viewer{src: s, snap: snap, records: records, faults: faults, now: s.Now()}
	if srv, err := s.LocalServer(ctx); err == nil {
		v.internal = srv.InternalTransportCertificateThumbprint
	}
	return v, nil
}

// Now is the time the viewer judges validity at.
func (v *Viewer) Now() time.Time { return v.now }

// View describes a store entry: its fields, properties, Status and
// RootCAType.
func (v *Viewer) View(e store.Entry) Certificate {
	c, ki := v.properties(e)
	if e.Pending() {
		return c
	}
	in := v.src.describe(e)
	return v.judged(c, e, ki, in, v.snap.Judge(e.Cert, nil, v.now, v.records))
}

// ViewListed is View for an entry of store.ListFacts: a self-signed
// certificate is described and judged from its stored facts, without
// parsing it; the same Certificate as View gives, but its Chain elements
// carry no parsed certificate.
func (v *Viewer) ViewListed(l store.Listed) Certificate {
	if l.Facts == nil || l.Cert != nil {
		return v.View(l.Entry)
	}
	c, ki := v.properties(l.Entry)
	in := *l.Facts
	return v.judged(c, l.Entry, ki, in, v.snap.JudgeSelfSigned(l.Thumbprint, in.Subject, in.NotBefore, in.NotAfter, v.now))
}

// ViewAllListed is ViewListed of every entry, in order, on every core.
func (v *Viewer) ViewAllListed(list []store.Listed) []Certificate {
	out := make([]Certificate, len(list))
	parallel.Each(len(list), func(i int) { out[i] = v.ViewListed(list[i]) })
	return out
}

// keyInfo is Store.KeyInfo, asked once per key file for the viewer's
// life (certificates that share a key share its file).
func (v *Viewer) keyInfo(e store.Entry) store.KeyInfo {
	if e.KeyID == "" {
		return store.KeyInfo{}
	}
	if ki, ok := v.keys.Load(e.KeyID); ok {
		return ki.(store.KeyInfo)
	}
	ki := v.src.Store.KeyInfo(e)
	v.keys.Store(e.KeyID, ki)
	return ki
}

// properties fills what every entry has (and all of a pending request).
func (v *Viewer) properties(e store.Entry) (Certificate, store.KeyInfo) {
	ki := v.keyInfo(e)
	c := Certificate{
		Thumbprint:           e.Thumbprint,
		Services:             e.Services.Names(),
		HasPrivateKey:        ki.Present || ki.Hidden,
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
		c.Subject = certinfo.NameString(r.RawSubject)
		c.CertificateDomains = certinfo.RequestDomains(r)
		c.PublicKeySize = certinfo.PublicKeySize(r.PublicKey)
		c.KeyAlgorithm = certinfo.KeyAlgorithm(r.PublicKey)
		c.Status = trust.PendingRequest
		c.RootCAType = trust.RootNone
		c.CertificateRequest = string(certinfo.RequestPEM(r.Raw))
		c.StatusDetail = "the request awaits the CA's certificate"
		c.Fix = "send the request to the CA, then import its answer: certrelay cert import FILE"
	}
	return c, ki
}

// judged completes a certificate's view with its fields and verdict.
func (v *Viewer) judged(c Certificate, e store.Entry, ki store.KeyInfo, in certinfo.Info, r trust.Result) Certificate {
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
	c.Status, c.RootCAType, c.Chain = r.Status, r.RootCAType, r.Chain
	c.StatusDetail, c.Fix = r.Problem, r.Fix
	if kt := v.keyTrouble(e, ki, in.IsSelfSigned); kt.Problem != "" {
		c.StatusDetail, c.Fix = join(c.StatusDetail, kt.Problem), join(c.Fix, kt.Fix)
	}
	return c
}

type infoMemo struct {
	cert *x509.Certificate
	info certinfo.Info
}

// describe returns e's fields, remembered by thumbprint (Source.infos):
// they never change, and describing thousands of certificates on every
// store change would cost a rebuild its 100 ms.
func (s *Source) describe(e store.Entry) certinfo.Info {
	if m, ok := s.infos.Get(e.Thumbprint); ok && m.cert == e.Cert {
		return m.info
	}
	in := certinfo.Describe(e.Cert)
	s.infos.Put(e.Thumbprint, &infoMemo{cert: e.Cert, info: in})
	return in
}
