package admin

import (
	"certrelay/internal/directory"
)

// receiveParams are the parameters of New- and Set-ReceiveConnector;
// adding, the defaults apply to what is not given.
func receiveParams(adding bool) []Param {
	def := func(v string) string {
		if adding {
			return v
		}
		return ""
	}
	return []Param{
		{Name: "Name", CLI: "NAME", Type: TypeString, Position: 1, Required: true, Help: "the connector's name"},
		{Name: "Bindings", CLI: "bindings", Type: TypeList, Help: "IP:PORT to listen on (repeat, or separate with commas)"},
		{Name: "Fqdn", CLI: "fqdn", Type: TypeString, Help: "name in the greeting and for STARTTLS certificate selection (default: the server's FQDN)"},
		{Name: "PermissionGroups", CLI: "permission-groups", Type: TypeList, Help: "AnonymousUsers, ExchangeUsers, ExchangeServers, Partners"},
		{Name: "AuthMechanism", CLI: "auth-mechanism", Type: TypeList, Help: "Tls, BasicAuth, BasicAuthRequireTLS, ExchangeServer (None for no TLS)"},
		{Name: "RequireTLS", CLI: "require-tls", Type: TypeBool, Help: "refuse mail until the client has run STARTTLS"},
		{Name: "MaxMessageSize", CLI: "max-message-size", Type: TypeString, Help: "largest message accepted, such as 35MB"},
		{Name: "TlsCertificateName", CLI: "tls-certificate-name", Type: TypeString, Help: `use this certificate: '<I>issuer<S>subject' (S4a); "" to select by FQDN`},
		{Name: "TlsWildcardOneLabel", CLI: "wildcard-one-label", Type: TypeBool, Help: "let a wildcard certificate match one label only"},
		{Name: "DomainSecureEnabled", CLI: "domain-secure", Type: TypeBool, Help: "a partners' connector: accept mail only from a client whose certificate holds the sender's domain, chains to a trusted root and passes revocation (domain security)"},
		{Name: "Enabled", CLI: "enabled", Type: TypeBool, Default: def("true"), Help: "accept connections"},
		{Name: "MaxInboundConnection", CLI: "max-inbound-connection", Type: TypeString, Help: "connections at once; beyond, 421 4.7.0 (MaxInboundConnection, default 5000)"},
		{Name: "MaxInboundConnectionPerSource", CLI: "max-inbound-connection-per-source", Type: TypeString, Help: "connections at once from one client address (MaxInboundConnectionPerSource, default 20)"},
		{Name: "ConnectionTimeout", CLI: "connection-timeout", Type: TypeString, Help: "longest session, however active, such as 10m or 00:10:00 (ConnectionTimeout, default 10m)"},
		{Name: "ConnectionInactivityTimeout", CLI: "connection-inactivity-timeout", Type: TypeString, Help: "longest wait for a command or message data (ConnectionInactivityTimeout, default 5m)"},
		{Name: "MessageTimeout", CLI: "message-timeout", Type: TypeString, Help: "longest transfer of one message, from DATA to its final dot (MessageTimeout, default 10m)"},
		{Name: "MaxRecipientsPerMessage", CLI: "max-recipients-per-message", Type: TypeString, Help: "distinct recipients per message, at least 100; beyond, 452 4.5.3 (MaxRecipientsPerMessage, default 200)"},
	}
}

// receiveOptions reads the parameters of New- and Set-ReceiveConnector.
func receiveOptions(in *In) ReceiveConnectorOptions {
	return ReceiveConnectorOptions{
		Bindings: in.StringsPtr("Bindings"), Fqdn: in.StringPtr("Fqdn"),
		PermissionGroups: in.StringsPtr("PermissionGroups"), AuthMechanism: in.StringsPtr("AuthMechanism"),
		RequireTLS: in.BoolPtr("RequireTLS"), MaxMessageSize: in.StringPtr("MaxMessageSize"),
		TlsCertificateName: in.StringPtr("TlsCertificateName"), TlsWildcardOneLabel: in.BoolPtr("TlsWildcardOneLabel"),
		DomainSecureEnabled: in.BoolPtr("DomainSecureEnabled"), Enabled: in.BoolPtr("Enabled"),
		ReceiveLimitOptions: ReceiveLimitOptions{
			MaxInboundConnection: in.StringPtr("MaxInboundConnection"), MaxInboundConnectionPerSource: in.StringPtr("MaxInboundConnectionPerSource"),
			ConnectionTimeout: in.StringPtr("ConnectionTimeout"), ConnectionInactivityTimeout: in.StringPtr("ConnectionInactivityTimeout"),
			MessageTimeout: in.StringPtr("MessageTimeout"), MaxRecipientsPerMessage: in.StringPtr("MaxRecipientsPerMessage"),
		},
	}
}

// sendParams are the parameters of New- and Set-SendConnector.
func sendParams(adding bool) []Param {
	def := func(v string) string {
		if adding {
			return v
		}
		return ""
	}
	return []Param{
		{Name: "Name", CLI: "NAME", Type: TypeString, Position: 1, Required: true, Help: "the connector's name"},
		{Name: "AddressSpaces", CLI: "address-space", Type: TypeList, Help: "'smtp:DOMAIN;COST' it routes (repeat; * for every domain, *.DOMAIN for subdomains)"},
		{Name: "SmartHosts", CLI: "smart-host", Type: TypeList, Help: "HOST[:PORT] to send through (repeat); none: the domain's MX hosts"},
		{Name: "Fqdn", CLI: "fqdn", Type: TypeString, Help: "EHLO name and name for client certificate selection (default: the server's FQDN)"},
		{Name: "RequireTLS", CLI: "require-tls", Type: TypeBool, Help: "never send without TLS: defer when the peer offers none"},
		{Name: "TlsCertificateName", CLI: "tls-certificate-name", Type: TypeString, Help: "present this certificate: '<I>issuer<S>subject' (S4a)"},
		{Name: "DomainSecureEnabled", CLI: "domain-secure", Type: TypeBool, Help: "domain security for every domain it routes: send only over TLS to a server whose certificate holds the domain, chains to a trusted root and passes revocation"},
		{Name: "SourceTransportServers", CLI: "source-server", Type: TypeList, Help: "servers that may send through it (default: this one)"},
		{Name: "Port", CLI: "port", Type: TypeInt, Default: def("25"), Help: "port of the smart hosts or MX hosts"},
		{Name: "MaxMessageSize", CLI: "max-message-size", Type: TypeString, Help: "largest message it sends, such as 35MB"},
		{Name: "Enabled", CLI: "enabled", Type: TypeBool, Default: def("true"), Help: "route through it"},
	}
}

// sendOptions reads the parameters of New- and Set-SendConnector.
func sendOptions(in *In) SendConnectorOptions {
	return SendConnectorOptions{
		AddressSpaces: in.StringsPtr("AddressSpaces"), SmartHosts: in.StringsPtr("SmartHosts"), SourceServers: in.StringsPtr("SourceTransportServers"),
		Fqdn: in.StringPtr("Fqdn"), RequireTLS: in.BoolPtr("RequireTLS"), TlsCertificateName: in.StringPtr("TlsCertificateName"),
		DomainSecureEnabled: in.BoolPtr("DomainSecureEnabled"),
		Port:                in.IntPtr("Port"), MaxMessageSize: in.StringPtr("MaxMessageSize"), Enabled: in.BoolPtr("Enabled"),
	}
}

func identityParam(help string) Param {
	return Param{Name: "Identity", CLI: "NAME", Type: TypeString, Position: 1, Required: true, Help: help, Pipe: "Name"}
}

func connectorOperations() []*Operation {
	return []*Operation{
		{
			Name: "New-ReceiveConnector", Cmdlet: "New-ReceiveConnector", CLI: "connector receive add",
			Summary: "Create a receive connector",
			Role:    ServerAdmin, Returns: directory.ReceiveConnector{},
			Params: receiveParams(true),
			Run: func(in *In) (*Result, error) {
				c, err := in.a.AddReceiveConnector(in.ctx, in.String("Name"), receiveOptions(in))
				return dataOr(c, err)
			},
		},
		{
			Name: "Set-ReceiveConnector", Cmdlet: "Set-ReceiveConnector", CLI: "connector receive set",
			Summary: "Change a receive connector (a running server applies it at once)",
			Role:    ServerAdmin, Returns: directory.ReceiveConnector{},
			Params: renameFirst(receiveParams(false), identityParam("the connector's name")),
			Run: func(in *In) (*Result, error) {
				c, err := in.a.SetReceiveConnector(in.ctx, in.String("Identity"), receiveOptions(in))
				return dataOr(c, err)
			},
		},
		{
			Name: "Get-ReceiveConnector", Cmdlet: "Get-ReceiveConnector", CLI: "connector receive list",
			Summary: "List this server's receive connectors",
			Role:    ViewOnly, Returns: []directory.ReceiveConnector{},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.ListReceiveConnectors(in.ctx)
				return dataOr(orEmpty(list), err)
			},
		},
		{
			Name: "Get-ReceiveConnector/Identity", Cmdlet: "Get-ReceiveConnector", Set: "Identity", CLI: "connector receive show",
			Summary: "Show a receive connector",
			Role:    ViewOnly, Returns: directory.ReceiveConnector{},
			Params: []Param{identityParam("the connector's name")},
			Run: func(in *In) (*Result, error) {
				c, err := in.a.GetReceiveConnector(in.ctx, in.String("Identity"))
				return dataOr(c, err)
			},
		},
		{
			Name: "Remove-ReceiveConnector", Cmdlet: "Remove-ReceiveConnector", CLI: "connector receive remove",
			Summary: "Remove a receive connector",
			Role:    ServerAdmin,
			Params:  []Param{identityParam("the connector's name")},
			Run: func(in *In) (*Result, error) {
				return nil, in.a.RemoveReceiveConnector(in.ctx, in.String("Identity"))
			},
		},
		{
			Name: "New-SendConnector", Cmdlet: "New-SendConnector", CLI: "connector send add",
			Summary: "Create a send connector",
			Role:    OrgAdmin, Returns: directory.SendConnector{},
			Params: sendParams(true),
			Run: func(in *In) (*Result, error) {
				c, err := in.a.AddSendConnector(in.ctx, in.String("Name"), sendOptions(in))
				return dataOr(c, err)
			},
		},
		{
			Name: "Set-SendConnector", Cmdlet: "Set-SendConnector", CLI: "connector send set",
			Summary: "Change a send connector",
			Role:    OrgAdmin, Returns: directory.SendConnector{},
			Params: renameFirst(sendParams(false), identityParam("the connector's name")),
			Run: func(in *In) (*Result, error) {
				c, err := in.a.SetSendConnector(in.ctx, in.String("Identity"), sendOptions(in))
				return dataOr(c, err)
			},
		},
		{
			Name: "Get-SendConnector", Cmdlet: "Get-SendConnector", CLI: "connector send list",
			Summary: "List send connectors",
			Role:    ViewOnly, Returns: []directory.SendConnector{},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.ListSendConnectors(in.ctx)
				return dataOr(orEmpty(list), err)
			},
		},
		{
			Name: "Get-SendConnector/Identity", Cmdlet: "Get-SendConnector", Set: "Identity", CLI: "connector send show",
			Summary: "Show a send connector",
			Role:    ViewOnly, Returns: directory.SendConnector{},
			Params: []Param{identityParam("the connector's name")},
			Run: func(in *In) (*Result, error) {
				c, err := in.a.GetSendConnector(in.ctx, in.String("Identity"))
				return dataOr(c, err)
			},
		},
		{
			Name: "Remove-SendConnector", Cmdlet: "Remove-SendConnector", CLI: "connector send remove",
			Summary: "Remove a send connector",
			Role:    OrgAdmin,
			Params:  []Param{identityParam("the connector's name")},
			Run: func(in *In) (*Result, error) {
				return nil, in.a.RemoveSendConnector(in.ctx, in.String("Identity"))
			},
		},
	}
}

// renameFirst replaces the first parameter of params (a new object's
// Name) with p (the Identity of the object to change).
func renameFirst(params []Param, p Param) []Param {
	params[0] = p
	return params
}

// dataOr is the result of an operation that returns v, or its error.
func dataOr(v any, err error) (*Result, error) {
	if err != nil {
		return nil, err
	}
	return &Result{Data: v}, nil
}
