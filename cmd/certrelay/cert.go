package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/safeio"
	"certrelay/internal/store"
)

func (a *app) certCommand() *cobra.Command {
	c := &cobra.Command{Use: "cert", Short: "Manage the personal certificate store (SPEC §3)"}
	c.AddCommand(a.certNewCommand(), a.certRequestCommand(), a.certImportCommand(), a.certEnableCommand(),
		a.certListCommand(), a.certShowCommand(), a.certExportCommand(), a.certRemoveCommand(), a.certVerifyCommand(), a.certExplainCommand())
	return c
}

// splitNames flattens repeated and comma-separated names, keeping empty
// ones (an empty --domain value, "a,,b") so the admin layer refuses them
// by name instead of silently reading "no name" (issue 9 item 6).
func splitNames(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(p))
		}
	}
	return out
}

// splitList flattens repeated and comma-separated flag values.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func parseServicesFlag(s string) (store.Services, error) {
	svc, err := store.ParseServices(s)
	if err != nil {
		return 0, usageError{err}
	}
	return svc, nil
}

func (a *app) certNewCommand() *cobra.Command {
	var domains []string
	var o admin.NewOptions
	var services, keyType string
	var keySize int
	var force, asJSON bool
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Make a self-signed certificate (M1), or renew one with --from (M2)",
		Long: `Make a self-signed certificate. Without --domain or --subject it makes a new
internal transport certificate for this server (its host name and FQDN).
When the new certificate is enabled for SMTP and holds this server's name,
it may replace the internal transport certificate: you are asked first
(--force answers yes). Prints the new thumbprint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Domains = splitNames(domains)
			o.Key = certinfo.KeySpec{Type: keyType, Size: keySize}
			if cmd.Flags().Changed("services") {
				svc, err := parseServicesFlag(services)
				if err != nil {
					return err
				}
				o.Services = &svc
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				res, err := ad.NewCertificate(cmd.Context(), o, a.confirmer(force))
				if err != nil {
					return err
				}
				switch {
				case res.BecameInternal && res.Previous != "":
					fmt.Fprintf(a.stderr, "It replaces %s as this server's internal transport certificate.\n", res.Previous)
				case res.BecameInternal:
					fmt.Fprintln(a.stderr, "It is now this server's internal transport certificate.")
				case res.Declined:
					fmt.Fprintln(a.stderr, "The internal transport certificate was kept; the new certificate was made anyway.")
				}
				a.warn(res.Warnings)
				return a.printCertResult(res.Certificate, asJSON)
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&domains, "domain", nil, "DNS name the certificate holds (repeat, or separate with commas)")
	f.StringVar(&o.Subject, "subject", "", `X.500 subject, such as "c=US,o=Contoso,cn=mail.contoso.com" (default CN = first domain)`)
	f.StringVar(&services, "services", "IMAP,POP,SMTP", "services to enable: SMTP, POP, IMAP, UM, IIS")
	f.StringVar(&keyType, "key-type", "rsa", "rsa or ecdsa")
	f.IntVar(&keySize, "key-size", 0, "RSA: 2048 (default), 3072, 4096; ECDSA: 256 (default), 384")
	f.StringVar(&o.FriendlyName, "friendly-name", "", "a name for people")
	f.BoolVar(&o.Exportable, "exportable", false, "allow the private key to be exported (cert export --password-file)")
	f.StringVar(&o.From, "from", "", "renew: copy subject, domains and services of this certificate")
	f.BoolVar(&force, "force", false, "answer yes to questions")
	f.BoolVar(&asJSON, "json", false, "print the new certificate as JSON instead of its thumbprint")
	return cmd
}

// printCertResult prints a certificate's thumbprint alone (so scripts can
// capture it), or the whole certificate as JSON.
func (a *app) printCertResult(c admin.Certificate, asJSON bool) error {
	if asJSON {
		return printJSON(a.stdout, c)
	}
	fmt.Fprintln(a.stdout, c.Thumbprint)
	return nil
}

func (a *app) certRequestCommand() *cobra.Command {
	var domains []string
	var o admin.RequestOptions
	var keyType, out string
	var keySize int
	var asJSON, force bool
	cmd := &cobra.Command{
		Use:   "request",
		Short: "Make a key and a PKCS#10 certificate request for a CA (M3)",
		Long: `Make a private key, kept in the store, and a certificate request written to
--out (base64 PEM, or DER with --der). The request is listed as
PendingRequest until the CA's certificate is imported. Prints its thumbprint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("give the request file with --out FILE (or --out - for standard output)")
			}
			format := admin.FormatPEM
			if o.DER {
				format = admin.FormatDER
			}
			if err := admin.CheckOutputName(out, format); err != nil {
				return usageError{err}
			}
			o.Domains = splitNames(domains)
			o.Key = certinfo.KeySpec{Type: keyType, Size: keySize}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				if err := ad.CheckOutputPath(out, force); err != nil {
					return err
				}
				rr, err := ad.RequestCertificate(cmd.Context(), o)
				if err != nil {
					return err
				}
				c := rr.Certificate
				a.warn(rr.Warnings)
				if err := a.writeOutput(out, rr.Data, 0o644, force); err != nil {
					_, _ = ad.RemoveCertificate(cmd.Context(), c.Thumbprint, admin.Yes{})
					return fmt.Errorf("write the request: %w; nothing was kept", err)
				}
				if out == "-" {
					// Standard output holds the request; its thumbprint goes beside it.
					fmt.Fprintf(a.stderr, "Pending request %s. Send the request to the CA, then: certrelay cert import CERTIFICATE-FILE\n", c.Thumbprint)
					return nil
				}
				fmt.Fprintf(a.stderr, "Wrote the request to %s. Send it to the CA, then: certrelay cert import CERTIFICATE-FILE\n", out)
				return a.printCertResult(c, asJSON)
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&domains, "domain", nil, "DNS name the certificate must hold (repeat, or separate with commas)")
	f.StringVar(&o.Subject, "subject", "", `X.500 subject, such as "c=us,o=contoso corp, cn=popserver.fourthcoffee.com"`)
	f.StringVar(&o.Services, "services", "", "not allowed: enable services after import")
	_ = f.MarkHidden("services")
	f.StringVar(&keyType, "key-type", "rsa", "rsa or ecdsa")
	f.IntVar(&keySize, "key-size", 0, "RSA: 2048 (default), 3072, 4096; ECDSA: 256 (default), 384")
	f.StringVar(&o.FriendlyName, "friendly-name", "", "a name for people")
	f.BoolVar(&o.Exportable, "exportable", false, "allow the private key to be exported once the certificate is imported")
	f.StringVar(&out, "out", "", "file to write the request to (- for standard output); an existing file is replaced only with --force")
	f.BoolVar(&force, "force", false, "replace the request file if it exists")
	f.BoolVar(&o.DER, "der", false, "write binary DER instead of base64")
	f.BoolVar(&asJSON, "json", false, "print the pending request as JSON")
	return cmd
}

func (a *app) certImportCommand() *cobra.Command {
	var o admin.ImportOptions
	var passwordFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import a CA's certificate for a pending request, or a PKCS#12 file (M4)",
		Long: `Import a certificate: the CA's answer to a request made on this server (DER,
PEM, base64 or PKCS#7, chain included), or a certificate with its private key
(PKCS#12 with --password-file, or PEM with the key). Intermediates go to the
intermediate store. Prints the thumbprint, so it can be piped:
  certrelay cert enable "$(certrelay cert import cert.pem)" --services POP`,
		Args: exactArgs(1, "the certificate file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readInput(a, args[0])
			if err != nil {
				return err
			}
			o.Data = data
			if passwordFile != "" {
				pw, err := a.readSecret(passwordFile)
				if err != nil {
					return err
				}
				o.Password = &pw
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				res, err := ad.ImportCertificate(cmd.Context(), o)
				if errors.Is(err, certinfo.ErrNeedPassword) && passwordFile == "" {
					if pw, ok := a.promptSecret("PKCS#12 password: "); ok {
						o.Password = &pw
						res, err = ad.ImportCertificate(cmd.Context(), o)
					}
				}
				if err != nil {
					return err
				}
				if res.AnsweredRequest != "" {
					fmt.Fprintf(a.stderr, "It answers the pending request %s, which is now a certificate.\n", res.AnsweredRequest)
				}
				for _, t := range res.Intermediates {
					fmt.Fprintf(a.stderr, "Added intermediate %s to the intermediate store.\n", t)
				}
				a.warn(res.Warnings)
				for _, s := range res.Roots {
					fmt.Fprintf(a.stderr, "The file also holds the root %q; it is not trusted by importing it (use certrelay trust add if you mean to trust it).\n", s)
				}
				if !asJSON {
					fmt.Fprintf(a.stderr, "Status: %s. Enable it with: certrelay cert enable %s --services SMTP (or POP, IMAP, IIS, UM)\n", res.Certificate.Status, res.Certificate.Thumbprint)
				}
				return a.printCertResult(res.Certificate, asJSON)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&passwordFile, "password-file", "", "file holding the PKCS#12 password (- for standard input)")
	f.BoolVar(&o.Exportable, "exportable", false, "allow the imported private key to be exported again")
	f.StringVar(&o.FriendlyName, "friendly-name", "", "a name for people")
	f.BoolVar(&asJSON, "json", false, "print the imported certificate as JSON")
	return cmd
}

// readInput reads a file, or standard input for "-".
func readInput(a *app, name string) ([]byte, error) {
	if name == "-" {
		return readAllLimited(a.stdin)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

func (a *app) certEnableCommand() *cobra.Command {
	var services string
	var force, asJSON bool
	cmd := &cobra.Command{
		Use:   "enable THUMBPRINT --services LIST",
		Short: "Enable a certificate for services (M5); services are only ever added",
		Args:  exactArgs(1, "a thumbprint"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if services == "" {
				return usagef("give the services with --services SMTP,POP,IMAP,UM,IIS")
			}
			svc, err := parseServicesFlag(services)
			if err != nil {
				return err
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				res, err := ad.EnableCertificate(cmd.Context(), args[0], svc, a.confirmer(force))
				if err != nil {
					return err
				}
				for _, n := range res.Notes {
					fmt.Fprintln(a.stderr, n)
				}
				if res.BecameInternal {
					fmt.Fprintln(a.stderr, "It is now this server's internal transport certificate.")
				}
				a.warn(res.Warnings)
				if asJSON {
					return printJSON(a.stdout, res.Certificate)
				}
				fmt.Fprintf(a.stdout, "%s enabled for %s\n", res.Certificate.Thumbprint, strings.Join(res.Certificate.Services, ", "))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&services, "services", "", "services to add: SMTP, POP, IMAP, UM, IIS")
	cmd.Flags().BoolVar(&force, "force", false, "answer yes to questions")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the certificate as JSON")
	return cmd
}

func (a *app) certListCommand() *cobra.Command {
	var domain, service string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List certificates and pending requests (M6)",
		Long: `List the personal store. With --domain, only the certificates that hold that
name (directly or by wildcard), in the order selection uses them for a session
with that FQDN (--service, default SMTP): the first is the certificate clients
get, the second the one they would get without the first, and so on; those
selection would not use come last, with the reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := parseServicesFlag(service)
			if err != nil {
				return err
			}
			if svc != store.SMTP && svc != store.POP && svc != store.IMAP && svc != store.IIS && svc != store.UM {
				return usagef("--service takes one service: SMTP, POP, IMAP, IIS or UM")
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				if domain != "" {
					return a.printRanked(cmd, ad, admin.ListOptions{Domain: domain, Service: svc}, asJSON)
				}
				list, err := ad.ListCertificates(cmd.Context(), admin.ListOptions{})
				if err != nil {
					return err
				}
				if asJSON {
					if list == nil {
						list = []admin.Certificate{}
					}
					return printJSON(a.stdout, list)
				}
				rows := make([][]string, 0, len(list))
				for _, c := range list {
					rows = append(rows, certRow(c))
				}
				table(a.stdout, []string{"Thumbprint", "Services", "Status", "NotAfter", "Subject"}, rows)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "only certificates that hold this name, in selection's order")
	cmd.Flags().StringVar(&service, "service", "SMTP", "with --domain: the service whose selection orders them")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printRanked prints cert list --domain: each certificate with its rank
// (SelectionRank and Selection in JSON).
func (a *app) printRanked(cmd *cobra.Command, ad *admin.Admin, o admin.ListOptions, asJSON bool) error {
	list, err := ad.RankCertificates(cmd.Context(), o)
	if err != nil {
		return err
	}
	if asJSON {
		if list == nil {
			list = []admin.RankedCertificate{}
		}
		return printJSON(a.stdout, list)
	}
	rows := make([][]string, 0, len(list))
	for _, c := range list {
		rank := "-"
		if c.SelectionRank > 0 {
			rank = fmt.Sprint(c.SelectionRank)
		}
		rows = append(rows, append([]string{rank}, append(certRow(c.Certificate), c.Selection)...))
	}
	table(a.stdout, []string{"Rank", "Thumbprint", "Services", "Status", "NotAfter", "Subject", "Selection"}, rows)
	return nil
}

func certRow(c admin.Certificate) []string {
	na := ""
	if c.NotAfter != nil {
		na = c.NotAfter.UTC().Format("2006-01-02")
	}
	svc := strings.Join(c.Services, ",")
	if c.IsInternalTransportCertificate {
		svc += " (internal)"
	}
	return []string{c.Thumbprint, svc, string(c.Status), na, c.Subject}
}

func (a *app) certShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show THUMBPRINT",
		Short: "Show every property of a certificate (M6, like Get-ExchangeCertificate | fl *)",
		Args:  exactArgs(1, "a thumbprint"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				c, err := ad.GetCertificate(cmd.Context(), args[0])
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

func (a *app) certExportCommand() *cobra.Command {
	var out, passwordFile string
	var o admin.ExportOptions
	var force bool
	cmd := &cobra.Command{
		Use:   "export THUMBPRINT --out FILE",
		Short: "Export a certificate (PEM or DER), or with its key as PKCS#12 (M7)",
		Long: `Export the certificate alone (PEM, or DER with --der), or, with
--password-file, certificate, chain and private key as PKCS#12 — only when
the key was made or imported with --exportable. --out - writes to standard
output. An existing file is only replaced with --force, and never a file in
the data directory. The file name must agree with the format: .pfx/.p12
for PKCS#12, .pem/.crt for PEM, .der for DER (.cer for either).`,
		Args: exactArgs(1, "a thumbprint"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("give the output file with --out FILE (or --out - for standard output)")
			}
			format := admin.FormatPEM
			switch {
			case passwordFile != "" && o.DER:
				return usagef("--der and --password-file do not go together: a PKCS#12 export (with --password-file) has its own encoding")
			case passwordFile != "":
				format = admin.FormatPKCS12
			case o.DER:
				format = admin.FormatDER
			}
			if err := admin.CheckOutputName(out, format); err != nil {
				return usageError{err}
			}
			if out == "-" && format != admin.FormatPEM && a.stdoutIsTerminal() {
				return usagef("%s is binary: redirect standard output to a file, or give --out FILE", format)
			}
			if passwordFile != "" {
				pw, err := a.readSecret(passwordFile)
				if err != nil {
					return err
				}
				o.Password = &pw
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				if err := ad.CheckOutputPath(out, force); err != nil {
					return err
				}
				data, desc, err := ad.ExportCertificate(cmd.Context(), args[0], o)
				if err != nil {
					return err
				}
				mode := os.FileMode(0o644)
				if o.Password != nil {
					mode = 0o600
				}
				if err := a.writeOutput(out, data, mode, force); err != nil {
					return err
				}
				t, _ := certinfo.NormalizeThumbprint(args[0])
				ad.LogExport(cmd.Context(), t, desc, out)
				if out != "-" {
					fmt.Fprintf(a.stderr, "Exported %s as %s to %s\n", t, desc, out)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "file to write (- for standard output)")
	f.StringVar(&passwordFile, "password-file", "", "file holding the PKCS#12 password (- for standard input)")
	f.BoolVar(&o.DER, "der", false, "certificate alone as DER")
	f.BoolVar(&force, "force", false, "replace the file if it exists")
	return cmd
}

// writeOutput writes a command's file: standard output for "-"; a new
// file, or with force a replacement, written atomically.
func (a *app) writeOutput(path string, data []byte, mode os.FileMode, force bool) error {
	if path == "-" {
		_, err := a.stdout.Write(data)
		return err
	}
	if force {
		return safeio.WriteFile(path, data, mode)
	}
	if err := safeio.WriteNew(path, data, mode); err != nil {
		if errors.Is(err, safeio.ErrExists) {
			return fmt.Errorf("%s exists already (it was created meanwhile): remove it, choose another name, or add --force to replace it", path)
		}
		return err
	}
	return nil
}

// warn prints warnings on standard error, one a line.
func (a *app) warn(ws []string) {
	for _, w := range ws {
		fmt.Fprintln(a.stderr, "WARNING: "+w)
	}
}

func (a *app) stdoutIsTerminal() bool { return term.IsTerminal(int(a.stdout.Fd())) }

func (a *app) certRemoveCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove THUMBPRINT",
		Short: "Remove a certificate or pending request, and its key (M8)",
		Args:  exactArgs(1, "a thumbprint"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				res, err := ad.RemoveCertificate(cmd.Context(), args[0], a.confirmer(force))
				if err != nil {
					return err
				}
				a.warn(res.Warnings)
				fmt.Fprintf(a.stderr, "Removed %s\n", res.Removed.Thumbprint)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "do not ask for confirmation")
	return cmd
}
