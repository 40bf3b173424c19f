package admin

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"certrelay/internal/acme"
	"certrelay/internal/certinfo"
	"certrelay/internal/dnsname"
	"certrelay/internal/settings"
	"certrelay/internal/store"
)

// AcmeAccount is an account this server holds at an ACME CA.
type AcmeAccount struct {
	Identity               int64
	Directory              string
	Email                  string
	AccountUrl             string
	ExternalAccountBinding bool
	CreatedAt              time.Time
	KeyFile                string // the account key (mode 0600)
}

// AcmeAccountOptions describe an account to register.
type AcmeAccountOptions struct {
	Directory string
	Email     string
	EABKeyID  string
	EABKey    *string // the MAC key; never on a command line
	CAPEM     []byte  // roots for the CA's HTTPS server; nil for the system's
}

func (a *Admin) acmeView(ac acme.Account) AcmeAccount {
	return AcmeAccount{Identity: ac.ID, Directory: ac.Directory, Email: ac.Email, AccountUrl: ac.URL, ExternalAccountBinding: ac.EAB, CreatedAt: ac.CreatedAt, KeyFile: a.ACME.KeyPath(ac)}
}

// AddAcmeAccount registers an account at an ACME CA and keeps it with
// its key (0600). The CA is asked first; nothing is stored if it refuses.
func (a *Admin) AddAcmeAccount(ctx context.Context, o AcmeAccountOptions) (AcmeAccount, error) {
	const op = "add ACME account"
	if !strings.HasPrefix(o.Directory, "https://") {
		return AcmeAccount{}, errorf(op, invalid("Directory", o.Directory, "the ACME directory must be an https:// URL").fix("give the CA's directory URL, such as https://acme-v02.api.letsencrypt.org/directory"))
	}
	if o.Email != "" && !strings.Contains(o.Email, "@") {
		return AcmeAccount{}, errorf(op, invalid("Email", o.Email, "%q is not an e-mail address", o.Email))
	}
	var mac string
	if o.EABKey != nil {
		mac = strings.TrimSpace(*o.EABKey)
	}
	if (o.EABKeyID == "") != (mac == "") {
		return AcmeAccount{}, errorf(op, usage("EabKeyId", "an external account binding needs both {-EabKeyId} and {-EabHmacKey}").fix("give both, as the CA handed them out"))
	}
	if len(o.CAPEM) > 0 && !x509.NewCertPool().AppendCertsFromPEM(o.CAPEM) {
		return AcmeAccount{}, errorf(op, invalid("DirectoryCertificateAuthority", "", "the file holds no PEM certificate").fix("give the PEM file of the root that certifies the CA's HTTPS server"))
	}
	ac, err := a.ACME.Register(ctx, acme.RegisterOptions{Directory: o.Directory, Email: o.Email, EABKeyID: o.EABKeyID, EABKey: mac, CAPEM: o.CAPEM, Rand: a.rand})
	if err != nil {
		return AcmeAccount{}, errorf(op, acmeError(err, "Directory", o.Directory))
	}
	a.raise(ctx, 16100, "", ac.Directory, ac.URL, ac.Email)
	return a.acmeView(ac), nil
}

// ListAcmeAccounts lists the ACME accounts, oldest first.
func (a *Admin) ListAcmeAccounts(ctx context.Context) ([]AcmeAccount, error) {
	list, err := a.ACME.List(ctx)
	if err != nil {
		return nil, errorf("list ACME accounts", err)
	}
	out := []AcmeAccount{}
	for _, ac := range list {
		out = append(out, a.acmeView(ac))
	}
	return out, nil
}

// AcmeOptions describe a certificate ordered from an ACME CA.
type AcmeOptions struct {
	Domains      []string
	Services     *store.Services // nil: DefaultServices
	Key          certinfo.KeySpec
	FriendlyName string
	Exportable   bool
	Account      int64 // 0: the newest account
	Challenges   acme.Challenges
	RenewBefore  time.Duration // 0: renew at two thirds of its life
}

// AcmeResult says what NewAcmeCertificate got.
type AcmeResult struct {
	Certificate   Certificate
	Intermediates []string // added to the intermediate store
	Notes         []string
	Warnings      []string
}

// NewAcmeCertificate orders a certificate from the ACME CA of an account,
// answering the challenges o allows, then stores it through the ordinary
// store in one transaction: certificate and key, its chain's
// intermediates, the record of how it was obtained (for renewal), and
// the services enabled (M5, with its side effects). The CA is asked
// before the transaction; a failure changes nothing and is explained.
func (a *Admin) NewAcmeCertificate(ctx context.Context, o AcmeOptions, confirm Confirmer) (AcmeResult, error) {
	return a.newAcmeCertificate(ctx, o, confirmerAsker{confirm})
}

func (a *Admin) newAcmeCertificate(ctx context.Context, o AcmeOptions, ask asker) (AcmeResult, error) {
	const op = "new ACME certificate"
	if _, err := a.requireSetup(ctx); err != nil {
		return AcmeResult{}, errorf(op, err)
	}
	if len(o.Domains) == 0 {
		return AcmeResult{}, errorf(op, usage("DomainName", "an ACME certificate needs at least one {-DomainName}").fix("name the DNS names clients use, such as mail.example.com"))
	}
	names, err := dnsname.ParseList(o.Domains, true)
	if err != nil {
		return AcmeResult{}, errorf(op, asError(err).field("DomainName", strings.Join(o.Domains, ",")))
	}
	domains := make([]string, len(names))
	for i, n := range names {
		domains[i] = n.String()
	}
	if len(o.Challenges.Types()) == 0 {
		return AcmeResult{}, errorf(op, usage("HttpChallengeAddress", "no way to answer the CA's challenge").
			fix("give {-HttpChallengeAddress} (http-01), {-TlsAlpnChallengeAddress} (tls-alpn-01) or {-DnsChallengeHook} (dns-01)"))
	}
	if err := a.onServer(ctx, &o.Challenges); err != nil {
		return AcmeResult{}, errorf(op, err)
	}
	if h := o.Challenges.DNSHook; h != "" && !strings.HasPrefix(h, "/") {
		return AcmeResult{}, errorf(op, invalid("DnsChallengeHook", h, "the dns-01 hook must be an absolute path").fix("give the full path of the program"))
	}
	services := DefaultServices
	if o.Services != nil {
		services = *o.Services
	}
	ac, err := a.ACME.Get(ctx, o.Account)
	if errors.Is(err, acme.ErrNoAccount) {
		e := failed(NotFound, "%s", err.Error()).fix("register one first: %s", cmd("New-CertrelayAcmeAccount", "-Directory", "URL", "-Email", "ADDRESS"))
		if o.Account != 0 {
			e.field("AcmeAccount", fmt.Sprint(o.Account))
		}
		return AcmeResult{}, errorf(op, e)
	}
	if err != nil {
		return AcmeResult{}, errorf(op, err)
	}
	spec := o.Key
	if spec == (certinfo.KeySpec{}) {
		spec = certinfo.KeySpec{Type: "ecdsa", Size: 256}
	}
	if _, err := spec.Normalize(); err != nil {
		return AcmeResult{}, errorf(op, keyError(spec, err))
	}
	key, err := certinfo.GenerateKey(spec, a.rand)
	if err != nil {
		return AcmeResult{}, errorf(op, err)
	}
	got, err := a.ACME.Obtain(ctx, acme.Order{Account: ac, Domains: domains, Key: key, Challenges: o.Challenges})
	if err != nil {
		a.raise(ctx, 16102, strings.Join(domains, ","), strings.Join(domains, ", "), ac.Directory, err.Error())
		field := challengeParam(o.Challenges, err)
		e := acmeError(err, field, "")
		if where := map[string]string{"HttpChallengeAddress": o.Challenges.HTTPAddr, "TlsAlpnChallengeAddress": o.Challenges.TLSALPNAddr}[field]; where != "" {
			e.Value = where
			e.Fix += msgf("; this order answered on %s ({-%s})", where, field)
		}
		return AcmeResult{}, errorf(op, e)
	}
	rec := acme.Issued{AccountID: ac.ID, Domains: domains, Challenges: o.Challenges, KeyType: spec.Type, KeySize: spec.Size, IssuedAt: a.now(), RenewBefore: o.RenewBefore}
	res, err := a.storeObtained(ctx, ac, got, key, rec, store.NewCertificate{FriendlyName: o.FriendlyName, Exportable: o.Exportable}, services, ask, nil)
	if err != nil {
		return AcmeResult{}, errorf(op, err)
	}
	return res, nil
}

// storeObtained stores a certificate a CA issued, in one transaction:
// certificate and key, its chain's intermediates, the record of how it
// was obtained, the event, the services enabled (M5), and what extra
// adds (a renewal's record).
func (a *Admin) storeObtained(ctx context.Context, ac acme.Account, got acme.Obtained, key crypto.Signer, rec acme.Issued, props store.NewCertificate, services store.Services, ask asker, extra func(ctx context.Context, t string) error) (AcmeResult, error) {
	var res AcmeResult
	t := certinfo.Thumbprint(got.Leaf.Raw)
	rec.Thumbprint = t
	err := a.atomically(ctx, func(ctx context.Context) error {
		if _, err := a.Store.AddCertificate(ctx, store.NewCertificate{DER: got.Leaf.Raw, Key: key, FriendlyName: props.FriendlyName, Exportable: props.Exportable}); err != nil {
			return err
		}
		for _, c := range got.Chain {
			if c.BasicConstraintsValid && c.IsCA && certinfo.IsSelfSigned(c) {
				continue // a root is never trusted by being handed over
			}
			added, err := a.Trust.AddIntermediate(ctx, c, a.now())
			if err != nil {
				return fmt.Errorf("store its intermediate %s: %w", c.Subject, err)
			}
			if added {
				res.Intermediates = append(res.Intermediates, certinfo.Thumbprint(c.Raw))
			}
		}
		if err := a.ACME.Record(ctx, rec); err != nil {
			return err
		}
		a.raise(ctx, 16101, "", t, strings.Join(rec.Domains, ", "), ac.Directory, got.Leaf.NotAfter.UTC().Format(time.RFC3339))
		if services != store.None {
			en, err := a.enableCertificate(ctx, t, services, ask)
			if err != nil {
				return err
			}
			res.Notes, res.Warnings = en.Notes, en.Warnings
		}
		if extra != nil {
			return extra(ctx, t)
		}
		return nil
	})
	if err != nil {
		return AcmeResult{}, err
	}
	if res.Certificate, err = a.GetCertificate(ctx, t); err != nil {
		return AcmeResult{}, err
	}
	return res, nil
}

// challengeParam is the parameter at fault for a failed order: the one of
// the challenge that failed, else the first given.
func challengeParam(c acme.Challenges, err error) string {
	var oe *acme.OrderError
	if errors.As(err, &oe) {
		switch oe.Challenge {
		case "http-01":
			return "HttpChallengeAddress"
		case "tls-alpn-01":
			return "TlsAlpnChallengeAddress"
		case "dns-01":
			return "DnsChallengeHook"
		}
	}
	switch {
	case c.HTTPAddr != "":
		return "HttpChallengeAddress"
	case c.TLSALPNAddr != "":
		return "TlsAlpnChallengeAddress"
	}
	return "DnsChallengeHook"
}

// acmeError makes a CA's refusal an *Error: the CA's words, what failed,
// and the likely fix.
func acmeError(err error, field, value string) *Error {
	var oe *acme.OrderError
	if errors.As(err, &oe) {
		k := Unavailable
		switch oe.Type {
		case "rejectedIdentifier", "caa", "malformed", "externalAccountRequired", "unauthorized":
			k = Invalid
		}
		return &Error{Kind: k, Field: field, Value: value, Fix: msgf("%s", oe.Fix), Err: oe}
	}
	return &Error{Kind: Unavailable, Field: field, Value: value, Err: err}
}

// OnServer is the challenge address that asks the running server to
// answer on its own listeners.
const OnServer = "server"

// onServer turns the address "server" into an order the running server
// answers — http-01 on its plain HTTP listener (the metrics endpoint's
// bindings) and its console, tls-alpn-01 on its console's HTTPS
// bindings — with the addresses where the order checks that it does.
func (a *Admin) onServer(ctx context.Context, c *acme.Challenges) error {
	bindings := func(key string) []string {
		v, _ := a.Settings.Get(ctx, key)
		var out []string
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				out = append(out, b)
			}
		}
		return out
	}
	if strings.EqualFold(c.HTTPAddr, OnServer) {
		c.HTTPAddr, c.HTTPOnServer = "", true
	}
	if strings.EqualFold(c.TLSALPNAddr, OnServer) {
		c.TLSALPNAddr, c.TLSALPNOnServer = "", true
	}
	if c.HTTPOnServer {
		if c.ServerHTTP = bindings(settings.MetricsBindings); len(c.ServerHTTP) == 0 {
			return invalid("HttpChallengeAddress", OnServer, "the server has no plain HTTP listener to answer http-01 on").
				fix("give it one on the port the CA connects to (80, or one port 80 is forwarded to): {Set-CertrelayConsole -MetricsBindings 0.0.0.0:80}; or give an address for this command to answer on")
		}
	}
	if c.TLSALPNOnServer {
		if c.ServerTLS = bindings(settings.ConsoleBindings); len(c.ServerTLS) == 0 {
			return invalid("TlsAlpnChallengeAddress", OnServer, "the server has no HTTPS listener to answer tls-alpn-01 on").
				fix("give the console a binding on the port the CA connects to (443, or one port 443 is forwarded to): {Set-CertrelayConsole -Bindings 0.0.0.0:443}; or give an address for this command to answer on")
		}
	}
	return nil
}
