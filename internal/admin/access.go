package admin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"certrelay/internal/access"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// AccessSettings is what Get-POPSettings and Get-IMAPSettings show: the
// settings (Exchange's property names), and what certificate selection
// gives for them now.
type AccessSettings struct {
	Name                              string // POP3 or IMAP4
	Server                            string
	Enabled                           bool
	UnencryptedOrTLSBindings          []string
	SSLBindings                       []string
	X509CertificateName               string
	LoginType                         string
	Exchange2007CertificateSelection  bool
	MaxConnections                    int
	MaxConnectionFromSingleIP         int
	PreAuthenticatedConnectionTimeout directory.Duration
	AuthenticatedConnectionTimeout    directory.Duration
	ConnectionTimeout                 directory.Duration
	MaxCommandSize                    int
	MaxMessageSize                    int64 `json:",omitempty"`
	MaxLoginFailuresPerSource         int
	LoginFailureLockout               directory.Duration
	// CertificateName is the name selection matches: X509CertificateName,
	// or the server's FQDN when it is empty. Certificate is the thumbprint
	// a handshake gets now ("" when none: STLS/STARTTLS not offered), and
	// CertificateSelection why.
	CertificateName      string
	Certificate          string
	CertificateSelection string
}

// UMService is what Get-UMService shows.
type UMService struct {
	Name                      string // UM
	Server                    string
	Enabled                   bool
	UMStartupMode             string
	SipTcpBindings            []string
	SipTlsBindings            []string
	Fqdn                      string
	MaxConnections            int
	MaxConnectionFromSingleIP int
	ConnectionTimeout         directory.Duration
	MaxMessageSize            int64
	// Certificate is the certificate S10 ranks first now ("" when none: a
	// running server in secure mode makes a self-signed one), and
	// CertificateSelection why.
	CertificateName      string
	Certificate          string
	CertificateSelection string
}

// AccessOptions change POP3 or IMAP4 settings; nil fields keep their
// value. Texts are as typed (counts in digits, durations as 10m or
// 00:10:00).
type AccessOptions struct {
	Enabled                           *bool
	UnencryptedOrTLSBindings          *[]string
	SSLBindings                       *[]string
	X509CertificateName               *string
	LoginType                         *string
	Exchange2007CertificateSelection  *bool
	MaxConnections                    *string
	MaxConnectionFromSingleIP         *string
	PreAuthenticatedConnectionTimeout *string
	AuthenticatedConnectionTimeout    *string
	ConnectionTimeout                 *string
	MaxCommandSize                    *string
	MaxMessageSize                    *string
	MaxLoginFailuresPerSource         *string
	LoginFailureLockout               *string
}

// UMOptions change UM's settings.
type UMOptions struct {
	Enabled                   *bool
	UMStartupMode             *string
	SipTcpBindings            *[]string
	SipTlsBindings            *[]string
	Fqdn                      *string
	MaxConnections            *string
	MaxConnectionFromSingleIP *string
	ConnectionTimeout         *string
	MaxMessageSize            *string
}

// GetAccessSettings returns POP3's or IMAP4's settings.
func (a *Admin) GetAccessSettings(ctx context.Context, p access.Protocol) (AccessSettings, error) {
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return AccessSettings{}, errorf("get "+string(p)+" settings", err)
	}
	s, err := access.Load(ctx, a.Settings, p)
	if err != nil {
		return AccessSettings{}, errorf("get "+string(p)+" settings", err)
	}
	v := AccessSettings{Name: string(p), Server: srv.Name, Enabled: s.Enabled, UnencryptedOrTLSBindings: orEmpty(s.UnencryptedOrTLSBindings),
		SSLBindings: orEmpty(s.SSLBindings), X509CertificateName: s.X509CertificateName, LoginType: s.LoginType,
		Exchange2007CertificateSelection: s.Exchange2007CertificateSelection, MaxConnections: s.MaxConnections,
		MaxConnectionFromSingleIP: s.MaxConnectionFromSingleIP, PreAuthenticatedConnectionTimeout: s.PreAuthenticatedConnectionTimeout,
		AuthenticatedConnectionTimeout: s.AuthenticatedConnectionTimeout, ConnectionTimeout: s.ConnectionTimeout,
		MaxCommandSize: s.MaxCommandSize, MaxMessageSize: s.MaxMessageSize, MaxLoginFailuresPerSource: s.MaxLoginFailuresPerSource,
		LoginFailureLockout: s.LoginFailureLockout}
	v.CertificateName = or(s.X509CertificateName, srv.Fqdn)
	svc := store.POP
	if p == access.IMAP4 {
		svc = store.IMAP
	}
	v.Certificate, v.CertificateSelection, err = a.selectNow(ctx, selection.Request{FQDN: v.CertificateName, Service: svc, Compat2007: s.Exchange2007CertificateSelection})
	return v, err
}

// selectNow runs selection as a session would now.
func (a *Admin) selectNow(ctx context.Context, req selection.Request) (string, string, error) {
	cands, now, err := a.NewCandidateBuilder().Build(ctx)
	if err != nil {
		return "", "", err
	}
	d := selection.Select(cands, req, now)
	if d.Winner == nil {
		return "", d.Why, nil
	}
	return d.Winner.Thumbprint, d.Why, nil
}

// SetAccessSettings changes POP3's or IMAP4's settings, in one
// transaction; a running server applies them at once (bindings open and
// close, the certificate name and login type apply to the next
// connection).
func (a *Admin) SetAccessSettings(ctx context.Context, p access.Protocol, o AccessOptions) (AccessSettings, error) {
	op := "set " + string(p) + " settings"
	err := a.atomically(ctx, func(ctx context.Context) error {
		if _, err := a.requireSetup(ctx); err != nil {
			return err
		}
		s, err := access.Load(ctx, a.Settings, p)
		if err != nil {
			return err
		}
		if err := applyAccess(&s, p, o); err != nil {
			return err
		}
		if err := a.checkAccessBindings(ctx, p, append(append([]string{}, s.UnencryptedOrTLSBindings...), s.SSLBindings...)); err != nil {
			return err
		}
		return access.Save(ctx, a.Settings, p, s)
	})
	if err != nil {
		return AccessSettings{}, errorf(op, err)
	}
	return a.GetAccessSettings(ctx, p)
}

// Bounds of the access settings.
const (
	maxAccessConnections = 100000
	maxCommandSizeCeil   = 65536
)

func applyAccess(s *access.Settings, p access.Protocol, o AccessOptions) error {
	if o.Enabled != nil {
		s.Enabled = *o.Enabled
	}
	var err error
	if o.UnencryptedOrTLSBindings != nil {
		if s.UnencryptedOrTLSBindings, err = accessBindings(*o.UnencryptedOrTLSBindings, "UnencryptedOrTLSBindings"); err != nil {
			return err
		}
	}
	if o.SSLBindings != nil {
		if s.SSLBindings, err = accessBindings(*o.SSLBindings, "SSLBindings"); err != nil {
			return err
		}
	}
	if o.X509CertificateName != nil {
		if s.X509CertificateName, err = validFqdn(*o.X509CertificateName, "X509CertificateName"); err != nil {
			return err
		}
	}
	if o.LoginType != nil {
		switch strings.ToLower(strings.TrimSpace(*o.LoginType)) {
		case "securelogin":
			s.LoginType = access.SecureLogin
		case "plaintextlogin":
			s.LoginType = access.PlainTextLogin
		case "plaintextauthentication":
			return invalid("LoginType", *o.LoginType, "{-LoginType} PlainTextAuthentication is Exchange's integrated Windows authentication in plain text, which certrelay does not offer").fix("use SecureLogin (passwords only over TLS, the default) or PlainTextLogin (passwords in plain text allowed too)")
		default:
			return invalid("LoginType", *o.LoginType, "{-LoginType} %q: use SecureLogin (passwords only over TLS, the default) or PlainTextLogin", strings.TrimSpace(*o.LoginType))
		}
	}
	if o.Exchange2007CertificateSelection != nil {
		s.Exchange2007CertificateSelection = *o.Exchange2007CertificateSelection
	}
	for _, n := range []struct {
		v      *string
		param  string
		lo, hi int
		dst    *int
		what   string
	}{
		{o.MaxConnections, "MaxConnections", 1, maxAccessConnections, &s.MaxConnections, "connections at once (default 1000); a service cannot be unlimited"},
		{o.MaxConnectionFromSingleIP, "MaxConnectionFromSingleIP", 1, maxAccessConnections, &s.MaxConnectionFromSingleIP, "connections at once from one client address (default 20)"},
		{o.MaxCommandSize, "MaxCommandSize", 256, maxCommandSizeCeil, &s.MaxCommandSize, "bytes of a POP3 command line (default 512; RFC 2449 asks for at least 255)"},
		{o.MaxLoginFailuresPerSource, "MaxLoginFailuresPerSource", 1, 1000, &s.MaxLoginFailuresPerSource, "failed logins from one address before it is locked out (default 10)"},
	} {
		if n.v == nil {
			continue
		}
		v, err := parseCount(*n.v, n.param, n.lo, n.hi, n.what)
		if err != nil {
			return err
		}
		*n.dst = v
	}
	for _, d := range []struct {
		v     *string
		param string
		lo    time.Duration
		dst   *directory.Duration
	}{
		{o.PreAuthenticatedConnectionTimeout, "PreAuthenticatedConnectionTimeout", time.Second, &s.PreAuthenticatedConnectionTimeout},
		{o.AuthenticatedConnectionTimeout, "AuthenticatedConnectionTimeout", 10 * time.Minute, &s.AuthenticatedConnectionTimeout}, // RFC 1939 section 3
		{o.ConnectionTimeout, "ConnectionTimeout", time.Minute, &s.ConnectionTimeout},
		{o.LoginFailureLockout, "LoginFailureLockout", time.Second, &s.LoginFailureLockout},
	} {
		if d.v == nil {
			continue
		}
		v, err := directory.ParseDuration(*d.v)
		if err != nil {
			return invalidValue(d.param, *d.v, err)
		}
		if v < d.lo || v > 7*24*time.Hour {
			return invalid(d.param, *d.v, "{-%s} %s: give %s to 7 days (such as 30m or 00:30:00)", markup(d.param), strings.TrimSpace(*d.v), d.lo)
		}
		*d.dst = directory.Duration(v.Round(time.Second))
	}
	if o.MaxMessageSize != nil {
		if p != access.IMAP4 {
			return invalid("MaxMessageSize", *o.MaxMessageSize, "{-MaxMessageSize} limits IMAP4's APPEND; POP3 receives no messages")
		}
		sz, err := ParseSize(*o.MaxMessageSize)
		if err != nil {
			return asError(err).field("MaxMessageSize", *o.MaxMessageSize)
		}
		if sz < 1024 || sz > 2<<30 {
			return invalid("MaxMessageSize", *o.MaxMessageSize, "{-MaxMessageSize} %s: give 1KB to 2GB", *o.MaxMessageSize)
		}
		s.MaxMessageSize = sz
	}
	if s.MaxConnectionFromSingleIP > s.MaxConnections {
		return invalid("MaxConnectionFromSingleIP", fmt.Sprint(s.MaxConnectionFromSingleIP), "{-MaxConnectionFromSingleIP} %d is more than {-MaxConnections} %d",
			s.MaxConnectionFromSingleIP, s.MaxConnections).fix("lower the first or raise the second")
	}
	if s.PreAuthenticatedConnectionTimeout >= s.ConnectionTimeout || s.AuthenticatedConnectionTimeout > s.ConnectionTimeout {
		return invalid("ConnectionTimeout", s.ConnectionTimeout.String(), "{-ConnectionTimeout} %s is the whole session's budget: it must be longer than {-PreAuthenticatedConnectionTimeout} %s and at least {-AuthenticatedConnectionTimeout} %s",
			s.ConnectionTimeout, s.PreAuthenticatedConnectionTimeout, s.AuthenticatedConnectionTimeout).fix("raise {-ConnectionTimeout} or lower the others")
	}
	return nil
}

// accessBindings checks a list of IP:PORT ("" alone clears it).
func accessBindings(list []string, param string) ([]string, error) {
	if len(list) == 0 || len(list) == 1 && strings.TrimSpace(list[0]) == "" {
		return []string{}, nil
	}
	out, err := parseBindingList(list)
	if err != nil {
		return nil, asError(err).field(param, strings.Join(list, ","))
	}
	return out, nil
}

// checkAccessBindings refuses a binding that another service of this
// server (receive connectors, the other access services) listens on, and
// the same binding twice.
func (a *Admin) checkAccessBindings(ctx context.Context, p access.Protocol, mine []string) error {
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return err
	}
	taken := map[string]string{}
	conns, err := a.Dir.ReceiveConnectors(ctx, srv.Name)
	if err != nil {
		return err
	}
	for _, c := range conns {
		for _, b := range c.Bindings {
			taken[b] = fmt.Sprintf("receive connector %q", c.Name)
		}
	}
	for _, other := range []access.Protocol{access.POP3, access.IMAP4} {
		if other == p {
			continue
		}
		s, err := access.Load(ctx, a.Settings, other)
		if err != nil {
			return err
		}
		if s.Enabled {
			for _, b := range append(append([]string{}, s.UnencryptedOrTLSBindings...), s.SSLBindings...) {
				taken[b] = string(other)
			}
		}
	}
	if p != access.UM {
		if um, err := access.LoadUM(ctx, a.Settings); err == nil && um.Enabled {
			for _, b := range append(append([]string{}, um.SipTcpBindings...), um.SipTlsBindings...) {
				taken[b] = "UM"
			}
		}
	}
	seen := map[string]bool{}
	for _, b := range mine {
		for t, who := range taken {
			if bindingsOverlap(b, t) {
				return failed(Conflict, "binding %s is taken by %s", b, who).field("Bindings", b).fix("choose another address or port")
			}
		}
		if seen[b] {
			return invalid("Bindings", b, "binding %s is given twice", b)
		}
		seen[b] = true
	}
	return nil
}

// GetUMService returns UM's settings.
func (a *Admin) GetUMService(ctx context.Context) (UMService, error) {
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return UMService{}, errorf("get UM service", err)
	}
	s, err := access.LoadUM(ctx, a.Settings)
	if err != nil {
		return UMService{}, errorf("get UM service", err)
	}
	v := UMService{Name: "UM", Server: srv.Name, Enabled: s.Enabled, UMStartupMode: s.UMStartupMode, SipTcpBindings: orEmpty(s.SipTcpBindings),
		SipTlsBindings: orEmpty(s.SipTlsBindings), Fqdn: s.Fqdn, MaxConnections: s.MaxConnections, MaxConnectionFromSingleIP: s.MaxConnectionFromSingleIP,
		ConnectionTimeout: s.ConnectionTimeout, MaxMessageSize: s.MaxMessageSize}
	v.CertificateName = or(s.Fqdn, srv.Fqdn)
	v.Certificate, v.CertificateSelection, err = a.selectNow(ctx, selection.Request{FQDN: v.CertificateName, Service: store.UM})
	if err == nil && v.Certificate == "" && s.Enabled && s.UMStartupMode != "TCP" {
		v.CertificateSelection += "; a running server makes a self-signed certificate for UM (event 16068)"
	}
	return v, err
}

// SetUMService changes UM's settings.
func (a *Admin) SetUMService(ctx context.Context, o UMOptions) (UMService, error) {
	err := a.atomically(ctx, func(ctx context.Context) error {
		if _, err := a.requireSetup(ctx); err != nil {
			return err
		}
		s, err := access.LoadUM(ctx, a.Settings)
		if err != nil {
			return err
		}
		if o.Enabled != nil {
			s.Enabled = *o.Enabled
		}
		if o.UMStartupMode != nil {
			switch m := strings.ToUpper(strings.TrimSpace(*o.UMStartupMode)); m {
			case "TLS", "TCP", "DUAL":
				s.UMStartupMode = map[string]string{"TLS": "TLS", "TCP": "TCP", "DUAL": "Dual"}[m]
			default:
				return invalid("UMStartupMode", *o.UMStartupMode, "{-UMStartupMode} %q: use TLS (secure mode, the default), TCP or Dual", *o.UMStartupMode)
			}
		}
		if o.SipTcpBindings != nil {
			if s.SipTcpBindings, err = accessBindings(*o.SipTcpBindings, "SipTcpBindings"); err != nil {
				return err
			}
		}
		if o.SipTlsBindings != nil {
			if s.SipTlsBindings, err = accessBindings(*o.SipTlsBindings, "SipTlsBindings"); err != nil {
				return err
			}
		}
		if o.Fqdn != nil {
			if s.Fqdn, err = validFqdn(*o.Fqdn, "Fqdn"); err != nil {
				return err
			}
		}
		for _, n := range []struct {
			v     *string
			param string
			dst   *int
			what  string
		}{
			{o.MaxConnections, "MaxConnections", &s.MaxConnections, "connections at once (default 200)"},
			{o.MaxConnectionFromSingleIP, "MaxConnectionFromSingleIP", &s.MaxConnectionFromSingleIP, "connections at once from one address (default 20)"},
		} {
			if n.v != nil {
				if *n.dst, err = parseCount(*n.v, n.param, 1, maxAccessConnections, n.what); err != nil {
					return err
				}
			}
		}
		if o.ConnectionTimeout != nil {
			v, err := directory.ParseDuration(*o.ConnectionTimeout)
			if err != nil {
				return invalidValue("ConnectionTimeout", *o.ConnectionTimeout, err)
			}
			if v < time.Minute || v > 7*24*time.Hour {
				return invalid("ConnectionTimeout", *o.ConnectionTimeout, "{-ConnectionTimeout}: give 1 minute to 7 days")
			}
			s.ConnectionTimeout = directory.Duration(v.Round(time.Second))
		}
		if o.MaxMessageSize != nil {
			sz, err := ParseSize(*o.MaxMessageSize)
			if err != nil {
				return asError(err).field("MaxMessageSize", *o.MaxMessageSize)
			}
			if sz < 1024 || sz > 16<<20 {
				return invalid("MaxMessageSize", *o.MaxMessageSize, "{-MaxMessageSize}: give 1KB to 16MB for a SIP request's body")
			}
			s.MaxMessageSize = sz
		}
		if s.MaxConnectionFromSingleIP > s.MaxConnections {
			return invalid("MaxConnectionFromSingleIP", fmt.Sprint(s.MaxConnectionFromSingleIP), "{-MaxConnectionFromSingleIP} %d is more than {-MaxConnections} %d", s.MaxConnectionFromSingleIP, s.MaxConnections)
		}
		if err := a.checkAccessBindings(ctx, access.UM, append(append([]string{}, s.SipTcpBindings...), s.SipTlsBindings...)); err != nil {
			return err
		}
		return access.SaveUM(ctx, a.Settings, s)
	})
	if err != nil {
		return UMService{}, errorf("set UM service", err)
	}
	return a.GetUMService(ctx)
}
