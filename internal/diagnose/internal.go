package diagnose

import (
	"fmt"
	"strings"

	"certrelay/internal/certprop"
	"certrelay/internal/certview"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
)

// The internal transport certificate (seeds 000, 001, 004): the checks of
// direct trust's failures (1037/2019) and of its fallbacks (12023/12024).

// internalEvents are the events a broken internal transport certificate
// causes: on the peers (1037 receiving, 2019 sending) and here (12023 or
// 12024 while a fallback stands in; 12013 on an edge, which has none).
func internalEvents(f *Facts) []int {
	if f.Server.Role == directory.RoleEdge {
		return []int{1037, 2019, 12023, 12013}
	}
	return []int{1037, 2019, 12023, 12024}
}

// directTrustEvents are the events of a certificate that is presented
// but refused by the peers (1037 receiving, 2019 sending).
var directTrustEvents = []int{1037, 2019}

// renewInternal is the fix that gives the server a new internal transport
// certificate with every name it needs (host name, FQDN, physical names,
// load-balancer names), replacing the current one without a question.
func renewInternal() Step { return cmd("New-ExchangeCertificate", "-Force") }

// checkInternalNotSMTP is Q1: the internal transport certificate is in
// the store but not enabled for SMTP, so the transport cannot present it
// (seeds 000/001: enable it for SMTP).
func checkInternalNotSMTP(f *Facts) []Finding {
	c := f.internal()
	if c == nil || svcOf(*c).Has(certprop.SMTP) {
		return nil
	}
	return []Finding{{
		Severity: Error, Events: internalEvents(f), Subject: c.Thumbprint,
		Problem: fmt.Sprintf("the internal transport certificate %s of server %s is not enabled for SMTP, so the transport cannot present it to the organisation's servers: they cannot authenticate this server by direct trust, and a stand-in (a certificate for the FQDN, or an ephemeral one) is used", c.Thumbprint, f.Server.Name),
		Evidence: []Evidence{
			{"Server", f.Server.Name},
			{"InternalTransportCertificateThumbprint", c.Thumbprint},
			{"Services", servicesText(c.Services)},
		},
		Fix: []Step{cmd("Enable-ExchangeCertificate", c.Thumbprint, "-Services", "SMTP")},
	}}
}

// checkKeyUnreadable is Q2: the service account cannot read the private
// key of the internal transport certificate, or of a certificate enabled
// for SMTP, POP or IMAP (seeds 000/001: the key's permissions).
func checkKeyUnreadable(f *Facts) []Finding {
	var out []Finding
	internal := f.Server.InternalTransportCertificateThumbprint
	for _, c := range f.Certificates {
		isInternal := strings.EqualFold(c.Thumbprint, internal)
		svc := svcOf(c)
		if c.CertificateRequest != "" || (!isInternal && svc&(certprop.SMTP|certprop.POP|certprop.IMAP) == 0) {
			continue
		}
		cand := f.candidate(c.Thumbprint)
		if cand == nil || !cand.HasKey || cand.KeyReadable {
			continue
		}
		enable := "SMTP"
		if !isInternal && !svc.Has(certprop.SMTP) {
			enable = strings.Fields(strings.ReplaceAll(svcTransport(svc), ",", " "))[0]
		}
		events := []int{12014}
		if isInternal {
			events = internalEvents(f)
		}
		out = append(out, Finding{
			Severity: Error, Events: events, Subject: c.Thumbprint,
			Problem: fmt.Sprintf("the service account %s cannot read the private key of certificate %s, so no service can use it", f.ServiceAccount, c.Thumbprint),
			Evidence: []Evidence{
				{"Thumbprint", c.Thumbprint},
				{"IsInternalTransportCertificate", fmt.Sprint(isInternal)},
				{"ServiceAccount", f.ServiceAccount},
				{"AccessRules", accessText(c)},
				{"KeyProblem", keyProblem(cand)},
			},
			Fix:  []Step{cmd("Enable-ExchangeCertificate", c.Thumbprint, "-Services", enable)},
			Note: "run it as root (or as the key file's owner): enabling gives the key file to the service account, mode 0600",
		})
	}
	return out
}

// checkInternalNames is Q3: the internal transport certificate lacks one
// of the server's DNS names that direct trust checks (D3): its FQDN, host
// name, physical FQDN or physical host name.
func checkInternalNames(f *Facts) []Finding {
	c := f.internal()
	if c == nil {
		return nil
	}
	var missing []Evidence
	seen := map[string]bool{}
	for _, n := range f.Server.DNSNames() {
		if n.Property == "NLBName" || n.Name == "" || seen[strings.ToLower(n.Name)] {
			continue
		}
		seen[strings.ToLower(n.Name)] = true
		if !selection.MatchName(c.CertificateDomains, n.Name, false) {
			missing = append(missing, Evidence{n.Property, n.Name})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return []Finding{{
		Severity: Error, Events: directTrustEvents, Subject: c.Thumbprint,
		Problem: fmt.Sprintf("the internal transport certificate %s lacks %s of server %s, so the organisation's servers refuse it for direct trust", c.Thumbprint, evidenceNames(missing), f.Server.Name),
		Evidence: append([]Evidence{
			{"InternalTransportCertificateThumbprint", c.Thumbprint},
			{"CertificateDomains", strings.Join(c.CertificateDomains, ", ")},
		}, missing...),
		Fix:  []Step{renewInternal()},
		Note: "this makes a new internal transport certificate with every name of the server; if the server's names are wrong instead (DNS or machine name), correct them with {Set-ExchangeServer -Fqdn} or {Set-ExchangeServer#PhysicalFqdn}",
	}}
}

// checkNLBNames is Q4: a load-balancer name configured on the server is
// not in its internal transport certificate.
func checkNLBNames(f *Facts) []Finding {
	c := f.internal()
	if c == nil {
		return nil
	}
	var missing []Evidence
	for _, n := range f.Server.NLBNames {
		if !selection.MatchName(c.CertificateDomains, n, false) {
			missing = append(missing, Evidence{"NLBName", n})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return []Finding{{
		Severity: Error, Events: directTrustEvents, Subject: c.Thumbprint,
		Problem: fmt.Sprintf("server %s has load-balancer names its internal transport certificate %s does not hold (%s), so direct trust fails", f.Server.Name, c.Thumbprint, evidenceNames(missing)),
		Evidence: append([]Evidence{
			{"InternalTransportCertificateThumbprint", c.Thumbprint},
			{"CertificateDomains", strings.Join(c.CertificateDomains, ", ")},
		}, missing...),
		Fix:  []Step{renewInternal()},
		Note: "the new internal transport certificate holds the load-balancer names too; if a name should not be there, clear the names instead: {Set-ExchangeServer -NLBNames ''}",
	}}
}

// checkInternalMissing is Q6 (seed 004): the directory names no internal
// transport certificate (12012), or one the personal store does not hold
// (12013, and 12024 while an ephemeral one stands in). With a backup the
// fix restores it; without, it makes a new one.
func checkInternalMissing(f *Facts) []Finding {
	t := f.Server.InternalTransportCertificateThumbprint
	ev := []Evidence{{"Server", f.Server.Name}, {"Role", f.Server.Role}}
	if t == "" {
		return []Finding{{
			Severity: Error, Events: []int{12012}, Subject: f.Server.Name,
			Problem:  fmt.Sprintf("the directory holds no internal transport certificate for server %s", f.Server.Name),
			Evidence: ev, Fix: []Step{renewInternal()},
		}}
	}
	if c := f.cert(t); c != nil && c.CertificateRequest == "" {
		return nil
	}
	events := []int{12013, 12024}
	if f.Server.Role == directory.RoleEdge {
		events = []int{12013}
	}
	ev = append(ev, Evidence{"InternalTransportCertificateThumbprint", t}, Evidence{"InPersonalStore", "false"})
	fnd := Finding{
		Severity: Error, Events: events, Subject: t,
		Problem:  fmt.Sprintf("the internal transport certificate %s the directory names for server %s is not in the personal store; sessions with the organisation's servers use a stand-in, and edges refuse them", t, f.Server.Name),
		Evidence: ev,
	}
	if file, ok := f.Backups[t]; ok {
		fnd.Evidence = append(fnd.Evidence, Evidence{"Backup", file})
		in := cmd("Import-ExchangeCertificate", file, "-Password", "-")
		in.Input = "the password of " + file
		fnd.Fix = []Step{in, cmd("Enable-ExchangeCertificate", t, "-Services", "SMTP")}
		fnd.Note = "the first command reads the backup's password on its standard input"
	} else {
		fnd.Fix = []Step{renewInternal()}
		fnd.Note = "no backup of it was found (an export to a PKCS#12 file that still exists); restore one with {Import-ExchangeCertificate} if you have it, else the new certificate replaces it"
	}
	return []Finding{fnd}
}

// svcOf returns c's services as a set.
func svcOf(c certview.Certificate) certprop.Services {
	s, _ := certprop.ParseServices(strings.Join(c.Services, ","))
	return s
}

// servicesText writes a list of services ("None" when empty).
func servicesText(s []string) string {
	if len(s) == 0 {
		return "None"
	}
	return strings.Join(s, ",")
}

// svcTransport names the SMTP, POP and IMAP services of s.
func svcTransport(s certprop.Services) string {
	return (s & (certprop.SMTP | certprop.POP | certprop.IMAP)).String()
}

func accessText(c certview.Certificate) string {
	var parts []string
	for _, r := range c.AccessRules {
		parts = append(parts, fmt.Sprintf("%s %s: %s", r.Kind, r.Account, r.Rights))
	}
	return strings.Join(parts, "; ")
}

func keyProblem(c *selection.Candidate) string {
	if c.KeyError != "" {
		return c.KeyError
	}
	return "the service account cannot read the key file"
}

func evidenceNames(list []Evidence) string {
	var parts []string
	for _, e := range list {
		parts = append(parts, e.Name+" "+e.Value)
	}
	return strings.Join(parts, ", ")
}
