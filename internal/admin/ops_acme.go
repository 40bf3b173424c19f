package admin

import (
	"strings"
	"time"

	"certrelay/internal/acme"
	"certrelay/internal/certinfo"
)

// The ACME parameters of New-ExchangeCertificate (issue 18): -Acme
// orders the certificate from an ACME CA instead of signing it here.
var acmeParams = []Param{
	{Name: "Acme", CLI: "acme", Type: TypeBool, Excludes: []string{"SubjectName", "Instance"}, Help: "order the certificate from the ACME CA of an account ({New-CertrelayAcmeAccount}) instead of making it self-signed"},
	{Name: "AcmeAccount", CLI: "acme-account", Type: TypeInt, Help: "with {-Acme}: the account's Identity (default: the newest)"},
	{Name: "HttpChallengeAddress", CLI: "http-01", Type: TypeString, Help: "with {-Acme}: answer http-01 on this address (such as :80, or a port port 80 is forwarded to); server: the running server answers on its plain HTTP listener (metrics bindings)"},
	{Name: "TlsAlpnChallengeAddress", CLI: "tls-alpn-01", Type: TypeString, Help: "with {-Acme}: answer tls-alpn-01 on this address (such as :443, or a port port 443 is forwarded to); server: the running server answers on its console's HTTPS listener"},
	{Name: "DnsChallengeHook", CLI: "dns-01-hook", Type: TypeString, Help: "with {-Acme}: answer dns-01 with this program: HOOK present|cleanup NAME VALUE publishes or removes the TXT record"},
	{Name: "RenewBeforeDays", CLI: "renew-before-days", Type: TypeInt, Help: "with {-Acme}: renew this many days before expiry (default: at two thirds of its life)"},
}

// runAcmeNew is New-ExchangeCertificate -Acme.
func runAcmeNew(in *In) (*Result, error) {
	o := AcmeOptions{
		Domains: in.Strings("DomainName"), Key: keySpec(in),
		FriendlyName: in.String("FriendlyName"), Exportable: in.Bool("PrivateKeyExportable"),
		Account: int64(in.Int("AcmeAccount")), RenewBefore: time.Duration(in.Int("RenewBeforeDays")) * 24 * time.Hour,
		Challenges: acme.Challenges{
			HTTPAddr: in.String("HttpChallengeAddress"), TLSALPNAddr: in.String("TlsAlpnChallengeAddress"), DNSHook: in.String("DnsChallengeHook"),
		},
	}
	if in.Has("Services") {
		s := in.Services("Services")
		o.Services = &s
	}
	res, err := in.a.newAcmeCertificate(in.ctx, o, in)
	if err != nil {
		return nil, err
	}
	r := &Result{Data: res.Certificate}
	for _, t := range res.Intermediates {
		r.note("Added intermediate %s to the intermediate store.", t)
	}
	r.add(Note, res.Notes)
	r.add(Warning, res.Warnings)
	return r, nil
}

func acmeOperations() []*Operation {
	return []*Operation{
		{
			Name: "New-CertrelayAcmeAccount", Cmdlet: "New-CertrelayAcmeAccount", CLI: "acme account add",
			Summary: "Register an account at an ACME CA (RFC 8555) for {New-ExchangeCertificate -Acme}",
			Description: `Make an account key, register it at the CA (agreeing to its terms of
service) and keep both; the key is a file of mode 0600 in the data
directory's acme/ folder. A CA that needs an external account binding
gives a key ID ({-EabKeyId}) and a MAC key ({-EabHmacKey}, read from a file).`,
			Role: ServerAdmin, Returns: AcmeAccount{},
			Params: []Param{
				{Name: "Directory", CLI: "directory", Type: TypeString, Required: true, Help: "the CA's directory URL (https://…)"},
				{Name: "Email", CLI: "email", Type: TypeString, Help: "contact address the CA writes to about expiry and problems"},
				{Name: "EabKeyId", CLI: "eab-kid", Type: TypeString, Help: "external account binding: the key ID the CA gave"},
				{Name: "EabHmacKey", CLI: "eab-key-file", Type: TypeSecret, Help: "external account binding: the MAC key the CA gave (base64url)", Prompt: "EAB MAC key"},
				{Name: "DirectoryCertificateAuthority", CLI: "ca-file", Type: TypeData, Help: "PEM roots that certify the CA's HTTPS server, when the system's do not (a private CA)"},
			},
			NoWhatIf: true,
			Run: func(in *In) (*Result, error) {
				ac, err := in.a.AddAcmeAccount(in.ctx, AcmeAccountOptions{
					Directory: in.String("Directory"), Email: in.String("Email"),
					EABKeyID: in.String("EabKeyId"), EABKey: in.StringPtr("EabHmacKey"), CAPEM: in.Data("DirectoryCertificateAuthority"),
				})
				if err != nil {
					return nil, err
				}
				r := &Result{Data: ac}
				r.Messages = append(r.Messages, Message{Hint, msgf("Order a certificate with: %s", cmd("New-ExchangeCertificate", "-Acme", "-DomainName", "mail.example.com", "-HttpChallengeAddress", ":80"))})
				return r, nil
			},
		},
		{
			Name: "Get-CertrelayAcmeAccount", Cmdlet: "Get-CertrelayAcmeAccount", CLI: "acme account list",
			Summary: "List the ACME accounts of this server",
			Role:    ViewOnly, Returns: []AcmeAccount{},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.ListAcmeAccounts(in.ctx)
				if err != nil {
					return nil, err
				}
				return &Result{Data: list}, nil
			},
		},
		{
			Name: "Update-CertrelayCertificate", Cmdlet: "Update-CertrelayCertificate", CLI: "cert renew",
			Summary: "Renew a certificate now, whatever its kind, and say what was done",
			Description: `Renew now: an ACME certificate is ordered again from its CA with the same
names and challenges; a self-signed one is made again with the same subject,
names and key type. The new certificate takes over the services of the old
one (and the internal transport certificate, published in the directory, and
the HTTPS binding when the old one held them); running servers use it from
the next handshake. The old certificate stays in the store until you remove
it. A failure is recorded and shown by {Get-CertrelayCertificateRenewal}.`,
			Role: ServerAdmin, Returns: Certificate{}, NoWhatIf: true,
			Params: []Param{thumbprintParam("the certificate to renew")},
			Run: func(in *In) (*Result, error) {
				res, err := in.a.RenewCertificate(in.ctx, in.String("Thumbprint"))
				if err != nil {
					return nil, err
				}
				r := &Result{Data: res.Certificate}
				r.note("Renewed %s (%s) as %s, valid until %s; it took over %s.", res.Old, res.How, res.Certificate.Thumbprint, res.Certificate.NotAfter.UTC().Format(time.RFC3339), res.Services)
				if res.BecameInternal {
					r.note("It is now this server's internal transport certificate, published in the directory.")
				}
				r.add(Note, res.Notes)
				r.add(Warning, res.Warnings)
				r.Messages = append(r.Messages, Message{Hint, msgf("The old certificate stays in the store; remove it when no peer needs it: %s", cmd("Remove-ExchangeCertificate", res.Old))})
				return r, nil
			},
		},
		{
			Name: "Get-CertrelayCertificateRenewal", Cmdlet: "Get-CertrelayCertificateRenewal", CLI: "cert renewals",
			Summary: "List the certificates certrelay renews by itself: when next, and the last error",
			Role:    ViewOnly, Returns: []CertificateRenewal{},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.ListRenewals(in.ctx)
				if err != nil {
					return nil, err
				}
				return &Result{Data: list}, nil
			},
		},
		{
			Name: "Test-CertrelayCertificateServing", Cmdlet: "Test-CertrelayCertificateServing", CLI: "cert probe",
			Summary: "Connect to each listener with each name it serves and compare the certificate served with the one selection intends",
			Description: `The self-probe (the running server does it every few minutes): SMTP STARTTLS on
each receive connector's bindings with its FQDN, POP3 STLS and IMAP4 STARTTLS
(and their TLS bindings) with X509CertificateName, the console's bindings with
its host name. A difference, or a listener that does not answer, is listed
and logged (16106).`,
			Role: ViewOnly, Returns: []ProbeResult{},
			Run: func(in *In) (*Result, error) {
				rs, err := in.a.Probe(in.ctx)
				if err != nil {
					return nil, err
				}
				r := &Result{Data: rs}
				for _, p := range rs {
					if !p.Match {
						r.Messages = append(r.Messages, Message{Warning, msgf("%s %s on %s for %s: served %s, selection intends %s %s", p.Listener, p.Name, p.Address, p.Fqdn, orNone(p.Served), orNone(p.Intended), p.Error)})
					}
				}
				return r, nil
			},
		},
		{
			Name: "Import-CertrelayStagedCertificate", Cmdlet: "Import-CertrelayStagedCertificate", CLI: "cert stage",
			Summary: "Stage a certificate: import it used by nothing, after a preflight of what its activation would change (SPEC L3)",
			Description: `The preflight lists every listener and name whose certificate the activation
would change, from which to which, and refuses — changing nothing — on a
problem: a key that does not match, a chain incomplete or untrusted,
revocation that cannot be checked, a name served today by a certificate it
replaces that it lacks, a published TLSA record that would stop matching.
Activate it with {Enable-CertrelayStagedCertificate}.`,
			Role: ServerAdmin, Returns: Preflight{},
			Params: []Param{
				{Name: "FileData", CLI: "FILE", Type: TypeData, Position: 1, Required: true, Help: "the certificate file (PKCS#12 with its key, PEM with its key, or the CA's answer to a request of this server)"},
				{Name: "Password", CLI: "password-file", Type: TypeSecret, Help: "the PKCS#12 password", Prompt: "PKCS#12 password"},
				{Name: "Services", CLI: "services", Type: TypeServices, Help: "services its activation enables (default: those of the certificates it replaces)"},
				friendly,
			},
			Run: func(in *In) (*Result, error) {
				o := StageOptions{Data: in.Data("FileData"), Password: in.StringPtr("Password"), FriendlyName: in.String("FriendlyName")}
				if in.Has("Services") {
					s := in.Services("Services")
					o.Services = &s
				}
				p, err := in.a.StageCertificate(in.ctx, o)
				if err != nil {
					return nil, err
				}
				return preflightResult(p, "Staged"), nil
			},
		},
		{
			Name: "Enable-CertrelayStagedCertificate", Cmdlet: "Enable-CertrelayStagedCertificate", CLI: "cert activate",
			Summary: "Activate a staged certificate now, or at a time (the running server does it then)",
			Role:    ServerAdmin, Returns: Preflight{},
			Params: []Param{
				thumbprintParam("the staged certificate"),
				{Name: "At", CLI: "at", Type: TypeString, Help: "when: an RFC 3339 time (2026-12-01T02:00:00Z) or +DURATION from now (+2h); default now"},
			},
			Run: func(in *In) (*Result, error) {
				var at time.Time
				if s := in.String("At"); s != "" {
					var err error
					if at, err = parseAt(s, in.a.now()); err != nil {
						return nil, invalid("At", s, "%s", err.Error()).fix("give 2026-12-01T02:00:00Z or +2h")
					}
					if !at.After(in.a.now()) {
						return nil, invalid("At", s, "%s is not in the future", at.UTC().Format(time.RFC3339)).fix("leave {-At} out to activate now")
					}
				}
				p, err := in.a.ActivateCertificate(in.ctx, in.String("Thumbprint"), at)
				if err != nil {
					return nil, err
				}
				if p.ActivateAt != nil {
					return preflightResult(p, "Scheduled for "+p.ActivateAt.Format(time.RFC3339)+":"), nil
				}
				return preflightResult(p, "Activated"), nil
			},
		},
		{
			Name: "Disable-CertrelayStagedCertificate", Cmdlet: "Disable-CertrelayStagedCertificate", CLI: "cert rollback",
			Summary: "Roll back the latest activation of a staged certificate (within 7 days): the certificates it replaced serve again",
			Role:    ServerAdmin, NoWhatIf: false,
			Params: []Param{
				{Name: "Thumbprint", CLI: "THUMBPRINT", Type: TypeString, Position: 1, Help: "the activated certificate (default: the latest activated)"},
			},
			Run: func(in *In) (*Result, error) {
				t, err := in.a.RollbackCertificate(in.ctx, in.String("Thumbprint"))
				if err != nil {
					return nil, err
				}
				r := &Result{}
				r.note("Rolled back %s: the certificates it replaced serve again from the next handshake.", t)
				return r, nil
			},
		},
		{
			Name: "Get-CertrelayStagedCertificate", Cmdlet: "Get-CertrelayStagedCertificate", CLI: "cert staged",
			Summary: "List the staged certificates: staged, scheduled, active or rolled back",
			Role:    ViewOnly, Returns: []StagedCertificate{},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.ListStaged(in.ctx)
				if err != nil {
					return nil, err
				}
				return &Result{Data: list}, nil
			},
		},
		{
			Name: "Get-CertrelayCertificateTlsa", Cmdlet: "Get-CertrelayCertificateTlsa", CLI: "cert tlsa",
			Summary: "The TLSA records (DANE-EE 3 1 1) to publish for a certificate on this server's receive connectors",
			Role:    ViewOnly, Returns: []TlsaRecord{},
			Params: []Param{thumbprintParam("the certificate")},
			Run: func(in *In) (*Result, error) {
				t, ok := certinfo.NormalizeThumbprint(in.String("Thumbprint"))
				if !ok {
					return nil, badThumbprint(in.String("Thumbprint"))
				}
				list, err := in.a.TlsaRecords(in.ctx, t)
				if err != nil {
					return nil, err
				}
				return &Result{Data: list}, nil
			},
		},
	}
}

// preflightResult shows a preflight: each change, then its warnings.
func preflightResult(p Preflight, what string) *Result {
	r := &Result{Data: p}
	r.note("%s %s (%s) for %s.", what, p.Thumbprint, p.Subject, p.Services)
	for _, c := range p.Changes {
		r.note("%s %s, %s (%s): %s -> %s", c.Listener, c.Name, c.Fqdn, c.Service, orNone(c.From), orNone(c.To))
	}
	r.add(Warning, p.Warnings)
	return r
}

// parseAt reads an activation time: RFC 3339, or +DURATION from now.
func parseAt(s string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutPrefix(s, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(dur), nil
	}
	return time.Parse(time.RFC3339, s)
}
