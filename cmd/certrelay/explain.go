package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"
	"certrelay/internal/store"
)

func (a *app) certExplainCommand() *cobra.Command {
	var o admin.ExplainOptions
	var service string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain (--connector NAME | --fqdn NAME | --service POP|IMAP)",
		Short: "Explain which certificate a session would use, and why (SPEC §5)",
		Long: `Run certificate selection as a session would now and print every certificate
of the store with why it was rejected, passed over or chosen. With
--connector, the connector's FQDN (or the server's) and its explicit
TlsCertificateName are used; --direction out explains a send connector.
With --service POP or IMAP and neither, the name their settings'
X509CertificateName holds is used (SPEC S8; cert enable --services POP
sets it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := parseServicesFlag(service)
			if err != nil {
				return err
			}
			fromSetting := o.Connector == "" && o.Fqdn == "" && (svc == store.POP || svc == store.IMAP)
			if (o.Connector == "") == (o.Fqdn == "") && !fromSetting {
				return usagef("give either --connector NAME or --fqdn NAME (with --service POP or IMAP, neither: their X509CertificateName is used)")
			}
			if svc != store.None && svc != store.SMTP && svc != store.POP && svc != store.IMAP && svc != store.IIS && svc != store.UM {
				return usagef("--service takes one service: SMTP, POP, IMAP, IIS or UM")
			}
			o.Service = svc
			if o.Direction != "in" && o.Direction != "out" {
				return usagef("--direction is in or out")
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				ex, err := ad.Explain(cmd.Context(), o)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(a.stdout, ex)
				}
				what := "the name " + ex.Fqdn
				if ex.Setting != "" {
					what = fmt.Sprintf("the name %s (the setting %s)", ex.Fqdn, ex.Setting)
				}
				if ex.Connector != "" {
					what = fmt.Sprintf("%s connector %q (FQDN %s)", map[string]string{"in": "receive", "out": "send"}[ex.Direction], ex.Connector, ex.Fqdn)
				}
				fmt.Fprintf(a.stdout, "Selection for %s, service %s:\n", what, ex.Service)
				if ex.Explicit != "" {
					fmt.Fprintf(a.stdout, "The connector names its certificate: %s\n", ex.Explicit)
				}
				var rows [][]string
				for _, c := range ex.Candidates {
					rows = append(rows, []string{c.Thumbprint, string(c.Verdict), c.Reason})
				}
				table(a.stdout, []string{"Thumbprint", "Verdict", "Reason"}, rows)
				if ex.Winner != "" {
					fmt.Fprintf(a.stdout, "\nChosen: %s — %s\n", ex.Winner, ex.Why)
				} else {
					fmt.Fprintf(a.stdout, "\nNo certificate: %s\n", ex.Why)
				}
				if ex.STARTTLS != "" {
					fmt.Fprintf(a.stdout, "STARTTLS: %s\n", ex.STARTTLS)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Connector, "connector", "", "a receive connector (or, with --direction out, a send connector)")
	f.StringVar(&o.Fqdn, "fqdn", "", "a name to match")
	f.StringVar(&service, "service", "SMTP", "SMTP, POP, IMAP, IIS or UM")
	f.StringVar(&o.Direction, "direction", "in", "in (receive) or out (send)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
