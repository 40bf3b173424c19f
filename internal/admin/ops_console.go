package admin

import (
	"time"

	"certrelay/internal/accounts"
)

// TypeRole is a console account's role (SPEC I3).
var TypeRole = enumType("role", "view-only", "server-admin", "org-admin")

// consoleOperations are the HTTPS console's and API's: accounts and
// their tokens, the console's settings, and the two views the console
// is built around — the selection map and the expiry timeline.
func consoleOperations() []*Operation {
	nameParam := func(help string) Param {
		return Param{Name: "Identity", CLI: "NAME", Type: TypeString, Position: 1, Required: true, Help: help}
	}
	return []*Operation{
		{
			Name: "New-CertrelayAccount", Cmdlet: "New-CertrelayAccount", CLI: "account add",
			Summary: "Add an account for the HTTPS console and API",
			Description: `Add an account that may log in to the console and call the API. Roles: view-only
reads everything (the Get- operations); server-admin also changes this server
(certificates, trust, receive connectors, settings, queue); org-admin also
changes the organisation (send connectors, accepted domains, mailboxes,
organisation-wide roots) and the accounts. The password is hashed (argon2id);
it has at least 12 characters and never goes on a command line.`,
			Role: OrgAdmin, Returns: accounts.Account{},
			Params: []Param{
				{Name: "Name", CLI: "NAME", Type: TypeString, Position: 1, Required: true, Help: "the account's name (letters, digits, . _ - @)"},
				{Name: "Role", CLI: "role", Type: TypeRole, Required: true, Help: "view-only, server-admin or org-admin"},
				{Name: "Password", CLI: "password-file", Type: TypeSecret, Required: true, Help: "the account's password", Prompt: "Password for the account"},
			},
			Run: func(in *In) (*Result, error) {
				role, err := ParseRole(in.String("Role"))
				if err != nil {
					return nil, invalid("Role", in.String("Role"), "%v", err)
				}
				a, err := in.a.Accounts.Add(in.ctx, in.String("Name"), role.String(), in.String("Password"))
				if err != nil {
					return nil, accountError(err, in.String("Name"))
				}
				r := &Result{Data: a}
				r.Messages = append(r.Messages, Message{Hint, msgf("The account can log in to the console (%s shows where it listens).", markup("{Get-CertrelayConsole}"))})
				return r, nil
			},
		},
		{
			Name: "Get-CertrelayAccount", Cmdlet: "Get-CertrelayAccount", CLI: "account list",
			Summary: "List the console's accounts with their roles",
			Role:    ViewOnly, Returns: []accounts.Account{},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.Accounts.List(in.ctx)
				return dataOr(orEmpty(list), err)
			},
		},
		{
			Name: "Set-CertrelayAccount", Cmdlet: "Set-CertrelayAccount", CLI: "account set",
			Summary: "Change an account's role or password, or revoke its API tokens",
			Description: `Change an account. A new role or password applies to the account's next request:
sessions already logged in keep going with the new role. {-RevokeTokens}
removes every API token of the account.`,
			Role: OrgAdmin, Returns: accounts.Account{},
			Params: []Param{
				nameParam("the account's name"),
				{Name: "Role", CLI: "role", Type: TypeRole, Help: "view-only, server-admin or org-admin"},
				{Name: "Password", CLI: "password-file", Type: TypeSecret, Help: "a new password"},
				{Name: "RevokeTokens", CLI: "revoke-tokens", Type: TypeBool, Help: "remove the account's API tokens"},
			},
			Run: func(in *In) (*Result, error) {
				if !in.Has("Role") && !in.Has("Password") && !in.Bool("RevokeTokens") {
					return nil, usage("", "nothing to change: give {-Role}, {-Password} or {-RevokeTokens}")
				}
				var role *string
				if in.Has("Role") {
					r, err := ParseRole(in.String("Role"))
					if err != nil {
						return nil, invalid("Role", in.String("Role"), "%v", err)
					}
					s := r.String()
					role = &s
				}
				a, err := in.a.Accounts.Update(in.ctx, in.String("Identity"), role, in.StringPtr("Password"), in.Bool("RevokeTokens"))
				if err != nil {
					return nil, accountError(err, in.String("Identity"))
				}
				return &Result{Data: a}, nil
			},
		},
		{
			Name: "Remove-CertrelayAccount", Cmdlet: "Remove-CertrelayAccount", CLI: "account remove",
			Summary: "Remove an account and its API tokens (its sessions end at their next request)",
			Role:    OrgAdmin, Returns: accounts.Account{},
			Params: []Param{nameParam("the account's name")},
			Run: func(in *In) (*Result, error) {
				a, err := in.a.Accounts.Remove(in.ctx, in.String("Identity"))
				if err != nil {
					return nil, accountError(err, in.String("Identity"))
				}
				return &Result{Data: a}, nil
			},
		},
		{
			Name: "New-CertrelayAccountToken", Cmdlet: "New-CertrelayAccountToken", CLI: "account token",
			Summary: "Make an API token for an account (shown once)",
			Description: `Make a token scripts send to the API as "Authorization: Bearer TOKEN", with the
account's role. The token is shown once: only its hash is kept. It lasts
{-ValidDays} days (0: until revoked with {Set-CertrelayAccount -RevokeTokens}).`,
			Role: OrgAdmin, Returns: accounts.Token{},
			Params: []Param{
				nameParam("the account's name"),
				{Name: "ValidDays", CLI: "valid-days", Type: TypeInt, Default: "365", Help: "days the token lasts (0: until revoked)"},
			},
			Run: func(in *In) (*Result, error) {
				days := in.Int("ValidDays")
				if days < 0 || days > 3650 {
					return nil, invalid("ValidDays", "", "%d days: give 0 (until revoked) to 3650", days)
				}
				t, err := in.a.Accounts.NewToken(in.ctx, in.String("Identity"), time.Duration(days)*24*time.Hour)
				if err != nil {
					return nil, accountError(err, in.String("Identity"))
				}
				r := &Result{Data: t}
				r.Messages = append(r.Messages, Message{Hint, msgf("The token is shown once: keep it where scripts find it, such as a file only they can read.")})
				return r, nil
			},
		},
		{
			Name: "Get-CertrelayConsole", Cmdlet: "Get-CertrelayConsole", CLI: "console show",
			Summary: "Show the HTTPS console's bindings, host name and certificate, and the metrics bindings",
			Role:    ViewOnly, Returns: ConsoleInfo{},
			Run: func(in *In) (*Result, error) {
				info, err := in.a.ConsoleShow(in.ctx)
				return dataOr(info, err)
			},
		},
		{
			Name: "Set-CertrelayConsole", Cmdlet: "Set-CertrelayConsole", CLI: "console set",
			Summary: "Turn the HTTPS console and the metrics endpoint on or off, and set the console's host name",
			Description: `The console and API listen on {-Bindings} in HTTPS only, with the certificate
selection gives {-HostName} for the IIS service (SPEC S8; the server's FQDN by
default; {Enable-ExchangeCertificate -Services IIS} makes a certificate a
candidate). /metrics listens on {-MetricsBindings} in plain HTTP: bind it to
loopback or a monitoring network. Both are off until given; "" turns one off.
A running server applies a change at once.`,
			Role: ServerAdmin, Returns: ConsoleInfo{},
			Params: []Param{
				{Name: "Bindings", CLI: "bindings", Type: TypeList, Help: `IP:PORT for the console and API (repeat, or separate with commas; "" for off)`},
				{Name: "HostName", CLI: "host-name", Type: TypeString, Help: `the name browsers use, which the certificate must hold ("" for the server's FQDN)`},
				{Name: "MetricsBindings", CLI: "metrics-bindings", Type: TypeList, Help: `IP:PORT for /metrics, plain HTTP ("" for off)`},
			},
			Run: func(in *In) (*Result, error) {
				if !in.Has("Bindings") && !in.Has("HostName") && !in.Has("MetricsBindings") {
					return nil, usage("", "nothing to set: give {-Bindings}, {-HostName} or {-MetricsBindings}")
				}
				info, warnings, err := in.a.ConsoleSet(in.ctx, ConsoleSetOptions{Bindings: in.StringsPtr("Bindings"), HostName: in.StringPtr("HostName"), MetricsBindings: in.StringsPtr("MetricsBindings")})
				if err != nil {
					return nil, err
				}
				r := &Result{Data: info}
				r.add(Warning, warnings)
				return r, nil
			},
		},
		{
			Name: "Get-CertrelaySelectionMap", Cmdlet: "Get-CertrelaySelectionMap", CLI: "cert map",
			Summary: "Show every listener and connector with the certificate it serves now and why (the selection map)",
			Description: `Run selection for every receive and send connector, the POP3 and IMAP4 names,
the HTTPS console and the internal transport certificate, as sessions would
now, and show each winner with why it won and every certificate that lost
with the reason ({Get-CertrelayCertificateSelection} explains one).`,
			Role: ViewOnly, Returns: []SelectionMapEntry{},
			Run: func(in *In) (*Result, error) {
				m, err := in.a.SelectionMap(in.ctx)
				return dataOr(m, err)
			},
		},
		{
			Name: "Get-CertrelayCertificateTimeline", Cmdlet: "Get-CertrelayCertificateTimeline", CLI: "cert timeline",
			Summary: "List every certificate in use across the organisation by expiry date",
			Description: `List the certificates this server uses — enabled for a service, serving a
listener, or its internal transport certificate — and the internal transport
certificates the directory publishes for the organisation's other servers,
soonest expiry first, with the warning window of event 12018 (30 days).`,
			Role: ViewOnly, Returns: CertificateTimeline{},
			Run: func(in *In) (*Result, error) {
				tl, err := in.a.Timeline(in.ctx)
				return dataOr(tl, err)
			},
		},
	}
}

// accountError gives an accounts error its kind, field and fix.
func accountError(err error, name string) error {
	e := asError(err)
	switch {
	case e.Kind == NotFound:
		e.Value = name
		e.Fix = msgf("list the accounts with %s", markup("{Get-CertrelayAccount}"))
	case e.Field == "Name":
		e.Value = name
	}
	return e
}
