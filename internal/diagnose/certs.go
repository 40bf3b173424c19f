package diagnose

import (
	"fmt"
	"strings"

	"certrelay/internal/certprop"
	"certrelay/internal/certview"
	"certrelay/internal/selection"
)

// The certificates the services use (seeds 002, 003): connectors without
// a certificate, inconsistent roots, certificates unfit for their
// services.

// checkConnectorFqdn is Q5 (seed 002, 12014): a TLS-enabled receive
// connector, or a send connector, whose FQDN no certificate enabled for
// SMTP can serve. When a certificate holds the name but is not enabled
// for SMTP, the fix enables it; when none holds it, the fix makes one.
func checkConnectorFqdn(f *Facts) []Finding {
	type conn struct {
		kind, name, fqdn, certName string
		oneLabel                   bool
	}
	var conns []conn
	for _, c := range f.Receive {
		if c.Enabled && has(c.AuthMechanism, "Tls") {
			conns = append(conns, conn{"receive", c.Name, c.Fqdn, c.TlsCertificateName, c.TlsWildcardOneLabel})
		}
	}
	for _, c := range f.Send {
		if c.Enabled && c.Fqdn != "" {
			conns = append(conns, conn{"send", c.Name, c.Fqdn, c.TlsCertificateName, false})
		}
	}
	// The server's own names are held by its internal transport
	// certificate, which Q1, Q3, Q4 and Q6 cover: their fix repairs the
	// connector too, so it is not reported twice.
	internalBroken := len(checkInternalNotSMTP(f)) > 0 || len(checkInternalMissing(f)) > 0 ||
		len(checkInternalNames(f)) > 0 || len(checkNLBNames(f)) > 0
	// A certificate enabled for SMTP that holds the name but is unfit
	// (Q8: expired, not Valid, no key) is reported there, with its fix.
	unfit := map[string]bool{}
	for _, x := range checkInUse(f) {
		unfit[x.Subject] = true
	}
	var out []Finding
	for _, c := range conns {
		req := selection.ForConnector(c.fqdn, f.Server.Fqdn, c.certName, c.oneLabel, certprop.SMTP)
		d := selection.Select(f.Candidates, req, f.Now)
		if d.Winner != nil || (internalBroken && f.ownName(req.FQDN)) || keyOnly(f, req) || f.unfitHolder(req, unfit) {
			continue
		}
		fnd := Finding{
			Severity: Error, Events: []int{12014}, Subject: c.kind + " " + c.name,
			Evidence: []Evidence{
				{"Connector", c.name}, {"Direction", c.kind}, {"Fqdn", req.FQDN},
				{"Selection", d.Why},
			},
		}
		if c.certName != "" {
			fnd.Evidence = append(fnd.Evidence, Evidence{"TlsCertificateName", c.certName})
		}
		// Would a certificate serve if it were enabled for SMTP?
		enabled := make([]selection.Candidate, len(f.Candidates))
		for i, cand := range f.Candidates {
			cand.Services |= certprop.SMTP
			enabled[i] = cand
		}
		if w := selection.Select(enabled, req, f.Now).Winner; w != nil {
			fnd.Problem = fmt.Sprintf("the %s connector %s needs a certificate for %s for STARTTLS; certificate %s holds that name but is not enabled for SMTP, so STARTTLS is not offered", c.kind, c.name, req.FQDN, w.Thumbprint)
			fnd.Evidence = append(fnd.Evidence, Evidence{"HoldsTheName", w.Thumbprint})
			fnd.Fix = []Step{cmd("Enable-ExchangeCertificate", w.Thumbprint, "-Services", "SMTP")}
		} else {
			fnd.Problem = fmt.Sprintf("the %s connector %s needs a certificate for %s for STARTTLS, and no certificate of the store that could serve holds that name, so STARTTLS is not offered", c.kind, c.name, req.FQDN)
			fnd.Fix = []Step{cmd("New-ExchangeCertificate", "-DomainName", req.FQDN, "-Services", "SMTP")}
			fnd.Note = "this makes a self-signed certificate; for one clients trust, request it from a CA with {New-ExchangeCertificate/GenerateRequest} and import the answer with {Import-ExchangeCertificate}, then enable it for SMTP"
		}
		if c.certName != "" {
			fnd.Note = strings.TrimSpace("the connector names its certificate (TlsCertificateName): the certificate must be that one. " + fnd.Note)
		}
		out = append(out, fnd)
	}
	return out
}

// keyOnly reports whether req would get a certificate enabled for SMTP
// were its private key readable by the service account: the problem is
// then Q2's, whose fix repairs the connector too.
func keyOnly(f *Facts, req selection.Request) bool {
	fixed := make([]selection.Candidate, 0, len(f.Candidates))
	for _, c := range f.Candidates {
		if c.HasKey && !c.KeyReadable {
			c.KeyReadable, c.KeyError = true, ""
		}
		fixed = append(fixed, c)
	}
	return selection.Select(fixed, req, f.Now).Winner != nil
}

// unfitHolder reports whether a certificate enabled for SMTP that holds
// req's name is one Q8 reports.
func (f *Facts) unfitHolder(req selection.Request, unfit map[string]bool) bool {
	for _, c := range f.Candidates {
		if unfit[c.Thumbprint] && c.Services.Has(certprop.SMTP) && selection.MatchName(c.Domains, req.FQDN, req.OneLabel) {
			return true
		}
	}
	return false
}

// ownName reports whether name is one of the server's DNS names.
func (f *Facts) ownName(name string) bool {
	for _, n := range f.Server.DNSNames() {
		if strings.EqualFold(n.Name, name) {
			return true
		}
	}
	return false
}

// checkRootCAType is Q7 (C7): a self-signed certificate whose RootCAType
// is not None (it was added to the trusted roots), and, in an
// organisation of several servers, a certificate a service uses whose
// root is trusted by hand on this server only (Registry): the other
// servers do not trust it.
func checkRootCAType(f *Facts) []Finding {
	var out []Finding
	for _, c := range f.Certificates {
		if c.CertificateRequest != "" {
			continue
		}
		switch {
		case c.IsSelfSigned && c.RootCAType != "" && c.RootCAType != certprop.RootNone && c.RootCAType != certprop.RootUnknown:
			out = append(out, Finding{
				Severity: Warning, Subject: c.Thumbprint,
				Problem:  fmt.Sprintf("the self-signed certificate %s has RootCAType %s: it was added to the trusted roots, which a self-signed certificate needs on the clients, not on this server", c.Thumbprint, c.RootCAType),
				Evidence: []Evidence{{"Thumbprint", c.Thumbprint}, {"Subject", c.Subject}, {"IsSelfSigned", "true"}, {"RootCAType", string(c.RootCAType)}},
				Fix:      []Step{cmd("Remove-CertrelayTrustedCertificate", c.Thumbprint)},
			})
		case !c.IsSelfSigned && c.RootCAType == certprop.RootRegistry && len(c.Services) > 0 && len(f.Servers) > 1:
			root := rootOf(c)
			out = append(out, Finding{
				Severity: Warning, Subject: c.Thumbprint,
				Problem: fmt.Sprintf("certificate %s, enabled for %s, chains to root %s, which is trusted on this server only (Registry): the organisation's other servers do not trust it", c.Thumbprint, strings.Join(c.Services, ","), root),
				Evidence: []Evidence{{"Thumbprint", c.Thumbprint}, {"Issuer", c.Issuer}, {"RootCAType", string(c.RootCAType)}, {"Root", root},
					{"Servers", fmt.Sprint(len(f.Servers))}},
				Fix:  []Step{cmd("Add-CertrelayTrustedCertificate", "ROOT.cer", "-Source", "grouppolicy")},
				Note: "ROOT.cer is the file of root " + root + "; as a GroupPolicy root the directory gives it to every server",
			})
		}
	}
	return out
}

// checkInUse is Q8 (C12, E5): a certificate enabled for a service, or the
// internal transport certificate, that has expired or expires within the
// window, whose Status is not Valid, or that has no private key.
func checkInUse(f *Facts) []Finding {
	var out []Finding
	internal := f.Server.InternalTransportCertificateThumbprint
	for _, c := range f.Certificates {
		isInternal := strings.EqualFold(c.Thumbprint, internal)
		if c.CertificateRequest != "" || c.NotAfter == nil || (len(c.Services) == 0 && !isInternal) {
			continue
		}
		ev := []Evidence{{"Thumbprint", c.Thumbprint}, {"Subject", c.Subject}, {"Services", servicesText(c.Services)},
			{"NotAfter", c.NotAfter.UTC().Format("2006-01-02T15:04:05Z")}, {"Status", string(c.Status)}}
		renew := cmd("New-ExchangeCertificate", "-Instance", c.Thumbprint)
		if isInternal {
			renew = renewInternal()
		}
		renewNote := ""
		if !c.IsSelfSigned {
			renewNote = "for a CA-issued certificate, request the new one from the CA instead: {New-ExchangeCertificate/GenerateRequest}, then {Import-ExchangeCertificate} and {Enable-ExchangeCertificate}"
		}
		left := c.NotAfter.Sub(f.Now)
		switch {
		case left <= 0:
			id := 12016
			if isInternal {
				id = 12015
			}
			out = append(out, Finding{
				Severity: Error, Events: []int{id}, Subject: c.Thumbprint, Evidence: ev,
				Problem: fmt.Sprintf("certificate %s expired on %s and is still in use (%s)", c.Thumbprint, c.NotAfter.UTC().Format("2006-01-02"), usedFor(c, isInternal)),
				Fix:     []Step{renew}, Note: renewNote,
			})
			continue
		case left <= f.window():
			id := 12018
			if isInternal {
				id = 12017
			}
			out = append(out, Finding{
				Severity: Warning, Events: []int{id}, Subject: c.Thumbprint,
				Evidence: append(ev, Evidence{"HoursRemaining", fmt.Sprint(int(left.Hours()))}),
				Problem:  fmt.Sprintf("certificate %s expires in %d days (%s)", c.Thumbprint, int(left.Hours()/24), usedFor(c, isInternal)),
				Fix:      []Step{renew}, Note: renewNote,
			})
		}
		if c.Status != certprop.Valid && c.Status != certprop.DateInvalid && !(c.IsSelfSigned && c.Status == certprop.Untrusted) {
			out = append(out, Finding{
				Severity: Error, Events: []int{12014}, Subject: c.Thumbprint,
				Evidence: append(ev, Evidence{"StatusDetail", c.StatusDetail}),
				Problem:  fmt.Sprintf("certificate %s is enabled for %s but its Status is %s: %s", c.Thumbprint, servicesText(c.Services), c.Status, c.StatusDetail),
				Fix:      []Step{cmd("Test-CertrelayCertificate", c.Thumbprint)},
				Note:     "the command shows the chain, and each CRL and OCSP URL with what it answered; " + escape(c.Fix),
			})
		}
		if !c.HasPrivateKey && len(c.Services) > 0 {
			out = append(out, Finding{
				Severity: Error, Events: []int{12014}, Subject: c.Thumbprint, Evidence: ev,
				Problem: fmt.Sprintf("certificate %s is enabled for %s but the store holds no private key for it, so no service can use it", c.Thumbprint, servicesText(c.Services)),
				Fix:     []Step{cmd("Remove-ExchangeCertificate", c.Thumbprint, "-Force")},
				Note:    "then import it again with its key from a PKCS#12 file: {Import-ExchangeCertificate}",
			})
		}
	}
	return out
}

// usedFor says what uses a certificate.
func usedFor(c certview.Certificate, internal bool) string {
	var parts []string
	if internal {
		parts = append(parts, "the internal transport certificate")
	}
	if len(c.Services) > 0 {
		parts = append(parts, "enabled for "+strings.Join(c.Services, ","))
	}
	return strings.Join(parts, ", ")
}

// rootOf names the root that ends c's chain.
func rootOf(c certview.Certificate) string {
	if n := len(c.Chain); n > 0 {
		r := c.Chain[n-1]
		return r.Thumbprint + " (" + r.Subject + ")"
	}
	return "(unknown)"
}

// escape makes text safe to put in a Note: braces are literal.
func escape(s string) string {
	return strings.NewReplacer("{", "{{", "}", "}}").Replace(s)
}
