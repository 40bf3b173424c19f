package imapd

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Adversarial tests of IDLE on a Conn (conn.go): the orders in which
// imapserver's connection goroutine, its IDLE goroutine (Session.Idle),
// deliveries and the client's DONE can meet.

// idlerCheck reports whether a session whose IDLE has begun and whose
// connection is waiting in a read is among its folder's idlers, once
// that state has held for a while (so a removal racing with it is seen).
func idlerCheck(t *testing.T, m *mbox) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		var st *idleState
		for s := range m.idlers {
			st = s
		}
		n := len(m.idlers)
		m.mu.Unlock()
		if n == 1 {
			st.mu.Lock()
			waiting := st.reading && st.t != nil && st.stop != nil && st.endedLockedPeek() == false
			st.mu.Unlock()
			if waiting {
				time.Sleep(20 * time.Millisecond)
				m.mu.Lock()
				n = len(m.idlers)
				m.mu.Unlock()
				return n == 1
			}
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// endedLockedPeek reports whether the IDLE's stop is closed, without
// forgetting it.
func (st *idleState) endedLockedPeek() bool {
	if st.stop == nil {
		return false
	}
	select {
	case <-st.stop:
		return true
	default:
		return false
	}
}

// TestIdlePipelinedDoneIdle: a client that ends IDLE and starts the next
// one in the same write ("DONE\r\nt IDLE\r\n", as clients that re-IDLE
// at once do) stays among its folder's idlers, so the next delivery
// reaches it at once. imapserver reads the second IDLE from its buffer,
// so the first IDLE's stop is still in the idleState when the second's
// Session.Idle and the connection's next read race.
func TestIdlePipelinedDoneIdle(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m1", "Subject: first\r\n\r\nhello\r\n")
	cs := serveConns(t, root)
	r := rawDial(t, cs, false)
	m := cs.backend.reg.lookup(filepath.Join(root, "box"))
	r.idle()
	cycles := 300
	if testing.Short() {
		cycles = 50
	}
	for i := 0; i < cycles; i++ {
		if _, err := fmt.Fprintf(r.c, "DONE\r\ni IDLE\r\n"); err != nil {
			t.Fatal(err)
		}
		if l := r.line(); !strings.HasPrefix(l, "i OK") {
			t.Fatalf("cycle %d: DONE: %q", i, l)
		}
		if l := r.line(); !strings.HasPrefix(l, "+") {
			t.Fatalf("cycle %d: IDLE: %q", i, l)
		}
		if !idlerCheck(t, m) {
			deliver(t, root, "lost", "Subject: lost\r\n\r\n!\r\n")
			r.c.SetReadDeadline(time.Now().Add(3 * time.Second))
			l, err := r.br.ReadString('\n')
			t.Fatalf("cycle %d: the session in IDLE is not among its folder's idlers; a delivery then: %q %v (want * 2 EXISTS at once)", i, l, err)
		}
	}
	deliver(t, root, "m2", "Subject: second\r\n\r\nworld\r\n")
	r.c.SetReadDeadline(time.Now().Add(3 * time.Second)) // well before RefreshInterval
	if l := r.line(); l != "* 2 EXISTS" {
		t.Fatalf("after %d pipelined DONE/IDLE: %q, want * 2 EXISTS", cycles, l)
	}
}

// TestIdleCyclesUnderDeliveries: a client goes in and out of IDLE while
// messages arrive as fast as they can be delivered. Every EXISTS it sees
// is larger than the one before (nothing twice), nothing is written
// between the tagged OK of IDLE and the next command's response, and at
// the end the count it was told equals what NOOP, STATUS and SELECT say.
func TestIdleCyclesUnderDeliveries(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m0", "Subject: first\r\n\r\nhello\r\n")
	cs := serveConns(t, root)
	r := rawDial(t, cs, false)
	const total = 150
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= total; i++ {
			deliver(t, root, fmt.Sprintf("m%d", i), fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))
		}
	}()
	seen := uint64(1)
	exists := func(l, where string) {
		t.Helper()
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "*" && f[2] == "EXISTS" {
			n, err := strconv.ParseUint(f[1], 10, 32)
			if err != nil {
				t.Fatalf("%s: %q", where, l)
			}
			if n <= seen {
				t.Fatalf("%s: %q after * %d EXISTS: an update came twice or went backwards", where, l, seen)
			}
			seen = n
			return
		}
		if strings.Contains(l, "RECENT") {
			return
		}
		t.Fatalf("%s: unexpected %q", where, l)
	}
	finished := false
	for cycle := 0; !finished || cycle < 5; cycle++ {
		select {
		case <-done:
			finished = true
		default:
		}
		r.idle()
		// Wait in IDLE for the next update (or a short while), then DONE
		// at a moment that races with the next delivery.
		r.c.SetReadDeadline(time.Now().Add(time.Duration(cycle%4) * 5 * time.Millisecond))
		for {
			l, err := r.br.ReadString('\n')
			if err != nil {
				if l != "" {
					// A partial line: read the rest below.
					r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
					rest := r.line()
					exists(strings.TrimRight(l+rest, "\r\n"), "in IDLE")
				}
				break
			}
			exists(strings.TrimRight(l, "\r\n"), "in IDLE")
		}
		r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r.send("DONE")
		for {
			l := r.line()
			if strings.HasPrefix(l, "i ") {
				if !strings.HasPrefix(l, "i OK") {
					t.Fatalf("DONE: %q", l)
				}
				break
			}
			exists(l, "before IDLE's OK")
		}
		// Nothing may follow the OK of IDLE before the next command.
		if cycle%10 == 0 {
			r.c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			if l, err := r.br.ReadString('\n'); err == nil || l != "" {
				t.Fatalf("cycle %d: written after IDLE's OK: %q", cycle, l)
			}
			r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		}
		if cycle%7 == 0 {
			for _, l := range r.cmd("n NOOP") {
				exists(l, "NOOP")
			}
		}
	}
	<-done
	for _, l := range r.cmd("n NOOP") {
		exists(l, "last NOOP")
	}
	if seen != total+1 {
		t.Errorf("the client was told of %d messages, want %d", seen, total+1)
	}
	st := r.cmd("s STATUS INBOX (MESSAGES)")
	if len(st) != 1 || !strings.Contains(st[0], fmt.Sprintf("MESSAGES %d", total+1)) {
		t.Errorf("STATUS: %q, want MESSAGES %d", st, total+1)
	}
	if got, want := selectExists(t, rawDial(t, cs, false)), fmt.Sprintf("* %d EXISTS", total+1); got != want {
		t.Errorf("a later SELECT: %q, want %s", got, want)
	}
}

// TestIdleOrders: a delivery just before IDLE is written as soon as IDLE
// begins (not at the next refresh); "IDLE\r\nDONE\r\n" sent at once
// (without waiting for the continuation) gets "+", the OK, and leaves
// the session out of its folder's idlers after its next command; IDLE
// before any SELECT waits for DONE and reports nothing.
func TestIdleOrders(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m0", "Subject: first\r\n\r\nhello\r\n")
	cs := serveConns(t, root)
	box := filepath.Join(root, "box")

	unselected := rawDial(t, cs, false)
	unselected.cmd("u UNSELECT")
	unselected.idle()
	deliver(t, root, "mu", "Subject: u\r\n\r\n!\r\n")
	unselected.send("DONE")
	if l := unselected.line(); !strings.HasPrefix(l, "i OK") {
		t.Fatalf("IDLE without a folder: %q", l)
	}

	r := rawDial(t, cs, false)
	n := 2
	for i := 0; i < 30; i++ {
		deliver(t, root, fmt.Sprintf("m%d", i+1), "Subject: x\r\n\r\n!\r\n")
		n++
		r.idle()
		r.c.SetReadDeadline(time.Now().Add(3 * time.Second)) // well before RefreshInterval
		if l := r.line(); l != fmt.Sprintf("* %d EXISTS", n) {
			t.Fatalf("IDLE right after delivery %d: %q, want * %d EXISTS", i, l, n)
		}
		r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r.send("DONE")
		if l := r.line(); !strings.HasPrefix(l, "i OK") {
			t.Fatalf("DONE: %q", l)
		}
	}

	if _, err := fmt.Fprintf(r.c, "i IDLE\r\nDONE\r\nn NOOP\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+", "i OK", "n OK"} {
		if l := r.line(); !strings.HasPrefix(l, want) {
			t.Fatalf("IDLE and DONE in one write: %q, want %s", l, want)
		}
	}
	m := cs.backend.reg.lookup(box)
	deadline := time.Now().Add(2 * time.Second)
	for {
		m.mu.Lock()
		idlers := len(m.idlers)
		m.mu.Unlock()
		if idlers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idlers on the folder, none in IDLE", idlers)
		}
		time.Sleep(10 * time.Millisecond)
	}
	deliver(t, root, "late", "Subject: late\r\n\r\n!\r\n")
	r.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if l, err := r.br.ReadString('\n'); err == nil {
		t.Fatalf("written outside IDLE: %q", l)
	}
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := r.cmd("n NOOP"); len(got) != 1 || got[0] != fmt.Sprintf("* %d EXISTS", n+1) {
		t.Fatalf("NOOP: %q", got)
	}
}

// TestIdleManyClientsUnderDeliveries: eight clients of one user cycle
// through IDLE and DONE on the same folder while messages arrive; each
// sees every EXISTS count rise (never twice, never back), nothing after
// IDLE's OK, and ends told of every message.
func TestIdleManyClientsUnderDeliveries(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m0", "Subject: first\r\n\r\nhello\r\n")
	cs := serveConns(t, root)
	const clients, total = 8, 80
	var rs []*rawClient
	for i := 0; i < clients; i++ {
		rs = append(rs, rawDial(t, cs, i%2 == 1))
	}
	stop := make(chan struct{})
	errs := make(chan error, clients)
	for i, r := range rs {
		go func(i int, r *rawClient) {
			seen := 1
			line := func() (string, error) {
				r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
				l, err := r.br.ReadString('\n')
				return strings.TrimRight(l, "\r\n"), err
			}
			upd := func(l string) error {
				f := strings.Fields(l)
				if len(f) == 3 && f[2] == "EXISTS" {
					n, _ := strconv.Atoi(f[1])
					if n <= seen {
						return fmt.Errorf("client %d: %q after * %d EXISTS", i, l, seen)
					}
					seen = n
					return nil
				}
				if strings.Contains(l, "RECENT") {
					return nil
				}
				return fmt.Errorf("client %d: unexpected %q", i, l)
			}
			// untilOK reads to the tagged OK, each line an update.
			untilOK := func(tag string) error {
				for {
					l, err := line()
					if err != nil {
						return err
					}
					if strings.HasPrefix(l, tag+" OK") {
						return nil
					}
					if err := upd(l); err != nil {
						return err
					}
				}
			}
			for cycle := 0; ; cycle++ {
				select {
				case <-stop:
					fmt.Fprintf(r.c, "n NOOP\r\n")
					if err := untilOK("n"); err != nil {
						errs <- err
						return
					}
					if seen != total+1 {
						errs <- fmt.Errorf("client %d was told of %d messages, want %d", i, seen, total+1)
						return
					}
					errs <- nil
					return
				default:
				}
				fmt.Fprintf(r.c, "i IDLE\r\n")
				l, err := line()
				if err != nil {
					errs <- err
					return
				}
				if !strings.HasPrefix(l, "+") {
					errs <- fmt.Errorf("client %d: %q written after IDLE's OK, before the next IDLE's continuation", i, l)
					return
				}
				time.Sleep(time.Duration((cycle+i)%5) * time.Millisecond)
				fmt.Fprintf(r.c, "DONE\r\n")
				if err := untilOK("i"); err != nil {
					errs <- err
					return
				}
			}
		}(i, r)
	}
	for i := 1; i <= total; i++ {
		deliver(t, root, fmt.Sprintf("m%d", i), "Subject: x\r\n\r\n!\r\n")
	}
	close(stop) // each client's NOOP reads the folder: it is told of the rest
	for i := 0; i < clients; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
