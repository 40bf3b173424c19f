//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCrash is `make crashtest`: certrelay serve is killed with SIGKILL at
// a random moment under load, TRIALS times (default 20), and restarted.
// smtpload records the Message-ID of every message answered 250 as soon as
// the answer arrives; after the last restart the queue is left to deliver
// everything, and the Maildir is compared with what was acknowledged.
// A message acknowledged and not delivered is lost: the test fails.
// Duplicates (delivered twice) and corrupt copies are reported and fail
// it too; messages delivered without an acknowledgement (in flight at
// the kill) are only counted.
func TestCrash(t *testing.T) {
	trials := envInt(t, "TRIALS", 20)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SEED=%q", s)
		}
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	started := time.Now().UTC()
	r := newRelay(t, relayOptions{KeyType: "ecdsa"})
	acked := filepath.Join(r.dir, "acked")
	fmt.Printf("crash test: %d trials, SEED=%d, data %s\n", trials, seed, r.data)

	var kills []time.Duration
	sent := 0
	for i := 1; i <= trials; i++ {
		r.start()
		l := load{Name: "crash", Clients: 16, Size: 4096, Duration: 2 * time.Minute, Record: acked,
			IDPrefix: fmt.Sprintf("trial%02d", i), TLS: i%2 == 0}
		stop, wait := startLoad(t, r.addr, l)
		delay := 300*time.Millisecond + time.Duration(rng.Int64N(int64(2700*time.Millisecond)))
		time.Sleep(delay)
		r.kill()
		stop()
		rep := wait()
		kills = append(kills, delay)
		sent += rep.OK
		fmt.Printf("trial %2d: SIGKILL after %v (%s): %d acknowledged, %d cut off\n",
			i, delay.Round(time.Millisecond), map[bool]string{false: "plain", true: "STARTTLS"}[l.TLS], rep.OK, rep.Failed)
	}

	// Restart and let delivery finish.
	r.start()
	drainStart := time.Now()
	waitDrained(t, r, 5*time.Minute)
	drained := time.Since(drainStart)
	r.stop()

	ack := readLines(t, acked)
	box := filepath.Join(r.data, "mail", "bench.test", "user")
	delivered, corrupt := readMaildir(t, box)
	var lost, dups []string
	for _, id := range ack {
		if delivered[id] == 0 {
			lost = append(lost, id)
		}
	}
	unacked := 0
	ackSet := map[string]bool{}
	for _, id := range ack {
		ackSet[id] = true
	}
	for id, n := range delivered {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s ×%d", id, n))
		}
		if !ackSet[id] {
			unacked++
		}
	}
	sort.Strings(lost)
	sort.Strings(dups)
	total := 0
	for _, n := range delivered {
		total += n
	}
	fmt.Printf("acknowledged %d, delivered %d files (%d distinct), lost %d, duplicated %d, corrupt %d, delivered without acknowledgement %d; drained in %v\n",
		len(ack), total, len(delivered), len(lost), len(dups), corrupt, unacked, drained.Round(time.Millisecond))

	var b strings.Builder
	cmd := "make crashtest"
	if v := os.Getenv("TRIALS"); v != "" {
		cmd += " TRIALS=" + v
	}
	fmt.Fprintf(&b, "## Crash test: `%s` (SEED=%d) on %s\n\n", cmd, seed, started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s.\n\n", machine(t))
	fmt.Fprintf(&b, "One data directory (Maildir delivery to %s); in each trial `certrelay serve` starts, `smtpload -c 16` sends 4 KiB messages (plain text and STARTTLS in turn, one per connection, recording each Message-ID on its `250`), and the server is killed with SIGKILL after a random 0.3–3 s (here %s). After the last trial the server is restarted and `certrelay queue list --json` polled until the queue is empty; then the Maildir is read.\n\n",
		mailbox, durations(kills))
	fmt.Fprintf(&b, "| trials | acknowledged (250) | delivered | lost | duplicated | corrupt | delivered, not acknowledged (in flight at the kill) | drain after restart |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | **%d** | %d | %d | %d | %v |\n", trials, len(ack), total, len(lost), len(dups), corrupt, unacked, drained.Round(time.Millisecond))
	if len(lost) > 0 {
		fmt.Fprintf(&b, "\nLost: %s\n", strings.Join(first(lost, 20), ", "))
	}
	if len(dups) > 0 {
		fmt.Fprintf(&b, "\nDuplicated: %s\n", strings.Join(first(dups, 20), ", "))
	}
	writeSection(t, "crashtest", b.String())
	fmt.Println(b.String())

	if len(lost) > 0 {
		t.Errorf("%d acknowledged messages lost: %s", len(lost), strings.Join(first(lost, 20), ", "))
	}
	if len(dups) > 0 || corrupt > 0 {
		t.Errorf("%d messages delivered more than once, %d corrupt: %s", len(dups), corrupt, strings.Join(first(dups, 20), ", "))
	}
	if len(ack) == 0 {
		t.Error("no message was acknowledged: the test tested nothing")
	}
}

// waitDrained polls certrelay queue list --json until the queue is empty,
// asking for an immediate retry when something is deferred.
func waitDrained(t *testing.T, r *relay, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	lastRetry := time.Now()
	for {
		var items []struct {
			ID         string
			Recipients []struct {
				Status    string
				Attempts  int
				LastError string
			}
		}
		if err := json.Unmarshal([]byte(r.cli("queue", "list", "--json")), &items); err != nil {
			t.Fatal(err)
		}
		if len(items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still queued after %v: %+v\n%s", len(items), limit, items[:min(len(items), 5)], r.Logs())
		}
		deferred := false
		for _, it := range items {
			for _, rc := range it.Recipients {
				deferred = deferred || rc.Attempts > 0
			}
		}
		if deferred && time.Since(lastRetry) > 5*time.Second {
			r.cli("queue", "retry")
			lastRetry = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// readMaildir counts the deliveries of each Message-ID in the Maildir
// (new/ and cur/) and the messages whose body is not the one smtpload
// sends (all bodies of one size are the same).
func readMaildir(t *testing.T, dir string) (map[string]int, int) {
	t.Helper()
	count := map[string]int{}
	bodies := map[string]int{}
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			id := ""
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				line := strings.TrimRight(sc.Text(), "\r")
				if line == "" {
					break
				}
				if v, ok := strings.CutPrefix(line, "Message-ID: "); ok {
					id = strings.Trim(strings.TrimSpace(v), "<>")
				}
			}
			count[id]++
			body := ""
			if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
				body = string(data[i+4:])
			}
			bodies[body]++
		}
	}
	// The common body is the right one; anything else is corrupt.
	best := 0
	for _, n := range bodies {
		best = max(best, n)
	}
	total := 0
	for _, n := range bodies {
		total += n
	}
	return count, total - best
}

func durations(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.2f s", d.Seconds()))
	}
	return strings.Join(parts, ", ")
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}
