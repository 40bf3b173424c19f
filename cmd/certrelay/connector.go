package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"
	"certrelay/internal/directory"
)

func (a *app) connectorCommand() *cobra.Command {
	c := &cobra.Command{Use: "connector", Short: "Manage receive and send connectors"}
	recv := &cobra.Command{Use: "receive", Short: "Receive connectors: SMTP listeners (Get-ReceiveConnector)"}
	recv.AddCommand(a.receiveAddSet(true), a.receiveAddSet(false), a.receiveList(), a.receiveShow(), a.receiveRemove())
	c.AddCommand(recv, a.sendCommand())
	return c
}

// receiveFlags binds the flags of add and set.
type receiveFlags struct {
	bindings, groups, auth []string
	fqdn, maxSize, tlsName string
	requireTLS, oneLabel   bool
	enabled                bool
	limits                 limitFlags
}

func (f *receiveFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.bindings, "bindings", nil, "IP:PORT to listen on (repeat, or separate with commas)")
	fl.StringVar(&f.fqdn, "fqdn", "", "name in the greeting and for STARTTLS certificate selection (default: the server's FQDN)")
	fl.StringArrayVar(&f.groups, "permission-groups", nil, "AnonymousUsers, ExchangeUsers, ExchangeServers, Partners")
	fl.StringArrayVar(&f.auth, "auth-mechanism", nil, "Tls, BasicAuth, BasicAuthRequireTLS, ExchangeServer (None for no TLS)")
	fl.BoolVar(&f.requireTLS, "require-tls", false, "refuse mail until the client has run STARTTLS")
	fl.StringVar(&f.maxSize, "max-message-size", "", "largest message accepted, such as 35MB")
	fl.StringVar(&f.tlsName, "tls-certificate-name", "", "use this certificate: '<I>issuer<S>subject' (S4a); \"\" to select by FQDN")
	fl.BoolVar(&f.oneLabel, "wildcard-one-label", false, "let a wildcard certificate match one label only")
	fl.BoolVar(&f.enabled, "enabled", true, "accept connections")
	f.limits.bind(cmd)
}

func (f *receiveFlags) options(cmd *cobra.Command) admin.ReceiveConnectorOptions {
	var o admin.ReceiveConnectorOptions
	fl := cmd.Flags()
	if fl.Changed("bindings") {
		b := splitList(f.bindings)
		o.Bindings = &b
	}
	if fl.Changed("fqdn") {
		o.Fqdn = &f.fqdn
	}
	if fl.Changed("permission-groups") {
		g := splitList(f.groups)
		o.PermissionGroups = &g
	}
	if fl.Changed("auth-mechanism") {
		m := splitList(f.auth)
		o.AuthMechanism = &m
	}
	if fl.Changed("require-tls") {
		o.RequireTLS = &f.requireTLS
	}
	if fl.Changed("max-message-size") {
		o.MaxMessageSize = &f.maxSize
	}
	if fl.Changed("tls-certificate-name") {
		o.TlsCertificateName = &f.tlsName
	}
	if fl.Changed("wildcard-one-label") {
		o.TlsWildcardOneLabel = &f.oneLabel
	}
	if fl.Changed("enabled") {
		o.Enabled = &f.enabled
	}
	o.ReceiveLimitOptions = f.limits.options(cmd)
	return o
}

// limitFlags are the limits of SPEC P1, named after Exchange's settings.
type limitFlags struct {
	maxConn, maxPerSource, connTimeout, idleTimeout, msgTimeout, maxRcpts string
}

func (f *limitFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.maxConn, "max-inbound-connection", "", "connections at once; beyond, 421 4.7.0 (MaxInboundConnection, default 5000)")
	fl.StringVar(&f.maxPerSource, "max-inbound-connection-per-source", "", "connections at once from one client address (MaxInboundConnectionPerSource, default 20)")
	fl.StringVar(&f.connTimeout, "connection-timeout", "", "longest session, however active, such as 10m or 00:10:00 (ConnectionTimeout, default 10m)")
	fl.StringVar(&f.idleTimeout, "connection-inactivity-timeout", "", "longest wait for a command or message data (ConnectionInactivityTimeout, default 5m)")
	fl.StringVar(&f.msgTimeout, "message-timeout", "", "longest transfer of one message, from DATA to its final dot (MessageTimeout, default 10m)")
	fl.StringVar(&f.maxRcpts, "max-recipients-per-message", "", "distinct recipients per message, at least 100; beyond, 452 4.5.3 (MaxRecipientsPerMessage, default 200)")
}

func (f *limitFlags) options(cmd *cobra.Command) admin.ReceiveLimitOptions {
	var o admin.ReceiveLimitOptions
	for _, x := range []struct {
		flag string
		v    *string
		dst  **string
	}{
		{"max-inbound-connection", &f.maxConn, &o.MaxInboundConnection},
		{"max-inbound-connection-per-source", &f.maxPerSource, &o.MaxInboundConnectionPerSource},
		{"connection-timeout", &f.connTimeout, &o.ConnectionTimeout},
		{"connection-inactivity-timeout", &f.idleTimeout, &o.ConnectionInactivityTimeout},
		{"message-timeout", &f.msgTimeout, &o.MessageTimeout},
		{"max-recipients-per-message", &f.maxRcpts, &o.MaxRecipientsPerMessage},
	} {
		if cmd.Flags().Changed(x.flag) {
			*x.dst = x.v
		}
	}
	return o
}

func (a *app) receiveAddSet(add bool) *cobra.Command {
	var f receiveFlags
	var asJSON bool
	use, short := "set NAME", "Change a receive connector (a running server applies it at once)"
	if add {
		use, short = "add NAME --bindings IP:PORT", "Create a receive connector"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1, "a connector name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				var c directory.ReceiveConnector
				var err error
				if add {
					c, err = ad.AddReceiveConnector(cmd.Context(), args[0], f.options(cmd))
				} else {
					c, err = ad.SetReceiveConnector(cmd.Context(), args[0], f.options(cmd))
				}
				if err != nil {
					return err
				}
				return a.emit(c, asJSON)
			})
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) receiveList() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List this server's receive connectors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				list, err := ad.ListReceiveConnectors(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					if list == nil {
						list = []directory.ReceiveConnector{}
					}
					return printJSON(a.stdout, list)
				}
				var rows [][]string
				for _, c := range list {
					rows = append(rows, []string{c.Name, strings.Join(c.Bindings, ","), c.Fqdn, strings.Join(c.AuthMechanism, ","), fmt.Sprint(c.Enabled)})
				}
				table(a.stdout, []string{"Name", "Bindings", "Fqdn", "AuthMechanism", "Enabled"}, rows)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) receiveShow() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a receive connector",
		Args:  exactArgs(1, "a connector name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				c, err := ad.GetReceiveConnector(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.emit(c, asJSON)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) receiveRemove() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a receive connector",
		Args:  exactArgs(1, "a connector name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				if err := ad.RemoveReceiveConnector(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "Removed receive connector %s\n", args[0])
				return nil
			})
		},
	}
}
