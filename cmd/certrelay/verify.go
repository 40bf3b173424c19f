package main

import (
	"errors"
	"fmt"
	"io"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/revocation"
	"certrelay/internal/trust"
)

// errNotValid makes cert verify exit 1 when the certificate is not Valid,
// after printing the report.
var errNotValid = errors.New("")

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
