package admin

import (
	"context"
	"crypto/x509"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/settings"
)

// OrgServer is one server of the organisation as Get-TransportServer
// lists it.
type OrgServer struct {
	Name                                   string // DnsHostName
	Fqdn                                   string // DnsFullyQualifiedDomainName
	PhysicalHostName                       string // DnsPhysicalHostName
	PhysicalFqdn                           string // DnsPhysicalFullyQualifiedDomainName
	Role                                   string
	NLBNames                               []string
	InternalTransportCertificateThumbprint string
	InternalTransportCertificateNotAfter   *time.Time `json:",omitempty"`
	HasServerCredential                    bool
	IsThisServer                           bool
}

// ListServers lists the organisation's servers (the embedded directory's:
// this one alone), with notes for what people should know: objects the
// directory holds that cannot be used, and a list read from the copy a
// server kept while the directory cannot be reached.
func (a *Admin) ListServers(ctx context.Context) ([]OrgServer, []string, error) {
	list, err := a.Dir.Servers(ctx)
	if err != nil {
		return nil, nil, errorf("list servers", err)
	}
	self, _ := a.Settings.Get(ctx, settings.ServerName)
	out := make([]OrgServer, 0, len(list))
	for _, s := range list {
		names := s.DNSNames()
		o := OrgServer{Name: s.Name, Fqdn: s.Fqdn, PhysicalHostName: names[3].Name, PhysicalFqdn: names[2].Name, Role: s.Role, NLBNames: s.NLBNames,
			InternalTransportCertificateThumbprint: s.InternalTransportCertificateThumbprint, HasServerCredential: len(s.ServerCredential) > 0,
			IsThisServer: self != "" && s.Name == self}
		if o.NLBNames == nil {
			o.NLBNames = []string{}
		}
		if c, err := x509.ParseCertificate(s.InternalTransportCertificate); err == nil {
			na := c.NotAfter.UTC()
			o.InternalTransportCertificateNotAfter = &na
		}
		out = append(out, o)
	}
	var notes []string
	if a.src.Org != nil {
		var problems []directory.Problem
		switch o := a.src.Org.(type) {
		case *directory.Fallback:
			problems = o.Primary.Problems()
			if o.Stale() {
				_, when := o.Copy(ctx).Up()
				notes = append(notes, msgf("the directory cannot be reached: this is the copy this server kept, complete at %s", when.UTC().Format(time.RFC3339)))
			}
		case *directory.Replica:
			problems = o.Problems()
		}
		for _, p := range problems {
			if p.Kind == "server" {
				notes = append(notes, msgf("the directory's object %s cannot be used: %v", p.DN, p.Err))
			}
		}
	}
	return out, notes, nil
}
