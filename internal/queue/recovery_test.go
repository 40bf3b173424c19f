package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Issue 9, item 19: after a crash, recovered mail waited for the dispatcher's
// one-second poll — 2×Workers deliveries per second, whatever the backlog —
// because a scan that filled every free delivery slot did not ask to be
// woken when the slots freed up. The tests below take the poll away
// (withoutPoll), so such a stall is a stall, not a slow drain: the fixed
// dispatcher must deliver a backlog with no help from the clock.

const (
	recoveryEnv      = "CERTRELAY_QUEUE_RECOVERY_DIR"
	recoveryMessages = 2000
	recoveryWorkers  = 4 // 8 deliveries in flight at most
)

// withoutPoll stretches the dispatcher's timed scans (due retries, other
// processes' changes) to an hour for the test, so that only the queue's own
// signals can start a scan.
func withoutPoll(t *testing.T) {
	t.Helper()
	p, g := pollInterval, genInterval
	pollInterval, genInterval = time.Hour, time.Hour
	t.Cleanup(func() { pollInterval, genInterval = p, g })
}

// recoveryChild is the process TestRecoveredMailDrainsWithoutWaitingForThePoll
// kills: it commits recoveryMessages messages for Local, starts delivering
// with a deliverer that never returns, prints "ready" once every worker is
// in a delivery (and as many more jobs are leased and waiting for a
// worker), and waits for its SIGKILL. It leaves a spool as a server
// killed under load does: every message committed and pending with 0
// attempts, some of them leased in its memory and in the middle of a
// delivery, its PID in the lock file, its WAL not checkpointed.
func recoveryChild(dir string) {
	q, err := Open(dir, Options{Workers: recoveryWorkers})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var wg sync.WaitGroup
	for i := range recoveryMessages {
		wg.Go(func() {
			m := testMsg("a@example.com", fmt.Sprintf("r%d@local.test", i))
			if _, err := q.Enqueue(context.Background(), m); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		})
	}
	wg.Wait()
	var mu sync.Mutex
	started := 0
	q.Handle(Local, DelivererFunc(func(ctx context.Context, d Delivery) []Outcome {
		mu.Lock()
		started++
		if started == recoveryWorkers {
			os.Stdout.WriteString("ready\n")
		}
		mu.Unlock()
		select {} // in the middle of a delivery when the SIGKILL comes
	}))
	go q.Run(context.Background())
	select {}
}

// killedSpool runs recoveryChild on a new queue directory, kills it with
// SIGKILL once its deliveries are in progress, and returns the directory.
func killedSpool(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), recoveryEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
		for sc.Scan() {
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the child exited before its deliveries started")
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the child did not start its deliveries within 60 s")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	pid, _ := os.ReadFile(filepath.Join(dir, LockName))
	if strings.TrimSpace(string(pid)) != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("lock file holds %q, want the killed child's PID %d", pid, cmd.Process.Pid)
	}
	return dir
}

// countingDeliverer delivers at once and records every call.
type countingDeliverer struct {
	mu    sync.Mutex
	calls []Delivery
}

func (c *countingDeliverer) Deliver(_ context.Context, d Delivery) []Outcome {
	c.mu.Lock()
	c.calls = append(c.calls, d)
	c.mu.Unlock()
	out := make([]Outcome, len(d.Recipients))
	for i, r := range d.Recipients {
		out[i].Idx = r.Idx
	}
	return out
}

func (c *countingDeliverer) Calls() []Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Delivery(nil), c.calls...)
}

// waitDrained waits until q holds no message. It fails the test when
// neither a delivery nor a removal has happened for 10 s while messages
// remain: with the poll taken away (withoutPoll) nothing would ever start
// them again, so 10 s without progress is a stall, not a slow machine.
func waitDrained(t *testing.T, q *Queue, d *countingDeliverer) {
	t.Helper()
	waitDrainedTo(t, q, d, 0)
}

// waitDrainedTo is waitDrained down to left messages.
func waitDrainedTo(t *testing.T, q *Queue, d *countingDeliverer, left int) {
	t.Helper()
	lastCalls, lastQueued, lastAt := -1, -1, time.Now()
	for {
		cnt, err := q.Count(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := cnt.Messages
		if n <= left {
			return
		}
		if c := len(d.Calls()); c != lastCalls || n != lastQueued {
			lastCalls, lastQueued, lastAt = c, n, time.Now()
		} else if time.Since(lastAt) > 10*time.Second {
			t.Fatalf("stalled: %d deliveries made, then none for 10 s; %d messages still queued", c, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRecoveredMailDrainsWithoutWaitingForThePoll protects crash recovery:
// a spool left by a killed server (every message pending, 0 attempts, some
// leased and mid-delivery in the dead process) is delivered completely and
// at once by the next server — no lease, lock or retry schedule of the
// dead process holds anything back, and the dispatcher keeps its delivery
// slots full without waiting for its poll.
func TestRecoveredMailDrainsWithoutWaitingForThePoll(t *testing.T) {
	dir := killedSpool(t)
	withoutPoll(t)
	q := openT(t, dir, Options{Workers: recoveryWorkers}) // the dead child's flock is gone

	items := listT(t, q, Filter{})
	if len(items) != recoveryMessages {
		t.Fatalf("the killed child left %d messages, want %d", len(items), recoveryMessages)
	}
	now := time.Now()
	for _, it := range items {
		for _, r := range it.Recipients {
			if r.Status != Pending || r.Attempts != 0 || r.NextAttempt.After(now) {
				t.Fatalf("message %s recipient %d left as %s, %d attempts, next %v: want pending, never tried, due now",
					it.ID, r.Idx, r.Status, r.Attempts, r.NextAttempt)
			}
		}
	}

	d := &countingDeliverer{}
	q.Handle(Local, d)
	runT(t, q)
	waitDrained(t, q, d)

	calls := d.Calls()
	if len(calls) != recoveryMessages {
		t.Errorf("%d deliveries for %d recovered messages, want one each", len(calls), recoveryMessages)
	}
	for _, c := range calls {
		if c.Attempt != 1 || !c.MaybeDelivered {
			t.Fatalf("recovered message %s delivered as attempt %d, MaybeDelivered %v: want attempt 1 with MaybeDelivered",
				c.MsgID, c.Attempt, c.MaybeDelivered)
		}
	}
}

// TestBacklogDrainsWhenIngestStops protects delivery of a backlog larger
// than the delivery slots once no new mail arrives to prompt scans (what a
// crash test's last restart, or a burst followed by silence, leaves).
func TestBacklogDrainsWhenIngestStops(t *testing.T) {
	withoutPoll(t)
	q := openT(t, t.TempDir(), Options{Workers: 2})
	gate := make(chan struct{})
	d := &countingDeliverer{}
	q.Handle(Local, DelivererFunc(func(ctx context.Context, dl Delivery) []Outcome {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return d.Deliver(ctx, dl)
	}))
	runT(t, q)
	const n = 200
	for i := range n {
		enqueueT(t, q, testMsg("a@example.com", fmt.Sprintf("r%d@local.test", i)))
	}
	close(gate) // ingest has stopped; the deliveries held so far finish
	waitDrained(t, q, d)
	if c := len(d.Calls()); c != n {
		t.Errorf("%d deliveries for %d messages, want one each", c, n)
	}
}

// TestEachRecipientDeliveredOnceWhileScansRun protects against a second
// delivery of a recipient in the same process: a scan whose read began
// before a delivery result was committed must not hand the recipient out
// again once the result's lease is released.
func TestEachRecipientDeliveredOnceWhileScansRun(t *testing.T) {
	q := openT(t, t.TempDir(), Options{Workers: 8})
	d := &countingDeliverer{}
	q.Handle(Local, d)
	runT(t, q)
	const n = 3000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := q.Enqueue(context.Background(), testMsg("a@example.com", fmt.Sprintf("r%d@local.test", i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitDrained(t, q, d)
	seen := map[string]int{}
	for _, c := range d.Calls() {
		seen[c.MsgID]++
	}
	dups := 0
	for id, k := range seen {
		if k > 1 {
			dups++
			if dups <= 5 {
				t.Errorf("message %s delivered %d times", id, k)
			}
		}
	}
	if len(seen) != n || dups > 0 {
		t.Errorf("%d messages delivered, %d more than once; want %d, each once", len(seen), dups, n)
	}
}

// TestRecoveredMailIsDeliveredWhileTheSweepRuns protects the start of
// delivery after a restart from the sweep for finished messages (those a
// crash left between their last result and their removal): the sweep may
// take long on a big spool, and delivery must not wait for it.
func TestRecoveredMailIsDeliveredWhileTheSweepRuns(t *testing.T) {
	dir := t.TempDir()
	q0, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		enqueueT(t, q0, testMsg("a@example.com", fmt.Sprintf("r%d@local.test", i)))
	}
	q0.Close()

	hold := make(chan struct{})
	swept := make(chan struct{}, 1)
	prev := beforeSweep
	beforeSweep = func() {
		<-hold
		swept <- struct{}{}
	}
	t.Cleanup(func() { beforeSweep = prev })
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}

	q := openT(t, dir, Options{Workers: 4})
	d := &countingDeliverer{}
	q.Handle(Local, d)
	runT(t, q)
	t.Cleanup(release) // before runT's cleanup stops Run (cleanups run last first)
	last, lastAt := -1, time.Now()
	for len(d.Calls()) < n {
		if c := len(d.Calls()); c != last {
			last, lastAt = c, time.Now()
		} else if time.Since(lastAt) > 10*time.Second {
			t.Fatalf("%d of %d recovered messages delivered while the sweep was held, then none for 10 s: delivery waits for the sweep", c, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	release()
	<-swept
	waitDrained(t, q, d)
}

// TestRecipientsOfAMessageAreFoundByItsKey protects the queries that look
// for a message's recipients in a given state (the sweep after a restart,
// queue list --status, the removal of a delivered message) from SQLite's choice of the (status, next_attempt)
// index, which made them read every recipient in that state once per
// message: 8.7 s (sqlite3) for a sweep of 17,000 recovered messages, and
// far longer as the spool grows.
func TestRecipientsOfAMessageAreFoundByItsKey(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	for name, query := range map[string]string{
		"sweep":                          sweepSQL,
		"list with --status":             "SELECT m.id FROM messages m WHERE " + strings.ReplaceAll(hasStatusSQL, "?", "'pending'"),
		"removal of a delivered message": strings.ReplaceAll(delDeliveredSQL, "?", "'x'"),
	} {
		rows, err := q.db.Query("EXPLAIN QUERY PLAN " + query)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "\n")
		if !strings.Contains(joined, "USING PRIMARY KEY (msg_id=?)") || strings.Contains(joined, "recipients_due") {
			t.Errorf("%s: the recipients of each message are not looked up by (msg_id); plan:\n%s", name, joined)
		}
	}
}

// TestDeliveredMessageIsRemovedWithItsLastResult protects the queue from
// keeping delivered messages: a message whose recipients are all delivered
// leaves the queue in the transaction that records its last delivery, not
// one commit per message later in the finalizer (which fell thousands of
// messages behind under load, and a restart had to sweep them up). The
// finalizer is held for the whole test; only messages with failed
// recipients need it (for the bounce).
func TestDeliveredMessageIsRemovedWithItsLastResult(t *testing.T) {
	hold := make(chan struct{})
	prev := beforeSweep
	beforeSweep = func() { <-hold } // the finalizer's goroutine sweeps first
	t.Cleanup(func() { beforeSweep = prev })

	q := openT(t, t.TempDir(), Options{Workers: 4})
	d := &countingDeliverer{}
	q.Handle(Local, d)
	q.Handle(AnyRemote, DelivererFunc(func(_ context.Context, dl Delivery) []Outcome {
		return []Outcome{{Idx: dl.Recipients[0].Idx, Err: Permanent(fmt.Errorf("550 no such user"))}}
	}))
	runT(t, q)
	t.Cleanup(func() { close(hold) }) // before runT's cleanup stops Run

	const n = 200
	for i := range n {
		enqueueT(t, q, testMsg("a@example.com", fmt.Sprintf("r%d@local.test", i), fmt.Sprintf("s%d@local.test", i)))
	}
	bounced := enqueueT(t, q, testMsg("a@example.com", "t@local.test", "u@example.net"))
	waitDrainedTo(t, q, d, 1)
	items := listT(t, q, Filter{})
	if len(items) != 1 || items[0].ID != bounced {
		t.Fatalf("left in the queue: %+v; want only %s, whose failed recipient waits for the finalizer's bounce", items, bounced)
	}
}
