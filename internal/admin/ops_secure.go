package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"certrelay/internal/dnsname"
	"certrelay/internal/queue"
	"certrelay/internal/settings"
	"certrelay/internal/tlsrpt"
	"certrelay/internal/transport"
)

func secureOperations() []*Operation {
	return []*Operation{
		{
			Name: "Get-CertrelayMtaStsPolicy", Cmdlet: "Get-CertrelayMtaStsPolicy", CLI: "mtasts show",
			Summary: "Show the MTA-STS policy this server publishes, and the DNS records that announce it",
			Role:    ViewOnly, Returns: MTASTSPolicy{},
			Run: func(in *In) (*Result, error) {
				p, err := in.a.GetMTASTSPolicy(in.ctx)
				if err != nil {
					return nil, err
				}
				return &Result{Data: p}, nil
			},
		},
		{
			Name: "Set-CertrelayMtaStsPolicy", Cmdlet: "Set-CertrelayMtaStsPolicy", CLI: "mtasts set",
			Summary: "Publish an MTA-STS policy for the accepted domains on the HTTPS listener (RFC 8461)",
			Description: `Publish the MTA-STS policy senders fetch from
https://mta-sts.DOMAIN/.well-known/mta-sts.txt for each accepted domain: the
HTTPS listener (certrelay console set) serves it for the host mta-sts.DOMAIN,
with a certificate enabled for IIS that holds that name (or the console's
when none does). Publish the TXT records it prints, and point the
mta-sts.DOMAIN names at the listener; the id changes whenever the policy
does. {-Mode} "" stops publishing.`,
			Role: ServerAdmin, Returns: MTASTSPolicy{},
			Params: []Param{
				{Name: "Mode", CLI: "mode", Type: TypeString, Help: `enforce, testing or none ("" stops publishing)`},
				{Name: "MX", CLI: "mx", Type: TypeList, Help: "an MX host senders may use, such as mx1.contoso.com or *.contoso.com (repeat)"},
				{Name: "MaxAge", CLI: "max-age", Type: TypeInt, Help: "seconds senders keep the policy (default a week)"},
			},
			Run: func(in *In) (*Result, error) {
				mode, mx, age := in.StringPtr("Mode"), in.StringsPtr("MX"), in.IntPtr("MaxAge")
				if mode == nil && mx == nil && age == nil {
					return nil, usage("", "nothing to set: give {-Mode}, {-MX} or {-MaxAge}")
				}
				p, err := in.a.SetMTASTSPolicy(in.ctx, mode, mx, age)
				if err != nil {
					return nil, err
				}
				return &Result{Data: p}, nil
			},
		},
	}
}

// MTASTSPolicy is the MTA-STS policy this server publishes (RFC 8461),
// with the DNS records that announce it.
type MTASTSPolicy struct {
	Mode   string   // enforce, testing or none; "" when none is published
	MX     []string // the MX host patterns senders may use
	MaxAge int      // seconds senders cache it
	ID     string   // the policy's id: a digest of its text, so it changes with it
	Policy string   // the text served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt
	// Records are the TXT records to publish, one per accepted domain,
	// and URLs where the policy is served.
	Records []string
	URLs    []string
}

// DefaultMTASTSMaxAge is max_age when none is set: a week, as RFC 8461
// suggests weeks.
const DefaultMTASTSMaxAge = 7 * 24 * 3600

// GetMTASTSPolicy returns the published MTA-STS policy (Mode "" when none
// is published).
func (a *Admin) GetMTASTSPolicy(ctx context.Context) (MTASTSPolicy, error) {
	get := func(k string) string { v, _ := a.Settings.Get(ctx, k); return v }
	p := MTASTSPolicy{Mode: get(settings.MTASTSMode), MX: settings.SplitList(get(settings.MTASTSMX)), MaxAge: DefaultMTASTSMaxAge, Records: []string{}, URLs: []string{}}
	if n, err := strconv.Atoi(get(settings.MTASTSMaxAge)); err == nil && n > 0 {
		p.MaxAge = n
	}
	if p.Mode == "" {
		return p, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\r\nmode: %s\r\n", p.Mode)
	for _, mx := range p.MX {
		fmt.Fprintf(&b, "mx: %s\r\n", mx)
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", p.MaxAge)
	p.Policy = b.String()
	sum := sha256.Sum256([]byte(p.Policy))
	p.ID = hex.EncodeToString(sum[:10])
	domains, err := a.Dir.AcceptedDomains(ctx)
	if err != nil {
		return p, err
	}
	for _, d := range domains {
		name := strings.ToLower(d.DomainName)
		p.Records = append(p.Records, fmt.Sprintf(`_mta-sts.%s. IN TXT "v=STSv1; id=%s"`, name, p.ID))
		p.URLs = append(p.URLs, "https://mta-sts."+name+"/.well-known/mta-sts.txt")
	}
	return p, nil
}

// SetMTASTSPolicy changes the published policy; nil fields stay.
func (a *Admin) SetMTASTSPolicy(ctx context.Context, mode *string, mx *[]string, maxAge *int) (MTASTSPolicy, error) {
	const op = "mtasts set"
	if mode != nil {
		switch *mode {
		case "", "enforce", "testing", "none":
		default:
			return MTASTSPolicy{}, errorf(op, invalid("Mode", *mode, "{-Mode} %q is not an MTA-STS mode: use enforce, testing or none (\"\" stops publishing)", *mode))
		}
	}
	var mxList string
	if mx != nil {
		var out []string
		for _, m := range *mx {
			for _, p := range strings.Split(m, ",") {
				if p = strings.TrimSpace(p); p == "" {
					continue
				}
				n, err := dnsname.Parse(p)
				if err != nil {
					return MTASTSPolicy{}, errorf(op, invalidValue("MX", p, err).fix("give MX host names such as mx1.contoso.com, or *.contoso.com"))
				}
				out = append(out, string(n))
			}
		}
		mxList = strings.Join(out, ",")
	}
	if maxAge != nil && (*maxAge < 1 || *maxAge > 31557600) {
		return MTASTSPolicy{}, errorf(op, invalid("MaxAge", fmt.Sprint(*maxAge), "{-MaxAge} %d is out of range: give seconds from 1 to 31557600 (a year), such as 604800 for a week", *maxAge))
	}
	err := a.atomically(ctx, func(ctx context.Context) error {
		if mode != nil {
			if err := a.Settings.Set(ctx, settings.MTASTSMode, *mode); err != nil {
				return err
			}
		}
		if mx != nil {
			if err := a.Settings.Set(ctx, settings.MTASTSMX, mxList); err != nil {
				return err
			}
		}
		if maxAge != nil {
			if err := a.Settings.Set(ctx, settings.MTASTSMaxAge, strconv.Itoa(*maxAge)); err != nil {
				return err
			}
		}
		p, err := a.GetMTASTSPolicy(ctx)
		if err != nil {
			return err
		}
		if (p.Mode == "enforce" || p.Mode == "testing") && len(p.MX) == 0 {
			return invalid("MX", "", "an MTA-STS policy in mode %s needs at least one MX host: give {-MX}", p.Mode)
		}
		return nil
	})
	if err != nil {
		return MTASTSPolicy{}, errorf(op, err)
	}
	return a.GetMTASTSPolicy(ctx)
}

func reportOperations() []*Operation {
	return []*Operation{
		{
			Name: "Get-CertrelayTlsReport", Cmdlet: "Get-CertrelayTlsReport", CLI: "tlsrpt list",
			Summary: "List the SMTP TLS reports (RFC 8460) other organisations sent here",
			Description: `List the TLS reports that arrived for this organisation's mailboxes (the
address its _smtp._tls record names in rua=): who sent each, for which
period, and per policy the sessions that succeeded and failed, with the
failures by kind. Newest first.`,
			Role: ViewOnly, Returns: []tlsrpt.Received{},
			Run: func(in *In) (*Result, error) {
				st, err := tlsrpt.Open(in.ctx, in.a.db)
				if err != nil {
					return nil, err
				}
				list, err := st.ListReceived(in.ctx)
				if err != nil {
					return nil, err
				}
				return &Result{Data: list}, nil
			},
		},
		{
			Name: "Send-CertrelayTlsReport", Cmdlet: "Send-CertrelayTlsReport", CLI: "tlsrpt send",
			Summary: "Send a day's SMTP TLS reports (RFC 8460) now",
			Description: `Assemble the aggregate report of this server's outbound TLS sessions on
{-Day} (UTC; default yesterday) for each policy domain (or {-Domain} only),
and send it to the reporting addresses of the domain's _smtp._tls record:
mailto: through the queue, https: by POST. A running server sends every
finished day's reports by itself; this sends one again, or today's so far.`,
			Role: ServerAdmin, Returns: []transport.SentReport{},
			Params: []Param{
				{Name: "Day", CLI: "day", Type: TypeString, Help: "the day, YYYY-MM-DD (default yesterday, UTC)"},
				{Name: "Domain", CLI: "domain", Type: TypeString, Help: "one policy domain only"},
			},
			Run: func(in *In) (*Result, error) {
				day := in.String("Day")
				if day == "" {
					day = tlsrpt.Day(in.a.Now().AddDate(0, 0, -1))
				} else if _, err := time.Parse("2006-01-02", day); err != nil {
					return nil, invalid("Day", day, "{-Day} %q is not a day: write it as YYYY-MM-DD", day)
				}
				sent, err := in.a.SendTLSReports(in.ctx, day, strings.ToLower(in.String("Domain")))
				if err != nil {
					return nil, err
				}
				return &Result{Data: sent}, nil
			},
		},
	}
}

// SendTLSReports sends day's TLS reports (see Send-CertrelayTlsReport).
func (a *Admin) SendTLSReports(ctx context.Context, day, domain string) ([]transport.SentReport, error) {
	const op = "tlsrpt send"
	st, err := tlsrpt.Open(ctx, a.db)
	if err != nil {
		return nil, errorf(op, err)
	}
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return nil, errorf(op, err)
	}
	var res *net.Resolver
	if addr := a.settingOr(ctx, settings.DNSResolver, settings.DNSSECResolver); addr != "" {
		res = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	}
	var sent []transport.SentReport
	err = a.withQueue(func(q *queue.Queue) error {
		r := &transport.Reporter{Store: st, Queue: q, Resolver: res, Roots: a.trustedRoots, Org: srv.Fqdn, Contact: "postmaster@" + srv.Fqdn, Now: a.Now}
		var err error
		sent, err = r.SendDay(ctx, day, domain)
		return err
	})
	if err != nil {
		return nil, errorf(op, failed(NotFound, "%s", err.Error()))
	}
	return sent, nil
}

// settingOr returns the first of the settings that is set.
func (a *Admin) settingOr(ctx context.Context, keys ...string) string {
	for _, k := range keys {
		if v, _ := a.Settings.Get(ctx, k); v != "" {
			return v
		}
	}
	return ""
}
