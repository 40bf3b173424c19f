// Package tlsrpt keeps SMTP TLS reporting (RFC 8460) in certrelay.db:
// the outcome of every outbound TLS session, counted per day, policy
// domain, policy and MX host, from which the daily aggregate reports are
// made; which reports were sent; and the reports other organisations
// sent to this one. The report format is mox's
// (github.com/mjl-/mox/tlsrpt, JSON with the RFC's field names); this
// package only counts, stores and assembles.
package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	moxtlsrpt "github.com/mjl-/mox/tlsrpt"

	"certrelay/internal/db"
)

// Result is one outbound session's TLS outcome under a policy.
type Result struct {
	Time         time.Time
	PolicyDomain string   // the recipient domain (sts, no-policy-found) or the TLSA base domain (tlsa)
	PolicyType   string   // "sts", "tlsa" or "no-policy-found"
	PolicyString []string // the policy's lines (sts) or TLSA records (tlsa)
	MXHost       string
	OK           bool
	// For a failure: the RFC 8460 result type (starttls-not-supported,
	// certificate-host-mismatch, validation-failure, …), the receiving
	// IP address and a reason code.
	ResultType  string
	ReceivingIP string
	Reason      string
}

// Store is the reporting tables. Safe for concurrent use.
type Store struct{ db *sql.DB }

// Open creates the tables if needed.
func Open(ctx context.Context, d *sql.DB) (*Store, error) {
	err := db.Migrate(ctx, d, "tlsrpt",
		`CREATE TABLE IF NOT EXISTS tlsrpt_results (
			day TEXT NOT NULL, policy_domain TEXT NOT NULL, policy_type TEXT NOT NULL, policy_string TEXT NOT NULL,
			mx_host TEXT NOT NULL, success INTEGER NOT NULL DEFAULT 0, failure INTEGER NOT NULL DEFAULT 0,
			PRIMARY KEY (day, policy_domain, policy_type, policy_string, mx_host))`,
		`CREATE TABLE IF NOT EXISTS tlsrpt_failures (
			day TEXT NOT NULL, policy_domain TEXT NOT NULL, policy_type TEXT NOT NULL, policy_string TEXT NOT NULL,
			mx_host TEXT NOT NULL, result_type TEXT NOT NULL, receiving_ip TEXT NOT NULL, reason TEXT NOT NULL,
			count INTEGER NOT NULL,
			PRIMARY KEY (day, policy_domain, policy_type, policy_string, mx_host, result_type, receiving_ip, reason))`,
		`CREATE TABLE IF NOT EXISTS tlsrpt_sent (
			day TEXT NOT NULL, policy_domain TEXT NOT NULL, sent_at TEXT NOT NULL, destinations TEXT NOT NULL,
			PRIMARY KEY (day, policy_domain))`,
		`CREATE TABLE IF NOT EXISTS tlsrpt_received (
			id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, organization TEXT NOT NULL,
			report_id TEXT NOT NULL, start TEXT NOT NULL, end TEXT NOT NULL, report TEXT NOT NULL,
			UNIQUE (organization, report_id))`,
	)
	if err != nil {
		return nil, fmt.Errorf("open TLS reporting: %w", err)
	}
	return &Store{db: d}, nil
}

// Day is the UTC day of t, as reports name it.
func Day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// Record counts one session, in one transaction.
func (s *Store) Record(ctx context.Context, r Result) error {
	ps, _ := json.Marshal(orEmpty(r.PolicyString))
	day := Day(r.Time)
	key := []any{day, strings.ToLower(r.PolicyDomain), r.PolicyType, string(ps), strings.ToLower(r.MXHost)}
	succ, fail := 0, 0
	if r.OK {
		succ = 1
	} else {
		fail = 1
	}
	return db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tlsrpt_results(day, policy_domain, policy_type, policy_string, mx_host, success, failure) VALUES(?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT DO UPDATE SET success = success + excluded.success, failure = failure + excluded.failure`, append(key, succ, fail)...); err != nil {
			return fmt.Errorf("record a TLS result: %w", err)
		}
		if r.OK {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tlsrpt_failures(day, policy_domain, policy_type, policy_string, mx_host, result_type, receiving_ip, reason, count) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 1)
			ON CONFLICT DO UPDATE SET count = count + 1`, append(key, r.ResultType, r.ReceivingIP, r.Reason)...); err != nil {
			return fmt.Errorf("record a TLS failure: %w", err)
		}
		return nil
	})
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// Domains returns the policy domains with results on day.
func (s *Store) Domains(ctx context.Context, day string) ([]string, error) {
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT DISTINCT policy_domain FROM tlsrpt_results WHERE day = ? ORDER BY policy_domain`, day)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Unsent returns the days before today (UTC, from now) with results, and
// each day's policy domains whose report has not been sent.
func (s *Store) Unsent(ctx context.Context, now time.Time) (map[string][]string, error) {
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT DISTINCT r.day, r.policy_domain FROM tlsrpt_results r
		LEFT JOIN tlsrpt_sent s ON s.day = r.day AND s.policy_domain = r.policy_domain
		WHERE r.day < ? AND s.day IS NULL ORDER BY r.day, r.policy_domain`, Day(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var day, d string
		if err := rows.Scan(&day, &d); err != nil {
			return nil, err
		}
		out[day] = append(out[day], d)
	}
	return out, rows.Err()
}

// MarkSent records that the report of day for domain went to
// destinations (the rua URIs).
func (s *Store) MarkSent(ctx context.Context, day, domain string, destinations []string, now time.Time) error {
	return db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tlsrpt_sent(day, policy_domain, sent_at, destinations) VALUES(?, ?, ?, ?)
			ON CONFLICT DO UPDATE SET sent_at = excluded.sent_at, destinations = excluded.destinations`,
			day, domain, now.UTC().Format(time.RFC3339), strings.Join(destinations, " "))
		return err
	})
}

// Report assembles the aggregate report of day for domain (RFC 8460 4):
// one policy entry per policy and MX host, with the session counts and
// the failures by kind. org and contact name the sender.
func (s *Store) Report(ctx context.Context, day, domain, org, contact string) (*moxtlsrpt.ReportJSON, error) {
	start, err := time.Parse("2006-01-02", day)
	if err != nil {
		return nil, fmt.Errorf("report day %q: %w", day, err)
	}
	q := db.Q(ctx, s.db)
	rows, err := q.QueryContext(ctx, `SELECT policy_type, policy_string, mx_host, success, failure FROM tlsrpt_results
		WHERE day = ? AND policy_domain = ? ORDER BY policy_type, policy_string, mx_host`, day, domain)
	if err != nil {
		return nil, err
	}
	type key struct{ typ, ps, mx string }
	var keys []key
	counts := map[key][2]int64{}
	for rows.Next() {
		var k key
		var succ, fail int64
		if err := rows.Scan(&k.typ, &k.ps, &k.mx, &succ, &fail); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, k)
		counts[k] = [2]int64{succ, fail}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no TLS results for %s on %s", domain, day)
	}
	details := map[key][]moxtlsrpt.FailureDetailsJSON{}
	frows, err := q.QueryContext(ctx, `SELECT policy_type, policy_string, mx_host, result_type, receiving_ip, reason, count FROM tlsrpt_failures
		WHERE day = ? AND policy_domain = ? ORDER BY result_type, receiving_ip, reason`, day, domain)
	if err != nil {
		return nil, err
	}
	for frows.Next() {
		var k key
		var fd moxtlsrpt.FailureDetailsJSON
		if err := frows.Scan(&k.typ, &k.ps, &k.mx, &fd.ResultType, &fd.ReceivingIP, &fd.FailureReasonCode, &fd.FailedSessionCount); err != nil {
			frows.Close()
			return nil, err
		}
		fd.ReceivingMXHostname = k.mx
		details[k] = append(details[k], fd)
	}
	frows.Close()
	if err := frows.Err(); err != nil {
		return nil, err
	}
	r := &moxtlsrpt.ReportJSON{
		OrganizationName: org, ContactInfo: contact,
		ReportID:  fmt.Sprintf("%s_%s@%s", day, domain, org),
		DateRange: moxtlsrpt.TLSRPTDateRangeJSON{Start: start.UTC(), End: start.UTC().Add(24*time.Hour - time.Second)},
	}
	for _, k := range keys {
		var ps []string
		_ = json.Unmarshal([]byte(k.ps), &ps)
		c := counts[k]
		res := moxtlsrpt.ResultJSON{
			Policy:         moxtlsrpt.ResultPolicyJSON{Type: moxtlsrpt.PolicyType(k.typ), String: orEmpty(ps), Domain: domain, MXHost: []string{k.mx}},
			Summary:        moxtlsrpt.SummaryJSON{TotalSuccessfulSessionCount: c[0], TotalFailureSessionCount: c[1]},
			FailureDetails: details[k],
		}
		if k.mx == "" {
			res.Policy.MXHost = []string{}
		}
		r.Policies = append(r.Policies, res)
	}
	return r, nil
}

// Gzip encodes a report as the application/tlsrpt+gzip body (RFC 8460 5.3).
func Gzip(r *moxtlsrpt.ReportJSON) ([]byte, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(js); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Received is a report another organisation sent here.
type Received struct {
	ID           int64
	ReceivedAt   time.Time
	Organization string
	ReportID     string
	Start, End   time.Time
	// Per policy: its type and domain, successful and failed sessions.
	Policies []ReceivedPolicy
}

// ReceivedPolicy sums one policy of a received report.
type ReceivedPolicy struct {
	Type, Domain string
	Success      int64
	Failure      int64
	Failures     []string `json:",omitempty"` // "result-type xN at mx-host"
}

// Store keeps a received report; the same organisation's report id is
// kept once (a resent report replaces nothing).
func (s *Store) StoreReceived(ctx context.Context, r *moxtlsrpt.ReportJSON, now time.Time) error {
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tlsrpt_received(received_at, organization, report_id, start, end, report) VALUES(?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`, now.UTC().Format(time.RFC3339), r.OrganizationName, r.ReportID,
			r.DateRange.Start.UTC().Format(time.RFC3339), r.DateRange.End.UTC().Format(time.RFC3339), string(js))
		if err != nil {
			return fmt.Errorf("store a received TLS report: %w", err)
		}
		return nil
	})
}

// ListReceived returns the received reports, newest first.
func (s *Store) ListReceived(ctx context.Context) ([]Received, error) {
	rows, err := db.Q(ctx, s.db).QueryContext(ctx, `SELECT id, received_at, organization, report_id, start, end, report FROM tlsrpt_received ORDER BY start DESC, id DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Received{}
	for rows.Next() {
		var r Received
		var at, start, end, js string
		if err := rows.Scan(&r.ID, &at, &r.Organization, &r.ReportID, &start, &end, &js); err != nil {
			return nil, err
		}
		r.ReceivedAt, _ = time.Parse(time.RFC3339, at)
		r.Start, _ = time.Parse(time.RFC3339, start)
		r.End, _ = time.Parse(time.RFC3339, end)
		var rep moxtlsrpt.ReportJSON
		if json.Unmarshal([]byte(js), &rep) == nil {
			for _, p := range rep.Policies {
				rp := ReceivedPolicy{Type: string(p.Policy.Type), Domain: p.Policy.Domain, Success: p.Summary.TotalSuccessfulSessionCount, Failure: p.Summary.TotalFailureSessionCount}
				for _, f := range p.FailureDetails {
					rp.Failures = append(rp.Failures, fmt.Sprintf("%s x%d at %s", f.ResultType, f.FailedSessionCount, f.ReceivingMXHostname))
				}
				sort.Strings(rp.Failures)
				r.Policies = append(r.Policies, rp)
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
