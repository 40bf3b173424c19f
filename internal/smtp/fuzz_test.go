package smtp

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// memConn is an in-memory net.Conn: reads come from in, in chunks of at
// most chunk bytes, then io.EOF; writes go to out. It makes a fuzz
// iteration deterministic and fast (no goroutine hand-offs, no timeouts to
// wait for); deadlines are accepted and ignored, which is safe because
// reads never block.
type memConn struct {
	in    []byte
	chunk int
	out   bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.chunk, len(c.in))
	copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return memAddr("server") }
func (c *memConn) RemoteAddr() net.Addr             { return memAddr("client") }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// checkReplies fails unless out is a sequence of well-formed reply lines:
// three digits from 200 to 599, a space or a dash, text without CR or LF,
// CRLF; the lines of a multi-line reply share their code.
func checkReplies(t *testing.T, out []byte) {
	t.Helper()
	// After "220 Ready to start TLS" the bytes are TLS records.
	if i := bytes.Index(out, []byte("220 2.0.0 Ready to start TLS\r\n")); i >= 0 {
		out = out[:i+len("220 2.0.0 Ready to start TLS\r\n")]
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		t.Fatalf("output does not end with CRLF: %q", tail(out))
	}
	var code []byte
	for _, line := range bytes.SplitAfter(out, []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		body := line[:len(line)-2]
		if bytes.ContainsAny(body, "\r\n") {
			t.Fatalf("bare CR or LF in reply line %q", line)
		}
		if len(body) < 4 || body[3] != ' ' && body[3] != '-' {
			t.Fatalf("malformed reply line %q", line)
		}
		c, _, _, ok := parseReplyLine(string(body))
		if !ok || c < 200 || c > 599 {
			t.Fatalf("bad reply code in %q", line)
		}
		if code != nil && !bytes.Equal(code, body[:3]) {
			t.Fatalf("multi-line reply changes code: %q after %q", line, code)
		}
		code = nil
		if body[3] == '-' {
			code = body[:3]
		}
	}
	if code != nil {
		t.Fatalf("output ends inside a multi-line reply")
	}
}

func tail(b []byte) []byte {
	if len(b) > 80 {
		return b[len(b)-80:]
	}
	return b
}

// FuzzSession feeds arbitrary client input to a server session (the first
// byte chooses how the input is split into reads) and checks that the
// session ends without panicking or hanging and answers only with well
// formed replies (up to a STARTTLS handshake, whose records are not
// replies). The seed corpus lives here, not in testdata.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"HELO a\r\nMAIL FROM:<> SIZE=10 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<postmaster>\r\nDATA\r\n..\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\n.\nMAIL FROM:<evil@x.y>\r\nRCPT TO:<v@x.y>\r\nDATA\r\nspoof\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r.\r\nMAIL FROM:<evil@x.y>\r\n.\r\n",
		"EHLO a\r\nSTARTTLS\r\nMAIL FROM:<injected@x.y>\r\n",
		"EHLO a\r\nX-ANONYMOUSTLS\r\n\x16\x03\x01\x00\x05hello",
		"EHLO a\r\nAUTH PLAIN AGFsaWNlAHMzY3JldA==\r\nAUTH LOGIN\r\nYWxpY2U=\r\n*\r\nAUTH PLAIN\r\n=\r\n",
		"EHLO a\r\nAUTH LOGIN YWxpY2U=\r\nczNjcmV0\r\nAUTH PLAIN\r\n!!!\r\n",
		"NOOP " + string(bytes.Repeat([]byte("x"), 3000)) + "\r\nNOOP\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.c> RET=FULL ENVID=x+2By NOTIFY=NEVER\r\nRCPT TO:<d@e.f> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;d+40e.f\r\n",
		"EHLO a\r\nMAIL FROM:<@r1,@r2:a@[192.0.2.1]>\r\nRCPT TO:<\"q u\"@[IPv6:::1]>\r\nRCPT TO:<用户@例子.测试>\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"EHLO a\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nbare\n.\n",
		"EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n" + string(bytes.Repeat([]byte("0123456789\r\n"), 200)) + ".\r\n",
		"\x00\xff\r\n\r\n\n\r",
		"RSET\r\nVRFY x\r\nHELP\r\nEXPN y\r\nBDAT 1 LAST\r\nQUIT\r\nNOOP\r\n",
	}
	for i, s := range seeds {
		f.Add(byte(i*37), []byte(s))
	}
	p := getPKI(f)
	f.Fuzz(func(t *testing.T, split byte, input []byte) {
		h := &fakeHandler{
			caps: func(st State) Capabilities {
				return Capabilities{MaxSize: 1000, StartTLS: true, AnonymousTLS: true,
					AuthMechanisms: []string{"PLAIN", "LOGIN"}, AuthWithoutTLS: true, DSN: true}
			},
			tlsConfig: p.serverConfig(),
			users:     map[string]string{"alice": "s3cret"},
		}
		srv := &Server{Hostname: "mx.example.test", Handler: h, MaxRecipients: 5, MaxErrors: 50, MaxDataLineLength: 500}
		conn := &memConn{in: input, chunk: int(split)%64 + 1}
		done := make(chan struct{})
		go func() {
			srv.ServeConn(context.Background(), conn)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end for input %q", input)
		}
		checkReplies(t, conn.out.Bytes())
		// Whatever the input, nothing may be delivered that did not end
		// with a proper CRLF.CRLF after clean CRLF lines.
		_, d, _ := h.snapshot()
		for _, m := range d {
			if bytes.ContainsAny([]byte(stripCRLF(m.body)), "\r\n") {
				t.Fatalf("delivered a message with bare CR or LF: %q", m.body)
			}
		}
	})
}

// stripCRLF removes the CRLF pairs of s.
func stripCRLF(s string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte("\r\n"), nil))
}
