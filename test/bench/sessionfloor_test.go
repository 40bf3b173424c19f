//go:build bench

package bench

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// The session floor (issue 19): what the STARTTLS session itself costs
// a server that does nothing else. The goal compares certrelay's server
// CPU per session (connect, greeting, EHLO, STARTTLS, handshake, EHLO,
// QUIT) with a bare handshake's; between the two lies the SMTP exchange,
// which every SMTP server pays: four more round trips, each a read, a
// write and a wake-up. TestSessionFloor measures it with a minimal SMTP
// server (minimalSMTP: the replies and the handshake, no limits, no
// deadlines, no logging, no queue), run in the floor's process and
// driven by the same smtpload load as certrelay, alternating with the
// bare handshake and certrelay round by round.

// smtpFloorEnv, set beside floorEnv, makes the floor process serve
// minimalSMTP instead of bare handshakes.
const smtpFloorEnv = "BENCH_FLOOR_SMTP"

// minimalSMTP serves one STARTTLS session as plainly as Go can: one
// write per reply, one read per command, nothing checked that the load
// does not need.
func minimalSMTP(c net.Conn, conf *tls.Config) {
	defer c.Close()
	var rw net.Conn = c
	br := bufio.NewReader(rw)
	bw := bufio.NewWriter(rw)
	reply := func(s string) bool {
		bw.WriteString(s)
		return bw.Flush() == nil
	}
	if !reply("220 floor.bench.test ESMTP\r\n") {
		return
	}
	tlsOn := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(line))
		if i := strings.IndexByte(verb, ' '); i >= 0 {
			verb = verb[:i]
		}
		switch verb {
		case "EHLO":
			ext := "250-floor.bench.test\r\n250-PIPELINING\r\n250-SIZE 36700160\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
			if !tlsOn {
				ext += "250-STARTTLS\r\n"
			}
			if !reply(ext + "250 SMTPUTF8\r\n") {
				return
			}
		case "STARTTLS":
			if !reply("220 2.0.0 Ready to start TLS\r\n") {
				return
			}
			tc := tls.Server(c, conf)
			if tc.Handshake() != nil {
				return
			}
			rw, tlsOn = tc, true
			br.Reset(rw)
			bw.Reset(rw)
		case "QUIT":
			reply("221 2.0.0 Bye\r\n")
			return
		default:
			if !reply("502 5.5.2 Not in the floor\r\n") {
				return
			}
		}
	}
}

// TestSessionFloor measures, ROUNDS times, the server's CPU per ECDSA
// P-256 / X25519 handshake (the bench's floor), per session of
// minimalSMTP and per session of certrelay (delivery deferred, as in the
// bench's session loads), and writes the "sessionfloor" section of
// docs/performance/session-floor.md. It asserts nothing about timings.
// Within a round the three servers run together and are measured in
// turn, part by part (interleaved), so that a slower or faster spell of
// this shared machine falls on all three alike and their ratios hold
// still where the figures of separate runs swing by ±10–15%.
//
// It measures each of the three twice, the two ways issue 19 calls fair:
// "shared", as TestBench does, server and clients on both cores and the
// server's CPU counted; and "pinned", the server on CPU 0 (taskset from
// its start, so a Go server runs with GOMAXPROCS 1) and the clients —
// smtpload, the floor's Go clients in this process — on CPU 1.
func TestSessionFloor(t *testing.T) {
	build(t)
	rounds := envInt(t, "ROUNDS", 5)
	n := envInt(t, "TLS_N", 3000)
	clients := envInt(t, "CLIENTS", 32)
	started := time.Now().UTC()
	sess := load{Name: "session-ecdsa", Clients: clients, Messages: n, TLS: true, SessionOnly: true, Curves: "X25519"}
	kinds := []string{"handshake", "minimal SMTP", "certrelay"}
	modes := []string{"shared"}
	if canPin() {
		modes = append(modes, "pinned")
	} else {
		t.Logf("one CPU: the pinned measurement needs two")
	}
	got := map[string][]float64{} // by mode + " " + kind
	for round := 1; round <= rounds; round++ {
		k := (round - 1) % len(kinds)
		order := append(append([]string(nil), kinds[k:]...), kinds[:k]...)
		m := (round - 1) % len(modes)
		for _, mode := range append(append([]string(nil), modes[m:]...), modes[:m]...) {
			t.Run(fmt.Sprintf("round%d/%s", round, mode), func(t *testing.T) {
				dirty := quiesceFS()
				server := ""
				if mode == "pinned" {
					server = pinServerCPUs
					defer pinSelf(t, pinClientCPU)()
				}
				v := interleaved(t, server, order, clients, n, sess)
				for _, kind := range kinds {
					fmt.Printf("round %d  %-6s  %-13s server %4.0f µs per handshake or session  (before: %s)\n", round, mode, kind, v[kind], dirty)
					got[mode+" "+kind] = append(got[mode+" "+kind], v[kind])
				}
			})
		}
	}
	if t.Failed() {
		return
	}
	for _, mode := range modes {
		for _, kind := range kinds {
			if len(got[mode+" "+kind]) != rounds {
				return
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Results of `make bench-sessionfloor ROUNDS=%d` on %s UTC\n\n", rounds, started.Format("2006-01-02 15:04"))
	fmt.Fprintf(&b, "Machine: %s.\n\n", machine(t))
	fmt.Fprintf(&b, "Server CPU (`/proc/PID/stat`, user + system) per ECDSA P-256 handshake with X25519 (the bench's floor: a bare crypto/tls handshake, %d clients) and per STARTTLS session (`smtpload -tls -session-only -curves X25519 -c %d -n %d`: connect, greeting, EHLO, STARTTLS, handshake, EHLO, QUIT) of the minimal SMTP server and of certrelay with delivery deferred. In each round the three servers are started together and measured in turn, %d times %d handshakes or sessions each, their CPU summed, so that what the shared machine's neighbours do between rounds falls on all three alike; each round starts with another, and the two ways of running them alternate too:\n\n", clients, clients, n, floorChunks, n/floorChunks)
	b.WriteString("- **shared**: as in `make bench`, servers and clients share both cores;\n")
	fmt.Fprintf(&b, "- **pinned**: the server on CPU %s from its start (`taskset -c %s`; Go sizes GOMAXPROCS to 1), the clients — `smtpload`, the floor's Go clients — on CPU %d.\n", pinServerCPUs, pinServerCPUs, pinClientCPU)
	for _, mode := range modes {
		fmt.Fprintf(&b, "\n### %s\n\n", mode)
		b.WriteString("| round | handshake µs | minimal SMTP µs/session | certrelay µs/session | handshake ÷ minimal SMTP | handshake ÷ certrelay | minimal SMTP ÷ certrelay |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		h, ms, c := got[mode+" handshake"], got[mode+" minimal SMTP"], got[mode+" certrelay"]
		row := func(name string, h, m, c float64) {
			fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f | %.0f%% | %.0f%% | %.0f%% |\n", name, h, m, c, 100*h/m, 100*h/c, 100*m/c)
		}
		for r := range rounds {
			row(fmt.Sprint(r+1), h[r], ms[r], c[r])
		}
		row("**median**", median(h), median(ms), median(c))
	}
	writeSection(t, "sessionfloor", b.String())
}

// floorChunks is how many parts TestSessionFloor measures each server's
// load in, alternating the servers part by part.
const floorChunks = 6

// interleaved starts a bare-handshake floor server, a minimal SMTP
// server and certrelay (delivery deferred) on cpus (taskset's list; "":
// any), warms each up, then measures them in turn, floorChunks times n /
// floorChunks handshakes or sessions each in the order given (rotated
// every part), and returns each one's server CPU in µs per handshake or
// session.
func interleaved(t *testing.T, cpus string, order []string, clients, n int, sess load) map[string]float64 {
	t.Helper()
	hAddr, hPID, hStop := startFloor(t, "ecdsa", cpus, false)
	defer hStop()
	mAddr, mPID, mStop := startFloor(t, "ecdsa", cpus, true)
	defer mStop()
	r := newRelay(t, relayOptions{KeyType: "ecdsa", HoldDelivery: true, CPUs: cpus})
	r.start()
	rPID := r.pid()
	conf := &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}}
	sessions := func(addr string) func(int) int {
		return func(k int) int {
			l := sess
			l.Messages = k
			rep := runLoad(t, addr, l)
			if rep.Failed > 0 {
				t.Errorf("%d of %d sessions failed: %v %v", rep.Failed, rep.OK+rep.Failed, rep.Errors, rep.FirstErrors)
			}
			return rep.OK
		}
	}
	run := map[string]func(int) int{
		"handshake":    func(k int) int { floorHandshakes(t, hAddr, conf, clients, k); return k },
		"minimal SMTP": sessions(mAddr),
		"certrelay":    sessions(r.addr),
	}
	pid := map[string]int{"handshake": hPID, "minimal SMTP": mPID, "certrelay": rPID}
	for _, kind := range order {
		run[kind](max(100, n/10)) // warm up, as the loads do
	}
	cpu := map[string]time.Duration{}
	done := map[string]int{}
	for part := range floorChunks {
		for i := range order {
			kind := order[(i+part)%len(order)]
			of := func() (time.Duration, error) { return procCPU(pid[kind]) }
			before := settledCPU(t, of, 30*time.Second)
			done[kind] += run[kind](n / floorChunks)
			cpu[kind] += settledCPU(t, of, 60*time.Second) - before
		}
	}
	out := map[string]float64{}
	for kind, d := range cpu {
		out[kind] = micros(d, done[kind])
	}
	return out
}
