//go:build bench

package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHotSwap is `make bench-swap`: the numbers of issue 10 without the
// side-by-side loads of TestBench — hot swap under load with a small
// store, then with 10,000 certificates (from BenchmarkStore10k) the
// server start and hot swaps, and the Go benchmarks of selection and the
// serving layer. It writes the "swap" section of docs/performance/swap.md and
// asserts nothing about timings.
func TestHotSwap(t *testing.T) {
	build(t)
	swaps := envInt(t, "SWAPS", 20)
	clients := envInt(t, "CLIENTS", 16)
	started := time.Now().UTC()
	var small swapResult
	t.Run("small", func(t *testing.T) {
		small = hotSwap(t, relayOptions{KeyType: "ecdsa", HoldDelivery: true}, swaps, clients)
	})
	storeDir := t.TempDir()
	var gob []benchLine
	var big storeTimes
	t.Run("store10k", func(t *testing.T) {
		gob = runGoBenchmarks(t, []goRun{
			{"./internal/selection/", "BenchmarkSelect/memoized", "1s", nil},
			{"./internal/serving/", "BenchmarkConfig", "1s", nil},
			{"./internal/admin/", "BenchmarkStore10k", "3x", []string{"CERTRELAY_BENCH_STORE_DIR=" + storeDir}},
		})
		big = bigStore(t, storeDir, swaps)
	})

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Hot swap and start: `make bench-swap SWAPS=%d` on %s\n\n", swaps, started.Format("2006-01-02 15:04 UTC"))
	w("Machine: %s.\n\n", machine(t))
	w("Time of a hot swap is from the return of `certrelay cert new --domain %s --services SMTP --key-type ecdsa` (its commit is just before) to the STARTTLS command of the first session served the new certificate, seen by two probe clients running STARTTLS sessions back to back; swaps are 1.2 s apart, so each new certificate is newer and wins (S4).\n\n", connectorFqdn)
	w("| store | load during the swaps | swaps | p50 ms | p99 ms | max ms | sessions | failed |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	w("| small (setup's certificate and one per swap) | %d clients sending 4 KiB messages over STARTTLS, delivery deferred | %d | %.1f | %.1f | %.1f | %d | %d |\n",
		clients, len(small.Latencies), median(small.Latencies), nearestRank(small.Latencies, 99), nearestRank(small.Latencies, 100), small.Sessions, small.Failed)
	w("| %d certificates (`BenchmarkStore10k`) | 4 clients running STARTTLS sessions | %d | %.1f | %.1f | %.1f | — | — |\n\n",
		big.Certificates, len(big.Swaps), median(big.Swaps), nearestRank(big.Swaps, 99), nearestRank(big.Swaps, 100))
	w("With %d certificates: `certrelay serve` from exec to accepting connections took %s ms (three starts, median %v); `certrelay cert list --json` took %v (median of three runs).\n\n",
		big.Certificates, floats(big.ServeStarts), big.ServeStart().Round(time.Millisecond), big.CertList.Round(time.Millisecond))
	w("%s", goBenchBlock(gob))
	sel := metric(gob, "BenchmarkSelect/memoized/10000", "ns/op")
	selAllocs := metric(gob, "BenchmarkSelect/memoized/10000", "allocs/op")
	cfg := metric(gob, "BenchmarkConfig", "ns/op")
	cfgAllocs := metric(gob, "BenchmarkConfig", "allocs/op")
	p99s, p99b := nearestRank(small.Latencies, 99), nearestRank(big.Swaps, 99)
	start := float64(big.ServeStart().Milliseconds())
	w("| goal (issue 10) | measured | |\n|---|---|---|\n")
	w("| hot swap p99 ≤ 20 ms, small store | %.1f ms | %s |\n", p99s, verdict(p99s <= 20 && len(small.Latencies) == swaps, fmt.Sprintf("%.0f%% of the limit", 100*p99s/20)))
	w("| hot swap p99 ≤ 100 ms, 10,000 certificates | %.1f ms | %s |\n", p99b, verdict(p99b <= 100 && len(big.Swaps) == swaps, fmt.Sprintf("%.0f%% of the limit", p99b)))
	w("| `serve` start ≤ 1 s, 10,000 certificates | %.0f ms | %s |\n", start, verdict(start <= 1000, fmt.Sprintf("%.0f%% of the limit", start/10)))
	w("| selection lookup ≤ 200 ns, 0 allocations, 10,000 certificates | %.1f ns, %.0f allocs (through the serving layer, with its configuration: %.1f ns, %.0f allocs) | %s |\n",
		sel, selAllocs, cfg, cfgAllocs, verdict(sel > 0 && sel <= 200 && selAllocs == 0 && cfg <= 200 && cfgAllocs == 0, "memoized"))
	doc := b.String()
	fmt.Println(doc)
	writeSection(t, "swap", doc)
}
