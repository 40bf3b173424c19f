package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	moxtlsrpt "github.com/mjl-/mox/tlsrpt"

	"certrelay/internal/queue"
	"certrelay/internal/tlsrpt"
)

// Reporter sends the daily SMTP TLS reports (RFC 8460) of this server's
// outbound sessions to each policy domain's reporting addresses (the rua
// of its _smtp._tls TXT record): mailto: addresses get a message through
// the queue, https: ones a POST. It also recognises reports that arrive
// for this organisation's mailboxes (Received).
type Reporter struct {
	Store    *tlsrpt.Store
	Queue    *queue.Queue  // where mailto: reports are queued
	Resolver *net.Resolver // _smtp._tls lookups; nil: the system's
	// Roots verify https: report receivers; nil: the system's.
	Roots func(ctx context.Context) *x509.CertPool
	Org   string // the organisation-name of reports: this server's FQDN
	// Contact is the contact-info of reports and the From of report
	// messages (postmaster of the first accepted domain, say).
	Contact string
	Now     func() time.Time
}

// SentReport is what SendDay did for one policy domain.
type SentReport struct {
	Day, Domain  string
	Destinations []string // the rua URIs reached
	Problems     []string `json:",omitempty"` // what failed, per destination
}

// SendUnsent sends the reports of every finished day (before today, UTC)
// not sent yet: the server runs it every hour.
func (r *Reporter) SendUnsent(ctx context.Context) ([]SentReport, error) {
	un, err := r.Store.Unsent(ctx, r.Now())
	if err != nil {
		return nil, err
	}
	var out []SentReport
	for day, domains := range un {
		for _, d := range domains {
			out = append(out, r.send(ctx, day, d))
		}
	}
	return out, nil
}

// SendDay sends day's reports for every policy domain with results (or
// only domain), whether sent before or not: `tlsrpt send`.
func (r *Reporter) SendDay(ctx context.Context, day, domain string) ([]SentReport, error) {
	domains, err := r.Store.Domains(ctx, day)
	if err != nil {
		return nil, err
	}
	var out []SentReport
	for _, d := range domains {
		if domain == "" || d == domain {
			out = append(out, r.send(ctx, day, d))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no outbound TLS results on %s%s to report", day, map[bool]string{true: " for " + domain}[domain != ""])
	}
	return out, nil
}

// send sends one report and marks it sent when the domain has no
// reporting address (nothing to do) or one destination took it; a report
// no destination took is tried again next time.
func (r *Reporter) send(ctx context.Context, day, domain string) SentReport {
	res := SentReport{Day: day, Domain: domain, Destinations: []string{}}
	ruas, err := r.lookup(ctx, domain)
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
		return res
	}
	if len(ruas) == 0 {
		res.Problems = append(res.Problems, "_smtp._tls."+domain+" has no TLSRPT record: nothing to send")
		_ = r.Store.MarkSent(ctx, day, domain, nil, r.Now())
		return res
	}
	rep, err := r.Store.Report(ctx, day, domain, r.Org, r.Contact)
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
		return res
	}
	gz, err := tlsrpt.Gzip(rep)
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
		return res
	}
	for _, rua := range ruas {
		u, err := rua.URI()
		switch {
		case err != nil:
			err = fmt.Errorf("rua %q is not a URI: %w", string(rua), err)
		case u.Scheme == "mailto":
			err = r.mail(ctx, u.Opaque, domain, rep, gz)
		case u.Scheme == "https":
			err = r.post(ctx, u.String(), gz)
		default:
			err = fmt.Errorf("rua %q: only mailto: and https: are used (RFC 8460 3)", string(rua))
		}
		if err != nil {
			res.Problems = append(res.Problems, err.Error())
			continue
		}
		res.Destinations = append(res.Destinations, string(rua))
	}
	if len(res.Destinations) > 0 {
		if err := r.Store.MarkSent(ctx, day, domain, res.Destinations, r.Now()); err != nil {
			res.Problems = append(res.Problems, err.Error())
		}
	}
	return res
}

// lookup returns the reporting addresses of domain's _smtp._tls record.
func (r *Reporter) lookup(ctx context.Context, domain string) ([]moxtlsrpt.RUA, error) {
	res := r.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	txts, err := res.LookupTXT(ctx, "_smtp._tls."+domain)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up _smtp._tls.%s: %w", domain, err)
	}
	var out []moxtlsrpt.RUA
	for _, t := range txts {
		rec, ok, err := moxtlsrpt.ParseRecord(t)
		if !ok {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("_smtp._tls.%s: %w", domain, err)
		}
		for _, l := range rec.RUAs {
			out = append(out, l...)
		}
	}
	return out, nil
}

// mail queues the report for a mailto: address (RFC 8460 5.3), from the
// null sender so that a failure never loops.
func (r *Reporter) mail(ctx context.Context, to, domain string, rep *moxtlsrpt.ReportJSON, gz []byte) error {
	to, _, _ = strings.Cut(to, "?")
	at := strings.LastIndexByte(to, '@')
	if at < 1 {
		return fmt.Errorf("mailto:%s is not an address", to)
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	boundary := "tlsrpt-" + hex.EncodeToString(rnd[:])
	start, end := rep.DateRange.Start.UTC(), rep.DateRange.End.UTC()
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n", r.Contact, to, domain, r.Org, rep.ReportID)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%s@%s>\r\nTLS-Report-Domain: %s\r\nTLS-Report-Submitter: %s\r\nMIME-Version: 1.0\r\n", r.Now().UTC().Format(time.RFC1123Z), hex.EncodeToString(rnd[:]), r.Org, domain, r.Org)
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThis is the SMTP TLS report (RFC 8460) of %s for %s, %s to %s.\r\n\r\n", boundary, r.Org, domain, start.Format(time.RFC3339), end.Format(time.RFC3339))
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"%s!%s!%d!%d.json.gz\"\r\n\r\n", boundary, r.Org, domain, start.Unix(), end.Unix())
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--" + boundary + "--\r\n")
	m := &queue.Message{Sender: "", Body: b.Bytes(),
		Recipients: []queue.Recipient{{Idx: 0, Address: to, Destination: strings.ToLower(to[at+1:])}}}
	if _, err := r.Queue.Enqueue(ctx, m); err != nil {
		return fmt.Errorf("queue the report for %s: %w", to, err)
	}
	return nil
}

// post sends the report to an https: address (RFC 8460 5.4).
func (r *Reporter) post(ctx context.Context, url string, gz []byte) error {
	var roots *x509.CertPool
	if r.Roots != nil {
		roots = r.Roots(ctx)
	}
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext:     (&net.Dialer{Resolver: r.Resolver, Timeout: 30 * time.Second}).DialContext,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("POST the report to %s: %w", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST the report to %s: %s", url, resp.Status)
	}
	return nil
}

// Received stores a TLS report that arrived in a message for one of this
// organisation's mailboxes (its rua), when body is one (multipart/report;
// report-type=tlsrpt); other messages are ignored. It reports whether
// body held a report.
func (r *Reporter) Received(ctx context.Context, body []byte) (bool, error) {
	head, _, _ := bytes.Cut(body, []byte("\r\n\r\n"))
	if !bytes.Contains(bytes.ToLower(head), []byte("report-type=\"tlsrpt\"")) && !bytes.Contains(bytes.ToLower(head), []byte("report-type=tlsrpt")) {
		return false, nil
	}
	rep, err := moxtlsrpt.ParseMessage(slog.New(slog.DiscardHandler), bytes.NewReader(body))
	if err != nil {
		return true, fmt.Errorf("a TLS report message could not be read: %w", err)
	}
	return true, r.Store.StoreReceived(ctx, rep, r.Now())
}
