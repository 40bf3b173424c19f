package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"
	"certrelay/internal/server"
)

func (a *app) setupCommand() *cobra.Command {
	var o admin.SetupOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Set up the data directory: server object and internal transport certificate (M9)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				res, err := ad.Setup(cmd.Context(), o)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(a.stdout, res)
				}
				a.printSetup(a.stdout, res)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&o.Role, "role", "", "hub (the default) or edge")
	cmd.Flags().StringVar(&o.Fqdn, "fqdn", "", "this server's fully qualified domain name (default: the host name)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) printSetup(w io.Writer, res admin.SetupResult) {
	if res.AlreadyDone {
		fmt.Fprintf(w, "Server %s (%s, FQDN %s) was already set up in %s.\n", res.Server.Name, res.Server.Role, res.Server.Fqdn, a.dataDir)
		return
	}
	fmt.Fprintf(w, "Set up server %s as %s with FQDN %s in %s.\n", res.Server.Name, res.Server.Role, res.Server.Fqdn, a.dataDir)
	if res.Certificate != nil {
		how := "Made"
		if !res.Created {
			how = "Using the existing"
		}
		fmt.Fprintf(w, "%s internal transport certificate %s (%v), valid until %s.\n", how, res.Certificate.Thumbprint,
			res.Certificate.CertificateDomains, formatTime(*res.Certificate.NotAfter))
	}
	if res.Connector != nil {
		fmt.Fprintf(w, "Made receive connector %q on %s.\n", res.Connector.Name, strings.Join(res.Connector.Bindings, ", "))
	}
}

func (a *app) serverCommand() *cobra.Command {
	c := &cobra.Command{Use: "server", Short: "Show and change this server's settings"}
	var asJSON bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the server's names, role and internal transport certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				info, err := ad.ServerShow(cmd.Context())
				if err != nil {
					return err
				}
				return a.emit(info, asJSON)
			})
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var fqdn, proxy, resolver, account string
	var nlb []string
	set := &cobra.Command{
		Use:   "set",
		Short: "Change the server's FQDN, load-balancer names or HTTP proxy",
		Long: `Change this server's settings. --proxy sets the HTTP proxy CRL and OCSP
fetches go through (as WinHTTP's proxy is for Exchange); --proxy "" removes it.
--nlb-name (repeatable) records names a load balancer adds.
--service-account names the account certrelay serve runs as: the keys of
certificates enabled for SMTP, POP or IMAP are given to it (mode 0600), as
cert enable does (M5); that needs root when they belong to another account.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var o admin.ServerSetOptions
			f := cmd.Flags()
			if f.Changed("fqdn") {
				o.Fqdn = &fqdn
			}
			if f.Changed("proxy") {
				o.Proxy = &proxy
			}
			if f.Changed("dns-resolver") {
				o.Resolver = &resolver
			}
			if f.Changed("nlb-name") {
				names := splitList(nlb)
				o.NLBNames = &names
			}
			if f.Changed("service-account") {
				o.ServiceAccount = &account
			}
			if o == (admin.ServerSetOptions{}) {
				return usagef("nothing to set: give --fqdn, --nlb-name, --proxy, --dns-resolver or --service-account")
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				info, err := ad.ServerSet(cmd.Context(), o)
				if err != nil {
					return err
				}
				printList(a.stdout, info, nil)
				return nil
			})
		},
	}
	set.Flags().StringVar(&fqdn, "fqdn", "", "this server's FQDN")
	set.Flags().StringVar(&proxy, "proxy", "", "HTTP proxy URL for CRL and OCSP fetches (\"\" for none)")
	set.Flags().StringVar(&resolver, "dns-resolver", "", "DNS server (IP:PORT) for MX lookups of send connectors without smart hosts (\"\" for the system's)")
	set.Flags().StringArrayVar(&nlb, "nlb-name", nil, "a load-balancer name of this server (repeat; \"\" clears)")
	set.Flags().StringVar(&account, "service-account", "", "the account certrelay serve runs as, which must read the keys it uses")
	c.AddCommand(show, set)
	return c
}

func (a *app) serveCommand() *cobra.Command {
	var setup admin.SetupOptions
	var debug bool
	var cpuprofile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server (runs setup on first start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			ctx := cmd.Context()
			if cpuprofile != "" {
				f, err := os.Create(cpuprofile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			ad, err := admin.Open(ctx, admin.Options{DataDir: a.dataDir, Logger: logger})
			if err != nil {
				return err
			}
			defer ad.Close()
			res, err := ad.Setup(ctx, setup)
			if err != nil {
				return err
			}
			if !res.AlreadyDone {
				logger.Info("setup complete", "server", res.Server.Name, "role", res.Server.Role, "fqdn", res.Server.Fqdn,
					"internal_certificate", res.Server.InternalTransportCertificateThumbprint)
			}
			return server.Run(ctx, server.Options{DataDir: ad.DataDir(), Source: ad.Source(), Events: ad.Events, Logger: logger})
		},
	}
	cmd.Flags().StringVar(&setup.Role, "role", "", "role for the first start: hub (the default) or edge")
	cmd.Flags().StringVar(&setup.Fqdn, "fqdn", "", "FQDN for the first start (default: the host name)")
	cmd.Flags().BoolVar(&debug, "debug", false, "log protocol details and every certificate selection")
	cmd.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile to this file until the server stops (for docs/PERFORMANCE.md)")
	_ = cmd.Flags().MarkHidden("cpuprofile")
	return cmd
}
