package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/edgesync"
	"certrelay/internal/events"
	"certrelay/internal/queue"
	"certrelay/internal/tlsrpt"
	"certrelay/internal/tracking"
	"certrelay/internal/transport"
	"certrelay/internal/trust"
)

// groups are the help lines of the commands that group operations.
var groups = map[string]string{
	"server":            "Show and change this server's settings",
	"cert":              "Manage the personal certificate store (SPEC §3)",
	"trust":             "Manage trusted roots and intermediates (SPEC §4)",
	"connector":         "Manage receive and send connectors",
	"connector receive": "Receive connectors: SMTP listeners (Get-ReceiveConnector)",
	"connector send":    "Send connectors: outbound routes (Get-SendConnector)",
	"domain":            "Accepted domains: the domains this organisation receives mail for",
	"mailbox":           "Mailboxes: recipients with a Maildir, and passwords for AUTH",
	"queue":             "Look at and manage the mail queue",
	"loglevel":          "Get or set event logging levels per category (SPEC D1)",
	"access":            "POP3, IMAP4 and Unified Messaging (SPEC S8–S10)",
	"access pop":        "POP3 settings (Get-POPSettings)",
	"access imap":       "IMAP4 settings (Get-IMAPSettings)",
	"access um":         "Unified Messaging SIP listener (Get-UMService)",
	"acme":              "ACME CAs: accounts for certificates ordered with cert new --acme",
	"acme account":      "ACME accounts (RFC 8555)",
	"mtasts":            "The MTA-STS policy published for the accepted domains (RFC 8461)",
	"tlsrpt":            "SMTP TLS reports (RFC 8460): send this server's, list those received",
	"edge":              "Edge subscriptions and EdgeSync (SPEC X3, X4)",
}

// faces are what the CLI does around each operation beyond the
// registry's declaration (see face); an operation without one gets the
// defaults.
var faces = map[string]face{
	"Install-CertrelayServer": {human: func(c *call, res *admin.Result) error {
		printSetup(c.a, res.Data.(admin.SetupResult))
		return nil
	}},
	"New-ExchangeCertificate":     {jsonHelp: "print the new certificate as JSON instead of its thumbprint", human: printThumbprint},
	"Update-CertrelayCertificate": {jsonHelp: "print the new certificate as JSON instead of its thumbprint", human: printThumbprint},
	"New-ExchangeCertificate/GenerateRequest": {
		jsonHelp:  "print the pending request as JSON",
		outWhat:   "request file",
		outHelp:   "file to write the request to (- for standard output); an existing file is replaced only with --force",
		forceHelp: "replace the request file if it exists",
		check: func(c *call) error {
			return checkOutputName(c.out, map[bool]string{false: admin.FormatPEM, true: admin.FormatDER}[c.raw["BinaryEncoded"] == true])
		},
		output: func(c *call, res *admin.Result) error {
			t := res.Data.(admin.Certificate).Thumbprint
			if c.out == "-" {
				// Standard output holds the request; its thumbprint goes beside it.
				fmt.Fprintf(c.a.stderr, "Pending request %s. Send the request to the CA, then: certrelay cert import CERTIFICATE-FILE\n", t)
				return nil
			}
			fmt.Fprintf(c.a.stderr, "Wrote the request to %s. Send it to the CA, then: certrelay cert import CERTIFICATE-FILE\n", c.out)
			if c.json {
				return printJSON(c.a.stdout, res.Data)
			}
			return printThumbprint(c, res)
		},
	},
	"New-EdgeSubscription": {
		jsonHelp:  "print the subscription as JSON",
		outWhat:   "subscription file",
		outHelp:   "file to write the subscription to (- for standard output); an existing file is replaced only with --force",
		forceHelp: "replace the subscription file if it exists",
		output: func(c *call, res *admin.Result) error {
			s := res.Data.(admin.EdgeSubscription)
			if c.out != "-" && s.Expires != nil {
				fmt.Fprintf(c.a.stderr, "Wrote the subscription of %s to %s, valid until %s. Copy it to a hub, then there: certrelay edge import %s\n", s.Name, c.out, s.Expires.Format(time.RFC3339), filepath.Base(c.out))
			}
			if c.json {
				return printJSON(c.a.stdout, res.Data)
			}
			return nil
		},
	},
	"New-EdgeSubscription/FileData": {jsonHelp: "print the subscription as JSON", human: func(c *call, res *admin.Result) error {
		s := res.Data.(admin.EdgeSubscription)
		fmt.Fprintf(c.a.stdout, "Edge %s (%s) subscribed, with internal transport certificate %s; the hubs synchronise it at %s (certrelay edge status)\n", s.Name, s.Fqdn, s.InternalTransportCertificateThumbprint, s.SyncAddress)
		return nil
	}},
	"Import-ExchangeCertificate": {jsonHelp: "print the imported certificate as JSON", human: printThumbprint,
		example: `  certrelay cert enable "$(certrelay cert import cert.pem)" --services POP`},
	"Enable-ExchangeCertificate": {use: "THUMBPRINT --services LIST", jsonHelp: "print the certificate as JSON", human: func(c *call, res *admin.Result) error {
		cert := res.Data.(admin.Certificate)
		fmt.Fprintf(c.a.stdout, "%s enabled for %s\n", cert.Thumbprint, strings.Join(cert.Services, ", "))
		return nil
	}},
	"Get-ExchangeCertificate": {human: printCertificates},
	"Export-ExchangeCertificate": {
		use: "THUMBPRINT --out FILE",
		check: func(c *call) error {
			format := admin.FormatPEM
			switch {
			case c.raw["Password"] != nil:
				format = admin.FormatPKCS12
			case c.raw["BinaryEncoded"] == true:
				format = admin.FormatDER
			}
			if err := checkOutputName(c.out, format); err != nil {
				return err
			}
			if c.out == "-" && format != admin.FormatPEM && c.a.stdoutIsTerminal() {
				return usagef("%s is binary: redirect standard output to a file, or give --out FILE", format)
			}
			return nil
		},
		output: func(c *call, res *admin.Result) error {
			x := res.Data.(admin.Exported)
			if c.json && c.out != "-" { // with --out -, standard output holds the export
				return printJSON(c.a.stdout, x)
			}
			if c.out != "-" && !c.json {
				fmt.Fprintf(c.a.stderr, "Exported %s as %s to %s\n", x.Thumbprint, x.Format, c.out)
			}
			return nil
		},
	},
	"Remove-ExchangeCertificate": {human: func(c *call, res *admin.Result) error {
		fmt.Fprintf(c.a.stderr, "Removed %s\n", res.Data.(admin.Certificate).Thumbprint)
		return nil
	}},
	"Test-CertrelayCertificate": {
		use:    "THUMBPRINT|FILE",
		nargs:  &argCount{1, "a thumbprint or a certificate file"},
		hidden: []string{"FileData"},
		// A thumbprint, unless it is no thumbprint or a file has that name.
		args: func(c *call, args []string) error {
			if _, ok := certinfo.NormalizeThumbprint(args[0]); ok {
				if _, err := os.Stat(args[0]); err != nil {
					c.raw["Thumbprint"] = args[0]
					return nil
				}
			}
			c.raw["FileData"] = args[0]
			return nil
		},
		output: func(c *call, res *admin.Result) error {
			v := res.Data.(admin.VerifyResult)
			if c.json {
				if err := printJSON(c.a.stdout, v); err != nil {
					return err
				}
			} else {
				printVerify(c.a.stdout, v)
			}
			if v.Status != trust.Valid {
				return errNotValid
			}
			return nil
		},
	},
	"Test-CertrelayConfiguration":       diagnoseFace,
	"Get-CertrelayCertificateSelection": {use: "(--connector NAME | --fqdn NAME | --domain D --direction out | --service POP|IMAP)", human: printExplanation},
	"Add-CertrelayTrustedCertificate": {human: func(c *call, res *admin.Result) error {
		r := res.Data.(admin.TrustAddResult)
		for _, root := range r.Roots {
			fmt.Fprintf(c.a.stdout, "%s trusted as a %s root: %s\n", root.Thumbprint, root.Source, root.Subject)
		}
		for _, t := range r.Intermediates {
			fmt.Fprintf(c.a.stdout, "%s added to the intermediate store\n", t)
		}
		return nil
	}},
	"Get-CertrelayTrustedCertificate": {human: func(c *call, res *admin.Result) error {
		var rows [][]string
		for _, r := range res.Data.([]admin.TrustedCertificate) {
			rows = append(rows, []string{r.Thumbprint, r.Kind, r.Source, r.NotAfter.Format("2006-01-02"), r.Subject})
		}
		table(c.a.stdout, []string{"Thumbprint", "Kind", "Source", "NotAfter", "Subject"}, rows)
		return nil
	}},
	"Remove-CertrelayTrustedCertificate": {human: func(c *call, _ *admin.Result) error {
		fmt.Fprintf(c.a.stderr, "Removed %s\n", strings.ToUpper(c.args[0]))
		return nil
	}},
	"New-ReceiveConnector": {use: "NAME --bindings IP:PORT"},
	"Get-ReceiveConnector": {human: func(c *call, res *admin.Result) error {
		var rows [][]string
		for _, rc := range res.Data.([]directory.ReceiveConnector) {
			rows = append(rows, []string{rc.Name, strings.Join(rc.Bindings, ","), rc.Fqdn, strings.Join(rc.AuthMechanism, ","), fmt.Sprint(rc.Enabled)})
		}
		table(c.a.stdout, []string{"Name", "Bindings", "Fqdn", "AuthMechanism", "Enabled"}, rows)
		return nil
	}},
	"Remove-ReceiveConnector": {human: func(c *call, _ *admin.Result) error {
		fmt.Fprintf(c.a.stderr, "Removed receive connector %s\n", c.args[0])
		return nil
	}},
	"New-SendConnector": {use: "NAME --address-space 'smtp:DOMAIN;COST'"},
	"Get-SendConnector": {human: printSendConnectors},
	"Remove-SendConnector": {human: func(c *call, _ *admin.Result) error {
		fmt.Fprintf(c.a.stderr, "Removed send connector %s\n", c.args[0])
		return nil
	}},
	"New-AcceptedDomain": {human: func(c *call, res *admin.Result) error {
		fmt.Fprintf(c.a.stdout, "%s is an accepted domain\n", res.Data.(directory.AcceptedDomain).DomainName)
		return nil
	}},
	"Get-AcceptedDomain": {human: func(c *call, res *admin.Result) error {
		var rows [][]string
		for _, d := range res.Data.([]directory.AcceptedDomain) {
			rows = append(rows, []string{d.DomainName, d.DomainType, fmt.Sprint(d.Default)})
		}
		table(c.a.stdout, []string{"DomainName", "DomainType", "Default"}, rows)
		return nil
	}},
	"New-Mailbox": {use: "USER@DOMAIN --password-file FILE", human: func(c *call, res *admin.Result) error {
		m := res.Data.(directory.Mailbox)
		fmt.Fprintf(c.a.stdout, "%s delivers to %s\n", m.Address, m.Maildir)
		return nil
	}},
	"Get-Mailbox": {human: func(c *call, res *admin.Result) error {
		var rows [][]string
		for _, m := range res.Data.([]directory.Mailbox) {
			rows = append(rows, []string{m.Address, m.Server, m.Maildir})
		}
		table(c.a.stdout, []string{"Address", "Server", "Maildir"}, rows)
		return nil
	}},
	"Get-Message": {human: printQueue},
	"Retry-Queue": {human: func(c *call, res *admin.Result) error {
		fmt.Fprintf(c.a.stderr, "%d recipient(s) due now\n", res.Data.(admin.Retried).Recipients)
		return nil
	}},
	"Remove-Message": {human: func(c *call, _ *admin.Result) error {
		fmt.Fprintf(c.a.stderr, "Removed %s\n", c.args[0])
		return nil
	}},
	"Get-CertrelayEvent": {human: func(c *call, res *admin.Result) error {
		for _, e := range res.Data.([]events.Event) {
			fmt.Fprintf(c.a.stdout, "%s  %-11s %5d %s\\%s %s\n    %s\n", formatTime(e.Time), e.Severity, e.ID, e.Source, e.Category, e.Name, e.Message)
		}
		return nil
	}},
	"Get-EventLogLevel": {human: func(c *call, res *admin.Result) error {
		var t [][]string
		for _, r := range res.Data.([]admin.EventLevelSetting) {
			t = append(t, []string{r.Identity, r.EventLevel})
		}
		table(c.a.stdout, []string{"Identity", "EventLevel"}, t)
		return nil
	}},
	"Test-EdgeSynchronization":  {human: printRounds},
	"Start-EdgeSynchronization": {human: printRounds},
	"Get-EdgeSubscription": {human: func(c *call, res *admin.Result) error {
		var t [][]string
		for _, s := range res.Data.([]admin.EdgeSubscription) {
			last := ""
			if s.LastSync != nil {
				last = formatTime(*s.LastSync)
			}
			t = append(t, []string{s.Name, s.Status, s.Fqdn, s.SyncAddress, s.InternalTransportCertificateThumbprint, last})
		}
		if len(t) == 0 {
			fmt.Fprintln(c.a.stdout, "No edge subscription: on an edge, certrelay edge subscribe --out FILE; on a hub, certrelay edge import FILE.")
			return nil
		}
		table(c.a.stdout, []string{"Name", "Status", "Fqdn", "SyncAddress", "InternalTransportCertificate", "LastSync"}, t)
		return nil
	}},
	"Get-TransportServer": {human: func(c *call, res *admin.Result) error {
		var t [][]string
		for _, s := range res.Data.([]admin.OrgServer) {
			name := s.Name
			if s.IsThisServer {
				name += " *"
			}
			na := ""
			if s.InternalTransportCertificateNotAfter != nil {
				na = formatTime(*s.InternalTransportCertificateNotAfter)
			}
			t = append(t, []string{name, s.Role, s.Fqdn, s.InternalTransportCertificateThumbprint, na})
		}
		table(c.a.stdout, []string{"Name", "Role", "Fqdn", "InternalTransportCertificate", "NotAfter"}, t)
		return nil
	}},
	"Set-EventLogLevel": {human: func(c *call, res *admin.Result) error {
		for _, r := range res.Data.([]admin.EventLevelSetting) {
			fmt.Fprintf(c.a.stdout, "%s = %s\n", r.Identity, r.EventLevel)
		}
		return nil
	}},
	"Get-CertrelayTlsReport": {human: func(c *call, res *admin.Result) error {
		for _, r := range res.Data.([]tlsrpt.Received) {
			fmt.Fprintf(c.a.stdout, "%s  %s to %s from %s (report %s)\n", formatTime(r.ReceivedAt), r.Start.UTC().Format("2006-01-02 15:04"), r.End.UTC().Format("2006-01-02 15:04"), r.Organization, r.ReportID)
			for _, p := range r.Policies {
				fmt.Fprintf(c.a.stdout, "    %s %s: %d successful, %d failed %s\n", p.Type, p.Domain, p.Success, p.Failure, strings.Join(p.Failures, "; "))
			}
		}
		return nil
	}},
	"Send-CertrelayTlsReport": {human: func(c *call, res *admin.Result) error {
		for _, r := range res.Data.([]transport.SentReport) {
			fmt.Fprintf(c.a.stdout, "%s %s: sent to %s", r.Day, r.Domain, strings.Join(r.Destinations, ", "))
			if len(r.Destinations) == 0 {
				fmt.Fprint(c.a.stdout, "nobody")
			}
			if len(r.Problems) > 0 {
				fmt.Fprintf(c.a.stdout, " (%s)", strings.Join(r.Problems, "; "))
			}
			fmt.Fprintln(c.a.stdout)
		}
		return nil
	}},
	"Get-MessageTrackingLog": {human: func(c *call, res *admin.Result) error {
		for _, r := range res.Data.([]tracking.Record) {
			tlsInfo := "no TLS"
			if r.TLS != "" {
				tlsInfo = r.TLS + ", server certificate " + r.PeerCert + " (" + r.PeerThumb + ")"
				if r.ClientCert != "" {
					tlsInfo += ", client certificate " + r.ClientCert
				}
				if r.Auth != "" {
					tlsInfo += ", " + r.PeerServer + " authenticated by " + r.Auth
				}
			}
			fmt.Fprintf(c.a.stdout, "%s %s via %s to %s [%s]: %s\n    %s\n", formatTime(r.Time), r.MessageID, r.Connector, r.Host, strings.Join(r.Recipients, ", "), r.Result, tlsInfo)
			if r.Policy != "" {
				fmt.Fprintf(c.a.stdout, "    policy %s: %s\n", r.Policy, r.PolicyWhy)
			}
		}
		return nil
	}},
}

// checkOutputName is admin.CheckOutputName as a usage error.
func checkOutputName(path, format string) error {
	if err := admin.CheckOutputName(path, format); err != nil {
		return usageError{err}
	}
	return nil
}

// printThumbprint prints a certificate's thumbprint alone, so scripts can
// capture it.
func printThumbprint(c *call, res *admin.Result) error {
	fmt.Fprintln(c.a.stdout, res.Data.(admin.Certificate).Thumbprint)
	return nil
}

// printCertificates prints cert list: a table, with each certificate's
// rank when the list is for a name (--domain).
func printCertificates(c *call, res *admin.Result) error {
	if ranked, ok := res.Data.([]admin.RankedCertificate); ok {
		rows := make([][]string, 0, len(ranked))
		for _, r := range ranked {
			rank := "-"
			if r.SelectionRank > 0 {
				rank = fmt.Sprint(r.SelectionRank)
			}
			rows = append(rows, append([]string{rank}, append(certRow(r.Certificate), r.Selection)...))
		}
		table(c.a.stdout, []string{"Rank", "Thumbprint", "Services", "Status", "NotAfter", "Subject", "Selection"}, rows)
		return nil
	}
	list := res.Data.([]admin.Certificate)
	rows := make([][]string, 0, len(list))
	for _, cert := range list {
		rows = append(rows, certRow(cert))
	}
	table(c.a.stdout, []string{"Thumbprint", "Services", "Status", "NotAfter", "Subject"}, rows)
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

// printExplanation prints cert explain for people.
func printExplanation(c *call, res *admin.Result) error {
	ex := res.Data.(admin.Explanation)
	w := c.a.stdout
	what := "the name " + ex.Fqdn
	if ex.Setting != "" {
		what = fmt.Sprintf("the name %s (the setting %s)", ex.Fqdn, ex.Setting)
	}
	if ex.Connector != "" {
		what = fmt.Sprintf("%s connector %q (FQDN %s)", map[string]string{"in": "receive", "out": "send"}[ex.Direction], ex.Connector, ex.Fqdn)
	}
	fmt.Fprintf(w, "Selection for %s, service %s:\n", what, ex.Service)
	if ex.Explicit != "" {
		fmt.Fprintf(w, "The connector names its certificate: %s\n", ex.Explicit)
	}
	var rows [][]string
	for _, cand := range ex.Candidates {
		rows = append(rows, []string{cand.Thumbprint, string(cand.Verdict), cand.Reason})
	}
	table(w, []string{"Thumbprint", "Verdict", "Reason"}, rows)
	switch ex.NotHolding {
	case 0:
	case 1:
		fmt.Fprintf(w, "(1 other certificate in the store holds no name matching %s and was not considered: cert list shows it)\n", ex.Fqdn)
	default:
		fmt.Fprintf(w, "(%d other certificates in the store hold no name matching %s and were not considered: cert list shows them)\n", ex.NotHolding, ex.Fqdn)
	}
	if ex.Winner != "" {
		fmt.Fprintf(w, "\nChosen: %s — %s\n", ex.Winner, ex.Why)
	} else {
		fmt.Fprintf(w, "\nNo certificate: %s\n", ex.Why)
	}
	if ex.STARTTLS != "" {
		fmt.Fprintf(w, "STARTTLS: %s\n", ex.STARTTLS)
	}
	if p := ex.DomainPolicy; p != nil {
		fmt.Fprintf(w, "\nPolicy for mail to %s: %s\n", p.Domain, p.Policy)
		for _, why := range p.Why {
			fmt.Fprintf(w, "  - %s\n", why)
		}
		if r := p.LastAttempt; r != nil {
			fmt.Fprintf(w, "Last attempt %s to %s: %s\n  %s: %s\n", formatTime(r.Time), r.Host, r.Result, r.Policy, r.PolicyWhy)
		}
	}
	return nil
}

func printSendConnectors(c *call, res *admin.Result) error {
	var rows [][]string
	for _, sc := range res.Data.([]directory.SendConnector) {
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
	table(c.a.stdout, []string{"Name", "AddressSpaces", "SmartHosts", "Fqdn", "TLS", "Enabled"}, rows)
	return nil
}

func printQueue(c *call, res *admin.Result) error {
	var rows [][]string
	for _, it := range res.Data.([]queue.Item) {
		for _, r := range it.Recipients {
			next := ""
			if r.Status == queue.Pending && !r.NextAttempt.IsZero() {
				next = formatTime(r.NextAttempt)
			}
			sender := it.Sender
			if sender == "" {
				sender = "<>"
			}
			rows = append(rows, []string{it.ID, sender, r.Address, r.Destination, string(r.Status), fmt.Sprint(r.Attempts), next, r.LastError})
		}
	}
	table(c.a.stdout, []string{"Id", "From", "To", "Destination", "Status", "Attempts", "NextAttempt", "LastError"}, rows)
	return nil
}

// printRounds prints EdgeSync rounds, one a line.
func printRounds(c *call, res *admin.Result) error {
	var t [][]string
	for _, r := range res.Data.([]edgesync.Round) {
		t = append(t, []string{r.Edge, r.Kind, r.Hub, formatTime(r.Time), fmt.Sprint(r.Objects), fmt.Sprint(r.Changed), r.Duration, r.Error})
	}
	if len(t) == 0 {
		fmt.Fprintln(c.a.stdout, "No EdgeSync round yet.")
		return nil
	}
	table(c.a.stdout, []string{"Edge", "Kind", "Hub", "Time", "Objects", "Changed", "Duration", "Error"}, t)
	return nil
}
