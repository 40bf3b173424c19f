package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// The limits of SPEC P1 (issue 9, items 14–17), driven with Python's
// smtplib and sockets, swaks and prlimit against the real binary.

// python runs a Python program with args and returns its output.
func python(t *testing.T, prog string, args ...string) string {
	t.Helper()
	out, err := exec.Command(testpki.Tool(t, "python3"), append([]string{"-c", prog}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	return string(out)
}

// holdProg opens N connections to HOST:PORT from address FROM ("" for
// any), reads each one's first line, prints a JSON summary, and keeps the
// connections open until its standard input closes.
const holdProg = `
import json, socket, sys
host, port, n, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
socks = []
for i in range(n):
    s = socket.socket()
    if src:
        s.bind((src, 0))
    s.settimeout(10)
    s.connect((host, port))
    socks.append(s)
lines = {}
for s in socks:
    s.settimeout(5)
    try:
        l = s.makefile("rb").readline().decode().strip()
    except socket.timeout:
        l = "(no answer within 5 s)"
    k = l if not l.startswith("220 ") else "220"
    lines[k] = lines.get(k, 0) + 1
print(json.dumps(lines), flush=True)
sys.stdin.read()
`

// held is a set of connections a Python process holds open.
type held struct {
	lines map[string]int // first line (or "220" for a greeting) → count
	stdin io.WriteCloser
	cmd   *exec.Cmd
}

// hold opens n connections to addr from the local address from and
// returns what they were told first; release closes them.
func hold(t *testing.T, addr, from string, n int) *held {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(testpki.Tool(t, "python3"), "-c", holdProg, host, port, fmt.Sprint(n), from)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &held{stdin: stdin, cmd: cmd}
	t.Cleanup(h.release)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("holding %d connections: %v", n, err)
	}
	if err := json.Unmarshal([]byte(line), &h.lines); err != nil {
		t.Fatalf("holding %d connections: %v: %q", n, err, line)
	}
	return h
}

func (h *held) release() {
	if h.stdin != nil {
		h.stdin.Close()
		h.stdin = nil
		h.cmd.Wait()
	}
}

// eventParams returns the parameters of each event id logged so far,
// waiting up to 10 s for at least one.
func (e *env) eventParams(id string) [][]string {
	e.t.Helper()
	var evs []struct{ Parameters []string }
	for i := 0; i < 100; i++ {
		e.jsonOf(&evs, "events", "--id", id)
		if len(evs) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := make([][]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Parameters
	}
	return out
}

// wantEvent fails unless event id was logged with params starting with
// prefix.
func (e *env) wantEvent(id string, prefix ...string) {
	e.t.Helper()
	evs := e.eventParams(id)
	for _, p := range evs {
		if len(p) >= len(prefix) && strings.Join(p[:len(prefix)], "\x00") == strings.Join(prefix, "\x00") {
			return
		}
	}
	e.t.Errorf("no event %s with parameters %q; logged: %q", id, prefix, evs)
}

// TestDuplicateRecipientsDeliveredOnce (item 16): 1,000 RCPT TO of one
// mailbox, in several spellings, put one copy in the Maildir; the
// recipients of a message are capped with 452 4.5.3 and an event.
func TestDuplicateRecipientsDeliveredOnce(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test").start()
	host, port, _ := net.SplitHostPort(m.addr)
	out := python(t, `
import smtplib, ssl, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30)
s.ehlo()
s.mail("bob@example.org")
codes = {}
for i in range(1000):
    to = ["alice@contoso.test", "Alice@Contoso.test", "ALICE@contoso.TEST"][i % 3]
    c, _ = s.rcpt(to)
    codes[c] = codes.get(c, 0) + 1
print("rcpt", sorted(codes.items()))
print("data", s.data(b"Subject: once\r\n\r\nhello\r\n")[0])
# The cap (by default 200 distinct recipients), then 452 4.5.3.
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx); s.ehlo()
s.login("alice@contoso.test", sys.argv[3])
s.mail("alice@contoso.test")
for i in range(201):
    c, msg = s.rcpt("user%d@partner.example" % i)
    if c != 250:
        print("rcpt", i + 1, c, msg.decode())
s.rset()
s.quit()
`, host, port, alicePassword)
	if !strings.Contains(out, "rcpt [(250, 1000)]") || !strings.Contains(out, "data 250") {
		t.Fatalf("smtplib:\n%s", out)
	}
	if !strings.Contains(out, "rcpt 201 452 4.5.3 Too many recipients, at most 200 per message") {
		t.Errorf("the 201st recipient was not refused with 452 4.5.3:\n%s", out)
	}
	m.waitDelivered(1)
	// Let the queue finish, then count again: one copy, not 1,000.
	for i := 0; i < 100 && e.ok("queue", "list", "--json") != "[]"; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if got := len(m.maildir()); got != 1 {
		t.Errorf("alice has %d copies, want 1", got)
	}
	e.wantEvent("16024", m.name, "127.0.0.1", "200")
}

// TestConnectionLimits (item 14): connections beyond the per-address
// limit (by default 20) and the total limit of a connector get 421 4.7.0
// at once, saying which, and an event; other addresses still get in; a
// limit changed on the running server applies to the next connection.
func TestConnectionLimits(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test").start()
	h := hold(t, m.addr, "127.0.0.1", 22)
	if h.lines["220"] != 20 || h.lines["421 4.7.0 Too many connections from your address, try again later"] != 2 {
		t.Fatalf("22 connections from one address, default limit 20: %v", h.lines)
	}
	// Another address is not held back by the first one's limit, only
	// by the connector's total.
	e.ok("connector", "receive", "set", m.name, "--max-inbound-connection", "25")
	time.Sleep(time.Second) // the server notices within 100 ms
	h2 := hold(t, m.addr, "127.0.0.2", 6)
	if h2.lines["220"] != 5 || h2.lines["421 4.7.0 Too many connections to this server, try again later"] != 1 {
		t.Errorf("6 more connections from another address, 5 places left of 25: %v", h2.lines)
	}
	h.release()
	h2.release()
	e.wantEvent("16021", m.name, "127.0.0.1", "20")
	e.wantEvent("16020", m.name, "127.0.0.2", "25")
	// … and once the connections are gone, mail flows again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := swaks(t, "--server", m.addr, "--from", "bob@example.org", "--to", "alice@contoso.test")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swaks after the connections closed: exit %d\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	m.waitDelivered(1)
}

// TestOpenFileLimitCapsSessions (item 14): under a small open-file limit
// the server raises its soft limit to the hard one, keeps files for
// itself, and answers the connections beyond 421 4.7.0 rather than
// leaving them unanswered while accept fails; 16029 says so at start and
// 16022 when it happens.
func TestOpenFileLimitCapsSessions(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	e.ok("connector", "receive", "set", m.name, "--max-inbound-connection", "1000", "--max-inbound-connection-per-source", "1000")
	e.wrap = []string{testpki.Tool(t, "prlimit"), "--nofile=128:256"}
	m.start()
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", m.p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(l, "Max open files") && strings.Join(strings.Fields(l)[3:5], " ") != "256 256" {
			t.Errorf("soft limit not raised to the hard one: %q", l)
		}
	}
	h := hold(t, m.addr, "", 400)
	if n := h.lines["(no answer within 5 s)"]; n != 0 {
		t.Errorf("%d of 400 connections got no answer: %v", n, h.lines)
	}
	if h.lines["220"] == 0 || h.lines["421 4.7.0 Too many connections to this server, try again later"] == 0 {
		t.Errorf("400 connections under 256 open files: %v, want greetings and then 421 4.7.0", h.lines)
	}
	if strings.Contains(m.p.Logs(), "too many open files") {
		t.Errorf("accept ran out of file descriptors:\n%s", m.p.Logs())
	}
	h.release()
	e.wantEvent("16029", "256", "192", "1000")
	e.wantEvent("16022", m.name, "127.0.0.1", "192", "256")
	out, code := swaks(t, "--server", m.addr, "--from", "bob@example.org", "--to", "alice@contoso.test")
	if code != 0 {
		t.Errorf("swaks after the flood: exit %d\n%s", code, out)
	}
}

// TestSlowClientsCutByTimeLimits (item 15): a client that sends NOOP
// every half second is cut by the session budget, one that drips its
// message a byte at a time by the message budget (nothing is delivered),
// an idle one by the inactivity timeout; each says which, with an event.
func TestSlowClientsCutByTimeLimits(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	e.ok("connector", "receive", "set", m.name, "--connection-timeout", "00:00:04", "--connection-inactivity-timeout", "2s", "--message-timeout", "3s")
	m.start()
	host, port, _ := net.SplitHostPort(m.addr)
	out := python(t, `
import smtplib, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
def last(s):
    # Reads replies until the server closes; returns the last one.
    s.sock.settimeout(20)
    l = b""
    try:
        while True:
            line = s.file.readline()
            if not line:
                return l.decode().strip()
            l = line
    except Exception as e:
        return "error: %s" % e

# NOOP every half second, for at most 20 s.
s = smtplib.SMTP(host, port, timeout=20)
start = time.time()
try:
    while time.time() - start < 20:
        c, msg = s.noop()
        if c != 250:
            print("noop:", c, msg.decode()); break
        time.sleep(0.5)
    else:
        print("noop: still open after 20 s")
except smtplib.SMTPServerDisconnected as e:
    print("noop: disconnected without a reply")

# A message dripped a byte every half second.
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo(); s.mail("bob@example.org"); s.rcpt("alice@contoso.test")
s.putcmd("DATA"); print("data:", s.getreply()[0])
start = time.time()
try:
    while time.time() - start < 20:
        s.sock.sendall(b"x")
        time.sleep(0.5)
except OSError:
    pass
print("drip:", last(s))

# Idle after EHLO.
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo()
print("idle:", last(s))
`, host, port)
	for _, want := range []string{
		"noop: 421 4.4.2 Session time limit reached, closing connection",
		"data: 354",
		"drip: 421 4.4.2 Message time limit reached, message not accepted, closing connection",
		"idle: 421 4.4.2 Timeout waiting for command, closing connection",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("python lacks %q:\n%s", want, out)
		}
	}
	time.Sleep(time.Second)
	if n := len(m.maildir()); n != 0 {
		t.Errorf("the dripped message was delivered (%d messages)", n)
	}
	e.wantEvent("16023", m.name, "127.0.0.1", "ConnectionTimeout", "00:00:04", "--connection-timeout")
	e.wantEvent("16023", m.name, "127.0.0.1", "MessageTimeout", "00:00:03", "--message-timeout")
	e.wantEvent("16023", m.name, "127.0.0.1", "ConnectionInactivityTimeout", "00:00:02", "--connection-inactivity-timeout")
}

// TestBusyBindingRetried (item 17): a connector whose address is taken at
// start gets event 16027, is retried, and listens (16028) once the address
// is free; the other connectors work meanwhile.
func TestBusyBindingRetried(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	e.ok("connector", "receive", "add", "Second", "--bindings", addr)
	m.start()
	e.wantEvent("16027", "Second", addr, "bind: address already in use")
	busy.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, code := swaks(t, "--server", addr, "--from", "bob@example.org", "--to", "alice@contoso.test", "--timeout", "5")
		if code == 0 && strings.Contains(out, "certrelay ESMTP ready") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the freed binding was not retried within 20 s: swaks exit %d\n%s\nserver log:\n%s", code, out, m.p.Logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
	e.wantEvent("16028", "Second", addr)
	m.waitDelivered(1)
}

// TestServeFailsWhenNoBindingCanListen (item 17): serve with every
// binding taken exits non-zero at once, naming the connector, the binding
// and why, and logs 16027.
func TestServeFailsWhenNoBindingCanListen(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	busy, err := net.Listen("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--data", e.data, "serve")
	cmd.Env = append(os.Environ(), e.extra...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("serve still ran after 30 s with its only binding taken\n%s", out)
	}
	if err == nil {
		t.Fatalf("serve exited 0 with its only binding taken\n%s", out)
	}
	for _, want := range []string{"no receive connector can listen", fmt.Sprintf("%q", m.name), m.addr, "address already in use", "connector receive set"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve's error lacks %q:\n%s", want, out)
		}
	}
	e.wantEvent("16027", m.name, m.addr, "bind: address already in use")
}

// TestConnectorLimitSettings: the limits have their defaults on a new
// connector and take Exchange's time format as well as Go's.
func TestConnectorLimitSettings(t *testing.T) {
	e := newEnv(t)
	e.ok("setup", "--fqdn", "hub.contoso.test")
	type limits struct {
		MaxInboundConnection, MaxInboundConnectionPerSource, MaxRecipientsPerMessage int
		ConnectionTimeout, ConnectionInactivityTimeout, MessageTimeout               string
	}
	var c limits
	e.jsonOf(&c, "connector", "receive", "add", "Internet", "--bindings", "127.0.0.1:2600")
	if want := (limits{5000, 20, 200, "00:10:00", "00:05:00", "00:10:00"}); c != want {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	e.jsonOf(&c, "connector", "receive", "set", "Internet", "--connection-timeout", "1.00:00:00", "--connection-inactivity-timeout", "90s",
		"--message-timeout", "00:30:00", "--max-inbound-connection", "100", "--max-inbound-connection-per-source", "100", "--max-recipients-per-message", "5000")
	if want := (limits{100, 100, 5000, "1.00:00:00", "00:01:30", "00:30:00"}); c != want {
		t.Errorf("after set %+v, want %+v", c, want)
	}
}
