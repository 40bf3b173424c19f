package transport

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
)

// Org is the organisation as direct trust sees it (SPEC X1, X2, D3): the
// other servers with their published internal transport certificates,
// indexed by every name they may claim, and where to reach each over
// SMTP. It is built once per directory snapshot, so that checking a peer
// costs a map lookup and a comparison of bytes, with no allocation.
type Org struct {
	byName map[string][]*OrgServer // every D3 name (lower-case) → servers claiming it
	byCN   map[string]*OrgServer   // server name (lower-case) → server
	// Duplicates lists the names two server objects claim (each a
	// directory problem to report).
	Duplicates []Duplicate
}

// OrgServer is one server of the organisation, ready for direct trust.
type OrgServer struct {
	directory.Server
	Cert *x509.Certificate // its published internal transport certificate; nil: none
	// Lacks names the D3 properties (and load-balancer names) of the
	// server that its published certificate does not hold, "Property
	// name" each; direct trust fails while any is missing (1037/2019).
	Lacks []string
	// Addrs are where its receive connectors accept organisation servers
	// (host:port), in order.
	Addrs []string
}

// Duplicate is a name several server objects claim.
type Duplicate struct {
	Name    string
	Servers []string
}

// NewOrg indexes the organisation's servers (this one included: a server
// may relay to itself through another name) and their receive connectors
// (by server name, lower-case).
func NewOrg(servers []directory.Server, conns map[string][]directory.ReceiveConnector) *Org {
	o := &Org{byName: map[string][]*OrgServer{}, byCN: map[string]*OrgServer{}}
	for _, s := range servers {
		os := &OrgServer{Server: s}
		if len(s.InternalTransportCertificate) > 0 {
			if c, err := x509.ParseCertificate(s.InternalTransportCertificate); err == nil {
				os.Cert = c
				os.Lacks = lacks(c, s)
			}
		}
		for _, c := range conns[strings.ToLower(s.Name)] {
			if c.Enabled && acceptsServers(&c) {
				for _, b := range c.Bindings {
					host, port, err := net.SplitHostPort(b)
					if err != nil {
						continue
					}
					if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
						host = s.Fqdn
					}
					os.Addrs = append(os.Addrs, net.JoinHostPort(host, port))
				}
			}
		}
		o.byCN[strings.ToLower(s.Name)] = os
		seen := map[string]bool{}
		for _, n := range s.DNSNames() {
			k := strings.ToLower(n.Name)
			if k == "" || seen[k] {
				continue
			}
			seen[k] = true
			o.byName[k] = append(o.byName[k], os)
		}
	}
	for name, list := range o.byName {
		if len(list) > 1 {
			d := Duplicate{Name: name}
			for _, s := range list {
				d.Servers = append(d.Servers, s.Name)
			}
			sort.Strings(d.Servers)
			o.Duplicates = append(o.Duplicates, d)
		}
	}
	sort.Slice(o.Duplicates, func(i, j int) bool { return o.Duplicates[i].Name < o.Duplicates[j].Name })
	return o
}

// lacks returns the D3 names of s that c does not hold.
func lacks(c *x509.Certificate, s directory.Server) []string {
	domains := certinfo.CertificateDomains(c)
	var out []string
	seen := map[string]bool{}
	for _, n := range s.DNSNames() {
		if n.Name == "" || seen[n.Property+n.Name] {
			continue
		}
		seen[n.Property+n.Name] = true
		if !selection.MatchName(domains, n.Name, false) {
			out = append(out, n.Property+" "+n.Name)
		}
	}
	return out
}

// acceptsServers reports whether a receive connector accepts the
// organisation's servers: the ExchangeServers permission or the
// ExchangeServer authentication mechanism (where X-ANONYMOUSTLS is
// offered, S6).
func acceptsServers(c *directory.ReceiveConnector) bool {
	return has(c.PermissionGroups, "ExchangeServers") || has(c.AuthMechanism, "ExchangeServer")
}

// Server returns the server named name (its cn), or nil.
func (o *Org) Server(name string) *OrgServer {
	if o == nil {
		return nil
	}
	if s, ok := o.byCN[name]; ok {
		return s
	}
	return o.byCN[strings.ToLower(name)]
}

// Claimed returns the servers that hold name among their DNS names.
func (o *Org) Claimed(name string) []*OrgServer {
	if o == nil {
		return nil
	}
	if l, ok := o.byName[name]; ok {
		return l
	}
	return o.byName[strings.ToLower(strings.TrimSuffix(name, "."))]
}

// Trust is the outcome of a direct-trust check.
type Trust struct {
	Server  *OrgServer // the server the peer is (OK) or claims to be (nil: no such server)
	OK      bool
	Expired bool // the certificate is the server's but has expired (12019; still trusted, C12)
}

// Check is direct trust for an inbound session (X2): the peer, which
// claims the name claim (its EHLO), presented certificate der; it is
// trusted when der is the internal transport certificate the directory
// holds for a server of that name, and that certificate holds the
// server's DNS names (D3). Self-signed or CA-issued makes no difference.
// Safe for concurrent use; no allocation.
func (o *Org) Check(claim string, der []byte, now time.Time) Trust {
	list := o.Claimed(claim)
	for _, s := range list {
		if t := s.Check(der, now); t.OK {
			return t
		}
	}
	if len(list) > 0 {
		return Trust{Server: list[0]}
	}
	return Trust{}
}

// Check is direct trust for an outbound session to s: the server
// presented certificate der.
func (s *OrgServer) Check(der []byte, now time.Time) Trust {
	if s.Cert == nil || !bytes.Equal(der, s.Cert.Raw) || len(s.Lacks) > 0 {
		return Trust{Server: s}
	}
	return Trust{Server: s, OK: true, Expired: now.After(s.Cert.NotAfter)}
}

// Problem says why der is not trusted for the server a check named (for
// 1037/2019): which of the server's DNS names it lacks, and whether it is
// the certificate the directory holds.
func (t Trust) Problem(claim string, der []byte) (thumbprint, problem string) {
	thumbprint = "(none)"
	var peer *x509.Certificate
	if len(der) > 0 {
		thumbprint = certinfo.Thumbprint(der)
		peer, _ = x509.ParseCertificate(der)
	}
	s := t.Server
	if s == nil {
		return thumbprint, fmt.Sprintf("no server of the organisation has the name %q it claims (its EHLO); certrelay server list shows the organisation's servers", claim)
	}
	var missing []string
	if peer != nil {
		missing = lacks(peer, s.Server)
	}
	var b strings.Builder
	switch {
	case s.Cert == nil:
		fmt.Fprintf(&b, "the directory holds no internal transport certificate for server %s (on %s, run certrelay cert new)", s.Name, s.Name)
	case len(der) == 0:
		fmt.Fprintf(&b, "it presented no certificate for server %s", s.Name)
	case !bytes.Equal(der, s.Cert.Raw):
		fmt.Fprintf(&b, "it is not the certificate the directory holds for server %s (%s)", s.Name, s.InternalTransportCertificateThumbprint)
	default:
		missing = s.Lacks
		fmt.Fprintf(&b, "it is the certificate the directory holds for server %s, but", s.Name)
	}
	if len(missing) > 0 {
		if !strings.HasSuffix(b.String(), "but") {
			b.WriteString("; it")
		}
		fmt.Fprintf(&b, " lacks %s of that server (on %s, run certrelay cert new for a certificate with them, or correct the names with certrelay server set; certrelay diagnose shows the details)", strings.Join(missing, ", "), s.Name)
	} else if s.Cert != nil && len(der) > 0 {
		b.WriteString("; it holds every DNS name of that server (DnsFullyQualifiedDomainName, DnsHostName, DnsPhysicalFullyQualifiedDomainName, DnsPhysicalHostName)")
	}
	return thumbprint, b.String()
}
