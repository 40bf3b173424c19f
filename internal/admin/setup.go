package admin

import (
	"certrelay/internal/dnsname"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/settings"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// SetupOptions are the choices of the first start (M9).
type SetupOptions struct {
	Role string // "hub" (the default for a first setup) or "edge"; "" keeps the current one
	Fqdn string // default: the host name; "" keeps the current one
	// Name is the server's name in the organisation (DnsHostName): one
	// DNS label; default: the host name's first label.
	Name string
	// Directory joins an organisation's directory,
	// ldap://HOST:PORT/BASE-DN or ldaps://…; "" keeps the embedded one.
	// BindDN and BindPassword are what the server binds as; DirectoryCA
	// (PEM) the CA of the directory's TLS certificate: with ldap:// it
	// means StartTLS.
	Directory    string
	BindDN       string
	BindPassword string
	DirectoryCA  []byte
}

// SetupResult says what Setup did.
type SetupResult struct {
	Server      directory.Server
	AlreadyDone bool                        // setup had run before; nothing changed
	Certificate *Certificate                // the internal transport certificate
	Created     bool                        // Setup made the certificate (false: an existing one could serve)
	Connector   *directory.ReceiveConnector // the default receive connector Setup made
}

// IsSetUp reports whether setup has run on this data directory.
func (a *Admin) IsSetUp(ctx context.Context) (bool, error) {
	v, err := a.Settings.Get(ctx, settings.SetupDone)
	return v != "", err
}

// LocalServer returns this data directory's server object.
func (a *Admin) LocalServer(ctx context.Context) (directory.Server, error) {
	return a.src.LocalServer(ctx)
}

// Setup runs SPEC M9 once per data directory: it records the server
// object (host name, FQDN, role) and gives the server an internal transport
// certificate — an existing valid one from the personal store that holds
// the server's FQDN and has its key, or else a new self-signed one (CN =
// host name; SAN = host name and FQDN; services SMTP). Every step is
// logged as an event. Run again, it changes nothing and reports
// AlreadyDone; it fails if asked for another role or FQDN than the one set.
func (a *Admin) Setup(ctx context.Context, o SetupOptions) (SetupResult, error) {
	host, err := a.hostname()
	if err != nil {
		return SetupResult{}, errorf("setup", fmt.Errorf("read the host name: %w", err))
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	short, _, _ := strings.Cut(host, ".")
	o.Role = strings.ToLower(strings.TrimSpace(o.Role))
	if o.Role != "" && !directory.ValidRole(o.Role) {
		return SetupResult{}, errorf("setup", invalid("Role", o.Role, "unknown role %q: use hub or edge", o.Role))
	}
	if n, err := dnsname.ParseHost(host); err == nil {
		host = string(n)
	}
	short, _, _ = strings.Cut(host, ".")
	if strings.TrimSpace(o.Name) != "" {
		n, err := dnsname.ParseHost(o.Name)
		if err != nil || strings.Contains(string(n), ".") {
			return SetupResult{}, errorf("setup", invalid("Name", o.Name, "%q is not a server name: give one DNS label, such as hub1 (the FQDN goes in {-Fqdn})", o.Name))
		}
		short = string(n)
	}
	fqdn := host
	if strings.TrimSpace(o.Fqdn) != "" {
		n, err := dnsname.ParseHost(o.Fqdn)
		if err != nil {
			return SetupResult{}, errorf("setup", invalidValue("Fqdn", o.Fqdn, err))
		}
		fqdn = string(n)
	}

	if done, err := a.IsSetUp(ctx); err != nil {
		return SetupResult{}, err
	} else if done {
		srv, err := a.LocalServer(ctx)
		if err != nil {
			return SetupResult{}, err
		}
		if o.Role != "" && o.Role != srv.Role {
			return SetupResult{}, errorf("setup", failed(Conflict, "this data directory is already set up as a %s; a server's role does not change", srv.Role).field("Role", o.Role).
				fix("set up another data directory for the %s (%s there)", o.Role, cmd("Install-CertrelayServer", "-Role", o.Role)))
		}
		if o.Fqdn != "" && fqdn != srv.Fqdn {
			return SetupResult{}, errorf("setup", failed(Conflict, "this data directory is already set up with FQDN %s", srv.Fqdn).field("Fqdn", o.Fqdn).
				fix("change it with %s", cmd("Set-ExchangeServer", "-Fqdn", fqdn)))
		}
		if o.Name != "" && short != srv.Name {
			return SetupResult{}, errorf("setup", failed(Conflict, "this data directory is already set up as server %s; a server's name does not change", srv.Name).field("Name", o.Name).
				fix("set up another data directory for %s", short))
		}
		if o.Directory != "" {
			cur, _ := a.Settings.Get(ctx, settings.DirectoryURL)
			want, err := directory.ParseLDAPURL(o.Directory)
			if err != nil {
				return SetupResult{}, errorf("setup", invalid("Directory", o.Directory, "%v", err))
			}
			if cur != want.String() {
				where := "the embedded directory"
				if cur != "" {
					where = "the directory " + cur
				}
				return SetupResult{}, errorf("setup", failed(Conflict, "this data directory is already set up with %s; a server joins an organisation when it is set up", where).field("Directory", o.Directory).
					fix("set up a new data directory with {-Directory}"))
			}
		}
		// With the directory down, the credential is made on a later
		// start: the server must start on its copy now.
		if err := a.ensureCredential(ctx); err != nil && !errors.Is(err, directory.ErrUnavailable) {
			return SetupResult{}, errorf("setup", err)
		}
		res := SetupResult{Server: srv, AlreadyDone: true}
		if c, err := a.GetCertificate(ctx, srv.InternalTransportCertificateThumbprint); err == nil {
			res.Certificate = &c
		}
		return res, nil
	}

	if o.Role == "" {
		o.Role = directory.RoleHub
	}
	var join *joinPlan
	if o.Directory != "" {
		var err error
		if join, err = a.planJoin(ctx, o, short); err != nil {
			return SetupResult{}, errorf("setup", err)
		}
		defer join.l.Close()
	} else if o.BindDN != "" || o.BindPassword != "" || len(o.DirectoryCA) > 0 {
		return SetupResult{}, errorf("setup", usage("Directory", "{-BindDN}, {-BindPassword} and {-DirectoryCA} go with {-Directory}"))
	}
	// The certificate's material is found or made before the transaction:
	// making a key takes a while, and the transaction holds the write lock.
	probe := directory.Server{Name: short, Fqdn: fqdn, Role: o.Role}
	existingCert, err := a.servingCertificate(ctx, probe)
	if err != nil {
		return SetupResult{}, err
	}
	spec := selfSignedSpec{domains: []string{probe.Name, probe.Fqdn}, services: store.SMTP}
	var made *preparedCert
	if existingCert == nil {
		p, err := a.prepareSelfSigned(spec)
		if err != nil {
			return SetupResult{}, errorf("setup", err)
		}
		made = &p
	}
	a.Events.SetServer(probe.Name)

	// Everything else is one transaction: a setup killed half-way leaves
	// nothing, and the next start runs it again from the beginning.
	res := SetupResult{}
	errDone := errors.New("set up meanwhile by another process")
	err = a.atomically(ctx, func(ctx context.Context) error {
		if done, err := a.IsSetUp(ctx); err != nil || done {
			return cmp.Or(err, errDone)
		}
		srv := probe
		if existing, err := a.Dir.Server(ctx, short); err == nil {
			srv = existing // the directory already knows this server
			srv.Fqdn, srv.Role = fqdn, o.Role
		}
		if join != nil {
			if err := a.recordJoin(ctx, join); err != nil {
				return err
			}
		}
		var err error
		if srv.ServerCredential, err = a.writeCredential(ctx); err != nil {
			return err
		}
		if err := a.Settings.Set(ctx, settings.ServerName, srv.Name); err != nil {
			return err
		}
		if err := a.Dir.PutServer(ctx, srv); err != nil {
			return err
		}
		cert := existingCert
		if made != nil {
			c, err := a.storeSelfSigned(ctx, *made, spec)
			if err != nil {
				return err
			}
			cert, res.Created = &c, true
		} else if !cert.ServiceSet().Has(store.SMTP) {
			e, err := a.Store.EnableServices(ctx, cert.Thumbprint, store.SMTP)
			if err != nil {
				return err
			}
			v, err := a.src.Viewer(ctx)
			if err != nil {
				return err
			}
			view := v.View(e)
			cert = &view
		}
		if _, err := a.replaceInternal(ctx, srv.InternalTransportCertificateThumbprint, cert.Entry()); err != nil {
			return err
		}
		srv.InternalTransportCertificateThumbprint, srv.InternalTransportCertificate = cert.Thumbprint, cert.Entry().Cert.Raw
		if conns, err := a.Dir.ReceiveConnectors(ctx, srv.Name); err != nil {
			return err
		} else if len(conns) == 0 {
			bindings := []string{DefaultReceiveBinding}
			c, err := a.AddReceiveConnector(ctx, "Default "+srv.Name, ReceiveConnectorOptions{Bindings: &bindings})
			if err != nil {
				return err
			}
			res.Connector = &c
		}
		if err := a.Settings.Set(ctx, settings.SetupDone, a.now().UTC().Format(time.RFC3339)); err != nil {
			return err
		}
		a.raise(ctx, 16001, "", srv.Name, srv.Role, srv.Fqdn, a.dataDir)
		cert.IsInternalTransportCertificate = true
		res.Server, res.Certificate = srv, cert
		return nil
	})
	if errors.Is(err, errDone) {
		return a.Setup(ctx, o)
	}
	if err != nil {
		return SetupResult{}, errorf("setup", err)
	}
	return res, nil
}

// servingCertificate finds a Valid certificate with its key for the
// server's FQDN, preferring CA-issued ones, or returns nil.
func (a *Admin) servingCertificate(ctx context.Context, srv directory.Server) (*Certificate, error) {
	list, err := a.ListCertificates(ctx, ListOptions{Domain: srv.Fqdn})
	if err != nil {
		return nil, err
	}
	for _, c := range list {
		if c.Status == trust.Valid && c.HasPrivateKey {
			return &c, nil
		}
	}
	return nil, nil
}

// ServerInfo is what `server show` prints.
type ServerInfo struct {
	Name                                   string
	Fqdn                                   string
	PhysicalHostName                       string
	PhysicalFqdn                           string
	Role                                   string
	NLBNames                               []string
	InternalTransportCertificateThumbprint string
	InternalTransportCertificateNotAfter   *time.Time `json:",omitempty"`
	DataDirectory                          string
	ServiceAccount                         string
	Proxy                                  string
	DnsResolver                            string
	ExpiryWarningDays                      int
	DnssecResolver                         string
	// The partner domains of domain security (SPEC DS1).
	TLSSendDomainSecureList    []string
	TLSReceiveDomainSecureList []string
	SetupTime                  string
	// Directory is the organisation's directory this server joined
	// ("embedded" when none), and DirectoryBindDN the DN it binds as.
	Directory       string
	DirectoryBindDN string `json:",omitempty"`
}

// ServerShow describes this server.
func (a *Admin) ServerShow(ctx context.Context) (ServerInfo, error) {
	srv, err := a.LocalServer(ctx)
	if err != nil {
		return ServerInfo{}, err
	}
	setup, _ := a.Settings.Get(ctx, settings.SetupDone)
	proxy, _ := a.Settings.Get(ctx, settings.Proxy)
	resolver, _ := a.Settings.Get(ctx, settings.DNSResolver)
	dnssec, _ := a.Settings.Get(ctx, settings.DNSSECResolver)
	dirURL, _ := a.Settings.Get(ctx, settings.DirectoryURL)
	bindDN, _ := a.Settings.Get(ctx, settings.DirectoryBindDN)
	if dirURL == "" {
		dirURL = "embedded"
	}
	phys, physFqdn := srv.PhysicalHostName, srv.PhysicalFqdn
	if phys == "" {
		phys = srv.Name
	}
	if physFqdn == "" {
		physFqdn = srv.Fqdn
	}
	info := ServerInfo{
		Name: srv.Name, Fqdn: srv.Fqdn, PhysicalHostName: phys, PhysicalFqdn: physFqdn, Role: srv.Role, NLBNames: srv.NLBNames,
		Directory: dirURL, DirectoryBindDN: bindDN,
		InternalTransportCertificateThumbprint: srv.InternalTransportCertificateThumbprint,
		DataDirectory:                          a.dataDir,
		ServiceAccount:                         a.Store.Account().Name,
		Proxy:                                  proxy,
		DnsResolver:                            resolver,
		DnssecResolver:                         dnssec,
		SetupTime:                              setup,
	}
	sendDS, _ := a.Settings.Get(ctx, settings.TLSSendDomainSecureList)
	recvDS, _ := a.Settings.Get(ctx, settings.TLSReceiveDomainSecureList)
	info.TLSSendDomainSecureList, info.TLSReceiveDomainSecureList = settings.SplitList(sendDS), settings.SplitList(recvDS)
	if info.NLBNames == nil {
		info.NLBNames = []string{}
	}
	info.ExpiryWarningDays, _ = settings.ExpiryWarningDays(ctx, a.Settings)
	if e, err := a.Store.Get(ctx, srv.InternalTransportCertificateThumbprint); err == nil && e.Cert != nil {
		na := e.Cert.NotAfter.UTC()
		info.InternalTransportCertificateNotAfter = &na
	}
	return info, nil
}

// requireSetup returns the local server or ErrNotSetUp.
func (a *Admin) requireSetup(ctx context.Context) (directory.Server, error) {
	return a.src.LocalServer(ctx)
}

// ServerSetOptions change this server's settings; nil fields stay as they
// are.
type ServerSetOptions struct {
	Fqdn *string
	// PhysicalFqdn is the machine's FQDN (DnsPhysicalFullyQualifiedDomainName;
	// its first label is DnsPhysicalHostName); "" makes it the FQDN's.
	PhysicalFqdn *string
	NLBNames     *[]string
	Proxy        *string // "" for direct connections
	Resolver     *string // DNS server ip:port for MX lookups; "" for the system's
	// DNSSECResolver is a DNSSEC-validating resolver (ip:port) whose AD
	// bit DANE trusts; "" turns DANE off.
	DNSSECResolver *string
	// ServiceAccount is the account the server runs as (a user name or
	// uid); the keys of certificates enabled for SMTP, POP and IMAP are
	// given to it (M5).
	ServiceAccount *string
	// ExpiryWarningDays is E5's warning window in days (1–3650).
	ExpiryWarningDays *int
	// TLSSendDomainSecureList and TLSReceiveDomainSecureList are the
	// partner domains of domain security (DS1); an empty list clears.
	TLSSendDomainSecureList    *[]string
	TLSReceiveDomainSecureList *[]string
}

// ServerSet changes this server's FQDN, load-balancer names or HTTP proxy.
// Each value is checked before anything is written.
func (a *Admin) ServerSet(ctx context.Context, o ServerSetOptions) (ServerInfo, error) {
	const op = "server set"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return ServerInfo{}, errorf(op, err)
	}
	if o.Fqdn != nil {
		f, err := dnsname.ParseHost(*o.Fqdn)
		if err != nil {
			return ServerInfo{}, errorf(op, invalidValue("Fqdn", *o.Fqdn, err))
		}
		srv.Fqdn = string(f)
	}
	if o.PhysicalFqdn != nil {
		srv.PhysicalFqdn, srv.PhysicalHostName = "", ""
		if strings.TrimSpace(*o.PhysicalFqdn) != "" {
			f, err := dnsname.ParseHost(*o.PhysicalFqdn)
			if err != nil {
				return ServerInfo{}, errorf(op, invalidValue("PhysicalFqdn", *o.PhysicalFqdn, err))
			}
			srv.PhysicalFqdn = string(f)
			srv.PhysicalHostName, _, _ = strings.Cut(string(f), ".")
		}
	}
	if o.NLBNames != nil {
		var names []string
		for _, n := range *o.NLBNames {
			if strings.TrimSpace(n) == "" {
				continue // --nlb-name "" clears the list
			}
			names = append(names, n)
		}
		parsed, err := dnsname.ParseList(names, false)
		if err != nil {
			return ServerInfo{}, errorf(op, invalidValue("NLBNames", strings.Join(names, ","), err))
		}
		srv.NLBNames = dnsname.Strings(parsed)
		if len(srv.NLBNames) == 0 {
			srv.NLBNames = nil
		}
	}
	if o.Proxy != nil && *o.Proxy != "" {
		u, err := url.Parse(*o.Proxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return ServerInfo{}, errorf(op, invalid("Proxy", *o.Proxy, "{-Proxy} %q is not a proxy URL: write it as http://proxy.example.com:3128", *o.Proxy))
		}
	}
	if o.Resolver != nil && *o.Resolver != "" {
		if _, _, err := net.SplitHostPort(*o.Resolver); err != nil {
			return ServerInfo{}, errorf(op, invalid("DnsResolver", *o.Resolver, "{-DnsResolver} %q: write it as IP:PORT, such as 127.0.0.1:53", *o.Resolver))
		}
	}
	if o.ExpiryWarningDays != nil && (*o.ExpiryWarningDays < 1 || *o.ExpiryWarningDays > 3650) {
		return ServerInfo{}, errorf(op, invalid("ExpiryWarningDays", fmt.Sprint(*o.ExpiryWarningDays),
			"{-ExpiryWarningDays} %d is out of range: give a number of days from 1 to 3650 (the default is 30; Exchange 2013 and later use 90)", *o.ExpiryWarningDays))
	}
	if o.DNSSECResolver != nil && *o.DNSSECResolver != "" {
		host, _, err := net.SplitHostPort(*o.DNSSECResolver)
		if err != nil || net.ParseIP(host) == nil {
			return ServerInfo{}, errorf(op, invalid("DnssecResolver", *o.DNSSECResolver, "{-DnssecResolver} %q: write it as IP:PORT, such as 127.0.0.1:53 for a validating resolver on this machine", *o.DNSSECResolver))
		}
	}
	domainLists := map[string]string{} // setting → normalised list
	for _, l := range []struct {
		param, key string
		v          *[]string
	}{{"TLSSendDomainSecureList", settings.TLSSendDomainSecureList, o.TLSSendDomainSecureList}, {"TLSReceiveDomainSecureList", settings.TLSReceiveDomainSecureList, o.TLSReceiveDomainSecureList}} {
		if l.v == nil {
			continue
		}
		var names []string
		for _, n := range *l.v {
			for _, p := range strings.Split(n, ",") {
				if strings.TrimSpace(p) != "" { // "" clears the list
					names = append(names, strings.TrimSpace(p))
				}
			}
		}
		parsed, err := dnsname.ParseList(names, false)
		if err != nil {
			return ServerInfo{}, errorf(op, invalidValue(l.param, strings.Join(names, ","), err).fix("give partner domains such as contoso.com, without wildcards"))
		}
		domainLists[l.key] = strings.Join(dnsname.Strings(parsed), ",")
	}
	var acct store.Account
	if o.ServiceAccount != nil {
		if acct, err = store.LookupAccount(strings.TrimSpace(*o.ServiceAccount)); err != nil {
			return ServerInfo{}, errorf(op, invalidValue("ServiceAccount", *o.ServiceAccount, err).fix("give an existing user name or uid"))
		}
	}
	err = a.atomically(ctx, func(ctx context.Context) error {
		if o.ServiceAccount != nil {
			if err := a.Settings.Set(ctx, settings.ServiceAccount, acct.Name); err != nil {
				return err
			}
			if err := a.Store.UseAccount(ctx, acct); err != nil {
				return err
			}
		}
		for key, v := range domainLists {
			if err := a.Settings.Set(ctx, key, v); err != nil {
				return err
			}
		}
		if o.DNSSECResolver != nil {
			if err := a.Settings.Set(ctx, settings.DNSSECResolver, *o.DNSSECResolver); err != nil {
				return err
			}
		}
		if o.Resolver != nil {
			if err := a.Settings.Set(ctx, settings.DNSResolver, *o.Resolver); err != nil {
				return err
			}
		}
		if o.Fqdn != nil || o.NLBNames != nil || o.PhysicalFqdn != nil {
			// Read again under the lock, so a concurrent change of the
			// server object (its internal certificate) is not lost.
			cur, err := a.requireSetup(ctx)
			if err != nil {
				return err
			}
			cur.Fqdn, cur.NLBNames, cur.PhysicalFqdn, cur.PhysicalHostName = srv.Fqdn, srv.NLBNames, srv.PhysicalFqdn, srv.PhysicalHostName
			if err := a.Dir.PutServer(ctx, cur); err != nil {
				return err
			}
		}
		if o.Proxy != nil {
			if err := a.Settings.Set(ctx, settings.Proxy, *o.Proxy); err != nil {
				return err
			}
		}
		if o.ExpiryWarningDays != nil {
			if err := a.Settings.Set(ctx, settings.ExpiryWarning, fmt.Sprint(*o.ExpiryWarningDays)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return ServerInfo{}, errorf(op, err)
	}
	return a.ServerShow(ctx)
}
