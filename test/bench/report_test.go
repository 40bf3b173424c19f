//go:build bench

package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stat is the median over rounds of one load against one target.
type stat struct {
	Rate, P50, P99 float64
	Min, Max       float64 // of the rates
	Failed, Runs   int
	KeyExchange    string
}

func summarizeRuns(results []result) map[string]map[string]stat {
	type acc struct {
		rate, p50, p99 []float64
		failed         int
		kx             string
	}
	accs := map[string]map[string]*acc{}
	for _, r := range results {
		if accs[r.Load] == nil {
			accs[r.Load] = map[string]*acc{}
		}
		a := accs[r.Load][r.Target]
		if a == nil {
			a = &acc{}
			accs[r.Load][r.Target] = a
		}
		a.rate = append(a.rate, r.Rep.Rate)
		a.p50 = append(a.p50, r.Rep.Latency.P50)
		a.p99 = append(a.p99, r.Rep.Latency.P99)
		a.failed += r.Rep.Failed
		if r.Rep.KeyExchange != "" {
			a.kx = r.Rep.KeyExchange
		}
	}
	out := map[string]map[string]stat{}
	for l, m := range accs {
		out[l] = map[string]stat{}
		for tg, a := range m {
			out[l][tg] = stat{Rate: median(a.rate), P50: median(a.p50), P99: median(a.p99), Failed: a.failed, Runs: len(a.rate), KeyExchange: a.kx,
				Min: nearestRank(a.rate, 0), Max: nearestRank(a.rate, 100)}
		}
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// metric returns a benchmark's metric as a number (0 when missing).
func metric(lines []benchLine, name, unit string) float64 {
	for _, l := range lines {
		if l.Name == name {
			v, _ := strconv.ParseFloat(l.Metrics[unit], 64)
			return v
		}
	}
	return 0
}

func verdict(ok bool, how string) string {
	if ok {
		return "met (" + how + ")"
	}
	return "**missed** (" + how + ")"
}

// report renders the generated section of docs/PERFORMANCE.md.
func report(t *testing.T, started time.Time, rounds int, loads []benchLoad, results []result, floors map[string][]floorResult, swap swapResult, gob []benchLine, store storeTimes) string {
	s := summarizeRuns(results)
	cpu := summarizeCPU(results)
	floor := summarizeFloors(floors)
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	cmd := "make bench"
	for _, k := range []string{"ROUNDS", "PLAIN_N", "TLS_N", "SWAPS", "CLIENTS"} {
		if v := os.Getenv(k); v != "" {
			cmd += " " + k + "=" + v
		}
	}
	w("## Results of `%s` on %s\n\n", cmd, started.Format("2006-01-02 15:04 MST"))
	w("Machine: %s.\n\n", machine(t))
	w("File system: %s; before every run `sync(2)`, so no run writes back its predecessor's files.\n\n", spreadNote)
	w("Loads by `cmd/smtpload` on loopback, sharing the cores with the server: %d clients, one message per connection ", loads[0].Clients)
	w("(`smtp-source -s` style), 4 KiB messages, no pipelining; STARTTLS makes a full handshake on every connection (no resumption), ")
	w("offering only the X25519 key exchange (what Postfix negotiates) except in the rows marked X25519MLKEM768 (Go's default groups). Each run has a fresh server, warmed up with a tenth of the load (at least 100) before the measured load; the servers alternate, %d rounds, medians shown. ", rounds)
	w("Messages/s is what got `250` after the final dot divided by the run's wall time; latency is per message, from connect to that `250`.\n\n")
	w("Server configurations:\n\n")
	w("- **certrelay, Maildir delivery**: `certrelay setup`, the default receive connector on a free port with FQDN %s, accepted domain bench.test, mailbox %s; every message is delivered to its Maildir by the queue in the background while the load runs.\n", connectorFqdn, mailbox)
	w("- **certrelay, delivery deferred**: the same, with the mailbox path blocked by a file: the queue dispatches each message and its delivery fails at once and is deferred — no Maildir write. This is certrelay's nearest to Postfix's `discard:` (certrelay has no discard transport).\n")
	w("- **Postfix, discard**: Debian's Postfix in a temporary directory, default queue durability, `relay_domains = bench.test`, `relay_transport = discard:` (ENVIRONMENT.md).\n")
	w("- **Postfix, virtual Maildir**: the same Postfix delivering bench.test with virtual(8) to a Maildir: the same work as certrelay's Maildir delivery.\n\n")
	w("Certificates: certrelay `cert new --domain %s --services SMTP --key-type rsa --key-size 2048` (or `--key-type ecdsa`); Postfix `smtpd_tls_chain_files` made by `openssl req -x509` at run time.\n\n", connectorFqdn)

	w("### Messages per second (median of %d, with the lowest and highest run)\n\n", rounds)
	names := []string{"certrelay-maildir", "certrelay-deferred", "postfix-discard", "postfix-maildir"}
	w("| load |")
	for _, n := range names {
		w(" %s |", labelOf(n))
	}
	w(" certrelay ÷ Postfix (Maildir ÷ discard) | (deferred ÷ discard) | (Maildir ÷ Maildir) |\n|---|")
	for range names {
		w("---:|")
	}
	w("---:|---:|---:|\n")
	for _, l := range loads {
		if l.SessionOnly {
			continue
		}
		m := s[l.Name]
		w("| %s |", l.Label)
		for _, n := range names {
			if st, ok := m[n]; ok {
				w(" %.0f <sub>%.0f–%.0f</sub> |", st.Rate, st.Min, st.Max)
			} else {
				w(" — |")
			}
		}
		if _, ok := m["postfix-discard"]; !ok {
			w(" — | — | — |\n")
			continue
		}
		w(" **%.2f×** | %.2f× | %.2f× |\n",
			ratio(m["certrelay-maildir"].Rate, m["postfix-discard"].Rate),
			ratio(m["certrelay-deferred"].Rate, m["postfix-discard"].Rate),
			ratio(m["certrelay-maildir"].Rate, m["postfix-maildir"].Rate))
	}
	w("\n### Latency per message, ms (median over rounds of each run's p50 / p99)\n\n| load |")
	for _, n := range names {
		w(" %s |", labelOf(n))
	}
	w("\n|---|")
	for range names {
		w("---:|")
	}
	w("\n")
	for _, l := range loads {
		if l.SessionOnly {
			continue
		}
		m := s[l.Name]
		w("| %s |", l.Label)
		for _, n := range names {
			if st, ok := m[n]; ok {
				w(" %.1f / %.1f |", st.P50, st.P99)
			} else {
				w(" — |")
			}
		}
		w("\n")
	}
	failed := 0
	for _, r := range results {
		failed += r.Rep.Failed
	}
	w("\nFailed messages in all runs: %d.", failed)
	w(" Key exchange negotiated (STARTTLS loads offering X25519 only): certrelay %s, Postfix %s; with Go's default groups certrelay negotiates %s.",
		s["starttls-ecdsa"]["certrelay-maildir"].KeyExchange, s["starttls-ecdsa"]["postfix-discard"].KeyExchange, s["starttls-ecdsa-pq"]["certrelay-maildir"].KeyExchange)
	w("\n\n")

	w("### CPU per message (median of %d)\n\n", rounds)
	w("The server's CPU time (user + system, `/proc/PID/stat`) from the start of the measured load until it is idle again — deliveries after the last `250` included — divided by the messages: certrelay's process; Postfix's master, every process under it and those they waited for (`smtpd`, `cleanup`, `qmgr`, `trivial-rewrite`, `discard` or `virtual`). And `smtpload`'s, which shares the cores. Wall-clock rates on this shared machine move with the neighbours' load; these move with each server's own work, so the last column reads the ingest goal in CPU: how many times less CPU certrelay with Maildir delivery spends on a message than Postfix+discard.\n\n")
	w("| load | certrelay, Maildir delivery: server µs/message | certrelay, delivery deferred: server µs/message | delivery's share | Postfix+discard: µs/message | Postfix, virtual Maildir: µs/message | smtpload µs/message (against certrelay) | Postfix+discard ÷ certrelay with Maildir delivery, CPU per message |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range loads {
		if l.SessionOnly {
			continue
		}
		m, d := cpu[l.Name]["certrelay-maildir"], cpu[l.Name]["certrelay-deferred"]
		pd, pm := cpu[l.Name]["postfix-discard"], cpu[l.Name]["postfix-maildir"]
		pds, pms, r := "—", "—", "—" // loads Postfix does not run (X25519MLKEM768)
		if pd.Server > 0 {
			pds, r = fmt.Sprintf("%.0f", pd.Server), fmt.Sprintf("%.2f×", ratio(pd.Server, m.Server))
		}
		if pm.Server > 0 {
			pms = fmt.Sprintf("%.0f", pm.Server)
		}
		w("| %s | %.0f | %.0f | %.0f | %s | %s | %.0f | %s |\n", l.Label, m.Server, d.Server, m.Server-d.Server, pds, pms, d.Client, r)
	}
	w("\n")
	if pf := s["plain"]["postfix-discard"].Rate; pf > 0 {
		m := cpu["plain"]["certrelay-maildir"]
		need := 4 * pf
		w("4× Postfix+discard in plain text is %.0f messages/s; at what certrelay with Maildir delivery and `smtpload` spend per message here (%.0f + %.0f µs) that needs %.2f cores, and the server alone may spend at most %.0f µs a message beside this `smtpload` on %d cores.\n\n",
			need, m.Server, m.Client, need*(m.Server+m.Client)/1e6, 1e6*float64(runtime.NumCPU())/need-m.Client, runtime.NumCPU())
	}

	w("### STARTTLS sessions against the crypto/tls floor\n\n")
	w("A session here is connect, EHLO, STARTTLS, handshake, EHLO, QUIT, no message (`smtpload -tls -session-only`, against certrelay with delivery deferred). The floor is the server side of a bare crypto/tls handshake: a Go process of its own configured as certrelay's receive connector (TLS 1.2 minimum, client certificate requested, the same key types), clients in the test process offering the same groups, run once a round between the loads. Both are measured the same way, as the server's CPU per session or handshake (`/proc/PID/stat`): the CPU a server spends is what the load generator sharing the two cores and the neighbours cannot move, and a session can at best cost its handshake. floor ÷ session is the goal's figure; the rates are shown for reference (sessions/s shares the cores with `smtpload`, the floor's handshakes/s with the Go clients).\n\n")
	w("| key, key exchange | floor: server µs/handshake | certrelay: server µs/session | floor ÷ session | floor handshakes/s | certrelay sessions/s | certrelay messages/s with STARTTLS (Maildir / deferred) | Postfix sessions/s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range sessionKinds {
		f := floor[k.session]
		cs := s[k.session]["certrelay-deferred"].Rate
		sc := cpu[k.session]["certrelay-deferred"].Server
		cm, cd := s[k.msgs]["certrelay-maildir"].Rate, s[k.msgs]["certrelay-deferred"].Rate
		pf := "—"
		if st, ok := s[k.session]["postfix-discard"]; ok {
			pf = fmt.Sprintf("%.0f", st.Rate)
		}
		w("| %s | %.0f | %.0f | **%.0f%%** | %.0f | %.0f | %.0f / %.0f | %s |\n", k.label, f.ServerCPU, sc, 100*ratio(f.ServerCPU, sc), f.Rate, cs, cm, cd, pf)
	}
	if f, pc, ok := pinnedSession(floor, cpu); ok {
		w("| ECDSA P-256, X25519, **pinned** | %.0f | %.0f | **%.0f%%** | %.0f | %.0f | — | — |\n", f.ServerCPU, pc, 100*ratio(f.ServerCPU, pc), f.Rate, s["session-ecdsa"]["certrelay-deferred-pinned"].Rate)
		w("\nThe pinned row is issue 19's other fair way of measuring a session against its floor: the server (certrelay with delivery deferred, and the floor's server) runs on CPU %s from its start (`taskset -c %s`, so Go sizes GOMAXPROCS to one), and everything that drives it — `smtpload`, the floor's Go clients in the test process — on CPU %d; same loads, same rounds, CPU read the same way. A session has four more round trips than the bare handshake, each a wake-up of the server; sharing both cores, a Go server with two Ps switches threads about twice as often per session as with one (counted with `perf` in docs/performance/ingest-19-third.md, fourth pass) and moves between cores.\n", pinServerCPUs, pinServerCPUs, pinClientCPU)
	}
	if ec, ok := floor["session-ecdsa"]; ok && s["starttls-ecdsa"]["postfix-discard"].Rate > 0 {
		need := 4 * s["starttls-ecdsa"]["postfix-discard"].Rate
		atFloor := need * (ec.ServerCPU + ec.ClientCPU) / 1e6
		m := cpu["starttls-ecdsa"]["certrelay-maildir"]
		asMeasured := need * (m.Server + m.Client) / 1e6
		w("\n4× Postfix+discard with STARTTLS ECDSA P-256 is %.0f messages/s. At the floor — only the handshake, both ends (%.0f + %.0f µs) — that needs %.2f cores; at what certrelay with Maildir delivery and `smtpload` spend per message here (%.0f + %.0f µs), %.2f cores; this machine has %d.\n",
			need, ec.ServerCPU, ec.ClientCPU, atFloor, m.Server, m.Client, asMeasured, runtime.NumCPU())
		// A lower bound: a STARTTLS message costs each end at least its
		// plain-text message plus its side of the bare handshake.
		if p := cpu["plain"]["certrelay-maildir"]; p.Server > 0 {
			bound := p.Server + ec.ServerCPU + p.Client + ec.ClientCPU
			w("\nA lower bound, from this run: a STARTTLS message costs the server at least its plain-text message with Maildir delivery (%.0f µs) plus its side of the bare handshake (%.0f µs), and `smtpload` at least its plain-text message (%.0f µs) plus the client's side (%.0f µs): %.0f µs together, so %.0f messages/s need at least %.2f cores even if TLS cost nothing beyond the handshake on either end (%d here).\n",
				p.Server, ec.ServerCPU, p.Client, ec.ClientCPU, bound, need, need*bound/1e6, runtime.NumCPU())
		}
	}
	w("\n### Hot swap under load\n\n")
	w("During a STARTTLS load (%d clients, messages, delivery deferred) `certrelay cert new --domain %s --services SMTP --key-type ecdsa` was run %d times, 1.2 s apart (so each new certificate is newer and wins, S4); two probe clients ran STARTTLS sessions back to back. ", swap.Clients, connectorFqdn, swap.Swaps)
	w("Time is from the command's return (its commit is just before) to the STARTTLS command of the first session served the new certificate.\n\n")
	w("| swaps | p50 ms | p99 ms | max ms | sessions during the test | failed |\n|---:|---:|---:|---:|---:|---:|\n")
	w("| %d | %.1f | %.1f | %.1f | %d | %d |\n\n", len(swap.Latencies), median(swap.Latencies), nearestRank(swap.Latencies, 99), nearestRank(swap.Latencies, 100), swap.Sessions, swap.Failed)
	w("With %d certificates in the store (from `BenchmarkStore10k`): `certrelay cert list --json` took %v (median of three runs); `certrelay serve` from exec to accepting connections %s ms (three starts); %d hot swaps under a light STARTTLS load were served after p50 %.1f, p99 %.1f, max %.1f ms.\n\n",
		store.Certificates, store.CertList.Round(time.Millisecond), floats(store.ServeStarts), len(store.Swaps), median(store.Swaps), nearestRank(store.Swaps, 99), nearestRank(store.Swaps, 100))

	w("### Go benchmarks\n\n%s", goBenchBlock(gob))

	sel := metric(gob, "BenchmarkSelect/memoized/10000", "ns/op")
	selAllocs := metric(gob, "BenchmarkSelect/memoized/10000", "allocs/op")
	plain := s["plain"]
	w("### Goals\n\n| goal | measured | |\n|---|---|---|\n")
	pr := ratio(plain["certrelay-maildir"].Rate, plain["postfix-discard"].Rate)
	pd := ratio(plain["certrelay-deferred"].Rate, plain["postfix-discard"].Rate)
	w("| ingest ≥ 4× Postfix, plain text | %.2f× with Maildir delivery running; %.2f× with delivery deferred | %s |\n", pr, pd, verdict(pr >= 4, fmt.Sprintf("%.0f%% of the goal with delivery", 100*pr/4)))
	{
		m := s["starttls-ecdsa"]
		r := ratio(m["certrelay-maildir"].Rate, m["postfix-discard"].Rate)
		rd := ratio(m["certrelay-deferred"].Rate, m["postfix-discard"].Rate)
		w("| ingest ≥ 4× Postfix, STARTTLS ECDSA P-256 (issue 19) | %.2f× with Maildir delivery; %.2f× deferred | %s |\n", r, rd, verdict(r >= 4, fmt.Sprintf("%.0f%% of the goal with delivery; see the cores it needs above", 100*r/4)))
	}
	for _, k := range []struct{ label, name string }{{"RSA-2048", "starttls-rsa"}, {"ECDSA P-256", "starttls-ecdsa"}} {
		m := s[k.name]
		r := ratio(m["certrelay-maildir"].Rate, m["postfix-discard"].Rate)
		rd := ratio(m["certrelay-deferred"].Rate, m["postfix-discard"].Rate)
		w("| ingest ≥ 1.5× Postfix, STARTTLS %s | %.2f× with Maildir delivery; %.2f× deferred | %s |\n", k.label, r, rd, verdict(r >= 1.5, fmt.Sprintf("%.0f%% of the goal with delivery", 100*r/1.5)))
	}
	for _, k := range sessionKinds {
		r := ratio(floor[k.session].ServerCPU, cpu[k.session]["certrelay-deferred"].Server)
		w("| STARTTLS session ≥ 80%% of the crypto/tls floor, %s | %.0f%% (server CPU per handshake ÷ per session, cores shared with the clients) | %s |\n", k.label, 100*r, verdict(r >= 0.8, fmt.Sprintf("%.0f%% of the goal", 100*r/0.8)))
	}
	if f, pc, ok := pinnedSession(floor, cpu); ok {
		r := ratio(f.ServerCPU, pc)
		w("| STARTTLS session ≥ 80%% of the crypto/tls floor, ECDSA P-256, X25519, pinned | %.0f%% (server CPU per handshake ÷ per session, server on CPU %s, clients on CPU %d) | %s |\n", 100*r, pinServerCPUs, pinClientCPU, verdict(r >= 0.8, fmt.Sprintf("%.0f%% of the goal", 100*r/0.8)))
	}
	w("| selection ≤ 200 ns, 0 allocs, 10,000 certificates | %.1f ns, %.0f allocs | %s |\n", sel, selAllocs, verdict(sel > 0 && sel <= 200 && selAllocs == 0, "memoized lookup"))
	p99 := nearestRank(swap.Latencies, 99)
	w("| hot swap ≤ 100 ms, 0 failed sessions | p99 %.1f ms, %d failed | %s |\n", p99, swap.Failed, verdict(len(swap.Latencies) == swap.Swaps && p99 <= 100 && swap.Failed == 0, "small store"))
	w("| hot swap p99 ≤ 20 ms, small store | p99 %.1f ms | %s |\n", p99, verdict(len(swap.Latencies) == swap.Swaps && p99 <= 20, fmt.Sprintf("%.0f%% of the limit", 100*p99/20)))
	if len(store.Swaps) > 0 {
		p99 := nearestRank(store.Swaps, 99)
		w("| hot swap p99 ≤ 100 ms with 10,000 certificates | p99 %.1f ms (%d swaps) | %s |\n", p99, len(store.Swaps), verdict(p99 <= 100, fmt.Sprintf("%.0f%% of the limit", p99)))
		start := float64(store.ServeStart().Milliseconds())
		w("| `serve` start ≤ 1 s with 10,000 certificates | %.0f ms (median of 3) | %s |\n", start, verdict(start <= 1000, fmt.Sprintf("%.0f%% of the limit", start/10)))
		list := float64(store.CertList.Round(time.Millisecond).Milliseconds()) // as the line above prints it
		w("| `cert list --json` ≤ 150 ms with 10,000 certificates | %.0f ms | %s |\n", list, verdict(list <= 150, fmt.Sprintf("%.0f%% of the limit", list/1.5)))
	}
	w("| 0 lost in the crash test | see the crash test section | |\n")
	return b.String()
}

// pinnedSession returns the pinned floor and certrelay's server CPU per
// pinned session, when the run has both.
func pinnedSession(floor map[string]floorResult, cpu map[string]map[string]cpuStat) (floorResult, float64, bool) {
	f, ok := floor["session-ecdsa-pinned"]
	pc := cpu["session-ecdsa"]["certrelay-deferred-pinned"].Server
	return f, pc, ok && f.ServerCPU > 0 && pc > 0
}

// The session loads, the message loads with the same key, and their labels.
var sessionKinds = []struct{ label, session, msgs string }{
	{"RSA-2048, X25519", "session-rsa", "starttls-rsa"},
	{"ECDSA P-256, X25519", "session-ecdsa", "starttls-ecdsa"},
	{"ECDSA P-256, X25519MLKEM768", "session-ecdsa-pq", "starttls-ecdsa-pq"},
}

// cpuStat is the median CPU per message of one load against one target.
type cpuStat struct{ Server, Client float64 }

func summarizeCPU(results []result) map[string]map[string]cpuStat {
	type acc struct{ server, client []float64 }
	accs := map[string]map[string]*acc{}
	for _, r := range results {
		if accs[r.Load] == nil {
			accs[r.Load] = map[string]*acc{}
		}
		a := accs[r.Load][r.Target]
		if a == nil {
			a = &acc{}
			accs[r.Load][r.Target] = a
		}
		if r.ServerCPU > 0 {
			a.server = append(a.server, r.ServerCPU)
		}
		a.client = append(a.client, r.ClientCPU)
	}
	out := map[string]map[string]cpuStat{}
	for l, m := range accs {
		out[l] = map[string]cpuStat{}
		for tg, a := range m {
			out[l][tg] = cpuStat{Server: median(a.server), Client: median(a.client)}
		}
	}
	return out
}

// summarizeFloors is the median of each floor's measurements.
func summarizeFloors(floors map[string][]floorResult) map[string]floorResult {
	out := map[string]floorResult{}
	for k, rs := range floors {
		var rate, server, client []float64
		for _, r := range rs {
			rate = append(rate, r.Rate)
			server = append(server, r.ServerCPU)
			client = append(client, r.ClientCPU)
		}
		out[k] = floorResult{Handshakes: len(rs), Rate: median(rate), ServerCPU: median(server), ClientCPU: median(client)}
	}
	return out
}

func labelOf(name string) string {
	for _, tg := range targets {
		if tg.Name == name {
			return tg.Label
		}
	}
	return name
}

func floats(v []float64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf("%.0f", x))
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ")
}

// goBenchBlock renders Go benchmark lines as a code block, each package
// named before its lines.
func goBenchBlock(lines []benchLine) string {
	var b strings.Builder
	b.WriteString("```\n")
	pkg := ""
	for _, l := range lines {
		if l.Pkg != pkg {
			fmt.Fprintf(&b, "# %s\n", l.Pkg)
			pkg = l.Pkg
		}
		b.WriteString(l.Raw + "\n")
	}
	b.WriteString("```\n\n")
	return b.String()
}
