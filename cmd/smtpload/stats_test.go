package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty-is-zero", nil, 50, 0},
		{"one-value-every-percentile", ms(7), 99, 7 * time.Millisecond},
		{"one-value-p50", ms(7), 50, 7 * time.Millisecond},
		{"two-values-p50-is-the-lower", ms(1, 2), 50, 1 * time.Millisecond},
		{"two-values-p51-is-the-upper", ms(1, 2), 51, 2 * time.Millisecond},
		{"odd-count-median", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"even-count-median-nearest-rank", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"hundred-p50", hundred, 50, 50 * time.Millisecond},
		{"hundred-p99", hundred, 99, 99 * time.Millisecond},
		{"hundred-p100-is-max", hundred, 100, 100 * time.Millisecond},
		{"tiny-p-is-min", hundred, 0.001, 1 * time.Millisecond},
		{"ten-p99-is-max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"ten-p90", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := percentile(c.sorted, c.p); got != c.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", c.sorted, c.p, got, c.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	cases := []struct {
		name string
		in   []time.Duration
		want Latency
	}{
		{"empty", nil, Latency{}},
		{"unsorted-input", ms(5, 1, 3, 2, 4), Latency{P50: 3, P90: 5, P99: 5, Max: 5, Mean: 3}},
		{"sub-millisecond-rounded-to-microseconds", []time.Duration{1500 * time.Microsecond, 2500*time.Microsecond + 400}, Latency{P50: 1.5, P90: 2.5, P99: 2.5, Max: 2.5, Mean: 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := summarize(c.in); got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
	t.Run("shuffled-thousand", func(t *testing.T) {
		in := make([]time.Duration, 1000)
		for i := range in {
			in[i] = time.Duration(i+1) * time.Millisecond
		}
		rand.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		got := summarize(in)
		if got.P50 != 500 || got.P90 != 900 || got.P99 != 990 || got.Max != 1000 || got.Mean != 500.5 {
			t.Errorf("got %+v", got)
		}
	})
}

func TestRate(t *testing.T) {
	cases := []struct {
		name    string
		n       int
		elapsed time.Duration
		want    float64
	}{
		{"zero-elapsed-is-zero", 10, 0, 0},
		{"per-second", 500, 2 * time.Second, 250},
		{"fraction", 1, 4 * time.Second, 0.25},
		{"none", 0, time.Second, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := rate(c.n, c.elapsed); got != c.want {
				t.Errorf("rate(%d, %v) = %v, want %v", c.n, c.elapsed, got, c.want)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	cases := []struct {
		name        string
		err         error
		class, code string
	}{
		{"reply/4xx-with-enhanced", &replyError{Code: 452, Enhanced: "4.3.1", Stage: "end of data"}, "4xx", "452 4.3.1"},
		{"reply/5xx-without-enhanced", &replyError{Code: 554, Stage: "DATA"}, "5xx", "554"},
		{"reply/wrapped", fmt.Errorf("x: %w", &replyError{Code: 421, Enhanced: "4.3.2"}), "4xx", "421 4.3.2"},
		{"stage/connect", &stageError{Class: "connect", Stage: "connect", Err: errors.New("refused")}, "connect", ""},
		{"stage/tls", &stageError{Class: "tls", Stage: "TLS handshake", Err: errors.New("bad record")}, "tls", ""},
		{"stage/io-timeout-is-timeout", &stageError{Class: "io", Stage: "MAIL", Err: os.ErrDeadlineExceeded}, "timeout", ""},
		{"stage/net-timeout", &stageError{Class: "io", Stage: "MAIL", Err: timeoutErr{}}, "timeout", ""},
		{"stage/protocol", &stageError{Class: "protocol", Stage: "EHLO", Err: errors.New("malformed")}, "protocol", ""},
		{"bare/other-is-io", errors.New("broken pipe"), "io", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			class, code := classify(c.err)
			if class != c.class || code != c.code {
				t.Errorf("classify(%v) = %q, %q; want %q, %q", c.err, class, code, c.class, c.code)
			}
		})
	}
}

func TestTallyMerge(t *testing.T) {
	a, b := newTally(4), newTally(4)
	a.success(2 * time.Millisecond)
	a.failure(&replyError{Code: 452, Enhanced: "4.3.1"})
	a.sessions = 2
	b.success(4 * time.Millisecond)
	b.success(6 * time.Millisecond)
	b.failure(&replyError{Code: 452, Enhanced: "4.3.1"})
	b.failure(&stageError{Class: "connect", Err: errors.New("refused")})
	b.sessions = 3
	all := newTally(0)
	all.merge(a)
	all.merge(b)
	if all.ok != 3 || all.failed != 3 || all.sessions != 5 || len(all.lat) != 3 {
		t.Fatalf("merged %+v", all)
	}
	if all.errors["4xx"] != 2 || all.errors["connect"] != 1 || all.replies["452 4.3.1"] != 2 || len(all.replies) != 1 {
		t.Errorf("errors %v replies %v", all.errors, all.replies)
	}
	if got := summarize(all.lat); got.P50 != 4 || got.Mean != 4 {
		t.Errorf("latency %+v", got)
	}
}

func TestParseReplyLine(t *testing.T) {
	cases := []struct {
		name string
		line string
		code int
		more bool
		text string
		ok   bool
	}{
		{"ok/last-line", "250 2.0.0 OK\r\n", 250, false, "2.0.0 OK", true},
		{"ok/continued", "250-PIPELINING\r\n", 250, true, "PIPELINING", true},
		{"ok/code-alone", "250\r\n", 250, false, "", true},
		{"ok/bare-lf", "221 bye\n", 221, false, "bye", true},
		{"fail/short", "25\r\n", 0, false, "", false},
		{"fail/not-a-number", "abc def\r\n", 0, false, "", false},
		{"fail/bad-separator", "250xOK\r\n", 0, false, "", false},
		{"fail/out-of-range", "999 what\r\n", 0, false, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, more, text, ok := parseReplyLine([]byte(c.line))
			if code != c.code || more != c.more || text != c.text || ok != c.ok {
				t.Errorf("got %d %v %q %v", code, more, text, ok)
			}
		})
	}
}

func TestMessageSize(t *testing.T) {
	for _, size := range []int{0, 100, 4096, 10000} {
		t.Run(fmt.Sprint("size-", size), func(t *testing.T) {
			cfg := Config{Size: size, IDPrefix: "p", From: "a@b.test", To: "c@d.test"}
			m := newMessage(cfg)
			full := string(m.prefix) + "123" + string(m.tail) + string(m.body)
			if !strings.HasSuffix(full, "\r\n.\r\n") {
				t.Fatalf("no end of data: %q", full[max(0, len(full)-20):])
			}
			for _, l := range strings.Split(strings.TrimSuffix(full, "\r\n"), "\r\n") {
				if strings.ContainsAny(l, "\r\n") || len(l) > 998 {
					t.Fatalf("bad line %q", l)
				}
				if strings.HasPrefix(l, ".") && l != "." {
					t.Fatalf("line needs dot-stuffing: %q", l)
				}
			}
			if size >= 200 {
				// Within a line of the asked size (the index has up to 10 digits).
				if got := len(full) - len(".\r\n"); got < size-90 || got > size+2 {
					t.Errorf("message of %d octets, want about %d", got, size)
				}
			}
		})
	}
}
