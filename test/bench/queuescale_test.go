//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"certrelay/internal/queue"
	"certrelay/internal/testpki"
)

// The domain the queue-at-scale mail is for, relayed through a smart host.
const remoteDomain = "remote.bench.test"

// TestQueueScale is the "Queue at scale" figure of `make bench`: QUEUE_N
// messages (default 100,000) for a remote domain wait in the queue because
// the smart host of the send connector that routes them is down. It
// measures `queue list`'s first page (table and --json), a restart of
// `serve` to the receive connector's greeting, the server's memory with
// the queue full (idle and during the drain), and the drain once a sink
// listens on the smart host's port, against the drain of a small queue
// (QUEUE_SMALL, default 5,000) in the same run. Writes the "queuescale"
// section of docs/performance/scale-queue.md.
//
// The queue is filled through the queue's own API (queue.Open with the
// server stopped, 256 concurrent Enqueue calls, so group commit makes it
// take seconds rather than the minutes 100,000 SMTP sessions would on two
// shared cores): what is measured is the queue once it holds the mail,
// not the ingest, which TestBench measures.
func TestQueueScale(t *testing.T) {
	n := envInt(t, "QUEUE_N", 100000)
	small := envInt(t, "QUEUE_SMALL", 5000)
	size := envInt(t, "QUEUE_SIZE", 2048)
	started := time.Now().UTC()
	r := newRelay(t, relayOptions{})
	hop := testpki.FreePort(t)
	r.cli("connector", "send", "add", "Smart host", "--address-space", remoteDomain, "--smart-host", hop)
	res := queueScaleResult{n: n, small: small, size: size, hop: hop}

	// The small queue: the same route, the sink up, delivered from a start.
	sink := startSink(t, hop)
	fill(t, r, small, size)
	r.start()
	cpu0 := cpuTime(t, r)
	res.smallDrain = waitDrain(t, r, sink, small, nil)
	res.smallCPU = cpuTime(t, r) - cpu0
	r.stop()
	sink.close()
	fmt.Printf("queue scale: small queue of %d drained at %.0f messages/s\n", small, res.smallDrain.rate())

	// The large queue, the smart host down.
	began := time.Now()
	fill(t, r, n, size)
	res.fill = time.Since(began)
	fmt.Printf("queue scale: %d messages queued in %v\n", n, res.fill.Round(time.Millisecond))
	res.firstStart = r.start()
	began = time.Now()
	res.tried = waitDeferred(t, r, n)
	res.firstPass = time.Since(began)
	res.firstPassCPU = cpuTime(t, r)
	fmt.Printf("queue scale: every message deferred %v after the start (%d tried, the rest held)\n", res.firstPass.Round(time.Millisecond), res.tried)
	time.Sleep(2 * time.Second)
	res.idleRSS, res.idleHWM = memory(t, r)

	for i := 0; i < 5; i++ {
		res.list = append(res.list, timeCLI(t, r, "queue", "list"))
		res.listJSON = append(res.listJSON, timeCLI(t, r, "queue", "list", "--json"))
	}
	res.listLines = strings.Count(r.cli("queue", "list"), "\n") + 1
	fmt.Printf("queue scale: queue list %v, --json %v (medians)\n", ms(median(res.list)), ms(median(res.listJSON)))

	for i := 0; i < 3; i++ {
		r.stop()
		res.restart = append(res.restart, restartToGreeting(t, r))
	}
	time.Sleep(2 * time.Second)
	res.restartRSS, res.restartHWM = memory(t, r)
	fmt.Printf("queue scale: restart to greeting %v (median)\n", ms(median(res.restart)))

	c := counts(t, r)
	res.waitingAttempts = c.Deferred
	returned := time.Now()
	sink = startSink(t, hop)
	cpu0 = cpuTime(t, r)
	res.drain = waitDrain(t, r, sink, n, &res.drainPeakRSS)
	res.drainCPU = cpuTime(t, r) - cpu0
	res.drainFrom = returned
	sink.close()
	fmt.Printf("queue scale: first delivery %v after the peer returned, drained at %.0f messages/s\n",
		res.drain.first.Round(time.Millisecond), res.drain.rate())
	r.stop()
	writeSection(t, "queuescale", res.report(t, started))
}

type queueScaleResult struct {
	n, small, size         int
	hop                    string
	fill, firstStart       time.Duration
	firstPass              time.Duration
	firstPassCPU           time.Duration
	tried                  int
	idleRSS, idleHWM       float64
	list, listJSON         []float64 // milliseconds
	listLines              int
	restart                []float64 // milliseconds
	restartRSS, restartHWM float64
	waitingAttempts        int
	drainFrom              time.Time
	smallDrain, drain      drainTimes
	drainPeakRSS           float64
	drainCPU, smallCPU     time.Duration
}

// drainTimes are measured from the moment the sink listens (large queue)
// or the server started (small queue).
type drainTimes struct {
	n            int
	first, empty time.Duration // first message at the sink; queue empty
}

// rate is the messages per second between the first delivery and the
// empty queue: the delivery rate, without the wait for the first try.
func (d drainTimes) rate() float64 {
	if d.empty <= d.first {
		return 0
	}
	return float64(d.n) / (d.empty - d.first).Seconds()
}

func ms(v float64) string { return fmt.Sprintf("%.0f ms", v) }

// fill enqueues n messages for remoteDomain with the server stopped.
func fill(t *testing.T, r *relay, n, size int) {
	t.Helper()
	q, err := queue.Open(filepath.Join(r.data, "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	body := []byte("From: load@smtpload.test\r\nTo: someone@" + remoteDomain + "\r\nSubject: queue at scale\r\n\r\n")
	for len(body) < size {
		body = append(body, strings.Repeat("x", 76)+"\r\n"...)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 256 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				m := &queue.Message{Sender: "load@smtpload.test", Body: body,
					Recipients: []queue.Recipient{{Address: fmt.Sprintf("user%d@%s", i%1000, remoteDomain), Destination: remoteDomain}}}
				if _, err := q.Enqueue(context.Background(), m); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

func counts(t *testing.T, r *relay) queue.Counts {
	t.Helper()
	qa, err := queue.OpenAdmin(filepath.Join(r.data, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	defer qa.Close()
	c, err := qa.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitDeferred waits until every pending recipient waits for a later
// attempt (the smart host is down: each was tried and deferred, or held
// because its destination is unreachable) and returns how many were
// tried.
func waitDeferred(t *testing.T, r *relay, n int) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Minute)
	for {
		c := counts(t, r)
		if c.Pending != n {
			t.Fatalf("%d recipients pending, want %d (the smart host is down: none may leave)\n%s", c.Pending, n, r.Logs())
		}
		if c.Waiting == n {
			return c.Deferred
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d recipients deferred after 15 minutes", c.Waiting, n)
		}
		time.Sleep(time.Second)
	}
}

// waitDrain waits until the sink has n messages and the queue is empty;
// peak, when set, receives the largest VmRSS sampled meanwhile.
func waitDrain(t *testing.T, r *relay, s *sink, n int, peak *float64) drainTimes {
	t.Helper()
	from := s.started
	d := drainTimes{n: n}
	deadline := time.Now().Add(20 * time.Minute)
	for {
		if peak != nil {
			if rss, _ := memory(t, r); rss > *peak {
				*peak = rss
			}
		}
		if d.first == 0 {
			if f := s.firstAt(); !f.IsZero() {
				d.first = f.Sub(from)
			}
		}
		// The queue is counted only once the sink has every message:
		// a count reads every pending recipient, and polling it would
		// slow the drain it measures.
		if s.count() >= int64(n) && counts(t, r).Messages == 0 {
			d.empty = time.Since(from)
			if got := s.count(); got != int64(n) {
				t.Fatalf("the sink received %d messages, want %d: some were delivered twice", got, n)
			}
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages delivered after 20 minutes; queue %+v", s.count(), n, counts(t, r))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// timeCLI runs a certrelay command and returns its wall time in ms.
func timeCLI(t *testing.T, r *relay, args ...string) float64 {
	t.Helper()
	began := time.Now()
	out, err := exec.Command(r.bin, append([]string{"--data", r.data}, args...)...).CombinedOutput()
	d := time.Since(began)
	if err != nil {
		t.Fatalf("certrelay %s: %v\n%.2000s", strings.Join(args, " "), err, out)
	}
	return float64(d.Microseconds()) / 1000
}

// restartToGreeting starts serve and returns the time from the exec to
// the receive connector's 220 greeting, in ms.
func restartToGreeting(t *testing.T, r *relay) float64 {
	t.Helper()
	began := time.Now()
	r.start()
	c, err := net.DialTimeout("tcp", r.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220") {
		t.Fatalf("greeting %q: %v", line, err)
	}
	return float64(time.Since(began).Microseconds()) / 1000
}

// cpuTime is the server's user+system CPU time so far.
func cpuTime(t *testing.T, r *relay) time.Duration {
	t.Helper()
	r.mu.Lock()
	pid := r.cmd.Process.Pid
	r.mu.Unlock()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// sink is a small SMTP server that accepts every message and counts it:
// the smart host once it is back.
type sink struct {
	ln      net.Listener
	started time.Time
	n       atomic.Int64
	first   atomic.Int64 // UnixNano of the first message
	wg      sync.WaitGroup
}

func startSink(t *testing.T, addr string) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln, started: time.Now()}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(s.close)
	return s
}

func (s *sink) close() { s.ln.Close(); s.wg.Wait() }

func (s *sink) count() int64 { return s.n.Load() }

func (s *sink) firstAt() time.Time {
	if v := s.first.Load(); v != 0 {
		return time.Unix(0, v)
	}
	return time.Time{}
}

func (s *sink) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(l string) bool { w.WriteString(l + "\r\n"); return w.Flush() == nil }
	if !say("220 sink.bench.test ESMTP") {
		return
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(line))
		if i := strings.IndexAny(verb, " :"); i > 0 {
			verb = verb[:i]
		}
		switch verb {
		case "EHLO":
			say("250-sink.bench.test")
			say("250 8BITMIME")
		case "HELO", "MAIL", "RCPT", "RSET", "NOOP":
			say("250 OK")
		case "DATA":
			say("354 go on")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			if s.n.Add(1) == 1 {
				s.first.Store(time.Now().UnixNano())
			}
			say("250 2.0.0 accepted")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 not here")
		}
	}
}

func (res *queueScaleResult) report(t *testing.T, started time.Time) string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	list, listJSON, restart := median(res.list), median(res.listJSON), median(res.restart)
	w("Run of %s UTC on %s.\n\n", started.Format("2006-01-02 15:04"), machine(t))
	w("Command: `QUEUE_N=%d QUEUE_SMALL=%d go test -tags bench -count=1 -v -run '^TestQueueScale$' ./test/bench/` (part of `make bench`). "+
		"%d messages of %d octets for %s, one recipient each, relayed by the send connector \"Smart host\" to %s, where nothing listened; "+
		"queued through the queue's API with the server stopped (%v), then `serve` started with the smart host down.\n\n",
		res.n, res.small, res.n, res.size, remoteDomain, res.hop, res.fill.Round(time.Millisecond))
	w("| goal | measured | verdict |\n|---|---|---|\n")
	w("| `queue list` first page ≤ 100 ms | %s (median of %d; %s) | %s |\n", ms(list), len(res.list), floats(res.list), goal(list, 100))
	w("| `queue list --json` first page ≤ 100 ms | %s (median of %d; %s) | %s |\n", ms(listJSON), len(res.listJSON), floats(res.listJSON), goal(listJSON, 100))
	w("| restart (`serve` exec → 220 greeting) ≤ 2 s | %s (median of %d; %s) | %s |\n", ms(restart), len(res.restart), floats(res.restart), goal(restart, 2000))
	w("| delivery at full speed when the peer returns | %.0f messages/s (small queue of %d: %.0f/s, %.0f %%) | %s |\n",
		res.drain.rate(), res.small, res.smallDrain.rate(), 100*res.drain.rate()/res.smallDrain.rate(), speed(res.drain.rate(), res.smallDrain.rate()))
	w("| mail flows soon after the peer returns | first delivery %v after the sink listened (the next retry due), queue empty after %v | %s |\n",
		res.drain.first.Round(time.Millisecond), res.drain.empty.Round(time.Millisecond), soon(res.drain.first))
	w("| memory stated | idle with %d waiting: VmRSS %s (peak so far %s); after a restart %s (peak %s); during the drain peak %s | stated |\n\n",
		res.n, mib(res.idleRSS), mib(res.idleHWM), mib(res.restartRSS), mib(res.restartHWM), mib(res.drainPeakRSS))
	w("Details:\n\n")
	w("- `queue list` printed %d lines (the first page).\n", res.listLines)
	w("- First start with %d messages due: %v to the log line \"certrelay running\" and the open port; every message deferred %v after it, %d of them after a connection attempt, the rest held with their destination (server CPU so far %v).\n",
		res.n, res.firstStart.Round(time.Millisecond), res.firstPass.Round(time.Millisecond), res.tried, res.firstPassCPU.Round(10*time.Millisecond))
	w("- When the sink started listening, %d recipients had been tried; the drain took %v of server CPU time (%.0f µs per message).\n",
		res.waitingAttempts, res.drainCPU.Round(10*time.Millisecond), float64(res.drainCPU.Microseconds())/float64(res.n))
	w("- Small queue (%d messages, sink up, from the server's start): first delivery %v, empty %v; %v of server CPU time (%.0f µs per message).\n",
		res.small, res.smallDrain.first.Round(time.Millisecond), res.smallDrain.empty.Round(time.Millisecond),
		res.smallCPU.Round(10*time.Millisecond), float64(res.smallCPU.Microseconds())/float64(res.small))
	return b.String()
}

func goal(v, limit float64) string {
	if v <= limit {
		return verdict(true, fmt.Sprintf("%.0f %% of the limit", 100*v/limit))
	}
	return verdict(false, fmt.Sprintf("by %.0f ms, %.1f×", v-limit, v/limit))
}

// speed calls the drain "full speed" when it reaches 80 % of the small
// queue's rate in the same run.
func speed(big, small float64) string {
	if small <= 0 {
		return "no small-queue figure"
	}
	return verdict(big >= 0.8*small, fmt.Sprintf("%.0f %% of the small queue's rate; bar 80 %%", 100*big/small))
}

// soon calls the restart of delivery prompt when the first message leaves
// no later than the retry schedule's first step allows (1 min + 10 %
// jitter) after the peer's return; the rate row says whether the rest
// follows at full speed.
func soon(first time.Duration) string {
	return verdict(first <= 66*time.Second, "bar: the first retry step, 1 min + 10 % jitter; Exchange retries a next hop after 10 min (hub) or 30 min (edge)")
}
