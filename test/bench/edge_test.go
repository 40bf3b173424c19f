//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// TestEdgeBench is `make bench-edge`: the numbers of issue 12.
//
//   - a new edge subscribed to an organisation whose slapd holds
//     EDGE_MAILBOXES (100,000) mailboxes: from the hub's `edge import` (both
//     servers running) until the edge has every recipient, the recipients
//     round as the edge timed it, and the edge's resident memory after it
//     (and its peak);
//   - an incremental change: a mailbox added on the hub until the edge
//     has it, EDGE_CHANGES times.
//
// It writes the "edge" section of docs/performance/edge.md and asserts nothing
// about timings.
func TestEdgeBench(t *testing.T) {
	build(t)
	boxes := envInt(t, "EDGE_MAILBOXES", 100000)
	changes := envInt(t, "EDGE_CHANGES", 10)
	started := time.Now().UTC()

	s, base, pw := newOrgSlapd(t)
	ldif := filepath.Join(s.Dir, "load.ldif")
	writeOrgLDIF(t, ldif, base, 1, boxes)
	s.Stop()
	if out, err := exec.Command(testpki.Tool(t, "slapadd"), "-q", "-f", filepath.Join(s.Dir, "slapd.conf"), "-l", ldif).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	s.Restart(t)
	hub := orgServer(t, s, base, pw, "hub1")
	edge := newEdgeRelay(t)
	sub := filepath.Join(edge.dir, "EdgeSubscription.xml")
	edge.cli("edge", "subscribe", "--out", sub, "--sync-binding", testpki.FreePort(t))
	edge.start()
	hub.start()
	time.Sleep(2 * time.Second) // the hub's replica complete
	began := time.Now()
	hub.cli("edge", "import", sub)
	round := waitRecipients(t, edge, boxes, 10*time.Minute)
	full := time.Since(began)
	time.Sleep(2 * time.Second) // the heap settled
	rss, hwm := memory(t, edge)

	pwFile := filepath.Join(hub.dir, "new.pw")
	if err := os.WriteFile(pwFile, []byte("new-secret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var incr, toRound, rounds []float64
	for i := range changes {
		b := time.Now()
		hub.cli("mailbox", "add", fmt.Sprintf("new%03d@contoso.test", i), "--password-file", pwFile)
		added := time.Now()
		waitRecipients(t, edge, boxes+i+1, time.Minute)
		incr = append(incr, float64(time.Since(b).Milliseconds()))
		// Where the time went: the hub's recipients round (its start and
		// its duration, as the hub recorded it).
		var hr []struct {
			Kind     string
			Time     time.Time
			Duration string
		}
		if err := json.Unmarshal([]byte(hub.cli("edge", "status", "--json")), &hr); err != nil {
			t.Fatal(err)
		}
		for _, r := range hr {
			if r.Kind == "recipients" {
				d, _ := time.ParseDuration(r.Duration)
				toRound = append(toRound, float64(r.Time.Sub(added).Milliseconds()))
				rounds = append(rounds, float64(d.Milliseconds()))
			}
		}
		time.Sleep(300 * time.Millisecond) // the servers' own rebuilds done
	}

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## The edge: `make bench-edge EDGE_MAILBOXES=%d EDGE_CHANGES=%d` on %s\n\n", boxes, changes, started.Format("2006-01-02 15:04 UTC"))
	w("Machine: %s.\n\n", machine(t))
	w("A new edge (embedded directory) subscribed through hub1, whose slapd holds %d mailboxes (loaded with slapadd); both `certrelay serve` running. From the return of `edge import` on the hub until the edge's `edge status` shows a recipients round holding every recipient:\n\n", boxes)
	w("| | measured |\n|---|---:|\n")
	w("| import to every recipient on the edge | %.1f s |\n", full.Seconds())
	w("| the recipients round as the edge timed it (one transaction) | %s |\n", round.Duration)
	w("| the edge's resident memory after it | %.1f MiB |\n", rss/(1<<20))
	w("| the edge's peak resident memory | %.1f MiB |\n\n", hwm/(1<<20))
	w("An incremental change: `mailbox add` on hub1 (the directory written, then LDAP Sync to hub1's replica, a recipients round) until the edge's `edge status` shows the new count, %d times: %s ms (median %.0f ms). Of which, from the command's return to the start of the hub's round: %s ms (median %.0f); the round itself (read the recipients, the delta, the push, the edge's transaction): %s ms (median %.0f).\n\n", changes, floats(incr), median(incr), floats(toRound), median(toRound), floats(rounds), median(rounds))
	w("| goal (issue 12) | measured | |\n|---|---|---|\n")
	w("| 100,000 recipients replicated to a new edge: time and edge memory stated | %.1f s, %.0f MiB peak | stated |\n", full.Seconds(), hwm/(1<<20))
	w("| an incremental change: ≤ 1 s to the edge | %.0f ms median, %.0f ms max | %s |\n", median(incr), nearestRank(incr, 100), verdict(nearestRank(incr, 100) <= 1000, "a delta round: the recipients added, changed or removed"))
	doc := b.String()
	fmt.Println(doc)
	writeSection(t, "edge", doc)
}

// newEdgeRelay sets up an edge with the embedded directory.
func newEdgeRelay(t *testing.T) *relay {
	t.Helper()
	bin, _ := build(t)
	dir := t.TempDir()
	r := &relay{t: t, bin: bin, dir: dir, data: filepath.Join(dir, "data"), name: "edge1", addr: testpki.FreePort(t)}
	t.Cleanup(r.kill)
	r.cli("setup", "--name", "edge1", "--fqdn", "edge1.org.test", "--role", "edge")
	r.cli("connector", "receive", "set", "Default edge1", "--bindings", r.addr)
	return r
}

type edgeRound struct {
	Kind     string
	Objects  int
	Duration string
	Error    string
}

// waitRecipients waits until the edge's last recipients round holds n
// recipients.
func waitRecipients(t *testing.T, edge *relay, n int, limit time.Duration) edgeRound {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var rounds []edgeRound
		if err := json.Unmarshal([]byte(edge.cli("edge", "status", "--json")), &rounds); err != nil {
			t.Fatal(err)
		}
		for _, r := range rounds {
			if r.Kind == "recipients" && r.Objects >= n {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge has no recipients round of %d after %v: %+v\n%s", n, limit, rounds, edge.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// memory reads the running server's VmRSS and VmHWM.
func memory(t *testing.T, r *relay) (rss, hwm float64) {
	r.mu.Lock()
	pid := r.cmd.Process.Pid
	r.mu.Unlock()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		for _, k := range []struct {
			p string
			v *float64
		}{{"VmRSS:", &rss}, {"VmHWM:", &hwm}} {
			if v, ok := strings.CutPrefix(line, k.p); ok {
				kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				*k.v = float64(kb) * 1024
			}
		}
	}
	return rss, hwm
}

// TestEdgeIngest is the edge's part of `make bench` (and `make
// bench-edge`): mail from the internet into an edge — STARTTLS (ECDSA
// P-256), its recipient checked against the recipients EdgeSync
// replicated, queued durably for its hub (which is stopped, so every
// message waits in the queue) — beside certrelay as a hub with delivery
// deferred and Postfix relaying to discard with relay_recipient_maps,
// alternating, EDGE_ROUNDS times. It writes the "edge-ingest" section of
// docs/performance/edge.md and asserts only that no message failed.
func TestEdgeIngest(t *testing.T) {
	build(t)
	rounds := envInt(t, "EDGE_ROUNDS", envInt(t, "ROUNDS", 3))
	n := envInt(t, "TLS_N", 3000)
	clients := envInt(t, "CLIENTS", 32)
	started := time.Now().UTC()
	l := load{Name: "edge-starttls-ecdsa", Clients: clients, Messages: n, Size: 4096, TLS: true, Curves: "X25519"}
	targets := []struct {
		name, label string
		start       func(t *testing.T) string
	}{
		{"certrelay-edge", "certrelay edge: replicated recipients, queued for its hub", startIngestEdge},
		{"certrelay-deferred", "certrelay hub: its own mailbox, delivery deferred", func(t *testing.T) string {
			r := newRelay(t, relayOptions{KeyType: "ecdsa", HoldDelivery: true})
			r.start()
			return r.addr
		}},
		{"postfix-rcpt", "Postfix: relay_recipient_maps, discard", func(t *testing.T) string {
			return newPostfix(t, postfixOptions{KeyType: "ecdsa", RecipientChecks: true}).Addr
		}},
	}
	rates := map[string][]float64{}
	p99 := map[string][]float64{}
	for round := 1; round <= rounds; round++ {
		k := (round - 1) % len(targets)
		order := append(append(targets[:0:0], targets[k:]...), targets[:k]...)
		for _, tg := range order {
			t.Run(fmt.Sprintf("round%d/%s", round, tg.name), func(t *testing.T) {
				addr := tg.start(t)
				warm := l
				warm.Messages = max(100, l.Messages/10)
				runLoad(t, addr, warm)
				rep := runLoad(t, addr, l)
				if rep.Failed > 0 {
					t.Errorf("%d of %d failed: %v %v %v", rep.Failed, rep.OK+rep.Failed, rep.Errors, rep.Replies, rep.FirstErrors)
				}
				fmt.Printf("round %d  %-20s %8.1f/s  p50 %7.2f ms  p99 %7.2f ms  failed %d\n", round, tg.name, rep.Rate, rep.Latency.P50, rep.Latency.P99, rep.Failed)
				rates[tg.name] = append(rates[tg.name], rep.Rate)
				p99[tg.name] = append(p99[tg.name], rep.Latency.P99)
			})
		}
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Edge ingest: `make bench-edge EDGE_ROUNDS=%d TLS_N=%d CLIENTS=%d` on %s\n\n", rounds, n, clients, started.Format("2006-01-02 15:04 UTC"))
	w("Machine: %s.\n\n", machine(t))
	w("smtpload, %d clients, %d messages of 4 KiB, a connection per message, STARTTLS with an ECDSA P-256 certificate (X25519), to user@bench.test; the servers alternate, %d rounds (median).\n\n", clients, n, rounds)
	w("| server | messages/s (each round) | median | p99 latency, median of rounds |\n|---|---|---:|---:|\n")
	for _, tg := range targets {
		w("| %s | %s | %.0f | %.1f ms |\n", tg.label, floats(rates[tg.name]), median(rates[tg.name]), median(p99[tg.name]))
	}
	doc := b.String()
	fmt.Println(doc)
	writeSection(t, "edge-ingest", doc)
}

// startIngestEdge sets up a hub (embedded directory, the mailbox
// user@bench.test) and an edge subscribed to it, waits until the edge has
// the recipient, stops the hub, and returns the edge's address.
func startIngestEdge(t *testing.T) string {
	t.Helper()
	hub := newRelay(t, relayOptions{})
	edge := newEdgeRelay(t)
	edge.cli("connector", "receive", "set", "Default edge1", "--fqdn", connectorFqdn, "--max-inbound-connection-per-source", "5000")
	edge.newCert("ecdsa")
	sub := filepath.Join(edge.dir, "EdgeSubscription.xml")
	edge.cli("edge", "subscribe", "--out", sub, "--sync-binding", testpki.FreePort(t))
	edge.start()
	hub.start()
	hub.cli("edge", "import", sub)
	waitRecipients(t, edge, 1, time.Minute)
	hub.stop()
	return edge.addr
}
