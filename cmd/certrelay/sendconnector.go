package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"
	"certrelay/internal/directory"
	"certrelay/internal/tracking"
)

type sendFlags struct {
	spaces, hosts, sources []string
	fqdn, tlsName, maxSize string
	requireTLS, enabled    bool
	port                   int
}

func (f *sendFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.spaces, "address-space", nil, "'smtp:DOMAIN;COST' it routes (repeat; * for every domain, *.DOMAIN for subdomains)")
	fl.StringArrayVar(&f.hosts, "smart-host", nil, "HOST[:PORT] to send through (repeat); none: the domain's MX hosts")
	fl.StringVar(&f.fqdn, "fqdn", "", "EHLO name and name for client certificate selection (default: the server's FQDN)")
	fl.BoolVar(&f.requireTLS, "require-tls", false, "never send without TLS: defer when the peer offers none")
	fl.StringVar(&f.tlsName, "tls-certificate-name", "", "present this certificate: '<I>issuer<S>subject' (S4a)")
	fl.StringArrayVar(&f.sources, "source-server", nil, "servers that may send through it (default: this one)")
	fl.IntVar(&f.port, "port", 25, "port of the smart hosts or MX hosts")
	fl.StringVar(&f.maxSize, "max-message-size", "", "largest message it sends, such as 35MB")
	fl.BoolVar(&f.enabled, "enabled", true, "route through it")
}

func (f *sendFlags) options(cmd *cobra.Command) admin.SendConnectorOptions {
	var o admin.SendConnectorOptions
	fl := cmd.Flags()
	if fl.Changed("address-space") {
		v := splitList(f.spaces)
		o.AddressSpaces = &v
	}
	if fl.Changed("smart-host") {
		v := splitList(f.hosts)
		o.SmartHosts = &v
	}
	if fl.Changed("source-server") {
		v := splitList(f.sources)
		o.SourceServers = &v
	}
	if fl.Changed("fqdn") {
		o.Fqdn = &f.fqdn
	}
	if fl.Changed("require-tls") {
		o.RequireTLS = &f.requireTLS
	}
	if fl.Changed("tls-certificate-name") {
		o.TlsCertificateName = &f.tlsName
	}
	if fl.Changed("port") {
		o.Port = &f.port
	}
	if fl.Changed("max-message-size") {
		o.MaxMessageSize = &f.maxSize
	}
	if fl.Changed("enabled") {
		o.Enabled = &f.enabled
	}
	return o
}

func (a *app) sendCommand() *cobra.Command {
	c := &cobra.Command{Use: "send", Short: "Send connectors: outbound routes (Get-SendConnector)"}
	for _, add := range []bool{true, false} {
		var f sendFlags
		var asJSON bool
		use, short := "set NAME", "Change a send connector"
		if add {
			use, short = "add NAME --address-space 'smtp:DOMAIN;COST'", "Create a send connector"
		}
		cmd := &cobra.Command{
			Use: use, Short: short, Args: exactArgs(1, "a connector name"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.withAdmin(cmd, func(ad *admin.Admin) error {
					var sc directory.SendConnector
					var err error
					if add {
						sc, err = ad.AddSendConnector(cmd.Context(), args[0], f.options(cmd))
					} else {
						sc, err = ad.SetSendConnector(cmd.Context(), args[0], f.options(cmd))
					}
					if err != nil {
						return err
					}
					return a.emit(sc, asJSON)
				})
			},
		}
		f.bind(cmd)
		cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		c.AddCommand(cmd)
	}
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List send connectors", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				list, err := ad.ListSendConnectors(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					if list == nil {
						list = []directory.SendConnector{}
					}
					return printJSON(a.stdout, list)
				}
				var rows [][]string
				for _, sc := range list {
					var spaces []string
					for _, s := range sc.AddressSpaces {
						spaces = append(spaces, fmt.Sprintf("%s;%d", s.Domain, s.Cost))
					}
					hosts := strings.Join(sc.SmartHosts, ",")
					if hosts == "" {
						hosts = "(MX)"
					}
					tlsMode := "opportunistic"
					if sc.RequireTLS {
						tlsMode = "required"
					}
					rows = append(rows, []string{sc.Name, strings.Join(spaces, ","), hosts, sc.Fqdn, tlsMode, fmt.Sprint(sc.Enabled)})
				}
				table(a.stdout, []string{"Name", "AddressSpaces", "SmartHosts", "Fqdn", "TLS", "Enabled"}, rows)
				return nil
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var showJSON bool
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a send connector", Args: exactArgs(1, "a connector name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				sc, err := ad.GetSendConnector(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.emit(sc, showJSON)
			})
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")
	remove := &cobra.Command{
		Use: "remove NAME", Short: "Remove a send connector", Args: exactArgs(1, "a connector name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				if err := ad.RemoveSendConnector(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "Removed send connector %s\n", args[0])
				return nil
			})
		},
	}
	c.AddCommand(list, show, remove)
	return c
}

func (a *app) trackCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "track [MESSAGE-ID]",
		Short: "Show the message trace: each delivery attempt to a remote host, with the TLS negotiated (DS2)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			recs, err := tracking.Read(a.dataDir, id)
			if err != nil {
				return err
			}
			if asJSON {
				if recs == nil {
					return printJSON(a.stdout, []any{})
				}
				return printJSON(a.stdout, recs)
			}
			for _, r := range recs {
				tlsInfo := "no TLS"
				if r.TLS != "" {
					tlsInfo = r.TLS + ", server certificate " + r.PeerCert + " (" + r.PeerThumb + ")"
					if r.ClientCert != "" {
						tlsInfo += ", client certificate " + r.ClientCert
					}
				}
				fmt.Fprintf(a.stdout, "%s %s via %s to %s [%s]: %s\n    %s\n", formatTime(r.Time), r.MessageID, r.Connector, r.Host, strings.Join(r.Recipients, ", "), r.Result, tlsInfo)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
