package admin

import (
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/trust"
)

func serverOperations() []*Operation {
	return []*Operation{
		{
			Name: "Install-CertrelayServer", Cmdlet: "Install-CertrelayServer", CLI: "setup",
			Summary: "Set up the data directory: server object and internal transport certificate (M9), and join an organisation's directory",
			Description: `Set up this data directory once: the server object (name, FQDN, role), its
internal transport certificate and a default receive connector. With
{-Directory} ldap://HOST:PORT/BASE-DN (or ldaps://) the server joins that
organisation's LDAP directory, binding as {-BindDN} with the password in the
file {-BindPassword} names; {-DirectoryCA} FILE gives the CA of the
directory's TLS certificate (with ldap:// it means StartTLS). Everything is
checked first — the directory can be reached, the password is right, the
base DN, certrelay's schema and LDAP Sync are there, and no other server has
this name — and a problem changes nothing, here or in the directory.`,
			Role: ServerAdmin, Returns: SetupResult{},
			Params: []Param{
				{Name: "Role", CLI: "role", Type: TypeString, Help: "hub (the default) or edge"},
				{Name: "Fqdn", CLI: "fqdn", Type: TypeString, Help: "this server's fully qualified domain name (default: the host name)"},
				{Name: "Name", CLI: "name", Type: TypeString, Help: "this server's name in the organisation, one DNS label (default: the host name's first label)"},
				{Name: "Directory", CLI: "directory", Type: TypeString, Help: "the organisation's directory to join, ldap://HOST:PORT/BASE-DN or ldaps://HOST:PORT/BASE-DN"},
				{Name: "BindDN", CLI: "bind-dn", Type: TypeString, Help: "the DN this server binds to the directory as"},
				{Name: "BindPassword", CLI: "bind-password-file", Type: TypeSecret, Help: "the password of {-BindDN}", Prompt: "Password of the bind DN: "},
				{Name: "DirectoryCA", CLI: "directory-ca", Type: TypeData, Help: "the CA certificate (PEM) of the directory's TLS certificate; with ldap://, StartTLS"},
			},
			Run: func(in *In) (*Result, error) {
				res, err := in.a.Setup(in.ctx, SetupOptions{Role: in.String("Role"), Fqdn: in.String("Fqdn"), Name: in.String("Name"),
					Directory: in.String("Directory"), BindDN: in.String("BindDN"), BindPassword: in.String("BindPassword"), DirectoryCA: in.Data("DirectoryCA")})
				if err != nil {
					return nil, err
				}
				r := &Result{Data: res}
				if u, err := directory.ParseLDAPURL(in.String("Directory")); err == nil && !res.AlreadyDone && u.Cleartext(in.Data("DirectoryCA")) {
					r.Messages = append(r.Messages, Message{Warning, msgf("the directory at %s is reached without TLS: the bind password crosses the network in clear, and anyone on the path can change what it answers, the servers' certificates included; give {-DirectoryCA} FILE (StartTLS) or use ldaps://", u.Host)})
				}
				return r, nil
			},
		},
		{
			Name: "Get-ExchangeServer", Cmdlet: "Get-ExchangeServer", CLI: "server show",
			Summary: "Show the server's names, role and internal transport certificate",
			Role:    ViewOnly, Returns: ServerInfo{},
			Run: func(in *In) (*Result, error) {
				info, err := in.a.ServerShow(in.ctx)
				if err != nil {
					return nil, err
				}
				return &Result{Data: info}, nil
			},
		},
		{
			Name: "Get-TransportServer", Cmdlet: "Get-TransportServer", CLI: "server list",
			Summary: "List the organisation's servers: names, role and internal transport certificates",
			Description: `List every server of the organisation as the directory holds it: its DNS
names (D3), role and internal transport certificate (X1), which other servers
trust directly. Objects the directory holds that certrelay cannot use (edited
by hand into something else) are named too.`,
			Role: ViewOnly, Returns: []OrgServer{},
			Run: func(in *In) (*Result, error) {
				list, notes, err := in.a.ListServers(in.ctx)
				if err != nil {
					return nil, err
				}
				r := &Result{Data: list}
				for _, n := range notes {
					r.Messages = append(r.Messages, Message{Warning, n})
				}
				return r, nil
			},
		},
		{
			Name: "Set-ExchangeServer", Cmdlet: "Set-ExchangeServer", CLI: "server set",
			Summary: "Change the server's FQDN, load-balancer names, HTTP proxy, expiry warning window, DNS resolvers or domain security partners",
			Description: `Change this server's settings. {-Proxy} sets the HTTP proxy CRL and OCSP
fetches go through (as WinHTTP's proxy is for Exchange); {-Proxy} "" removes it.
{-NLBNames} (repeatable) records names a load balancer adds.
{-ServiceAccount} names the account certrelay serve runs as: the keys of
certificates enabled for SMTP, POP or IMAP are given to it (mode 0600), as
{Enable-ExchangeCertificate} does (M5); that needs root when they belong to another account.
{-TLSSendDomainSecureList} and {-TLSReceiveDomainSecureList} name the partner
domains of domain security: mail to a listed domain is deferred unless the
partner's server presents, over STARTTLS, a certificate that chains to a
trusted root, passes revocation and holds the domain; mail from a listed
domain is refused unless the client presents such a certificate.`,
			Role: ServerAdmin, Returns: ServerInfo{},
			Params: []Param{
				{Name: "Fqdn", CLI: "fqdn", Type: TypeString, Help: "this server's FQDN"},
				{Name: "PhysicalFqdn", CLI: "physical-fqdn", Type: TypeString, Help: `the FQDN of the machine this server runs on, when it is not {-Fqdn} ("" for the same)`},
				{Name: "Proxy", CLI: "proxy", Type: TypeString, Help: `HTTP proxy URL for CRL and OCSP fetches ("" for none)`},
				{Name: "DnsResolver", CLI: "dns-resolver", Type: TypeString, Help: `DNS server (IP:PORT) for MX lookups of send connectors without smart hosts ("" for the system's)`},
				{Name: "DnssecResolver", CLI: "dnssec-resolver", Type: TypeString, Help: `a DNSSEC-validating resolver (IP:PORT) whose AD bit DANE trusts — only this one, so give one on a trusted path, such as unbound on this machine ("" turns DANE off)`},
				{Name: "NLBNames", CLI: "nlb-name", Type: TypeList, Help: `a load-balancer name of this server (repeat; "" clears)`},
				{Name: "ServiceAccount", CLI: "service-account", Type: TypeString, Help: "the account certrelay serve runs as, which must read the keys it uses"},
				{Name: "ExpiryWarningDays", CLI: "expiry-warning-days", Type: TypeInt, Help: "how many days before a certificate in use expires its warnings (12017, 12018) start; default 30"},
				{Name: "TLSSendDomainSecureList", CLI: "tls-send-domain-secure", Type: TypeList, Help: `a partner domain mail is only sent to over mutual TLS with a certificate that chains to a trusted root, passes revocation and holds the domain (domain security; repeat; "" clears)`},
				{Name: "TLSReceiveDomainSecureList", CLI: "tls-receive-domain-secure", Type: TypeList, Help: `a partner domain whose mail is only accepted from a client that presents such a certificate for it (domain security; repeat; "" clears)`},
			},
			Run: func(in *In) (*Result, error) {
				o := ServerSetOptions{Fqdn: in.StringPtr("Fqdn"), PhysicalFqdn: in.StringPtr("PhysicalFqdn"), NLBNames: in.StringsPtr("NLBNames"), Proxy: in.StringPtr("Proxy"),
					Resolver: in.StringPtr("DnsResolver"), DNSSECResolver: in.StringPtr("DnssecResolver"), ServiceAccount: in.StringPtr("ServiceAccount"),
					TLSSendDomainSecureList: in.StringsPtr("TLSSendDomainSecureList"), TLSReceiveDomainSecureList: in.StringsPtr("TLSReceiveDomainSecureList")}
				if in.Has("ExpiryWarningDays") {
					n := in.Int("ExpiryWarningDays")
					o.ExpiryWarningDays = &n
				}
				if o == (ServerSetOptions{}) {
					return nil, usage("", "nothing to set: give {-Fqdn}, {-PhysicalFqdn}, {-NLBNames}, {-Proxy}, {-DnsResolver}, {-DnssecResolver}, {-ServiceAccount}, {-ExpiryWarningDays}, {-TLSSendDomainSecureList} or {-TLSReceiveDomainSecureList}")
				}
				info, err := in.a.ServerSet(in.ctx, o)
				if err != nil {
					return nil, err
				}
				return &Result{Data: info}, nil
			},
		},
	}
}

// TrustedCertificate is a trusted root or an intermediate, as
// Get-CertrelayTrustedCertificate lists them.
type TrustedCertificate struct {
	Thumbprint string
	Subject    string
	NotAfter   time.Time
	Kind       string // "Root" or "Intermediate"
	Source     string // the root's source (RootCAType); "" for intermediates
	System     bool   `json:",omitempty"`
}

func trustOperations() []*Operation {
	return []*Operation{
		{
			Name: "Add-CertrelayTrustedCertificate", Cmdlet: "Add-CertrelayTrustedCertificate", CLI: "trust add",
			Summary: "Trust the root CA certificates of FILE, or keep its CA certificates as intermediates",
			Description: `Trust the root CA certificates of FILE with a source that becomes the
RootCAType of the certificates chaining to them: registry (this server
only, the default), grouppolicy or enterprise (organisation-wide, which
needs the org-admin role). With {-Intermediate}, the file's CA certificates
(intermediates, cross-certificates) are kept for building chains instead.`,
			Role: ServerAdmin, Returns: TrustAddResult{},
			Params: []Param{
				{Name: "FileData", CLI: "FILE", Type: TypeData, Position: 1, Required: true, Help: "a certificate file"},
				{Name: "Source", CLI: "source", Type: TypeRootSource, Default: "registry", Help: "registry, grouppolicy or enterprise"},
				{Name: "Intermediate", CLI: "intermediate", Type: TypeBool, Help: "add CA certificates to the intermediate store instead"},
			},
			Run: func(in *In) (*Result, error) {
				src, _ := in.Value("Source").(trust.Source)
				if src != trust.RootRegistry && !in.Bool("Intermediate") {
					if err := in.need(OrgAdmin); err != nil {
						return nil, err
					}
				}
				res, err := in.a.TrustAdd(in.ctx, in.Data("FileData"), src, in.Bool("Intermediate"))
				if err != nil {
					return nil, err
				}
				r := &Result{Data: res}
				for _, s := range res.Skipped {
					r.note("%s", s)
				}
				return r, nil
			},
		},
		{
			Name: "Get-CertrelayTrustedCertificate", Cmdlet: "Get-CertrelayTrustedCertificate", CLI: "trust list",
			Summary: "List trusted roots (with their source) and intermediates",
			Role:    ViewOnly, Returns: []TrustedCertificate{},
			Params: []Param{
				{Name: "System", CLI: "system", Type: TypeBool, Help: "include the system bundle's roots (ThirdParty)"},
			},
			Run: func(in *In) (*Result, error) {
				roots, inters, err := in.a.TrustList(in.ctx)
				if err != nil {
					return nil, err
				}
				rows, hidden := []TrustedCertificate{}, 0
				for _, r := range roots {
					if r.System && !in.Bool("System") {
						hidden++
						continue
					}
					rows = append(rows, TrustedCertificate{r.Thumbprint, r.Subject, r.NotAfter.UTC(), "Root", string(r.Source), r.System})
				}
				for _, c := range inters {
					rows = append(rows, TrustedCertificate{certinfo.Thumbprint(c.Raw), c.Subject.String(), c.NotAfter.UTC(), "Intermediate", "", false})
				}
				res := &Result{Data: rows}
				if !in.Bool("System") {
					res.Messages = append(res.Messages, Message{Hint, msgf("(%d ThirdParty roots of the system bundle not shown; add {-System} to see them)", hidden)})
				}
				return res, nil
			},
		},
		{
			Name: "Remove-CertrelayTrustedCertificate", Cmdlet: "Remove-CertrelayTrustedCertificate", CLI: "trust remove",
			Summary: "Stop trusting a root added here, or forget an intermediate",
			Role:    ServerAdmin,
			Params:  []Param{thumbprintParam("the thumbprint of the root or intermediate")},
			Run: func(in *In) (*Result, error) {
				return nil, in.a.TrustRemove(in.ctx, in.String("Thumbprint"))
			},
		},
	}
}
