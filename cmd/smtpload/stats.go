package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is what a run measured; printed as text or, with -json, as this
// structure.
type Report struct {
	Addr        string `json:"addr"`
	Clients     int    `json:"clients"`
	Requested   int    `json:"requested"` // -n
	Size        int    `json:"size"`
	TLS         bool   `json:"tls"`
	Pipelining  bool   `json:"pipelining"`
	PerConn     int    `json:"per_conn"`
	SessionOnly bool   `json:"session_only,omitempty"`

	OK       int     `json:"ok"`       // messages (or sessions) that got their 250
	Failed   int     `json:"failed"`   // messages (or sessions) that did not
	Sessions int     `json:"sessions"` // connections opened
	Elapsed  float64 `json:"elapsed_s"`
	Rate     float64 `json:"per_s"` // OK / Elapsed: messages/s, or sessions/s with -session-only

	Latency Latency `json:"latency_ms"`

	// Errors counts failures by class: "4xx" and "5xx" replies, and
	// "connect", "tls", "timeout", "io" and "protocol" for the others.
	Errors map[string]int `json:"errors"`
	// Replies counts the negative replies by code and enhanced code,
	// such as "452 4.3.1".
	Replies map[string]int `json:"replies"`
	// FirstErrors keeps a few error texts for the reader.
	FirstErrors []string `json:"first_errors,omitempty"`

	TLSVersion  string `json:"tls_version,omitempty"`
	Cipher      string `json:"cipher,omitempty"`
	KeyExchange string `json:"key_exchange,omitempty"`
}

// Latency is the distribution of per-message latencies in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value such that at least p% of the
// values are at most it. It returns 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

// summarize sorts lat in place and returns its distribution.
func summarize(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return Latency{
		P50:  ms(percentile(lat, 50)),
		P90:  ms(percentile(lat, 90)),
		P99:  ms(percentile(lat, 99)),
		Max:  ms(lat[len(lat)-1]),
		Mean: ms(sum / time.Duration(len(lat))),
	}
}

// rate returns n per second over elapsed, 0 when nothing elapsed.
func rate(n int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(n) / elapsed.Seconds()
}

// replyError is a negative SMTP reply.
type replyError struct {
	Code     int
	Enhanced string // "4.3.1", or "" when the server sent none
	Text     string
	Stage    string // the command it answered
}

func (e *replyError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.Stage, e.Code, strings.TrimSpace(e.Enhanced+" "+e.Text))
}

// stageError is a failure that is not a reply, with the step it happened in.
type stageError struct {
	Class string // connect, tls, timeout, io, protocol
	Stage string
	Err   error
}

func (e *stageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *stageError) Unwrap() error { return e.Err }

// classify returns the error class of err and, for a reply, its code key
// ("452 4.3.1"; "" otherwise).
func classify(err error) (class, code string) {
	var re *replyError
	if errors.As(err, &re) {
		class = fmt.Sprintf("%dxx", re.Code/100)
		code = fmt.Sprint(re.Code)
		if re.Enhanced != "" {
			code += " " + re.Enhanced
		}
		return class, code
	}
	var se *stageError
	if errors.As(err, &se) && se.Class != "timeout" {
		if isTimeout(err) {
			return "timeout", ""
		}
		return se.Class, ""
	}
	if isTimeout(err) {
		return "timeout", ""
	}
	return "io", ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// tally accumulates outcomes; each worker has its own and they are
// merged at the end, so recording needs no lock.
type tally struct {
	ok, failed, sessions int
	lat                  []time.Duration
	errors               map[string]int
	replies              map[string]int
	first                []string
}

func newTally(capacity int) *tally {
	return &tally{lat: make([]time.Duration, 0, capacity), errors: map[string]int{}, replies: map[string]int{}}
}

func (t *tally) success(d time.Duration) {
	t.ok++
	t.lat = append(t.lat, d)
}

func (t *tally) failure(err error) {
	t.failed++
	class, code := classify(err)
	t.errors[class]++
	if code != "" {
		t.replies[code]++
	}
	if len(t.first) < 5 {
		t.first = append(t.first, err.Error())
	}
}

func (t *tally) merge(o *tally) {
	t.ok += o.ok
	t.failed += o.failed
	t.sessions += o.sessions
	t.lat = append(t.lat, o.lat...)
	for k, v := range o.errors {
		t.errors[k] += v
	}
	for k, v := range o.replies {
		t.replies[k] += v
	}
	for _, s := range o.first {
		if len(t.first) < 5 {
			t.first = append(t.first, s)
		}
	}
}

// text renders the report for people.
func (r *Report) text() string {
	var b strings.Builder
	mode := "plain"
	if r.TLS {
		mode = "STARTTLS"
		if r.TLSVersion != "" {
			mode += " (" + r.TLSVersion + ", " + r.Cipher
			if r.KeyExchange != "" {
				mode += ", " + r.KeyExchange
			}
			mode += ")"
		}
	}
	unit := "messages"
	if r.SessionOnly {
		unit = "sessions"
	}
	fmt.Fprintf(&b, "target %s: %d clients, %s, %d bytes, pipelining %v, %d per connection\n",
		r.Addr, r.Clients, mode, r.Size, r.Pipelining, r.PerConn)
	fmt.Fprintf(&b, "%d %s ok, %d failed, %d sessions in %.3f s: %.1f %s/s\n",
		r.OK, unit, r.Failed, r.Sessions, r.Elapsed, r.Rate, unit)
	fmt.Fprintf(&b, "latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Latency.Mean)
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "errors: %s\n", joinCounts(r.Errors))
	}
	if len(r.Replies) > 0 {
		fmt.Fprintf(&b, "negative replies: %s\n", joinCounts(r.Replies))
	}
	for _, e := range r.FirstErrors {
		fmt.Fprintf(&b, "  e.g. %s\n", e)
	}
	return b.String()
}

func joinCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
