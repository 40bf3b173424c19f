package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const helperEnv = "CERTRELAY_QUEUE_CRASH_DIR"

// crashBody is the body of the n-th message a helper enqueues.
func crashBody(n int) []byte {
	return append([]byte(fmt.Sprintf("Subject: crash test %d\r\n\r\n", n)), bytes.Repeat([]byte("x"), 4096)...)
}

// TestMain runs a crash test's child (crashChild, recoveryChild) instead of
// the tests when the test binary is started as that child.
func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		crashChild(dir)
	}
	if dir := os.Getenv(recoveryEnv); dir != "" {
		recoveryChild(dir)
	}
	os.Exit(m.Run())
}

// crashChild is the child of TestCrashLosesNoAcceptedMessage: with 32
// goroutines it enqueues messages forever, printing "ID N" once Enqueue
// has returned — the moment the SMTP server would answer 250.
func crashChild(dir string) {
	q, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	base, _ := strconv.Atoi(os.Getenv(helperEnv + "_BASE"))
	var mu sync.Mutex
	var n int
	for range 32 {
		go func() {
			for {
				mu.Lock()
				k := base + n
				n++
				mu.Unlock()
				m := &Message{Sender: "crash@example.com", Body: crashBody(k),
					Recipients: []Recipient{{Address: fmt.Sprintf("r%d@example.net", k), Destination: "example.net"}}}
				id, err := q.Enqueue(context.Background(), m)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				line := id + " " + strconv.Itoa(k) + "\n"
				mu.Lock()
				os.Stdout.WriteString(line) // one write(2): a whole line or none
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrashLosesNoAcceptedMessage kills a process that enqueues at full
// speed with SIGKILL at a random moment, three times on the same queue,
// and checks that every ID it reported is in the queue, whole.
func TestCrashLosesNoAcceptedMessage(t *testing.T) {
	dir := t.TempDir()
	var all []string
	bodies := map[string]int{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"="+dir, helperEnv+"_BASE="+strconv.Itoa(round*1_000_000))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var (
			mu    sync.Mutex
			lines []string
			eof   = make(chan struct{})
		)
		go func() {
			defer close(eof)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				mu.Lock()
				lines = append(lines, sc.Text())
				mu.Unlock()
			}
		}()
		// Let it get going, then kill it somewhere in the next 300 ms.
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			n := len(lines)
			mu.Unlock()
			if n >= 100 {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("round %d: helper printed only %d IDs", round, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-eof
		cmd.Wait()
		for _, l := range lines {
			id, n, ok := strings.Cut(l, " ")
			k, err := strconv.Atoi(n)
			if !ok || err != nil {
				t.Fatalf("round %d: bad line %q", round, l)
			}
			all = append(all, id)
			bodies[id] = k
		}

		q, err := Open(dir, Options{}) // the dead child's lock is gone
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		var check string
		if err := q.db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Errorf("round %d: integrity_check = %q, %v", round, check, err)
		}
		items, err := q.List(context.Background(), Filter{})
		if err != nil {
			t.Fatal(err)
		}
		present := map[string]bool{}
		for _, it := range items {
			present[it.ID] = true
		}
		lost := 0
		for _, id := range all {
			if !present[id] {
				lost++
				if lost <= 5 {
					t.Errorf("round %d: message %s was reported queued but is missing", round, id)
				}
				continue
			}
		}
		// Check the bodies of this round's messages.
		for _, l := range lines {
			id, _, _ := strings.Cut(l, " ")
			m, err := q.Get(context.Background(), id)
			if err != nil {
				t.Fatalf("round %d: Get %s: %v", round, id, err)
			}
			if !bytes.Equal(m.Body, crashBody(bodies[id])) {
				t.Fatalf("round %d: message %s has the wrong body", round, id)
			}
		}
		t.Logf("round %d: %d IDs reported, %d messages in the queue (%d committed but not reported), %d lost",
			round, len(lines), len(items), len(items)-len(all), lost)
		if lost > 0 {
			t.Fatalf("round %d: %d accepted messages lost", round, lost)
		}
		q.Close()
	}
}
