package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/revocation"
	"certrelay/internal/trust"
)

func (a *app) trustCommand() *cobra.Command {
	c := &cobra.Command{Use: "trust", Short: "Manage trusted roots and intermediates (SPEC §4)"}
	var source string
	var intermediate bool
	add := &cobra.Command{
		Use:   "add FILE",
		Short: "Trust the root CA certificates of FILE, or keep its CA certificates as intermediates",
		Long: `Trust the root CA certificates of FILE with a source that becomes the
RootCAType of the certificates chaining to them: registry (this server
only, the default), grouppolicy or enterprise (organisation-wide). With
--intermediate, the file's CA certificates (intermediates, cross-certificates)
are kept for building chains instead.`,
		Args: exactArgs(1, "a certificate file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := trust.ParseSource(source)
			if err != nil {
				return usageError{err}
			}
			data, err := readInput(a, args[0])
			if err != nil {
				return err
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				res, err := ad.TrustAdd(cmd.Context(), data, src, intermediate)
				if err != nil {
					return err
				}
				for _, r := range res.Roots {
					fmt.Fprintf(a.stdout, "%s trusted as a %s root: %s\n", r.Thumbprint, r.Source, r.Subject)
				}
				for _, t := range res.Intermediates {
					fmt.Fprintf(a.stdout, "%s added to the intermediate store\n", t)
				}
				for _, s := range res.Skipped {
					fmt.Fprintln(a.stderr, s)
				}
				return nil
			})
		},
	}
	add.Flags().StringVar(&source, "source", "registry", "registry, grouppolicy or enterprise")
	add.Flags().BoolVar(&intermediate, "intermediate", false, "add CA certificates to the intermediate store instead")

	var asJSON, system bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List trusted roots (with their source) and intermediates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				roots, inters, err := ad.TrustList(cmd.Context())
				if err != nil {
					return err
				}
				type row struct {
					Thumbprint string
					Subject    string
					NotAfter   time.Time
					Kind       string // "Root" or "Intermediate"
					Source     string // the root's source (RootCAType); "" for intermediates
					System     bool   `json:",omitempty"`
				}
				var rows []row
				for _, r := range roots {
					if r.System && !system {
						continue
					}
					rows = append(rows, row{r.Thumbprint, r.Subject, r.NotAfter.UTC(), "Root", string(r.Source), r.System})
				}
				for _, c := range inters {
					rows = append(rows, row{certinfo.Thumbprint(c.Raw), c.Subject.String(), c.NotAfter.UTC(), "Intermediate", "", false})
				}
				if asJSON {
					if rows == nil {
						rows = []row{}
					}
					return printJSON(a.stdout, rows)
				}
				var t [][]string
				for _, r := range rows {
					t = append(t, []string{r.Thumbprint, r.Kind, r.Source, r.NotAfter.Format("2006-01-02"), r.Subject})
				}
				table(a.stdout, []string{"Thumbprint", "Kind", "Source", "NotAfter", "Subject"}, t)
				if !system {
					fmt.Fprintf(a.stderr, "(%d ThirdParty roots of the system bundle not shown; add --system to see them)\n", countSystem(roots))
				}
				return nil
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().BoolVar(&system, "system", false, "include the system bundle's roots (ThirdParty)")

	remove := &cobra.Command{
		Use:   "remove THUMBPRINT",
		Short: "Stop trusting a root added here, or forget an intermediate",
		Args:  exactArgs(1, "a thumbprint"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				if err := ad.TrustRemove(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "Removed %s\n", strings.ToUpper(args[0]))
				return nil
			})
		},
	}
	c.AddCommand(add, list, remove)
	return c
}

func countSystem(roots []trust.Root) int {
	n := 0
	for _, r := range roots {
		if r.System {
			n++
		}
	}
	return n
}

// errNotValid makes cert verify exit 1 when the certificate is not Valid,
// after printing the report.
var errNotValid = errors.New("")

func (a *app) certVerifyCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify THUMBPRINT|FILE",
		Short: "Verify a certificate now: chain, and revocation fetched afresh from every CRL and OCSP URL (T5)",
		Long: `Build the certificate's chain and fetch the revocation data of every element
afresh, as certutil -verify -urlfetch does; print the chain, each element's
status, every CRL and OCSP URL tried with what it answered, and what to do.
The argument is a thumbprint of the store or a certificate file. The result
is stored: cert list shows the refreshed Status. Exits 0 when the
certificate is Valid, 1 otherwise.`,
		Args: exactArgs(1, "a thumbprint or a certificate file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			if _, ok := certinfo.NormalizeThumbprint(args[0]); !ok {
				d, err := readInput(a, args[0])
				if err != nil {
					return err
				}
				data = d
			} else if _, err := os.Stat(args[0]); err == nil {
				d, err := readInput(a, args[0])
				if err != nil {
					return err
				}
				data = d
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				res, err := ad.VerifyCertificate(cmd.Context(), args[0], data)
				if err != nil {
					return err
				}
				if asJSON {
					if err := printJSON(a.stdout, res); err != nil {
						return err
					}
				} else {
					printVerify(a.stdout, res)
				}
				if res.Status != trust.Valid {
					return errNotValid
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printVerify(w io.Writer, r admin.VerifyResult) {
	fmt.Fprintf(w, "Certificate %s\n  %s\n", r.Thumbprint, r.Subject)
	fmt.Fprintf(w, "Status:     %s\nRootCAType: %s\n\nChain (certificate first):\n", r.Status, r.RootCAType)
	for i, el := range r.Chain {
		fmt.Fprintf(w, "  [%d] %s\n      %s  %s\n", i, el.Subject, el.Thumbprint, el.Status)
		if el.Problem != "" {
			fmt.Fprintf(w, "      problem: %s\n", el.Problem)
		}
		if i == len(r.Chain)-1 && el.Cert != nil && certinfo.IsSelfSigned(el.Cert) {
			if i == 0 {
				fmt.Fprintln(w, "      self-signed: it is its own root; clients must be told to trust it")
			} else {
				fmt.Fprintf(w, "      root (%s)\n", r.RootCAType)
			}
			continue
		}
		rv := el.Revocation
		switch {
		case rv == nil:
		case rv.Status == revocation.NoSources:
			fmt.Fprintln(w, "      revocation: the certificate names no CRL or OCSP URL")
		case rv.NotChecked:
			fmt.Fprintln(w, "      revocation: not checked")
		default:
			if rv.Error != "" {
				fmt.Fprintf(w, "      revocation: %s (%s)\n", rv.Status, rv.Error)
			} else {
				fmt.Fprintf(w, "      revocation: %s\n", rv.Status)
			}
			for _, at := range rv.Attempts {
				line := fmt.Sprintf("        %-4s %s: %s", at.Kind, at.URL, at.Result)
				if at.Result == revocation.ResultRevoked && !at.RevokedAt.IsZero() {
					line += fmt.Sprintf(" on %s (%s)", formatTime(at.RevokedAt), revocation.ReasonText(at.Reason))
				}
				if !at.NextUpdate.IsZero() {
					line += ", next update " + formatTime(at.NextUpdate)
				}
				if at.Error != "" {
					line += " — " + at.Error
				}
				fmt.Fprintln(w, line)
			}
		}
	}
	if r.Problem != "" {
		fmt.Fprintf(w, "\nProblem: %s\n", r.Problem)
	}
	if r.Fix != "" {
		fmt.Fprintf(w, "Fix:     %s\n", r.Fix)
	}
	if r.Status == trust.Valid && r.Problem == "" {
		fmt.Fprintln(w, "\nNo problem found.")
	}
}
