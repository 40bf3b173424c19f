package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
)

// discardHandler accepts everything and throws messages away: the cost
// measured is the engine's alone.
type discardHandler struct{}

func (discardHandler) NewSession(context.Context, ConnInfo) (Session, error) {
	return discardSession{}, nil
}

type discardSession struct{}

func (discardSession) Greeting() (string, string)                 { return "", "" }
func (discardSession) Capabilities(State) Capabilities            { return Capabilities{} }
func (discardSession) Hello(State) error                          { return nil }
func (discardSession) TLSConfig(State, bool) (*tls.Config, error) { return nil, nil }
func (discardSession) Auth(State, string, string, string, string) error {
	return ErrAuthFailed
}
func (discardSession) Mail(State, string, MailOptions) error { return nil }
func (discardSession) Rcpt(State, string, RcptOptions) error { return nil }
func (discardSession) Data(st State, r io.Reader) (string, error) {
	_, err := io.Copy(io.Discard, r)
	return "", err
}
func (discardSession) Reset(State) {}
func (discardSession) Close(State) {}

// benchMessage is a 4 KiB message with realistic line lengths.
func benchMessage() []byte {
	var b bytes.Buffer
	b.WriteString("From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: benchmark\r\n")
	b.WriteString("Message-ID: <1234567890@example.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n")
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
	for b.Len()+len(line)+len(".x\r\n")+3 <= 4096 {
		b.WriteString(line)
	}
	b.WriteString(".x\r\n") // one stuffed line
	b.WriteString(strings.Repeat("y", 4096-b.Len()-2))
	b.WriteString("\r\n")
	return b.Bytes()
}

// runBenchSession sends b.N messages through one session on conn, each
// pipelined as RFC 2920 allows: content, end of data, MAIL, RCPT, DATA in
// one write, then the four replies.
func runBenchSession(b *testing.B, cc, sc net.Conn) {
	srv := &Server{Hostname: "mx.example.test", Handler: discardHandler{}}
	done := make(chan struct{})
	go func() {
		srv.ServeConn(context.Background(), sc)
		close(done)
	}()
	br := bufio.NewReaderSize(cc, 4096)
	readReplies := func(n int) {
		for n > 0 {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if line[3] == ' ' {
				if line[0] != '2' && line[0] != '3' {
					b.Fatalf("reply %q", line)
				}
				n--
			}
		}
	}
	readReplies(1)
	io.WriteString(cc, "EHLO bench.example.test\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
	readReplies(4)

	msg := benchMessage()
	group := append(append([]byte{}, msg...), ".\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"...)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cc.Write(group); err != nil {
			b.Fatal(err)
		}
		readReplies(4)
	}
	b.StopTimer()
	io.WriteString(cc, ".\r\nQUIT\r\n")
	readReplies(2)
	cc.Close()
	<-done
}

// BenchmarkSessionPlaintext measures the engine: one session over an
// in-process pipe, one 4 KiB message per iteration.
func BenchmarkSessionPlaintext(b *testing.B) {
	cc, sc := net.Pipe()
	runBenchSession(b, cc, sc)
}

// BenchmarkSessionPlaintextTCP is the same over loopback TCP, system calls
// included.
func BenchmarkSessionPlaintextTCP(b *testing.B) {
	cc, sc := tcpPair(b)
	runBenchSession(b, cc, sc)
}

// BenchmarkDataReader measures the dot-unstuffing reader alone.
func BenchmarkDataReader(b *testing.B) {
	msg := append(benchMessage(), ".\r\n"...)
	src := bytes.NewReader(msg)
	br := bufio.NewReaderSize(src, readBufferSize)
	var r dataReader
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		src.Reset(msg)
		br.Reset(src)
		r.reset(br, 0, 0)
		if _, err := io.Copy(io.Discard, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBenchMessage(t *testing.T) {
	m := benchMessage()
	if len(m) != 4096 || !bytes.HasSuffix(m, []byte("\r\n")) || strings.Contains(string(m), "\r\n.\r\n") {
		t.Fatalf("bad benchmark message")
	}
}

// tlsDiscardHandler is discardHandler offering STARTTLS with cfg.
type tlsDiscardHandler struct{ cfg *tls.Config }

func (h tlsDiscardHandler) NewSession(context.Context, ConnInfo) (Session, error) {
	return tlsDiscardSession{cfg: h.cfg}, nil
}

type tlsDiscardSession struct {
	discardSession
	cfg *tls.Config
}

func (tlsDiscardSession) Capabilities(State) Capabilities { return Capabilities{StartTLS: true} }
func (s tlsDiscardSession) TLSConfig(State, bool) (*tls.Config, error) {
	return s.cfg, nil
}

// BenchmarkSessionSTARTTLS is what `smtpload -tls -session-only` makes
// certrelay do, against the engine alone over loopback TCP: connect,
// EHLO, STARTTLS, an ECDSA P-256 / X25519 handshake, EHLO, QUIT, one
// session per iteration. The time and allocations include the client's;
// profile it (-cpuprofile, -memprofile) to see the server's.
func BenchmarkSessionSTARTTLS(b *testing.B) {
	srv := &Server{Hostname: "mx.example.test", Handler: tlsDiscardHandler{getPKI(b).serverConfig()}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	client := &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}}
	reply := func(br *bufio.Reader) {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if line[0] != '2' {
				b.Fatalf("reply %q", line)
			}
			if line[3] == ' ' {
				return
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReader(c)
		reply(br)
		io.WriteString(c, "EHLO bench.example.test\r\n")
		reply(br)
		io.WriteString(c, "STARTTLS\r\n")
		reply(br)
		tc := tls.Client(c, client)
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		br.Reset(tc)
		io.WriteString(tc, "EHLO bench.example.test\r\n")
		reply(br)
		io.WriteString(tc, "QUIT\r\n")
		reply(br)
		tc.Close()
	}
}
