//go:build bench

package bench

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"certrelay/internal/maildir"
	"certrelay/internal/testpki"
)

// Issue 14's measurements: IMAP4 and POP3 sessions per second against
// Dovecot (Debian's, in a temporary directory, on a copy of the same
// Maildir), and the memory an idle IMAP4 connection (IDLE) costs
// certrelay. Nothing is asserted about timings.

const benchPassword = "bench-password-1"

// TestAccessBench is the access part of make bench: ROUNDS rounds of
// ACCESS_SECONDS seconds per protocol and server, alternating which server
// goes first, ACCESS_CLIENTS clients each running whole sessions back to
// back; then IDLE_CONNS IMAP4 connections left in IDLE. It writes the
// "access" section of docs/performance/access.md.
func TestAccessBench(t *testing.T) {
	build(t)
	rounds := envInt(t, "ROUNDS", 5)
	secs := envInt(t, "ACCESS_SECONDS", 10)
	clients := envInt(t, "ACCESS_CLIENTS", 16)
	idleN := envInt(t, "IDLE_CONNS", 1000)
	started := time.Now().UTC()

	r := newRelay(t, relayOptions{})
	r.cli("cert", "new", "--domain", connectorFqdn, "--services", "POP,IMAP", "--key-type", "rsa", "--key-size", "2048")
	crIMAP, crPOP := testpki.FreePort(t), testpki.FreePort(t)
	for _, x := range []struct{ proto, addr string }{{"imap", crIMAP}, {"pop", crPOP}} {
		r.cli("access", x.proto, "set", "--enabled", "--unencrypted-or-tls-bindings", x.addr, "--ssl-bindings", "", "--x509-certificate-name", connectorFqdn,
			"--max-connections", "20000", "--max-connection-from-single-ip", "20000")
	}
	// One mailbox per client (POP3 locks its maildrop, RFC 1939), each
	// with one 4 KiB message.
	body := message4K()
	pw := filepath.Join(r.dir, "pw")
	for i := 0; i < clients; i++ {
		user := accessUser(i)
		r.cli("mailbox", "add", user+"@bench.test", "--password-file", pw)
		if _, err := maildir.Deliver(r.data, filepath.Join("mail", "bench.test", user), maildir.Key{MsgID: "bench4k", Received: time.Now()}, body); err != nil {
			t.Fatal(err)
		}
	}
	r.start()
	waitPort(t, crIMAP)
	waitPort(t, crPOP)
	dv := newDovecot(t, filepath.Join(r.data, "mail", "bench.test"), clients, false)
	dvp := newDovecot(t, filepath.Join(r.data, "mail", "bench.test"), clients, true)

	type sample struct {
		proto, server  string
		rate, p50, p99 float64
		failed         int
	}
	var samples []sample
	servers := []struct{ name, imap, pop string }{{"certrelay", crIMAP, crPOP}, {"dovecot", dv.imap, dv.pop}, {"dovecot-plain", dvp.imap, dvp.pop}}
	for round := 1; round <= rounds; round++ {
		for _, proto := range []string{"imap", "pop3"} {
			k := (round - 1) % len(servers)
			order := append(append([]struct{ name, imap, pop string }{}, servers[k:]...), servers[:k]...)
			for _, s := range order {
				addr := s.imap
				if proto == "pop3" {
					addr = s.pop
				}
				sessionLoad(t, proto, addr, clients, time.Second) // warm up
				rep := sessionLoad(t, proto, addr, clients, time.Duration(secs)*time.Second)
				fmt.Printf("round %d  %-5s %-10s %8.1f sessions/s  p50 %6.2f ms  p99 %6.2f ms  failed %d %s\n", round, proto, s.name, rep.rate, rep.p50, rep.p99, rep.failed, rep.firstErr)
				if rep.failed > 0 {
					t.Errorf("%s on %s: %d sessions failed: %s", proto, s.name, rep.failed, rep.firstErr)
				}
				samples = append(samples, sample{proto, s.name, rep.rate, rep.p50, rep.p99, rep.failed})
			}
		}
	}
	idle := idleMemory(t, r, crIMAP, idleN, clients)

	med := func(proto, server string, f func(sample) float64) float64 {
		var v []float64
		for _, s := range samples {
			if s.proto == proto && s.server == server {
				v = append(v, f(s))
			}
		}
		return median(v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### POP3 and IMAP4 (issue 14)\n\nRun %s on %s. `go test -tags bench -run '^TestAccessBench$' ./test/bench/` (part of `make bench`): ROUNDS=%d rounds of %d s per protocol and server, the first server alternating; %d clients on the same machine, each running whole sessions back to back: connect, STARTTLS (STLS), TLS 1.3 with X25519 and an RSA-2048 certificate, LOGIN (USER/PASS), SELECT INBOX and FETCH 1 BODY.PEEK[] (RETR 1) of one 4 KiB message, LOGOUT (QUIT). Dovecot %s from Debian runs from a temporary directory (`dovecot -c FILE -F`, logins in its \"high-performance mode\": `service_count = 0`, `process_min_avail = 2`; one mail process per session, its default) on a copy of the same Maildirs. Each client has its own mailbox (POP3 locks its maildrop), with one message. certrelay checks bcrypt hashes (cost 10, what `mailbox add` stores) and remembers a verified password for 5 minutes (an HMAC of it, never the password), so a client that logs in again skips bcrypt (a login with a password not seen in the last 5 minutes costs one bcrypt, about 60 ms of a core, as in Dovecot's first column). Dovecot runs twice: with the same bcrypt hashes (BLF-CRYPT; its auth_cache keeps the hash, so every login still pays bcrypt, in its single auth process) and with passwords in clear ({PLAIN}: no hashing at all, the most it can do). Medians of the rounds.\n\n",
		started.Format("2006-01-02"), machine(t), rounds, secs, clients, dovecotVersion())
	fmt.Fprintf(&b, "| protocol | certrelay sessions/s | Dovecot, bcrypt | Dovecot, passwords in clear | certrelay / Dovecot bcrypt | certrelay / Dovecot clear | p50 / p99 ms: certrelay, Dovecot bcrypt, Dovecot clear | goal: at least Dovecot's rate |\n|---|---|---|---|---|---|---|---|\n")
	for _, proto := range []string{"imap", "pop3"} {
		rate := func(server string) float64 { return med(proto, server, func(s sample) float64 { return s.rate }) }
		lat := func(server string) string {
			return fmt.Sprintf("%.1f / %.1f", med(proto, server, func(s sample) float64 { return s.p50 }), med(proto, server, func(s sample) float64 { return s.p99 }))
		}
		cr, dvb, dvc := rate("certrelay"), rate("dovecot"), rate("dovecot-plain")
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f | %.2f | %.2f | %s; %s; %s | %s |\n", strings.ToUpper(proto), cr, dvb, dvc, ratio(cr, dvb), ratio(cr, dvc),
			lat("certrelay"), lat("dovecot"), lat("dovecot-plain"), verdict(cr >= dvb && cr >= dvc, "against both"))
	}
	fmt.Fprintf(&b, "\nEach round's rates (sessions/s):\n\n| round | IMAP certrelay | IMAP Dovecot bcrypt | IMAP Dovecot clear | POP3 certrelay | POP3 Dovecot bcrypt | POP3 Dovecot clear |\n|---|---|---|---|---|---|---|\n")
	for round := 1; round <= rounds; round++ {
		row := []string{strconv.Itoa(round)}
		for _, k := range []struct{ p, s string }{{"imap", "certrelay"}, {"imap", "dovecot"}, {"imap", "dovecot-plain"}, {"pop3", "certrelay"}, {"pop3", "dovecot"}, {"pop3", "dovecot-plain"}} {
			n := 0
			for _, s := range samples {
				if s.proto == k.p && s.server == k.s {
					n++
					if n == round {
						row = append(row, fmt.Sprintf("%.0f", s.rate))
					}
				}
			}
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintf(&b, "\n**Memory per idle IMAP4 connection**: %d connections, each after STARTTLS, LOGIN and SELECT INBOX, left in IDLE: certrelay's resident memory (VmRSS) grew from %.1f MiB to %.1f MiB, **%.1f KiB per connection** (goal ≤ 64 KiB: %s). %s.\n",
		idle.n, float64(idle.before)/(1<<20), float64(idle.after)/(1<<20), idle.perConn/1024, map[bool]string{true: "met", false: "**missed**"}[idle.perConn <= 64*1024], idle.note)
	doc := b.String()
	fmt.Println(doc)
	writeSection(t, "access", doc)
}

func message4K() []byte {
	var b strings.Builder
	b.WriteString("From: bench@example.org\r\nTo: user@bench.test\r\nSubject: 4 KiB\r\nMessage-ID: <bench4k@example.org>\r\n\r\n")
	for b.Len() < 4096-80 {
		b.WriteString("The quick brown fox jumps over the lazy dog, again and again, to fill 4 KiB.\r\n")
	}
	return []byte(b.String())
}

type sessionReport struct {
	rate, p50, p99 float64
	failed         int
	firstErr       string
}

// sessionLoad runs whole sessions from clients goroutines for d.
func sessionLoad(t *testing.T, proto, addr string, clients int, d time.Duration) sessionReport {
	var mu sync.Mutex
	var lat []float64
	var failed atomic.Int64
	var first atomic.Value
	end := time.Now().Add(d)
	began := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []float64
			for time.Now().Before(end) {
				s := time.Now()
				var err error
				if proto == "imap" {
					err = imapSession(addr, accessUser(i))
				} else {
					err = popSession(addr, accessUser(i))
				}
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, float64(time.Since(s).Microseconds())/1000)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	rep := sessionReport{rate: float64(len(lat)) / time.Since(began).Seconds(), p50: median(lat), p99: nearestRank(lat, 99), failed: int(failed.Load())}
	if v, ok := first.Load().(string); ok {
		rep.firstErr = v
	}
	return rep
}

var clientTLS = &tls.Config{InsecureSkipVerify: true, ServerName: connectorFqdn, CurvePreferences: []tls.CurveID{tls.X25519}}

// conv is a line-oriented client conversation.
type conv struct {
	c  net.Conn
	br *bufio.Reader
}

func dialConv(addr string) (*conv, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &conv{c: c, br: bufio.NewReaderSize(c, 8192)}, nil
}

func (v *conv) line() (string, error) {
	l, err := v.br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

func (v *conv) send(s string) error { _, err := io.WriteString(v.c, s+"\r\n"); return err }

func (v *conv) startTLS() error {
	tc := tls.Client(v.c, clientTLS)
	if err := tc.Handshake(); err != nil {
		return err
	}
	v.c, v.br = tc, bufio.NewReaderSize(tc, 8192)
	return nil
}

// tagged reads responses (skipping literals) until the tagged one.
func (v *conv) tagged(tag string) (string, error) {
	for {
		l, err := v.line()
		if err != nil {
			return "", err
		}
		if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}") {
			n, err := strconv.Atoi(strings.TrimSuffix(l[i+1:], "}"))
			if err == nil {
				if _, err := io.CopyN(io.Discard, v.br, int64(n)); err != nil {
					return "", err
				}
				continue
			}
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return l, errors.New(l)
			}
			return l, nil
		}
	}
}

// accessUser is client i's mailbox (local part).
func accessUser(i int) string { return fmt.Sprintf("user%02d", i) }

func imapSession(addr, user string) error {
	v, err := dialConv(addr)
	if err != nil {
		return err
	}
	defer v.c.Close()
	if _, err := v.line(); err != nil {
		return err
	}
	steps := []string{"a STARTTLS", "b LOGIN " + user + "@bench.test " + benchPassword, "c SELECT INBOX", "d FETCH 1 BODY.PEEK[]", "e LOGOUT"}
	for i, s := range steps {
		if err := v.send(s); err != nil {
			return err
		}
		if _, err := v.tagged(s[:1]); err != nil {
			return fmt.Errorf("%s: %w", s[:min(len(s), 12)], err)
		}
		if i == 0 {
			if err := v.startTLS(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (v *conv) ok(cmd string) error {
	if cmd != "" {
		if err := v.send(cmd); err != nil {
			return err
		}
	}
	l, err := v.line()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(l, "+OK") {
		return fmt.Errorf("%s: %s", strings.Fields(cmd + " greeting")[0], l)
	}
	return nil
}

func popSession(addr, user string) error {
	v, err := dialConv(addr)
	if err != nil {
		return err
	}
	defer v.c.Close()
	if err := v.ok(""); err != nil {
		return err
	}
	if err := v.ok("STLS"); err != nil {
		return err
	}
	if err := v.startTLS(); err != nil {
		return err
	}
	for _, c := range []string{"USER " + user + "@bench.test", "PASS " + benchPassword, "RETR 1"} {
		if err := v.ok(c); err != nil {
			return err
		}
	}
	for {
		l, err := v.line()
		if err != nil {
			return err
		}
		if l == "." {
			break
		}
	}
	return v.ok("QUIT")
}

type idleResult struct {
	n             int
	before, after int64
	perConn       float64
	note          string
}

// idleMemory opens n IMAP4 connections to the relay, each after STARTTLS,
// LOGIN and SELECT left in IDLE, and measures the server's resident
// memory before and after. They log in to the first users mailboxes
// (at most four), which the benchmark made.
func idleMemory(t *testing.T, r *relay, addr string, n, users int) idleResult {
	r.mu.Lock()
	pid := r.cmd.Process.Pid
	r.mu.Unlock()
	// Warm the server (code paths, pools) with some sessions first.
	sessionLoad(t, "imap", addr, min(4, users), time.Second)
	time.Sleep(2 * time.Second)
	res := idleResult{n: n, before: rss(t, pid)}
	var conns []*conv
	defer func() {
		for _, v := range conns {
			v.c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		v, err := dialConv(addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if err := imapIdleAs(v, accessUser(i%min(4, users))+"@bench.test"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		v.c.SetDeadline(time.Time{})
		conns = append(conns, v)
	}
	time.Sleep(3 * time.Second)
	res.after = rss(t, pid)
	res.perConn = float64(res.after-res.before) / float64(n)
	runtime.KeepAlive(conns)
	res.note = fmt.Sprintf("The stacks of %d goroutines are part of it: go-imap runs one per connection; IDLE adds none (internal/imapd's Conn writes the updates from a goroutine started when the folder changes, and runs the STARTTLS handshake in one that ends with it)", n)
	fmt.Printf("IDLE: %d connections, RSS %d → %d KiB, %.1f KiB per connection\n", n, res.before>>10, res.after>>10, res.perConn/1024)
	return res
}

// rss returns a process's resident memory in bytes.
func rss(t *testing.T, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// dovecot is Dovecot's IMAP4 and POP3 running from a temporary directory.
type dovecot struct {
	imap, pop string
	pid       int // the master process
}

func dovecotVersion() string {
	out, err := exec.Command("dovecot", "--version").Output()
	if err != nil {
		return "(unknown version)"
	}
	return strings.Fields(string(out))[0]
}

// newDovecot runs Dovecot on a copy of the Maildirs under domainDir
// (user00 … one per client; owned by nobody: Dovecot refuses to serve
// mail as root), with a self-signed RSA-2048 certificate, STARTTLS and
// plain-text logins refused before it. Passwords are bcrypt hashes of
// certrelay's cost (BLF-CRYPT), or, with plain, kept in clear ({PLAIN}:
// no hashing cost at all); its auth cache is on (it keeps the hash and
// still checks the password against it at each login). It is stopped by
// its PID at the end of the test.
// extra are more dovecot.conf lines, at the end.
func newDovecot(t *testing.T, domainDir string, users int, plain bool, extra ...string) dovecot {
	bin := testpki.Tool(t, "dovecot")
	dir, err := os.MkdirTemp("", "certrelay-bench-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	mail := filepath.Join(dir, "mail")
	if out, err := exec.Command("cp", "-a", domainDir, mail).CombinedOutput(); err != nil {
		t.Fatalf("copy the Maildirs: %v %s", err, out)
	}
	uid, gid := nobody(t)
	filepath.Walk(mail, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, uid, gid) })
	if out, err := exec.Command(testpki.Tool(t, "openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN="+connectorFqdn,
		"-keyout", filepath.Join(dir, "key.pem"), "-out", filepath.Join(dir, "cert.pem"), "-days", "30").CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v %s", err, out)
	}
	d := dovecot{imap: testpki.FreePort(t), pop: testpki.FreePort(t)}
	_, ip := hostPortOf(d.imap)
	_, pp := hostPortOf(d.pop)
	hash, err := bcrypt.GenerateFromPassword([]byte(benchPassword), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	var pwf strings.Builder
	for i := 0; i < users; i++ {
		if plain {
			fmt.Fprintf(&pwf, "%s@bench.test:{PLAIN}%s::::::\n", accessUser(i), benchPassword)
		} else {
			fmt.Fprintf(&pwf, "%s@bench.test:{BLF-CRYPT}%s::::::\n", accessUser(i), hash)
		}
	}
	os.WriteFile(filepath.Join(dir, "passwd"), []byte(pwf.String()), 0o644)
	dh := ""
	if _, err := os.Stat("/usr/share/dovecot/dh.pem"); err == nil {
		dh = "ssl_dh = </usr/share/dovecot/dh.pem\n"
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_min_protocol = TLSv1.2
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
%[5]sdisable_plaintext_auth = yes
auth_mechanisms = plain
mail_location = maildir:%[1]s/mail/%%n
first_valid_uid = %[6]d
auth_cache_size = 10M
auth_cache_ttl = 5 mins
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[6]d gid=%[7]d home=%[1]s/mail/%%n
}
# Dovecot's "high-performance mode" for logins (its documentation's
# advice for speed): login processes serve many connections.
service imap-login {
  service_count = 0
  process_min_avail = 2
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]s
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  service_count = 0
  process_min_avail = 2
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[3]s
  }
  inet_listener pop3s {
    port = 0
  }
}
protocol pop3 {
  pop3_uidl_format = %%08Xu%%08Xv
}
# %[4]s
`, dir, ip, pp, "certrelay bench", dh, uid, gid) + strings.Join(extra, "\n") + "\n"
	cf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	for _, sub := range []string{"run", "state"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	cmd := exec.Command(bin, "-c", cf, "-F")
	out := &testpki.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.pid = cmd.Process.Pid
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // the master stops its children
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	for _, a := range []string{d.imap, d.pop} {
		for i := 0; ; i++ {
			if c, err := net.DialTimeout("tcp", a, 100*time.Millisecond); err == nil {
				c.Close()
				break
			}
			if i > 200 {
				log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
				t.Fatalf("Dovecot does not listen on %s:\n%s\n%s", a, out.String(), log)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	if err := imapSession(d.imap, accessUser(0)); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Fatalf("a session with Dovecot failed: %v\n%s", err, log)
	}
	return d
}

func hostPortOf(addr string) (string, string) {
	h, p, _ := net.SplitHostPort(addr)
	return h, p
}
