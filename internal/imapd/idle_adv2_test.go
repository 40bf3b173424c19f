package imapd

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// waitGoroutines waits until the process's goroutines are back to at
// most base (plus slack for the runtime's own), and fails otherwise.
func waitGoroutines(t *testing.T, base, slack int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	n := runtime.NumGoroutine()
	for n > base+slack && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > base+slack {
		buf := make([]byte, 1<<20)
		t.Errorf("%s: %d goroutines, %d before: a goroutine leaked\n%s", what, n, base, buf[:runtime.Stack(buf, true)])
	}
}

// TestIdleClientEdges: DONE split across TCP segments; DONE with a
// command pipelined behind it; a flag change and an EXPUNGE by another
// session while idling; IDLE on one folder, then SELECT of another (no
// update of the first reaches it); two sessions of one user idling on
// the same folder; a client that closes its connection in IDLE. Every
// goroutine the sessions started has ended afterwards.
func TestIdleClientEdges(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m1", "Subject: first\r\n\r\nhello\r\n")
	deliver(t, root, "m2", "Subject: second\r\n\r\nhello\r\n")
	cs := serveConns(t, root)
	setup := rawDial(t, cs, false)
	setup.cmd("c CREATE Archive")
	setup.send("z LOGOUT")
	setup.c.Close()
	time.Sleep(200 * time.Millisecond)
	base := runtime.NumGoroutine()

	a := rawDial(t, cs, false)
	b := rawDial(t, cs, false)
	other := rawDial(t, cs, false)

	// DONE in three segments, with pauses; a delivery between them is
	// still written (IDLE has not ended), and none after the OK.
	a.idle()
	for _, part := range []string{"D", "ON", "E"} {
		if _, err := a.c.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	deliver(t, root, "m3", "Subject: third\r\n\r\n!\r\n")
	if l := a.line(); l != "* 3 EXISTS" {
		t.Fatalf("in IDLE with DONE half sent: %q, want * 3 EXISTS", l)
	}
	a.c.Write([]byte("\r\n"))
	if l := a.line(); !strings.HasPrefix(l, "i OK") {
		t.Fatalf("split DONE: %q", l)
	}

	// DONE with NOOP behind it in one segment: the OK of IDLE, then
	// NOOP's.
	a.idle()
	fmt.Fprintf(a.c, "DONE\r\nn NOOP\r\n")
	if l := a.line(); !strings.HasPrefix(l, "i OK") {
		t.Fatalf("pipelined DONE: %q", l)
	}
	if l := a.line(); !strings.HasPrefix(l, "n OK") {
		t.Fatalf("NOOP after DONE: %q", l)
	}

	// Both sessions idle on INBOX; another session flags and expunges.
	b.cmd("n NOOP")
	other.cmd("n NOOP")
	a.idle()
	b.idle()
	other.cmd("s STORE 1 +FLAGS (\\Deleted)")
	for name, r := range map[string]*rawClient{"a": a, "b": b} {
		if l := r.line(); !strings.Contains(l, "FETCH") || !strings.Contains(l, `\Deleted`) {
			t.Fatalf("%s in IDLE: %q, want the flag change", name, l)
		}
	}
	other.cmd("x EXPUNGE")
	for name, r := range map[string]*rawClient{"a": a, "b": b} {
		if l := r.line(); l != "* 1 EXPUNGE" {
			t.Fatalf("%s in IDLE: %q, want * 1 EXPUNGE", name, l)
		}
	}
	for _, r := range []*rawClient{a, b} {
		r.send("DONE")
		if l := r.line(); !strings.HasPrefix(l, "i OK") {
			t.Fatalf("DONE: %q", l)
		}
	}

	// a idles on Archive: INBOX's deliveries are not written to it, and
	// an APPEND to Archive is.
	a.cmd("s SELECT Archive")
	a.idle()
	deliver(t, root, "m4", "Subject: fourth\r\n\r\n!\r\n")
	a.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if l, err := a.br.ReadString('\n'); err == nil {
		t.Fatalf("a delivery to INBOX reached a session idling on Archive: %q", l)
	}
	a.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	other.send("p APPEND Archive {19}")
	if l := other.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND: %q", l)
	}
	other.send("Subject: x\r\n\r\nhello")
	for l := other.line(); !strings.HasPrefix(l, "p "); l = other.line() {
	}
	if l := a.line(); l != "* 1 EXISTS" {
		t.Fatalf("idling on Archive after an APPEND to it: %q", l)
	}
	a.send("DONE")
	for {
		l := a.line()
		if strings.HasPrefix(l, "i OK") {
			break
		}
		if !strings.Contains(l, "RECENT") {
			t.Fatalf("DONE on Archive: %q", l)
		}
	}

	// b idles, then its client goes away without DONE; a delivery after
	// that writes to no one, and nothing of b's session stays.
	b.idle()
	b.c.Close()
	time.Sleep(50 * time.Millisecond)
	deliver(t, root, "m5", "Subject: fifth\r\n\r\n!\r\n")
	other.cmd("n NOOP")
	time.Sleep(100 * time.Millisecond) // the announcement's refresh, before the directory is removed
	a.c.Close()
	other.send("z LOGOUT")
	other.line()
	other.c.Close()
	waitGoroutines(t, base, 2, "after the sessions ended")
	m := cs.backend.reg.lookup(root + "/box")
	if m != nil {
		m.mu.Lock()
		n := len(m.idlers)
		m.mu.Unlock()
		if n != 0 {
			t.Errorf("%d idlers left on INBOX after every session ended", n)
		}
	}
}

// TestStartTLSFailures: after STARTTLS, a client that sends plain text,
// one that offers only TLS 1.1, one that sends half a ClientHello and
// one that sends nothing each lose the connection without a session;
// 20 handshakes at once all succeed; and every goroutine the handshakes
// started (the handshake run aside) has ended afterwards.
func TestStartTLSFailures(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m1", "Subject: first\r\n\r\nhello\r\n")
	cs := serveConns(t, root)
	warm := rawDial(t, cs, true)
	warm.c.Close()
	time.Sleep(200 * time.Millisecond)
	base := runtime.NumGoroutine()

	starttls := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", cs.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "* OK") {
			t.Fatalf("greeting: %q", l)
		}
		fmt.Fprintf(c, "a STARTTLS\r\n")
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
			t.Fatalf("STARTTLS: %q", l)
		}
		return c, br
	}
	closed := func(what string, c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("%s: the connection stayed open", what)
				}
				return
			}
			if strings.Contains(string(buf[:n]), "OK") && !strings.Contains(string(buf[:n]), "\x15") {
				t.Fatalf("%s: the server answered in plain text: %q", what, buf[:n])
			}
		}
	}

	c, _ := starttls()
	fmt.Fprintf(c, "b LOGIN alice@example.test \"correct horse\"\r\n")
	closed("plain text after STARTTLS", c)
	c.Close()

	c, _ = starttls()
	tc := tls.Client(c, &tls.Config{ServerName: "imap.example.test", RootCAs: cs.pool, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10})
	if err := tc.Handshake(); err == nil {
		t.Fatal("a TLS 1.1 handshake after STARTTLS succeeded")
	}
	closed("TLS 1.1", c)
	c.Close()

	c, _ = starttls()
	c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a record header and a byte of a ClientHello
	c.(*net.TCPConn).CloseWrite()
	closed("half a ClientHello", c)
	c.Close()

	// Silent clients: cmdReadTimeout (30 s) would end them; here the
	// client goes away first, and the handshake's goroutine must end.
	for i := 0; i < 5; i++ {
		c, _ = starttls()
		time.Sleep(20 * time.Millisecond)
		c.Close()
	}

	// Many handshakes at once.
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		go func() {
			c, br := starttls()
			defer c.Close()
			_ = br
			tc := tls.Client(c, &tls.Config{ServerName: "imap.example.test", RootCAs: cs.pool})
			if err := tc.Handshake(); err != nil {
				errs <- err
				return
			}
			fmt.Fprintf(tc, "b LOGIN alice@example.test \"correct horse\"\r\n")
			l, err := bufio.NewReader(tc).ReadString('\n')
			if err == nil && !strings.HasPrefix(l, "b OK") {
				err = fmt.Errorf("LOGIN over TLS: %q", l)
			}
			errs <- err
		}()
	}
	for i := 0; i < 20; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	waitGoroutines(t, base, 2, "after the STARTTLS attempts")
	if n := cs.hellos.Load(); n != 0 {
		t.Errorf("%d handshakes ran on imapserver's connection goroutine", n)
	}
}

// TestIdleSeesOtherProgram: while a client idles, another program puts
// a message in new/ and sets a flag by renaming in cur/, with no
// announcement; the periodic refresh (RefreshInterval) writes both to
// the idling client, once each.
func TestIdleSeesOtherProgram(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m1", "Subject: first\r\n\r\nhello\r\n")
	cs := serveConns(t, root)
	r := rawDial(t, cs, false) // its SELECT moved m1 to cur/
	r.idle()
	box := root + "/box"
	name := fmt.Sprintf("%d.other.example.test", time.Now().UnixNano())
	if err := os.WriteFile(box+"/new/"+name, []byte("Subject: other\r\n\r\nhi\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadDir(box + "/cur")
	if err != nil || len(cur) != 1 {
		t.Fatalf("cur/: %v %v", cur, err)
	}
	old := cur[0].Name()
	flagged := old
	if !strings.Contains(old, ":2,") {
		flagged += ":2,"
	}
	if err := os.Rename(box+"/cur/"+old, box+"/cur/"+flagged+"F"); err != nil {
		t.Fatal(err)
	}
	r.c.SetReadDeadline(time.Now().Add(RefreshInterval + 5*time.Second))
	var got []string
	for len(got) < 2 {
		got = append(got, r.line())
	}
	all := strings.Join(got, " | ")
	if !strings.Contains(all, "* 2 EXISTS") || !strings.Contains(all, `\Flagged`) {
		t.Fatalf("idling while another program changed the folder: %q", all)
	}
	r.c.SetReadDeadline(time.Now().Add(RefreshInterval + 2*time.Second))
	r.send("DONE")
	if l := r.line(); !strings.HasPrefix(l, "i OK") {
		t.Fatalf("DONE: %q (an update written twice?)", l)
	}
}
