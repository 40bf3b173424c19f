//go:build bench

package bench

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// A server configuration the loads run against.
type target struct {
	Name  string
	Label string // for the tables
	// start starts the server; cpu reads the CPU time it has used:
	// certrelay's process, or Postfix's master and every process under
	// it (and those they waited for).
	start func(t *testing.T, keyType string) (addr string, cpu func() (time.Duration, error))
	// Pinned: the server runs on pinServerCPUs and this process — the
	// load's smtpload — on pinClientCPU (issue 19's first fair way of
	// measuring a session against its floor).
	Pinned bool
}

// The CPUs of a pinned measurement: the server's (taskset's list) and the
// clients'.
const (
	pinServerCPUs = "0"
	pinClientCPU  = 1
)

var targets = []target{
	{"certrelay-maildir", "certrelay, Maildir delivery", func(t *testing.T, keyType string) (string, func() (time.Duration, error)) {
		r := newRelay(t, relayOptions{KeyType: keyType})
		r.start()
		pid := r.pid()
		return r.addr, func() (time.Duration, error) { return procCPU(pid) }
	}, false},
	{"certrelay-deferred", "certrelay, delivery deferred", func(t *testing.T, keyType string) (string, func() (time.Duration, error)) {
		r := newRelay(t, relayOptions{KeyType: keyType, HoldDelivery: true})
		r.start()
		pid := r.pid()
		return r.addr, func() (time.Duration, error) { return procCPU(pid) }
	}, false},
	{"certrelay-deferred-pinned", "certrelay, delivery deferred, pinned", func(t *testing.T, keyType string) (string, func() (time.Duration, error)) {
		r := newRelay(t, relayOptions{KeyType: keyType, HoldDelivery: true, CPUs: pinServerCPUs})
		r.start()
		pid := r.pid()
		return r.addr, func() (time.Duration, error) { return procCPU(pid) }
	}, true},
	{"postfix-discard", "Postfix, discard", func(t *testing.T, keyType string) (string, func() (time.Duration, error)) {
		return postfixTarget(t, newPostfix(t, postfixOptions{KeyType: keyType}))
	}, false},
	{"postfix-maildir", "Postfix, virtual Maildir", func(t *testing.T, keyType string) (string, func() (time.Duration, error)) {
		return postfixTarget(t, newPostfix(t, postfixOptions{KeyType: keyType, Maildir: true}))
	}, false},
}

// postfixTarget returns a started Postfix's address and a reader of the
// CPU time of its master's process tree.
func postfixTarget(t *testing.T, p *testpki.Postfix) (string, func() (time.Duration, error)) {
	t.Helper()
	master, err := postfixMaster(p)
	if err != nil {
		t.Fatal(err)
	}
	return p.Addr, func() (time.Duration, error) { return treeCPU(master) }
}

// postfixMaster returns the PID of a started Postfix's master process.
func postfixMaster(p *testpki.Postfix) (int, error) {
	b, err := os.ReadFile(filepath.Join(p.Dir, "queue", "pid", "master.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("master.pid holds %q", b)
	}
	return pid, nil
}

// A load, with the key type of the server's certificate and the targets
// it runs against.
type benchLoad struct {
	load
	KeyType string
	Label   string
	Targets []string
}

// result is one run.
type result struct {
	Round  int
	Load   string
	Target string
	Rep    loadReport
	// ServerCPU is certrelay's CPU (user + system) per message or
	// session, µs, from the start of the measured load until the server
	// is idle again (deliveries after the last 250 included); 0 for
	// Postfix. ClientCPU is smtpload's.
	ServerCPU, ClientCPU float64
}

// TestBench is `make bench`: the same loads against certrelay and
// Postfix, alternating, ROUNDS times (median reported); the Go
// benchmarks; the hot swap under load; then it writes the generated
// section of docs/PERFORMANCE.md. Nothing is asserted about timings: it
// fails only when a run cannot be made or messages fail.
func TestBench(t *testing.T) {
	build(t)
	rounds := envInt(t, "ROUNDS", 5)
	plainN := envInt(t, "PLAIN_N", 5000)
	tlsN := envInt(t, "TLS_N", 3000)
	swaps := envInt(t, "SWAPS", 10)
	clients := envInt(t, "CLIENTS", 32)
	started := time.Now().UTC()
	all := []string{"certrelay-maildir", "certrelay-deferred", "postfix-discard", "postfix-maildir"}
	certrelayOnly := []string{"certrelay-maildir", "certrelay-deferred"}
	// The ECDSA/X25519 session is also measured pinned (server on one
	// core, clients on the other), beside its pinned floor.
	sessionECDSA := []string{"certrelay-deferred", "postfix-discard"}
	if canPin() {
		sessionECDSA = append(sessionECDSA, "certrelay-deferred-pinned")
	}
	// STARTTLS loads offer X25519 only, the group OpenSSL 3.0 (Postfix
	// here) settles on, so both servers do the same key exchange; the
	// "pq" load keeps Go's default groups (X25519MLKEM768 first), which
	// certrelay accepts and Postfix cannot.
	loads := []benchLoad{
		{load{Name: "plain", Clients: clients, Messages: plainN, Size: 4096}, "", "plain text, 4 KiB", all},
		{load{Name: "starttls-rsa", Clients: clients, Messages: tlsN, Size: 4096, TLS: true, Curves: "X25519"}, "rsa", "STARTTLS RSA-2048, 4 KiB", all},
		{load{Name: "starttls-ecdsa", Clients: clients, Messages: tlsN, Size: 4096, TLS: true, Curves: "X25519"}, "ecdsa", "STARTTLS ECDSA P-256, 4 KiB", all},
		{load{Name: "starttls-ecdsa-pq", Clients: clients, Messages: tlsN, Size: 4096, TLS: true}, "ecdsa", "STARTTLS ECDSA P-256, X25519MLKEM768, 4 KiB", certrelayOnly},
		{load{Name: "session-rsa", Clients: clients, Messages: tlsN, TLS: true, SessionOnly: true, Curves: "X25519"}, "rsa", "STARTTLS session alone, RSA-2048", []string{"certrelay-deferred", "postfix-discard"}},
		{load{Name: "session-ecdsa", Clients: clients, Messages: tlsN, TLS: true, SessionOnly: true, Curves: "X25519"}, "ecdsa", "STARTTLS session alone, ECDSA P-256", sessionECDSA},
		{load{Name: "session-ecdsa-pq", Clients: clients, Messages: tlsN, TLS: true, SessionOnly: true}, "ecdsa", "STARTTLS session alone, ECDSA P-256, X25519MLKEM768", []string{"certrelay-deferred"}},
	}
	byName := map[string]target{}
	for _, tg := range targets {
		byName[tg.Name] = tg
	}

	var results []result
	floors := map[string][]floorResult{}
	for round := 1; round <= rounds; round++ {
		for _, l := range loads {
			// Alternate: each round starts with another server.
			order := append([]string(nil), l.Targets...)
			k := (round - 1) % len(order)
			order = append(order[k:], order[:k]...)
			for _, name := range order {
				tg := byName[name]
				t.Run(fmt.Sprintf("round%d/%s/%s", round, l.Name, name), func(t *testing.T) {
					// Every run starts with nothing dirty on the file
					// system: the previous run's removal and queue
					// files are written back now, not in this run's
					// syncs.
					dirty := quiesceFS()
					if tg.Pinned {
						defer pinSelf(t, pinClientCPU)()
					}
					addr, cpuOf := tg.start(t, l.KeyType)
					// Warm up (processes spawned, Postfix's in-flow
					// tokens, caches), then measure.
					warm := l.load
					warm.Messages = max(100, l.Messages/10)
					runLoad(t, addr, warm)
					before := settledCPU(t, cpuOf, 30*time.Second)
					rep := runLoad(t, addr, l.load)
					if rep.Failed > 0 {
						t.Errorf("%d of %d failed: %v %v %v", rep.Failed, rep.OK+rep.Failed, rep.Errors, rep.Replies, rep.FirstErrors)
					}
					res := result{Round: round, Load: l.Name, Target: name, Rep: rep, ClientCPU: micros(rep.ClientCPU, rep.OK)}
					res.ServerCPU = micros(settledCPU(t, cpuOf, 60*time.Second)-before, rep.OK)
					cpu := fmt.Sprintf("  server %4.0f µs/msg", res.ServerCPU)
					fmt.Printf("round %d  %-15s %-19s %8.1f/s  p50 %7.2f ms  p99 %7.2f ms  failed %d  %s %s%s  smtpload %4.0f µs/msg  (before: %s)\n",
						round, l.Name, name, rep.Rate, rep.Latency.P50, rep.Latency.P99, rep.Failed, rep.TLSVersion, rep.KeyExchange, cpu, res.ClientCPU, dirty)
					results = append(results, res)
				})
			}
		}
		// The floor of the session loads, measured as they are (the
		// server's CPU per handshake), once a round.
		for _, f := range floorLoads {
			if f.Pinned && !canPin() {
				continue
			}
			t.Run(fmt.Sprintf("round%d/floor/%s", round, f.Session), func(t *testing.T) {
				dirty := quiesceFS()
				cpus := ""
				if f.Pinned {
					cpus = pinServerCPUs
					defer pinSelf(t, pinClientCPU)()
				}
				r := measureFloor(t, f.KeyType, cpus, f.Curves, clients, tlsN)
				fmt.Printf("round %d  floor %-20s %8.1f/s  server %4.0f µs/handshake  client %4.0f µs/handshake  (before: %s)\n",
					round, f.Session, r.Rate, r.ServerCPU, r.ClientCPU, dirty)
				floors[f.Session] = append(floors[f.Session], r)
			})
		}
	}

	var swap swapResult
	t.Run("hotswap", func(t *testing.T) {
		swap = hotSwap(t, relayOptions{KeyType: "ecdsa", HoldDelivery: true}, swaps, clients/2)
	})
	var gobench []benchLine
	var store storeTimes
	t.Run("gobench", func(t *testing.T) { gobench, store = goBenchmarks(t, swaps) })

	doc := report(t, started, rounds, loads, results, floors, swap, gobench, store)
	fmt.Println(doc)
	writeSection(t, "bench", doc)
}

// floorLoads are the bare handshakes each session load is compared with.
var floorLoads = []struct {
	Session, KeyType string
	Curves           []tls.CurveID
	Pinned           bool // server on pinServerCPUs, clients on pinClientCPU
}{
	{"session-rsa", "rsa", []tls.CurveID{tls.X25519}, false},
	{"session-ecdsa", "ecdsa", []tls.CurveID{tls.X25519}, false},
	{"session-ecdsa-pq", "ecdsa", nil, false},
	{"session-ecdsa-pinned", "ecdsa", []tls.CurveID{tls.X25519}, true},
}

// canPin says whether this machine has the two CPUs a pinned measurement
// needs.
func canPin() bool { return runtime.NumCPU() >= 2 }

// swapResult is what hotSwap measured.
type swapResult struct {
	Swaps      int
	Clients    int       // of the background load
	Latencies  []float64 // ms from `cert new` returning to the first session served the new certificate
	Failed     int       // failed sessions: probes and the background load
	Sessions   int       // sessions during the swaps: probes and the background load
	Background loadReport
	Note       string
}

// probe is one STARTTLS session of the prober.
type probe struct {
	at    time.Time // when STARTTLS was sent: the server picks the certificate then
	thumb string
	err   error
}

// hotSwap runs a STARTTLS load against certrelay and, swaps times, makes
// a new certificate for the connector's FQDN (newer, so it wins) with
// `certrelay cert new`, measuring how long after the command returns the
// first session is served the new certificate. Two probe clients run
// STARTTLS sessions back to back to see it.
func hotSwap(t *testing.T, o relayOptions, swaps, clients int) swapResult {
	r := newRelay(t, o)
	r.start()
	bg := load{Name: "swap-background", Clients: clients, Size: 4096, TLS: true, Duration: time.Duration(swaps)*1500*time.Millisecond + 30*time.Second}
	stopBG, waitBG := startLoad(t, r.addr, bg)
	time.Sleep(time.Second)
	res := swapRounds(t, r, swaps)
	res.Clients = clients
	stopBG()
	res.Background = waitBG()
	res.Sessions += res.Background.OK + res.Background.Failed
	res.Failed += res.Background.Failed
	if res.Failed > 0 {
		t.Errorf("%d failed sessions during the swaps: %s %v", res.Failed, res.Note, res.Background.FirstErrors)
	}
	fmt.Printf("hot swap: %d swaps, served after p50 %.1f ms p99 %.1f ms max %.1f ms; %d sessions, %d failed\n",
		swaps, median(res.Latencies), nearestRank(res.Latencies, 99), nearestRank(res.Latencies, 100), res.Sessions, res.Failed)
	return res
}

// swapRounds makes swaps new certificates for the connector's FQDN on a
// running relay, 1.2 s apart, while two probe clients run STARTTLS
// sessions back to back, and measures from each `cert new` returning to
// the STARTTLS of the first probe served the new certificate. Failed
// probes are counted in Failed and Sessions.
func swapRounds(t *testing.T, r *relay, swaps int) swapResult {
	pr := startProbers(r.addr, 2)
	res := swapResult{Swaps: swaps}
	for i := 0; i < swaps; i++ {
		time.Sleep(1200 * time.Millisecond) // a later NotBefore second: the new certificate wins (S4)
		thumb := r.newCert("ecdsa")
		returned := time.Now()
		if at, ok := pr.waitServed(thumb, returned.Add(30*time.Second)); ok {
			res.Latencies = append(res.Latencies, float64(at.Sub(returned).Microseconds())/1000)
		} else {
			t.Errorf("swap %d: certificate %s never served", i+1, thumb)
		}
	}
	probes := pr.stopAll()
	res.Failed, res.Note = failures(probes)
	res.Sessions = len(probes)
	return res
}

// probers are clients running STARTTLS sessions back to back against one
// address, recording when each session was served which certificate:
// how the swap, renewal and scale benchmarks see a new certificate.
type probers struct {
	mu     sync.Mutex
	probes []probe
	stop   chan struct{}
	wg     sync.WaitGroup
}

// startProbers starts n clients probing addr until stopAll.
func startProbers(addr string, n int) *probers {
	pr := &probers{stop: make(chan struct{})}
	for range n {
		pr.wg.Add(1)
		go func() {
			defer pr.wg.Done()
			for {
				select {
				case <-pr.stop:
					return
				default:
				}
				p := starttlsProbe(addr)
				pr.mu.Lock()
				pr.probes = append(pr.probes, p)
				pr.mu.Unlock()
			}
		}()
	}
	return pr
}

// waitServed waits until deadline for a session served thumb and returns
// when its STARTTLS was sent.
func (pr *probers) waitServed(thumb string, deadline time.Time) (time.Time, bool) {
	for {
		pr.mu.Lock()
		i := slices.IndexFunc(pr.probes, func(p probe) bool { return p.err == nil && p.thumb == thumb })
		var at time.Time
		if i >= 0 {
			at = pr.probes[i].at
		}
		pr.mu.Unlock()
		if i >= 0 {
			return at, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stopAll stops the clients and returns every session they ran.
func (pr *probers) stopAll() []probe {
	close(pr.stop)
	pr.wg.Wait()
	return pr.probes
}

// failures counts the failed sessions and returns the first one's error.
func failures(probes []probe) (n int, first string) {
	for _, p := range probes {
		if p.err != nil {
			if n == 0 {
				first = p.err.Error()
			}
			n++
		}
	}
	return n, first
}

// starttlsProbe runs one STARTTLS session and returns when STARTTLS was
// sent and the thumbprint of the certificate served.
func starttlsProbe(addr string) probe {
	thumb, at, err := testpki.STARTTLSProbe(addr)
	if at.IsZero() {
		at = time.Now()
	}
	return probe{at: at, thumb: thumb, err: err}
}

// benchLine is one line of go test -bench output.
type benchLine struct {
	Pkg, Name string
	N         string
	Metrics   map[string]string // unit -> value
	Raw       string
}

var benchRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// storeTimes are the CLI timings on a data directory with 10,000
// certificates.
type storeTimes struct {
	CertList     time.Duration
	ServeStarts  []float64 // ms, from exec to accepting connections
	Swaps        []float64 // ms, from cert new returning to the first session served the new certificate
	Certificates int
}

// ServeStart is the median of the server starts.
func (st storeTimes) ServeStart() time.Duration {
	return time.Duration(median(st.ServeStarts) * float64(time.Millisecond))
}

// goRun is one package's Go benchmarks.
type goRun struct {
	pkg, pattern, benchtime string
	env                     []string
}

// runGoBenchmarks runs the Go benchmarks and parses their lines.
func runGoBenchmarks(t *testing.T, runs []goRun) []benchLine {
	var lines []benchLine
	for _, r := range runs {
		cmd := exec.Command("go", "test", "-run", "^$", "-bench", r.pattern, "-benchmem", "-benchtime", r.benchtime, "-count", "1", r.pkg)
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), r.env...)
		out, err := cmd.CombinedOutput()
		fmt.Printf("$ go test -run '^$' -bench '%s' -benchmem -benchtime %s %s\n%s", r.pattern, r.benchtime, r.pkg, out)
		if err != nil {
			t.Errorf("go test -bench %s %s: %v", r.pattern, r.pkg, err)
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			m := benchRE.FindStringSubmatch(strings.TrimSpace(l))
			if m == nil {
				continue
			}
			bl := benchLine{Pkg: r.pkg, Name: m[1], N: m[2], Metrics: map[string]string{}, Raw: strings.TrimSpace(l)}
			f := strings.Fields(m[3])
			for i := 0; i+1 < len(f); i += 2 {
				bl.Metrics[f[i+1]] = f[i]
			}
			lines = append(lines, bl)
		}
	}
	return lines
}

// goBenchmarks runs the Go benchmarks of make bench and, on the data
// directory BenchmarkStore10k leaves, times `cert list` and a server
// start and hot swaps with 10,000 certificates.
func goBenchmarks(t *testing.T, swaps int) ([]benchLine, storeTimes) {
	storeDir := t.TempDir()
	lines := runGoBenchmarks(t, []goRun{
		{"./internal/selection/", "BenchmarkSelect", "1s", nil},
		{"./internal/serving/", "BenchmarkConfig", "1s", nil},
		{"./test/bench/", "BenchmarkTLSHandshake", "3s", nil},
		{"./internal/admin/", "BenchmarkStore10k", "3x", []string{"CERTRELAY_BENCH_STORE_DIR=" + storeDir}},
		{"./internal/queue/", "BenchmarkEnqueue4K$|BenchmarkEnqueueWhileDelivering4K", "3s", nil},
	})
	return lines, bigStore(t, storeDir, swaps)
}

// bigStore times, on the data directory BenchmarkStore10k filled, `cert
// list`, three server starts, and swaps hot swaps under a light STARTTLS
// load (4 clients, sessions without messages) with two probes, as
// hotSwap does.
func bigStore(t *testing.T, data string, swaps int) storeTimes {
	var st storeTimes
	r := newRelay(t, relayOptions{Data: data, HoldDelivery: true})
	// The median of three runs: one run is at the mercy of whatever else
	// the two cores do at that moment (a run took 182 ms while the same
	// command took 110 ms in a loop just after).
	var lists []time.Duration
	for i := 0; i < 3; i++ {
		began := time.Now()
		list := r.cli("cert", "list", "--json")
		lists = append(lists, time.Since(began))
		st.Certificates = strings.Count(list, `"Thumbprint"`)
	}
	slices.Sort(lists)
	st.CertList = lists[1]
	for i := 0; i < 3; i++ {
		if i > 0 {
			r.stop()
		}
		st.ServeStarts = append(st.ServeStarts, float64(r.start().Microseconds())/1000)
	}
	stopBG, waitBG := startLoad(t, r.addr, load{Name: "store-swap", Clients: 4, TLS: true, SessionOnly: true, Duration: time.Duration(swaps)*1500*time.Millisecond + time.Minute})
	res := swapRounds(t, r, swaps)
	st.Swaps = res.Latencies
	stopBG()
	if rep := waitBG(); rep.Failed+res.Failed > 0 {
		t.Errorf("%d failed sessions during the swaps on the big store: %v %s", rep.Failed+res.Failed, rep.FirstErrors, res.Note)
	}
	r.stop()
	fmt.Printf("store with %d certificates: cert list --json %v, serve start %v ms, hot swap served after p50 %.1f p99 %.1f max %.1f ms\n",
		st.Certificates, st.CertList.Round(time.Millisecond), st.ServeStarts, median(st.Swaps), nearestRank(st.Swaps, 99), nearestRank(st.Swaps, 100))
	return st
}
