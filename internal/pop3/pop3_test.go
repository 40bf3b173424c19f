package pop3

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// scriptConn is a connection whose client sends a script and whose
// server's answers are kept.
type scriptConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 110} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 4000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// chunks reads one part of a script per Read, as packets arrive.
type chunks struct{ parts []string }

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.parts[0])
	if c.parts[0] = c.parts[0][n:]; c.parts[0] == "" {
		c.parts = c.parts[1:]
	}
	return n, nil
}

// memDrop is a maildrop in memory.
type memDrop struct {
	bodies    []string
	committed [][]int
	closed    int
	onClose   func()
}

func (d *memDrop) Messages() []Msg {
	var out []Msg
	for i, b := range d.bodies {
		out = append(out, Msg{Size: int64(len(b)), UID: "u" + string(rune('a'+i))})
	}
	return out
}
func (d *memDrop) Open(i int) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(d.bodies[i])), nil
}
func (d *memDrop) Commit(del []int) error { d.committed = append(d.committed, del); return nil }
func (d *memDrop) Close() {
	d.closed++
	if d.onClose != nil {
		d.onClose()
	}
}

func config(d *memDrop) Config {
	return Config{
		Hostname: "pop.example.test",
		Login: func(_ context.Context, user, pass string, _ net.Addr, _ bool) (Maildrop, error) {
			if user == "alice@example.test" && pass == "correct horse" {
				return d, nil
			}
			return nil, ErrAuthFailed
		},
	}
}

func run(t *testing.T, cfg Config, tls bool, script ...string) []string {
	t.Helper()
	c := &scriptConn{in: &chunks{parts: script}}
	Serve(context.Background(), c, cfg, tls)
	return strings.Split(strings.TrimSuffix(c.out.String(), "\r\n"), "\r\n")
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("transcript:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

const msg1 = "Subject: one\r\n\r\nline 1\r\n.dot line\r\nline 3\r\n"
const msg2 = "Subject: two\r\n\r\nbody\r\n"

func TestTransaction(t *testing.T) {
	d := &memDrop{bodies: []string{msg1, msg2}}
	got := run(t, config(d), true,
		"USER alice@example.test\r\n", "PASS correct horse\r\n",
		"STAT\r\n", "LIST\r\n", "UIDL 2\r\n", "TOP 1 1\r\n", "RETR 1\r\n",
		"DELE 1\r\n", "RETR 1\r\n", "STAT\r\n", "RSET\r\n", "DELE 2\r\n", "QUIT\r\n")
	expect(t, got,
		"+OK pop.example.test POP3 server ready (certrelay)",
		"+OK send the password with PASS",
		"+OK logged in; 2 messages",
		"+OK 2 65",
		"+OK 2 messages", "1 43", "2 22", ".",
		"+OK 2 ub",
		"+OK 43 octets", "Subject: one", "", "line 1", ".",
		"+OK 43 octets", "Subject: one", "", "line 1", "..dot line", "line 3", ".",
		"+OK message 1 deleted",
		"-ERR message 1 is deleted",
		"+OK 1 22",
		"+OK 2 messages",
		"+OK message 2 deleted",
		"+OK bye; 1 messages deleted")
	if len(d.committed) != 1 || len(d.committed[0]) != 1 || d.committed[0][0] != 1 || d.closed != 1 {
		t.Errorf("committed %v, closed %d; want [[1]] once", d.committed, d.closed)
	}
}

// TestQuitReleasesBeforeAnswering: the maildrop is released before the
// client reads QUIT's answer, so a client that reconnects at once is not
// told [IN-USE] (make bench found this race).
func TestQuitReleasesBeforeAnswering(t *testing.T) {
	d := &memDrop{bodies: []string{msg1}}
	c := &scriptConn{in: &chunks{parts: []string{"USER alice@example.test\r\n", "PASS correct horse\r\n", "QUIT\r\n"}}}
	d.onClose = func() {
		if strings.Contains(c.out.String(), "bye") {
			t.Error("the maildrop was released after QUIT was answered")
		}
	}
	Serve(context.Background(), c, config(d), true)
	if d.closed != 1 || !strings.Contains(c.out.String(), "+OK bye") {
		t.Errorf("closed %d times; output %q", d.closed, c.out.String())
	}
}

func TestDeletionsOnlyAtQuit(t *testing.T) {
	d := &memDrop{bodies: []string{msg1}}
	run(t, config(d), true, "USER alice@example.test\r\n", "PASS correct horse\r\n", "DELE 1\r\n") // the connection drops
	if len(d.committed) != 0 || d.closed != 1 {
		t.Errorf("a session that ended without QUIT committed %v", d.committed)
	}
}

func TestLoginBeforeTLSIsRefused(t *testing.T) {
	d := &memDrop{bodies: []string{msg1}}
	cfg := config(d)
	cfg.StartTLS = func(_ context.Context, c net.Conn) (net.Conn, error) { return c, nil }
	got := run(t, cfg, false, "CAPA\r\n", "USER alice@example.test\r\n", "PASS correct horse\r\n",
		"AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice@example.test\x00correct horse"))+"\r\n", "STAT\r\n", "QUIT\r\n")
	expect(t, got,
		"+OK pop.example.test POP3 server ready (certrelay)",
		"+OK capability list follows", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS", "IMPLEMENTATION certrelay", ".",
		"-ERR [AUTH] this server takes passwords only over TLS: send STLS first",
		"-ERR [AUTH] this server takes passwords only over TLS: send STLS first",
		"-ERR [AUTH] this server takes passwords only over TLS: send STLS first",
		"-ERR log in first",
		"+OK bye")
	if d.closed != 0 {
		t.Error("a maildrop was opened before TLS")
	}
}

func TestSTLSDiscardsPipelinedPlainText(t *testing.T) {
	d := &memDrop{bodies: []string{msg1}}
	cfg := config(d)
	upgraded := false
	cfg.StartTLS = func(_ context.Context, c net.Conn) (net.Conn, error) { upgraded = true; return c, nil }
	// The USER line arrives in the same packet as STLS: it must not count.
	got := run(t, cfg, false, "STLS\r\nUSER alice@example.test\r\n", "PASS correct horse\r\n", "QUIT\r\n")
	if !upgraded {
		t.Fatal("no TLS upgrade")
	}
	expect(t, got,
		"+OK pop.example.test POP3 server ready (certrelay)",
		"+OK Begin TLS negotiation",
		"-ERR send USER first",
		"+OK bye")
}

func TestNoCertificateNoSTLS(t *testing.T) {
	got := run(t, config(&memDrop{}), false, "CAPA\r\n", "STLS\r\n", "USER a\r\n", "QUIT\r\n")
	expect(t, got,
		"+OK pop.example.test POP3 server ready (certrelay)",
		"+OK capability list follows", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION certrelay", ".",
		"-ERR [SYS/TEMP] TLS is not available now",
		"-ERR [AUTH] this server takes passwords only over TLS, and TLS is not available on this port now: connect to its TLS port",
		"+OK bye")
}

func TestAuthPlainAndWrongPasswords(t *testing.T) {
	d := &memDrop{bodies: []string{msg2}}
	plain := func(a, u, p string) string {
		return base64.StdEncoding.EncodeToString([]byte(a + "\x00" + u + "\x00" + p))
	}
	got := run(t, config(d), true,
		"AUTH PLAIN "+plain("", "alice@example.test", "wrong")+"\r\n",
		"AUTH PLAIN "+plain("bob@example.test", "alice@example.test", "correct horse")+"\r\n",
		"AUTH PLAIN\r\n", plain("", "alice@example.test", "correct horse")+"\r\n",
		"STAT\r\n", "QUIT\r\n")
	expect(t, got,
		"+OK pop.example.test POP3 server ready (certrelay)",
		"-ERR [AUTH] authentication failed",
		"-ERR [AUTH] logging in as another user is not allowed",
		"+ ",
		"+OK logged in; 1 messages",
		"+OK 1 22",
		"+OK bye")
}

func TestLimits(t *testing.T) {
	var met []Limit
	cfg := config(&memDrop{})
	cfg.MaxLine = 32
	cfg.MaxErrors = 3
	cfg.LimitReached = func(l Limit, _ net.Addr) { met = append(met, l) }
	got := run(t, cfg, true, "NOOP "+strings.Repeat("x", 5000)+"\r\n", "FOO\r\n", "BAR\r\n", "USER never-read\r\n")
	expect(t, got,
		"+OK pop.example.test POP3 server ready (certrelay)",
		"-ERR command line too long: at most 32 bytes",
		"-ERR unknown command",
		"-ERR unknown command",
		"-ERR [SYS/PERM] too many bad commands, closing")
	if len(met) != 2 || met[0] != LimitLine || met[1] != LimitErrors {
		t.Errorf("limits reported: %v", met)
	}
}

// FuzzSession feeds arbitrary input to a session: it must neither panic
// nor delete anything unless QUIT ended a logged-in session.
func FuzzSession(f *testing.F) {
	f.Add("USER alice@example.test\r\nPASS correct horse\r\nDELE 1\r\nQUIT\r\n")
	f.Add("CAPA\r\nSTLS\r\nAUTH PLAIN\r\n*\r\nTOP 1 -1\r\nLIST 99999999999999999999\r\n")
	f.Add("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNl\r\nRETR 1\r\nTOP 2 0\r\nRSET\r\nUIDL\r\n")
	f.Fuzz(func(t *testing.T, script string) {
		d := &memDrop{bodies: []string{msg1, msg2}}
		cfg := config(d)
		cfg.MaxLine = 64
		cfg.StartTLS = func(_ context.Context, c net.Conn) (net.Conn, error) { return c, nil }
		c := &scriptConn{in: strings.NewReader(script)}
		Serve(context.Background(), c, cfg, false)
		if len(d.committed) > 0 && !strings.Contains(strings.ToUpper(script), "QUIT") {
			t.Fatalf("deleted %v without QUIT", d.committed)
		}
		if d.closed > 1 {
			t.Fatalf("maildrop closed %d times", d.closed)
		}
	})
}
