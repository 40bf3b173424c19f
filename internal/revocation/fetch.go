package revocation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

var errTooLarge = errors.New("response too large")

// fetchFailure turns a failed fetch into its Attempt.
func fetchFailure(kind, rawURL string, err error) Attempt {
	result := ResultUnreachable
	switch {
	case errors.Is(err, errTooLarge):
		result = ResultTooLarge
	case errors.Is(err, errUnsupportedFeature):
		result = ResultUnsupported
	}
	return Attempt{Kind: kind, URL: rawURL, Result: result, Error: err.Error()}
}

// httpDo sends one request (GET without body, POST with an OCSP request)
// through the Checker's client and returns the body of a 200 response, at
// most limit bytes. ctx bounds the whole exchange.
func (c *Checker) httpDo(ctx context.Context, method, rawURL string, body []byte, limit int64) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %v", method, rawURL, errUnsupportedFeature, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", ocspRequestType)
		req.Header.Set("Accept", ocspResponseType)
	}
	req.Header.Set("User-Agent", "certrelay-revocation/1")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: HTTP status %s", method, rawURL, resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%s %s: %w: %d bytes, limit %d", method, rawURL, errTooLarge, resp.ContentLength, limit)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, rawURL, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s %s: %w: more than %d bytes", method, rawURL, errTooLarge, limit)
	}
	return data, nil
}

// ldapURL is the part of an RFC 4516 LDAP URL a CRL fetch needs.
type ldapURL struct {
	addr   string // host:port
	dn     string
	attrs  []string
	scope  int
	filter string
}

// parseLDAPURL reads ldap://host[:port]/dn[?attrs[?scope[?filter[?exts]]]].
// A URL without a host (ldap:///CN=..., as Active Directory CAs write
// them, meaning "the domain's directory") cannot be resolved here.
func parseLDAPURL(raw string) (*ldapURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: bad LDAP URL: %v", errUnsupportedFeature, err)
	}
	if !strings.EqualFold(u.Scheme, "ldap") {
		return nil, fmt.Errorf("%w: scheme %q", errUnsupportedFeature, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: LDAP URL without a host", errUnsupportedFeature)
	}
	l := &ldapURL{addr: u.Host, dn: strings.TrimPrefix(u.Path, "/"), scope: ldap.ScopeBaseObject, filter: "(objectClass=*)"}
	if u.Port() == "" {
		l.addr = net.JoinHostPort(u.Hostname(), "389")
	}
	parts := strings.Split(u.RawQuery, "?")
	for i := range parts {
		if parts[i], err = url.PathUnescape(parts[i]); err != nil {
			return nil, fmt.Errorf("%w: bad LDAP URL: %v", errUnsupportedFeature, err)
		}
	}
	if len(parts) > 0 && parts[0] != "" {
		l.attrs = strings.Split(parts[0], ",")
	} else {
		l.attrs = []string{"certificateRevocationList;binary"}
	}
	if len(parts) > 1 {
		switch strings.ToLower(parts[1]) {
		case "", "base":
		case "one":
			l.scope = ldap.ScopeSingleLevel
		case "sub":
			l.scope = ldap.ScopeWholeSubtree
		default:
			return nil, fmt.Errorf("%w: LDAP scope %q", errUnsupportedFeature, parts[1])
		}
	}
	if len(parts) > 2 && parts[2] != "" {
		l.filter = parts[2]
		if !strings.HasPrefix(l.filter, "(") {
			l.filter = "(" + l.filter + ")"
		}
	}
	if len(parts) > 3 && strings.Contains(parts[3], "!") {
		return nil, fmt.Errorf("%w: critical LDAP URL extension %q", errUnsupportedFeature, parts[3])
	}
	return l, nil
}

// ldapFetch reads the CRL named by an ldap:// URL: anonymous bind, search
// (base object unless the URL says otherwise), first value of the first
// requested attribute found (with or without the ;binary option).
func (c *Checker) ldapFetch(ctx context.Context, raw string, limit int64) ([]byte, error) {
	lu, err := parseLDAPURL(raw)
	if err != nil {
		return nil, fmt.Errorf("fetch CRL %s: %w", raw, err)
	}
	dial := c.LDAPDial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(ctx, "tcp", lu.addr)
	if err != nil {
		return nil, fmt.Errorf("fetch CRL %s: dial: %w", raw, err)
	}
	// The connection's deadline and ctx end the exchange; go-ldap's own
	// request timer is set later than both, only as a backstop.
	timeout := c.timeout()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
		timeout = time.Until(dl)
	}
	timeout += time.Second
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	conn := ldap.NewConn(nc, false)
	conn.Start()
	conn.SetTimeout(timeout)
	defer conn.Close()

	if err := conn.UnauthenticatedBind(""); err != nil {
		return nil, fmt.Errorf("fetch CRL %s: anonymous bind: %w", raw, ctxErr(ctx, err))
	}
	want := make(map[string]bool)
	var attrs []string
	for _, a := range lu.attrs {
		base := strings.ToLower(strings.SplitN(a, ";", 2)[0])
		if !want[base] {
			want[base] = true
			attrs = append(attrs, base+";binary", base)
		}
	}
	res, err := conn.Search(ldap.NewSearchRequest(lu.dn, lu.scope, ldap.NeverDerefAliases,
		10, int(timeout/time.Second)+1, false, lu.filter, attrs, nil))
	if err != nil {
		return nil, fmt.Errorf("fetch CRL %s: search: %w", raw, ctxErr(ctx, err))
	}
	for _, e := range res.Entries {
		for _, a := range e.Attributes {
			if !want[strings.ToLower(strings.SplitN(a.Name, ";", 2)[0])] || len(a.ByteValues) == 0 {
				continue
			}
			v := a.ByteValues[0]
			if int64(len(v)) > limit {
				return nil, fmt.Errorf("fetch CRL %s: %w: %d bytes, limit %d", raw, errTooLarge, len(v), limit)
			}
			return v, nil
		}
	}
	return nil, fmt.Errorf("fetch CRL %s: no entry with %s", raw, strings.Join(lu.attrs, ", "))
}

// ctxErr reports an LDAP failure caused by the fetch's deadline or
// cancellation as that (the connection is closed or times out under the
// operation, which go-ldap reports in several ways).
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}
