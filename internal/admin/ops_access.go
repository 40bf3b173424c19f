package admin

import "certrelay/internal/access"

// The access services' settings (issue 14): Get/Set-POPSettings,
// Get/Set-IMAPSettings (Exchange 2007's cmdlets) and Get/Set-UMService.

func accessParams(p access.Protocol) []Param {
	svc := "POP"
	if p == access.IMAP4 {
		svc = "IMAP"
	}
	ps := []Param{
		{Name: "Enabled", CLI: "enabled", Type: TypeBool, Help: "run the service (default False, as Exchange installs it)"},
		{Name: "UnencryptedOrTLSBindings", CLI: "unencrypted-or-tls-bindings", Type: TypeList, Help: `IP:PORT to listen on in plain text, with STLS/STARTTLS (repeat; "" for none)`},
		{Name: "SSLBindings", CLI: "ssl-bindings", Type: TypeList, Help: `IP:PORT to listen on in TLS from the first byte (repeat; "" for none)`},
		{Name: "X509CertificateName", CLI: "x509-certificate-name", Type: TypeString, Help: `the name its certificate is selected for (S8; "" for the server's FQDN); {Enable-ExchangeCertificate -Services ` + svc + `} sets it`},
		{Name: "LoginType", CLI: "login-type", Type: enumType("login type", access.SecureLogin, access.PlainTextLogin, "PlainTextAuthentication"), Help: "SecureLogin: passwords only over TLS (the default); PlainTextLogin: in plain text too"},
		{Name: "Exchange2007CertificateSelection", CLI: "exchange2007-certificate-selection", Type: TypeBool, Help: "select certificates as Exchange 2007 RTM did (S9): the newest wins whatever its issuer, wildcards do not match"},
		{Name: "MaxConnections", CLI: "max-connections", Type: TypeString, Help: "connections at once (default 1000)"},
		{Name: "MaxConnectionFromSingleIP", CLI: "max-connection-from-single-ip", Type: TypeString, Help: "connections at once from one address (default 20)"},
		{Name: "PreAuthenticatedConnectionTimeout", CLI: "pre-authenticated-connection-timeout", Type: TypeString, Help: "wait for a command before login, such as 1m (default; POP3 — IMAP4's is the library's 30 s)"},
		{Name: "AuthenticatedConnectionTimeout", CLI: "authenticated-connection-timeout", Type: TypeString, Help: "wait for a command after login, at least 10m (default 30m; POP3 — IMAP4's is the library's 35 min)"},
		{Name: "ConnectionTimeout", CLI: "connection-timeout", Type: TypeString, Help: "a whole session (default 1h for POP3, 1 day for IMAP4)"},
		{Name: "MaxCommandSize", CLI: "max-command-size", Type: TypeString, Help: "bytes of a POP3 command line (default 512; IMAP4's is the library's 50 KiB)"},
		{Name: "MaxLoginFailuresPerSource", CLI: "max-login-failures-per-source", Type: TypeString, Help: "failed logins from one address before it is locked out (default 10, counted over POP3 and IMAP4)"},
		{Name: "LoginFailureLockout", CLI: "login-failure-lockout", Type: TypeString, Help: "how long an address is locked out (default 10m)"},
	}
	if p == access.IMAP4 {
		ps = append(ps, Param{Name: "MaxMessageSize", CLI: "max-message-size", Type: TypeString, Help: "largest APPEND, such as 35MB (the default)"})
	}
	return ps
}

func accessOptions(in *In) AccessOptions {
	return AccessOptions{
		Enabled: in.BoolPtr("Enabled"), UnencryptedOrTLSBindings: in.StringsPtr("UnencryptedOrTLSBindings"), SSLBindings: in.StringsPtr("SSLBindings"),
		X509CertificateName: in.StringPtr("X509CertificateName"), LoginType: in.StringPtr("LoginType"),
		Exchange2007CertificateSelection: in.BoolPtr("Exchange2007CertificateSelection"),
		MaxConnections:                   in.StringPtr("MaxConnections"), MaxConnectionFromSingleIP: in.StringPtr("MaxConnectionFromSingleIP"),
		PreAuthenticatedConnectionTimeout: in.StringPtr("PreAuthenticatedConnectionTimeout"), AuthenticatedConnectionTimeout: in.StringPtr("AuthenticatedConnectionTimeout"),
		ConnectionTimeout: in.StringPtr("ConnectionTimeout"), MaxCommandSize: in.StringPtr("MaxCommandSize"), MaxMessageSize: in.StringPtr("MaxMessageSize"),
		MaxLoginFailuresPerSource: in.StringPtr("MaxLoginFailuresPerSource"), LoginFailureLockout: in.StringPtr("LoginFailureLockout"),
	}
}

func accessOperations() []*Operation {
	var ops []*Operation
	for _, x := range []struct {
		p         access.Protocol
		noun, cli string
	}{{access.POP3, "POPSettings", "pop"}, {access.IMAP4, "IMAPSettings", "imap"}} {
		p := x.p
		ops = append(ops,
			&Operation{
				Name: "Get-" + x.noun, Cmdlet: "Get-" + x.noun, CLI: "access " + x.cli + " show",
				Summary: "Show the " + string(p) + " settings, and the certificate its sessions get now (S8)",
				Role:    ViewOnly, Returns: AccessSettings{},
				Run: func(in *In) (*Result, error) {
					v, err := in.a.GetAccessSettings(in.ctx, p)
					return dataOr(v, err)
				},
			},
			&Operation{
				Name: "Set-" + x.noun, Cmdlet: "Set-" + x.noun, CLI: "access " + x.cli + " set",
				Summary: "Change the " + string(p) + " settings (a running server applies them at once)",
				Description: `Change the ` + string(p) + ` settings: whether it runs, its bindings (plain text with
STLS/STARTTLS, and TLS from the first byte), the name its certificate is
selected for (X509CertificateName, S8), whether passwords may travel in
plain text (LoginType), the Exchange 2007 RTM selection switch (S9), and
its limits. A running server opens and closes listeners and uses the new
values from the next connection, without a restart.`,
				Role: ServerAdmin, Returns: AccessSettings{},
				Params: accessParams(p),
				Run: func(in *In) (*Result, error) {
					o := accessOptions(in)
					if o == (AccessOptions{}) {
						return nil, usage("", "nothing to set: give a setting to change ({Get-%s} lists them)", x.noun)
					}
					v, err := in.a.SetAccessSettings(in.ctx, p, o)
					return dataOr(v, err)
				},
			})
	}
	ops = append(ops,
		&Operation{
			Name: "Get-UMService", Cmdlet: "Get-UMService", CLI: "access um show",
			Summary: "Show the Unified Messaging SIP listener's settings, and the certificate S10 picks now",
			Role:    ViewOnly, Returns: UMService{},
			Run: func(in *In) (*Result, error) {
				v, err := in.a.GetUMService(in.ctx)
				return dataOr(v, err)
			},
		},
		&Operation{
			Name: "Set-UMService", Cmdlet: "Set-UMService", CLI: "access um set",
			Summary: "Change the Unified Messaging SIP listener's settings",
			Description: `Change the UM listener: whether it runs, its startup mode (TLS: secure mode, the
default; TCP; Dual), its SIP bindings, the name its certificate must hold
(the server's FQDN by default) and its limits. In secure mode it ranks
certificates as S10 says and, when none is valid, makes a self-signed one.`,
			Role: ServerAdmin, Returns: UMService{},
			Params: []Param{
				{Name: "Enabled", CLI: "enabled", Type: TypeBool, Help: "run the listener (default False)"},
				{Name: "UMStartupMode", CLI: "um-startup-mode", Type: enumType("startup mode", "TLS", "TCP", "Dual"), Help: "TLS (secure mode, the default), TCP or Dual"},
				{Name: "SipTcpBindings", CLI: "sip-tcp-bindings", Type: TypeList, Help: `IP:PORT for SIP over TCP (TCP and Dual modes; default 127.0.0.1:5060)`},
				{Name: "SipTlsBindings", CLI: "sip-tls-bindings", Type: TypeList, Help: `IP:PORT for SIP over TLS (TLS and Dual modes; default 127.0.0.1:5061)`},
				{Name: "Fqdn", CLI: "fqdn", Type: TypeString, Help: `the name UM's certificate must hold ("" for the server's FQDN)`},
				{Name: "MaxConnections", CLI: "max-connections", Type: TypeString, Help: "connections at once (default 200)"},
				{Name: "MaxConnectionFromSingleIP", CLI: "max-connection-from-single-ip", Type: TypeString, Help: "connections at once from one address (default 20)"},
				{Name: "ConnectionTimeout", CLI: "connection-timeout", Type: TypeString, Help: "a whole connection (default 1h)"},
				{Name: "MaxMessageSize", CLI: "max-message-size", Type: TypeString, Help: "largest SIP request body (default 64KB)"},
			},
			Run: func(in *In) (*Result, error) {
				o := UMOptions{Enabled: in.BoolPtr("Enabled"), UMStartupMode: in.StringPtr("UMStartupMode"), SipTcpBindings: in.StringsPtr("SipTcpBindings"),
					SipTlsBindings: in.StringsPtr("SipTlsBindings"), Fqdn: in.StringPtr("Fqdn"), MaxConnections: in.StringPtr("MaxConnections"),
					MaxConnectionFromSingleIP: in.StringPtr("MaxConnectionFromSingleIP"), ConnectionTimeout: in.StringPtr("ConnectionTimeout"), MaxMessageSize: in.StringPtr("MaxMessageSize")}
				if o == (UMOptions{}) {
					return nil, usage("", "nothing to set: give a setting to change ({Get-UMService} lists them)")
				}
				v, err := in.a.SetUMService(in.ctx, o)
				return dataOr(v, err)
			},
		})
	return ops
}
