package admin

import (
	"fmt"

	"certrelay/internal/certinfo"
	"certrelay/internal/store"
)

// Parameters several operations share.
var (
	forceParam = Param{Name: "Force", CLI: "force", Type: TypeBool, Help: "answer yes to questions"}
	keyType    = Param{Name: "KeyType", CLI: "key-type", Type: TypeString, Default: "rsa", Help: "rsa or ecdsa"}
	keySize    = Param{Name: "KeySize", CLI: "key-size", Type: TypeInt, Help: "RSA: 2048 (default), 3072, 4096; ECDSA: 256 (default), 384"}
	friendly   = Param{Name: "FriendlyName", CLI: "friendly-name", Type: TypeString, Help: "a name for people"}
)

// thumbprintParam is the positional thumbprint most certificate
// operations take.
func thumbprintParam(help string) Param {
	return Param{Name: "Thumbprint", CLI: "THUMBPRINT", Type: TypeString, Position: 1, Required: true, Help: help}
}

func certOperations() []*Operation {
	return []*Operation{
		{
			Name: "New-ExchangeCertificate", Cmdlet: "New-ExchangeCertificate", CLI: "cert new",
			Summary: "Make a self-signed certificate (M1), or renew one with {-Instance} (M2)",
			Description: `Make a self-signed certificate. Without {-DomainName} or {-SubjectName} it makes a new
internal transport certificate for this server (its host name and FQDN).
When the new certificate is enabled for SMTP and holds this server's name,
it may replace the internal transport certificate: you are asked first
({-Force} answers yes). Prints the new thumbprint.`,
			Role: ServerAdmin, Confirm: ConfirmSometimes, Returns: Certificate{},
			Params: []Param{
				{Name: "DomainName", CLI: "domain", Type: TypeNames, Help: "DNS name the certificate holds (repeat, or separate with commas)"},
				{Name: "SubjectName", CLI: "subject", Type: TypeString, Help: `X.500 subject, such as "c=US,o=Contoso,cn=mail.contoso.com" (default CN = first domain)`},
				{Name: "Services", CLI: "services", Type: TypeServices, Default: "IMAP,POP,SMTP", Help: "services to enable: SMTP, POP, IMAP, UM, IIS"},
				keyType, keySize, friendly,
				{Name: "PrivateKeyExportable", CLI: "exportable", Type: TypeBool, Help: "allow the private key to be exported ({Export-ExchangeCertificate -Password})"},
				{Name: "Instance", CLI: "from", Type: TypeString, Pipe: "Thumbprint", Help: "renew: copy subject, domains and services of this certificate"},
				forceParam,
				acmeParams[0], acmeParams[1], acmeParams[2], acmeParams[3], acmeParams[4],
			},
			Run: func(in *In) (*Result, error) {
				if in.Bool("Acme") {
					return runAcmeNew(in)
				}
				for _, p := range acmeParams[1:] {
					if in.Has(p.Name) {
						return nil, usage(p.Name, "{-%s} goes with {-Acme}", p.Name).fix("add {-Acme} to order the certificate from an ACME CA")
					}
				}
				o := NewOptions{
					Domains: in.Strings("DomainName"), Subject: in.String("SubjectName"),
					Key:          keySpec(in),
					FriendlyName: in.String("FriendlyName"), Exportable: in.Bool("PrivateKeyExportable"), From: in.String("Instance"),
				}
				if in.Has("Services") {
					s := in.Services("Services")
					o.Services = &s
				}
				res, err := in.a.newCertificate(in.ctx, o, in)
				if err != nil {
					return nil, err
				}
				r := &Result{Data: res.Certificate}
				switch {
				case res.BecameInternal && res.Previous != "":
					r.note("It replaces %s as this server's internal transport certificate.", res.Previous)
				case res.BecameInternal:
					r.note("It is now this server's internal transport certificate.")
				case res.Declined:
					r.note("The internal transport certificate was kept; the new certificate was made anyway.")
				}
				r.add(Warning, res.Warnings)
				return r, nil
			},
		},
		{
			Name: "New-ExchangeCertificate/GenerateRequest", Cmdlet: "New-ExchangeCertificate", Set: "GenerateRequest", CLI: "cert request",
			Summary: "Make a key and a PKCS#10 certificate request for a CA (M3)",
			Description: `Make a private key, kept in the store, and a certificate request, handed
over as a file (base64 PEM, or DER with {-BinaryEncoded}). The request is listed as
PendingRequest until the CA's certificate is imported. Prints its thumbprint.`,
			Role: ServerAdmin, Returns: Certificate{}, File: true,
			Params: []Param{
				{Name: "DomainName", CLI: "domain", Type: TypeNames, Help: "DNS name the certificate must hold (repeat, or separate with commas)"},
				{Name: "SubjectName", CLI: "subject", Type: TypeString, Help: `X.500 subject, such as "c=us,o=contoso corp, cn=popserver.fourthcoffee.com"`},
				{Name: "Services", CLI: "services", Type: TypeString, Hidden: true, Help: "not allowed: enable services after import"},
				keyType, keySize, friendly,
				{Name: "PrivateKeyExportable", CLI: "exportable", Type: TypeBool, Help: "allow the private key to be exported once the certificate is imported"},
				{Name: "BinaryEncoded", CLI: "der", Type: TypeBool, Help: "write binary DER instead of base64"},
				{Name: "GenerateRequest", CLI: "generate-request", Type: TypeBool, Hidden: true, Help: "make a request: the switch that selects this operation in the cmdlet shell"},
			},
			Run: func(in *In) (*Result, error) {
				rr, err := in.a.RequestCertificate(in.ctx, RequestOptions{
					Domains: in.Strings("DomainName"), Subject: in.String("SubjectName"), Services: in.String("Services"),
					Key:          keySpec(in),
					FriendlyName: in.String("FriendlyName"), Exportable: in.Bool("PrivateKeyExportable"), DER: in.Bool("BinaryEncoded"),
				})
				if err != nil {
					return nil, err
				}
				format := "PKCS#10 PEM"
				if in.Bool("BinaryEncoded") {
					format = "PKCS#10 DER"
				}
				if _, err := in.deliver(File{Data: rr.Data, Format: format}); err != nil {
					// A request nobody can send to a CA is of no use: nothing is kept.
					_, _ = in.a.removeCertificate(in.ctx, rr.Certificate.Thumbprint, confirmerAsker{Yes{}})
					e := asError(err)
					return nil, &Error{Kind: e.Kind, Field: e.Field, Value: e.Value, Err: fmt.Errorf("write the request: %w; nothing was kept", err)}
				}
				r := &Result{Data: rr.Certificate}
				r.add(Warning, rr.Warnings)
				return r, nil
			},
		},
		{
			Name: "Import-ExchangeCertificate", Cmdlet: "Import-ExchangeCertificate", CLI: "cert import",
			Summary: "Import a CA's certificate for a pending request, or a PKCS#12 file (M4)",
			Description: `Import a certificate: the CA's answer to a request made on this server (DER,
PEM, base64 or PKCS#7, chain included), or a certificate with its private key
(PKCS#12 with {-Password}, or PEM with the key). Intermediates go to the
intermediate store. Prints the thumbprint, so it can go straight to
{Enable-ExchangeCertificate}.`,
			Role: ServerAdmin, Returns: Certificate{},
			Params: []Param{
				{Name: "FileData", CLI: "FILE", Type: TypeData, Position: 1, Required: true, Help: "the certificate file"},
				{Name: "Password", CLI: "password-file", Type: TypeSecret, Help: "the PKCS#12 password", Prompt: "PKCS#12 password"},
				{Name: "PrivateKeyExportable", CLI: "exportable", Type: TypeBool, Help: "allow the imported private key to be exported again"},
				friendly,
			},
			Run: func(in *In) (*Result, error) {
				o := ImportOptions{Data: in.Data("FileData"), Password: in.StringPtr("Password"), Exportable: in.Bool("PrivateKeyExportable"), FriendlyName: in.String("FriendlyName")}
				res, err := in.a.ImportCertificate(in.ctx, o)
				if err != nil {
					return nil, err
				}
				r := &Result{Data: res.Certificate}
				if res.AnsweredRequest != "" {
					r.note("It answers the pending request %s, which is now a certificate.", res.AnsweredRequest)
				}
				for _, t := range res.Intermediates {
					r.note("Added intermediate %s to the intermediate store.", t)
				}
				r.add(Warning, res.Warnings)
				for _, s := range res.Roots {
					r.note("The file also holds the root %q; it is not trusted by importing it (use %s if you mean to trust it).", s, markup("{Add-CertrelayTrustedCertificate}"))
				}
				t := res.Certificate.Thumbprint
				r.Messages = append(r.Messages, Message{Hint, msgf("Status: %s. Enable it with: %s (or POP, IMAP, IIS, UM)", res.Certificate.Status,
					cmd("Enable-ExchangeCertificate", t, "-Services", "SMTP"))})
				return r, nil
			},
		},
		{
			Name: "Enable-ExchangeCertificate", Cmdlet: "Enable-ExchangeCertificate", CLI: "cert enable",
			Summary: "Enable a certificate for services (M5); services are only ever added",
			Role:    ServerAdmin, Confirm: ConfirmSometimes, Returns: Certificate{},
			Params: []Param{
				thumbprintParam("the certificate's thumbprint"),
				{Name: "Services", CLI: "services", Type: TypeServices, Required: true, Help: "services to add: SMTP, POP, IMAP, UM, IIS"},
				forceParam,
			},
			Run: func(in *In) (*Result, error) {
				res, err := in.a.enableCertificate(in.ctx, in.String("Thumbprint"), in.Services("Services"), in)
				if err != nil {
					return nil, err
				}
				r := &Result{Data: res.Certificate}
				r.add(Note, res.Notes)
				if res.BecameInternal {
					r.note("It is now this server's internal transport certificate.")
				}
				r.add(Warning, res.Warnings)
				return r, nil
			},
		},
		{
			Name: "Get-ExchangeCertificate", Cmdlet: "Get-ExchangeCertificate", CLI: "cert list",
			Summary: "List certificates and pending requests (M6)",
			Description: `List the personal store. With {-DomainName}, only the certificates that hold that
name (directly or by wildcard), in the order selection uses them for a session
with that FQDN ({-Service}, default SMTP): the first is the certificate clients
get, the second the one they would get without the first, and so on; those
selection would not use come last, with the reason.`,
			Role: ViewOnly, Returns: []Certificate{},
			Params: []Param{
				{Name: "DomainName", CLI: "domain", Type: TypeString, Help: "only certificates that hold this name, in selection's order"},
				{Name: "Service", CLI: "service", Type: TypeService, Default: "SMTP", Help: "with {-DomainName}: the service whose selection orders them"},
			},
			Run: func(in *In) (*Result, error) {
				if d := in.String("DomainName"); d != "" {
					list, err := in.a.RankCertificates(in.ctx, ListOptions{Domain: d, Service: in.Services("Service")})
					if err != nil {
						return nil, err
					}
					return &Result{Data: orEmpty(list)}, nil
				}
				list, err := in.a.ListCertificates(in.ctx, ListOptions{})
				if err != nil {
					return nil, err
				}
				return &Result{Data: orEmpty(list)}, nil
			},
		},
		{
			Name: "Get-ExchangeCertificate/Thumbprint", Cmdlet: "Get-ExchangeCertificate", Set: "Thumbprint", CLI: "cert show",
			Summary: "Show every property of a certificate (M6, like Get-ExchangeCertificate | fl *)",
			Role:    ViewOnly, Returns: Certificate{},
			Params: []Param{thumbprintParam("the certificate's thumbprint")},
			Run: func(in *In) (*Result, error) {
				c, err := in.a.GetCertificate(in.ctx, in.String("Thumbprint"))
				if err != nil {
					return nil, err
				}
				return &Result{Data: c}, nil
			},
		},
		{
			Name: "Export-ExchangeCertificate", Cmdlet: "Export-ExchangeCertificate", CLI: "cert export",
			Summary: "Export a certificate (PEM or DER), or with its key as PKCS#12 (M7)",
			Description: `Export the certificate alone (PEM, or DER with {-BinaryEncoded}), or, with
{-Password}, certificate, chain and private key as PKCS#12 — only when
the key was made or imported with {New-ExchangeCertificate#PrivateKeyExportable}. Exporting a private key
needs the server-admin role.`,
			Role: ViewOnly, Returns: Exported{}, File: true,
			Params: []Param{
				thumbprintParam("the certificate's thumbprint"),
				{Name: "Password", CLI: "password-file", Type: TypeSecret, Help: "the PKCS#12 password"},
				{Name: "BinaryEncoded", CLI: "der", Type: TypeBool, Help: "certificate alone as DER", Excludes: []string{"Password"}},
			},
			Run: func(in *In) (*Result, error) {
				if in.Has("Password") {
					if err := in.need(ServerAdmin); err != nil {
						return nil, err
					}
				}
				data, format, err := in.a.ExportCertificate(in.ctx, in.String("Thumbprint"), ExportOptions{Password: in.StringPtr("Password"), DER: in.Bool("BinaryEncoded")})
				if err != nil {
					return nil, err
				}
				t, _ := certinfo.NormalizeThumbprint(in.String("Thumbprint"))
				where, err := in.deliver(File{Data: data, Format: format, Secret: in.Has("Password")})
				if err != nil {
					return nil, err
				}
				if where == "" {
					where = "(returned to " + or(in.Caller.Name, "the caller") + ")"
				}
				in.a.LogExport(in.ctx, t, format, where)
				return &Result{Data: Exported{Thumbprint: t, Format: format}}, nil
			},
		},
		{
			Name: "Remove-ExchangeCertificate", Cmdlet: "Remove-ExchangeCertificate", CLI: "cert remove",
			Summary: "Remove a certificate or pending request, and its key (M8)",
			Role:    ServerAdmin, Confirm: ConfirmAlways, Returns: Certificate{},
			Params: []Param{
				thumbprintParam("the certificate's thumbprint"),
				{Name: "Force", CLI: "force", Type: TypeBool, Help: "do not ask for confirmation"},
			},
			Run: func(in *In) (*Result, error) {
				res, err := in.a.removeCertificate(in.ctx, in.String("Thumbprint"), in)
				if err != nil {
					return nil, err
				}
				r := &Result{Data: res.Removed}
				r.add(Warning, res.Warnings)
				return r, nil
			},
		},
		{
			Name: "Test-CertrelayCertificate", Cmdlet: "Test-CertrelayCertificate", CLI: "cert verify",
			Summary: "Verify a certificate now: chain, and revocation fetched afresh from every CRL and OCSP URL (T5)",
			Description: `Build the certificate's chain and fetch the revocation data of every element
afresh, as certutil -verify -urlfetch does; print the chain, each element's
status, every CRL and OCSP URL tried with what it answered, and what to do.
The argument is a thumbprint of the store or a certificate file. The result
is stored: cert list shows the refreshed Status. Exits 0 when the
certificate is Valid, 1 otherwise.`,
			Role: ViewOnly, Returns: VerifyResult{},
			Params: []Param{
				{Name: "Thumbprint", CLI: "THUMBPRINT", Type: TypeString, Position: 1, Help: "the thumbprint of a certificate of the store", Excludes: []string{"FileData"}},
				{Name: "FileData", CLI: "file", Type: TypeData, Help: "a certificate file (with its chain)"},
			},
			Run: func(in *In) (*Result, error) {
				if !in.Has("Thumbprint") && !in.Has("FileData") {
					return nil, usage("Thumbprint", "give {-Thumbprint} or {-FileData}")
				}
				var data []byte
				if in.Has("FileData") {
					data = in.Data("FileData")
				}
				res, err := in.a.VerifyCertificate(in.ctx, in.String("Thumbprint"), data)
				if err != nil {
					return nil, err
				}
				return &Result{Data: res}, nil
			},
		},
		{
			Name: "Get-CertrelayCertificateSelection", Cmdlet: "Get-CertrelayCertificateSelection", CLI: "cert explain",
			Summary: "Explain which certificate a session would use, and why (SPEC §5)",
			Description: `Run certificate selection as a session would now and print every certificate
of the store with why it was rejected, passed over or chosen. With
{-Connector}, the connector's FQDN (or the server's) and its explicit
TlsCertificateName are used; {-Direction} out explains a send connector.
With {-Service} POP or IMAP and neither, the name their settings'
X509CertificateName holds is used (SPEC S8; {Enable-ExchangeCertificate -Services POP}
sets it; empty: the server's FQDN), with the Exchange 2007 switch (S9);
with {-Service} UM, UM's name and its own ranking (S10).`,
			Role: ViewOnly, Returns: Explanation{},
			Params: []Param{
				{Name: "Connector", CLI: "connector", Type: TypeString, Help: "a receive connector (or, with {-Direction} out, a send connector)", Excludes: []string{"Fqdn", "Domain"}},
				{Name: "Domain", CLI: "domain", Type: TypeString, Help: "with {-Direction} out: a destination domain — its send connector, the TLS policy that applies (domain security, DANE, MTA-STS, opportunistic) and why, and its last delivery attempt", Excludes: []string{"Fqdn"}},
				{Name: "Fqdn", CLI: "fqdn", Type: TypeString, Help: "a name to match"},
				{Name: "Service", CLI: "service", Type: TypeService, Default: "SMTP", Help: "SMTP, POP, IMAP, IIS or UM"},
				{Name: "Direction", CLI: "direction", Type: TypeDirection, Default: "in", Help: "in (receive) or out (send)"},
			},
			Run: func(in *In) (*Result, error) {
				o := ExplainOptions{Connector: in.String("Connector"), Fqdn: in.String("Fqdn"), Service: in.Services("Service"), Direction: in.String("Direction"), Domain: in.String("Domain")}
				fromSetting := o.Connector == "" && o.Fqdn == "" && (o.Service == store.POP || o.Service == store.IMAP || o.Service == store.UM)
				if o.Connector == "" && o.Fqdn == "" && o.Domain == "" && !fromSetting {
					return nil, usage("Connector", "give either {-Connector} or {-Fqdn} (with {-Service} POP, IMAP or UM, neither: their settings' name is used)")
				}
				ex, err := in.a.Explain(in.ctx, o)
				if err != nil {
					return nil, err
				}
				return &Result{Data: ex}, nil
			},
		},
	}
}

// Exported says what Export-ExchangeCertificate handed over.
type Exported struct {
	Thumbprint string
	Format     string // "PEM", "DER", "PKCS#12", "PKCS#10 PEM", "PKCS#10 DER"
}

// note adds a Note (format and args as msgf).
func (r *Result) note(format string, args ...any) {
	r.Messages = append(r.Messages, Message{Note, msgf(format, args...)})
}

// add adds texts (with marks) as messages of one level.
func (r *Result) add(level MessageLevel, texts []string) {
	for _, t := range texts {
		r.Messages = append(r.Messages, Message{level, t})
	}
}

// or returns s, or def when s is empty.
func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// orEmpty makes a nil list an empty one, so JSON shows [] rather than
// null.
func orEmpty[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}

// keySpec reads the key parameters as given: a renewal (M2) copies the
// original's key type and size unless they are given, so KeyType's
// default must not count as given.
func keySpec(in *In) certinfo.KeySpec {
	var k certinfo.KeySpec
	if in.Has("KeyType") {
		k.Type = in.String("KeyType")
	}
	if in.Has("KeySize") {
		k.Size = in.Int("KeySize")
	}
	return k
}
