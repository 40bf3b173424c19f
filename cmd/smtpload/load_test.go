package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"certrelay/internal/smtp"
	"certrelay/internal/testpki"
)

// sink is an SMTP server on loopback, built on certrelay's engine, that
// keeps the Message-IDs it accepted and refuses what refuse says.
type sink struct {
	addr   string
	tls    *tls.Config
	refuse func(msgID string) error

	mu       sync.Mutex
	accepted []string
	tlsConns int
	sessions int
}

func startSink(t *testing.T, withTLS bool, refuse func(string) error) *sink {
	t.Helper()
	s := &sink{refuse: refuse}
	if withTLS {
		leaf := testpki.SelfSigned(t, testpki.Options{CommonName: "sink.test", DNSNames: []string{"sink.test"}, Key: testpki.ECKey(t)})
		s.tls = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}}}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	srv := &smtp.Server{Hostname: "sink.test", Handler: s}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) NewSession(context.Context, smtp.ConnInfo) (smtp.Session, error) {
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	return &sinkSession{s: s}, nil
}

type sinkSession struct{ s *sink }

func (x *sinkSession) Greeting() (string, string) { return "", "" }
func (x *sinkSession) Capabilities(st smtp.State) smtp.Capabilities {
	return smtp.Capabilities{StartTLS: x.s.tls != nil}
}
func (x *sinkSession) Hello(smtp.State) error { return nil }
func (x *sinkSession) TLSConfig(smtp.State, bool) (*tls.Config, error) {
	x.s.mu.Lock()
	x.s.tlsConns++
	x.s.mu.Unlock()
	return x.s.tls, nil
}
func (x *sinkSession) Auth(smtp.State, string, string, string, string) error {
	return smtp.ErrAuthFailed
}
func (x *sinkSession) Mail(smtp.State, string, smtp.MailOptions) error { return nil }
func (x *sinkSession) Rcpt(smtp.State, string, smtp.RcptOptions) error { return nil }
func (x *sinkSession) Data(st smtp.State, r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader()
	if err != nil {
		return "", err
	}
	id := strings.Trim(h.Get("Message-Id"), "<>")
	if x.s.refuse != nil {
		if err := x.s.refuse(id); err != nil {
			return "", err
		}
	}
	x.s.mu.Lock()
	x.s.accepted = append(x.s.accepted, id)
	x.s.mu.Unlock()
	return "Q1", nil
}
func (x *sinkSession) Reset(smtp.State) {}
func (x *sinkSession) Close(smtp.State) {}

func testConfig(addr string) Config {
	return Config{Addr: addr, Clients: 4, Messages: 40, Size: 4096, PerConn: 1, From: "load@smtpload.test",
		To: "user@bench.test", Helo: "smtpload.test", Timeout: 10 * time.Second, IDPrefix: "t1"}
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestRun(t *testing.T) {
	cases := []struct {
		name         string
		tls          bool
		refuse       func(string) error
		cfg          func(*Config)
		ok, failed   int
		sessions     int
		tlsConns     int
		errors       map[string]int
		replies      map[string]int
		wantAccepted int
	}{
		{name: "ok/plain-one-per-connection", ok: 40, sessions: 40, wantAccepted: 40},
		{name: "ok/plain-pipelined-five-per-connection", cfg: func(c *Config) { c.Pipelining, c.PerConn = true, 5 },
			ok: 40, sessions: 8, wantAccepted: 40},
		{name: "ok/starttls-new-session-each-connection", tls: true, cfg: func(c *Config) { c.TLS = true },
			ok: 40, sessions: 40, tlsConns: 40, wantAccepted: 40},
		{name: "ok/starttls-pipelined", tls: true, cfg: func(c *Config) { c.TLS, c.Pipelining, c.PerConn = true, true, 4 },
			ok: 40, sessions: 10, tlsConns: 10, wantAccepted: 40},
		{name: "ok/session-only", tls: true, cfg: func(c *Config) { c.TLS, c.SessionOnly = true, true },
			ok: 40, sessions: 40, tlsConns: 40},
		{name: "fail/452-counted-by-class-and-code", refuse: func(id string) error {
			if strings.HasSuffix(strings.TrimSuffix(id, "@"+idDomain), "7") {
				return smtp.Reply(452, "4.3.1", "Insufficient system storage")
			}
			return nil
		}, ok: 36, failed: 4, sessions: 40, wantAccepted: 36,
			errors: map[string]int{"4xx": 4}, replies: map[string]int{"452 4.3.1": 4}},
		{name: "fail/452-keeps-the-connection", refuse: func(id string) error {
			if strings.HasSuffix(strings.TrimSuffix(id, "@"+idDomain), "0") {
				return smtp.Reply(452, "4.3.1", "Insufficient system storage")
			}
			return nil
		}, cfg: func(c *Config) { c.PerConn, c.Pipelining = 10, true }, ok: 36, failed: 4, sessions: 4, wantAccepted: 36,
			errors: map[string]int{"4xx": 4}, replies: map[string]int{"452 4.3.1": 4}},
		{name: "fail/starttls-not-offered", cfg: func(c *Config) { c.TLS = true; c.Messages = 5 },
			failed: 5, sessions: 5, errors: map[string]int{"protocol": 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := startSink(t, c.tls, c.refuse)
			cfg := testConfig(s.addr)
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			rec := filepath.Join(t.TempDir(), "acked")
			f, err := os.Create(rec)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Record = f
			r := Run(context.Background(), cfg)
			f.Close()
			// With several messages per connection the clients race for the
			// last messages: up to one short connection per client.
			slack := 0
			if cfg.PerConn > 1 {
				slack = cfg.Clients
			}
			if r.OK != c.ok || r.Failed != c.failed || r.Sessions < c.sessions || r.Sessions > c.sessions+slack {
				t.Fatalf("ok %d failed %d sessions %d, want %d %d %d(+slack)\n%s", r.OK, r.Failed, r.Sessions, c.ok, c.failed, c.sessions, r.text())
			}
			if c.errors == nil {
				c.errors = map[string]int{}
			}
			if c.replies == nil {
				c.replies = map[string]int{}
			}
			if !mapsEqual(r.Errors, c.errors) || !mapsEqual(r.Replies, c.replies) {
				t.Errorf("errors %v replies %v, want %v %v", r.Errors, r.Replies, c.errors, c.replies)
			}
			s.mu.Lock()
			accepted, tlsConns := append([]string(nil), s.accepted...), s.tlsConns
			s.mu.Unlock()
			if c.tlsConns > 0 {
				c.tlsConns = r.Sessions // a handshake on every connection
			}
			if tlsConns != c.tlsConns {
				t.Errorf("%d TLS handshakes, want %d", tlsConns, c.tlsConns)
			}
			if len(accepted) != c.wantAccepted {
				t.Errorf("server accepted %d messages, want %d", len(accepted), c.wantAccepted)
			}
			// What was recorded is exactly what the server acknowledged.
			acked := lines(t, rec)
			if cfg.SessionOnly {
				if len(acked) != 0 {
					t.Errorf("session-only recorded %d messages", len(acked))
				}
				return
			}
			if strings.Join(sorted(acked), " ") != strings.Join(sorted(accepted), " ") {
				t.Errorf("recorded %v\nserver accepted %v", acked, accepted)
			}
			if r.OK > 0 && (r.Latency.P50 <= 0 || r.Latency.P99 < r.Latency.P50 || r.Rate <= 0) {
				t.Errorf("latency %+v rate %v", r.Latency, r.Rate)
			}
			if c.tls && r.OK > 0 && r.TLSVersion == "" {
				t.Error("no TLS version reported")
			}
		})
	}
}

func TestRunConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := testConfig(addr)
	cfg.Messages, cfg.Clients = 3, 1
	r := Run(context.Background(), cfg)
	if r.OK != 0 || r.Failed != 3 || r.Errors["connect"] != 3 || r.Sessions != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	s := startSink(t, false, nil)
	cfg := testConfig(s.addr)
	cfg.Messages, cfg.Duration = 0, 300*time.Millisecond
	r := Run(context.Background(), cfg)
	if r.OK == 0 || r.Failed != 0 {
		t.Fatalf("a load stopped by -duration: %s", r.text())
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
