package shell

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/revocation"
)

// How objects are shown at the end of a pipeline, as Exchange's format
// files show them: a table of a few columns for the objects it lists,
// Format-List's properties for the others; | fl shows an object's usual
// properties, | fl * all of them.

// view is how one type of object is shown by default.
type view struct {
	table []string // the default table's columns
	list  []string // Format-List's properties without * (nil: all)
}

// views by the object's Go type name. Certificates show what
// Get-ExchangeCertificate shows: Thumbprint, Services, Subject in the
// table, and with | fl the properties of the seeds' listing (seed 003)
// — | fl * adds every other property (SPEC M6).
var views = map[string]view{
	"Certificate": {
		table: []string{"Thumbprint", "Services", "Subject"},
		list: []string{"AccessRules", "CertificateDomains", "HasPrivateKey", "IsSelfSigned", "Issuer", "NotAfter", "NotBefore",
			"PublicKeySize", "RootCAType", "SerialNumber", "Services", "Status", "Subject", "Thumbprint"},
	},
	"RankedCertificate":  {table: []string{"SelectionRank", "Thumbprint", "Services", "Status", "Subject"}},
	"ReceiveConnector":   {table: []string{"Name", "Bindings", "Fqdn", "Enabled"}},
	"SendConnector":      {table: []string{"Name", "AddressSpaces", "SmartHosts", "Enabled"}},
	"EventLevelSetting":  {table: []string{"Identity", "EventLevel"}},
	"ServerInfo":         {table: []string{"Name", "Fqdn", "Role", "InternalTransportCertificateThumbprint"}},
	"AcceptedDomain":     {table: []string{"DomainName", "DomainType", "Default"}},
	"Mailbox":            {table: []string{"Address", "Server", "Maildir"}},
	"TrustedCertificate": {table: []string{"Thumbprint", "Kind", "Source", "NotAfter", "Subject"}},
	"Event":              {table: []string{"Time", "Severity", "ID", "Name", "Message"}},
	"commandInfo":        {table: []string{"CommandType", "Name", "Synopsis"}},
	"Exported":           {table: []string{"Thumbprint", "Format"}},
}

// listProps are the properties Format-List shows without names.
func listProps(o *Object) []string {
	if v, ok := views[o.Type]; ok && v.list != nil {
		return v.list
	}
	names := make([]string, len(o.Props))
	for i, p := range o.Props {
		names[i] = p.Name
	}
	return names
}

// tableColumns are the columns Format-Table shows without names.
func tableColumns(o *Object) []string {
	if v, ok := views[o.Type]; ok && v.table != nil {
		return v.table
	}
	var names []string
	for i, p := range o.Props {
		if i == 10 {
			break
		}
		names = append(names, p.Name)
	}
	return names
}

// display shows objects left at the end of a pipeline: runs of one type
// together, as a table when the type has one (or at most four
// properties), else as lists.
func (s *Shell) display(objs []*Object) {
	for i := 0; i < len(objs); {
		j := i
		for j < len(objs) && objs[j].Type == objs[i].Type {
			j++
		}
		run := objs[i:j]
		o := run[0]
		_, hasView := views[o.Type]
		switch {
		case o.Type == "scalar":
			for _, x := range run {
				fmt.Fprintln(s.Out, text(x.Raw))
			}
		case (hasView && views[o.Type].table != nil) || len(o.Props) <= 4:
			s.printTable(run, tableColumns(o), false)
		default:
			for k, x := range run {
				if k > 0 {
					fmt.Fprintln(s.Out)
				}
				s.printList(x, listProps(x))
			}
		}
		i = j
	}
}

// printList writes "Name : value" lines, as Format-List does.
func (s *Shell) printList(o *Object, names []string) {
	if o.Type == "scalar" {
		fmt.Fprintln(s.Out, text(o.Raw))
		return
	}
	width := 0
	for _, n := range names {
		width = max(width, utf8.RuneCountInString(n))
	}
	for _, n := range names {
		v, _ := o.Get(n)
		val := cell(n, v)
		if strings.Contains(val, "\n") { // a PEM request: keep it readable
			val = strings.ReplaceAll(strings.TrimRight(val, "\n"), "\n", "\n"+strings.Repeat(" ", width+3))
		}
		fmt.Fprintf(s.Out, "%-*s : %s\n", width, n, val)
	}
}

// cell is a property's value as shown. Services is a set of flags in
// Exchange, shown as "IMAP, POP, SMTP" (seed 003's "Services : POP"),
// not as a list in braces.
func cell(name string, v any) string {
	if list, ok := asList(v); ok && name == "Services" {
		parts := make([]string, len(list))
		for i, it := range list {
			parts[i] = text(it)
		}
		if len(parts) == 0 {
			return "None"
		}
		return strings.Join(parts, ", ")
	}
	return text(v)
}

// printTable writes a table with a header and dashes under it, as
// Format-Table does.
func (s *Shell) printTable(objs []*Object, cols []string, noHeader bool) {
	if len(cols) == 0 {
		return
	}
	rows := make([][]string, len(objs))
	widths := make([]int, len(cols))
	for i, c := range cols {
		widths[i] = utf8.RuneCountInString(c)
	}
	for r, o := range objs {
		rows[r] = make([]string, len(cols))
		for i, c := range cols {
			var v any
			if o.Type == "scalar" {
				v = o.Raw
			} else {
				v, _ = o.Get(c)
			}
			c := strings.ReplaceAll(cell(c, v), "\n", " ")
			rows[r][i] = c
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			if i == len(cells)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c + strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+1))
		}
		fmt.Fprintln(s.Out, strings.TrimRight(b.String(), " "))
	}
	if !noHeader {
		line(cols)
		dashes := make([]string, len(cols))
		for i, c := range cols {
			dashes[i] = strings.Repeat("-", utf8.RuneCountInString(c))
		}
		line(dashes)
	}
	for _, r := range rows {
		line(r)
	}
}

// printVerify writes certutil -verify's report: the chain, each
// element's status and every CRL and OCSP URL tried with its answer.
func (s *Shell) printVerify(r admin.VerifyResult) {
	w := s.Out
	fmt.Fprintf(w, "Certificate %s\n  %s\nStatus:     %s\nRootCAType: %s\n\nChain (certificate first):\n", r.Thumbprint, r.Subject, r.Status, r.RootCAType)
	for i, el := range r.Chain {
		fmt.Fprintf(w, "  [%d] %s\n      %s  %s\n", i, el.Subject, el.Thumbprint, el.Status)
		if el.Problem != "" {
			fmt.Fprintf(w, "      problem: %s\n", el.Problem)
		}
		if i == len(r.Chain)-1 && el.Cert != nil && certinfo.IsSelfSigned(el.Cert) {
			fmt.Fprintf(w, "      root (%s)\n", r.RootCAType)
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
			fmt.Fprintf(w, "      revocation: %s %s\n", rv.Status, rv.Error)
			for _, at := range rv.Attempts {
				line := fmt.Sprintf("        %-4s %s: %s", at.Kind, at.URL, at.Result)
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
}
