package main

import (
	"fmt"
	"strings"
	"time"

	"certrelay/internal/accounts"
	"certrelay/internal/admin"
)

// The CLI's faces of the HTTPS console's operations (issue 16): accounts,
// tokens, the console's settings, the selection map and the timeline.
func init() {
	groups["account"] = "Accounts of the HTTPS console and API (SPEC I3)"
	groups["console"] = "The HTTPS console and API, and the metrics endpoint"
	faces["New-CertrelayAccountToken"] = face{
		jsonHelp: "print the token with its ID and expiry as JSON",
		human: func(c *call, res *admin.Result) error {
			t := res.Data.(accounts.Token)
			fmt.Fprintln(c.a.stdout, t.Secret)
			until := "until revoked"
			if t.Expires != nil {
				until = "until " + t.Expires.UTC().Format("2006-01-02")
			}
			fmt.Fprintf(c.a.stderr, "API token %s of %s, valid %s. Send it as: Authorization: Bearer TOKEN\n", t.ID, t.Account, until)
			return nil
		},
		example: `  certrelay account token deploy-bot > bot.token && chmod 600 bot.token
  curl --cacert ca.pem -H "Authorization: Bearer $(cat bot.token)" https://mail.contoso.com:8443/api/v1/Get-ExchangeCertificate`,
	}
	faces["New-CertrelayAccount"] = face{example: `  certrelay account add alice --role server-admin --password-file alice.pw`}
	faces["Get-CertrelayAccount"] = face{human: func(c *call, res *admin.Result) error {
		rows := [][]string{}
		for _, a := range res.Data.([]accounts.Account) {
			last := "never"
			if a.LastLogin != nil {
				last = a.LastLogin.UTC().Format("2006-01-02 15:04")
			}
			rows = append(rows, []string{a.Name, a.Role, last, fmt.Sprint(a.Tokens)})
		}
		table(c.a.stdout, []string{"Name", "Role", "LastLogin", "Tokens"}, rows)
		return nil
	}}
	faces["Set-CertrelayConsole"] = face{example: `  certrelay console set --bindings 0.0.0.0:8443 --host-name mail.contoso.com
  certrelay console set --metrics-bindings 127.0.0.1:9443
  certrelay console set --bindings ""          # console off`}
	faces["Get-CertrelaySelectionMap"] = face{human: func(c *call, res *admin.Result) error {
		rows := [][]string{}
		for _, e := range res.Data.([]admin.SelectionMapEntry) {
			winner := e.Winner
			if winner == "" {
				winner = "(none)"
			}
			rows = append(rows, []string{e.Listener, e.Name, e.Fqdn, e.Service, winner, e.TLS})
		}
		table(c.a.stdout, []string{"Listener", "Name", "Fqdn", "Service", "Certificate", "TLS"}, rows)
		fmt.Fprintln(c.a.stdout)
		for _, e := range res.Data.([]admin.SelectionMapEntry) {
			fmt.Fprintf(c.a.stdout, "%s %s: %s\n", e.Listener, e.Name, e.Why)
		}
		return nil
	}}
	faces["Get-CertrelayCertificateTimeline"] = face{human: func(c *call, res *admin.Result) error {
		tl := res.Data.(admin.CertificateTimeline)
		now := time.Now()
		rows := [][]string{}
		for _, e := range tl.Certificates {
			days := int(e.NotAfter.Sub(now).Hours() / 24)
			mark := ""
			switch {
			case e.NotAfter.Before(now):
				mark = " EXPIRED"
			case e.NotAfter.Before(now.AddDate(0, 0, tl.WarningWindowDays)):
				mark = " SOON"
			}
			rows = append(rows, []string{e.NotAfter.UTC().Format("2006-01-02"), fmt.Sprintf("%d%s", days, mark), e.Server, e.Thumbprint,
				strings.Join(e.Services, ","), e.Subject})
		}
		table(c.a.stdout, []string{"NotAfter", "Days", "Server", "Thumbprint", "Services", "Subject"}, rows)
		return nil
	}}
}
