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
// It writes the "edge" section of docs/PERFORMANCE.md and asserts nothing
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
	var incr []float64
	for i := range changes {
		b := time.Now()
		hub.cli("mailbox", "add", fmt.Sprintf("new%03d@contoso.test", i), "--password-file", pwFile)
		waitRecipients(t, edge, boxes+i+1, time.Minute)
		incr = append(incr, float64(time.Since(b).Milliseconds()))
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
	w("An incremental change: `mailbox add` on hub1 (the directory written, then LDAP Sync to hub1's replica, a recipients round) until the edge's `edge status` shows the new count, %d times: %s ms (median %.0f ms).\n\n", changes, floats(incr), median(incr))
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
