package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"

	"certrelay/internal/directory"
)

func (a *app) domainCommand() *cobra.Command {
	c := &cobra.Command{Use: "domain", Short: "Accepted domains: the domains this organisation receives mail for"}
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List accepted domains", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				ds, err := ad.ListAcceptedDomains(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					if ds == nil {
						ds = []directory.AcceptedDomain{}
					}
					return printJSON(a.stdout, ds)
				}
				var rows [][]string
				for _, d := range ds {
					rows = append(rows, []string{d.DomainName, d.DomainType, fmt.Sprint(d.Default)})
				}
				table(a.stdout, []string{"DomainName", "DomainType", "Default"}, rows)
				return nil
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	add := &cobra.Command{
		Use: "add DOMAIN", Short: "Accept mail for DOMAIN", Args: exactArgs(1, "a domain"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				d, err := ad.AddAcceptedDomain(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s is an accepted domain\n", d.DomainName)
				return nil
			})
		},
	}
	remove := &cobra.Command{
		Use: "remove DOMAIN", Short: "Stop accepting mail for DOMAIN", Args: exactArgs(1, "a domain"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				return ad.RemoveAcceptedDomain(cmd.Context(), args[0])
			})
		},
	}
	c.AddCommand(add, list, remove)
	return c
}

func (a *app) mailboxCommand() *cobra.Command {
	c := &cobra.Command{Use: "mailbox", Short: "Mailboxes: recipients with a Maildir, and passwords for AUTH"}
	var passwordFile string
	add := &cobra.Command{
		Use: "add USER@DOMAIN --password-file FILE", Short: "Create a mailbox in an accepted domain", Args: exactArgs(1, "an address"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if passwordFile == "" {
				return usagef("give the password with --password-file FILE (- for standard input); passwords never go on the command line")
			}
			pw, err := a.readSecret(passwordFile)
			if err != nil {
				return err
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				m, err := ad.AddMailbox(cmd.Context(), args[0], pw)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s delivers to %s\n", m.Address, m.Maildir)
				return nil
			})
		},
	}
	add.Flags().StringVar(&passwordFile, "password-file", "", "file holding the password (- for standard input)")
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List mailboxes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				ms, err := ad.ListMailboxes(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					if ms == nil {
						ms = []directory.Mailbox{}
					}
					return printJSON(a.stdout, ms)
				}
				var rows [][]string
				for _, m := range ms {
					rows = append(rows, []string{m.Address, m.Server, m.Maildir})
				}
				table(a.stdout, []string{"Address", "Server", "Maildir"}, rows)
				return nil
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	remove := &cobra.Command{
		Use: "remove USER@DOMAIN", Short: "Remove a mailbox (its Maildir stays on disk)", Args: exactArgs(1, "an address"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				return ad.RemoveMailbox(cmd.Context(), args[0])
			})
		},
	}
	c.AddCommand(add, list, remove)
	return c
}
