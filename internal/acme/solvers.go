package acme

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
)

// HookTimeout bounds one run of a dns-01 hook.
const HookTimeout = 2 * time.Minute

// startSolvers opens what the challenges need (listeners) and returns the
// solvers for acmez, and the function that closes everything again.
// Listening fails at once, before anything is ordered, with the address
// and what to do.
func (a *Accounts) startSolvers(c Challenges) (map[string]acmez.Solver, func(), error) {
	solvers := map[string]acmez.Solver{}
	var closers []func()
	closeAll := func() {
		for _, f := range closers {
			f()
		}
	}
	if c.HTTPAddr != "" {
		s := &http01{tokens: map[string]string{}}
		ln, err := listen(c.HTTPAddr, "http-01")
		if err != nil {
			return nil, nil, err
		}
		srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}
		go srv.Serve(ln)
		closers = append(closers, func() { srv.Close() })
		solvers[acme.ChallengeTypeHTTP01] = s
	}
	if c.TLSALPNAddr != "" {
		s := &tlsALPN01{certs: map[string]*tls.Certificate{}}
		ln, err := listen(c.TLSALPNAddr, "tls-alpn-01")
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		go s.serve(ln)
		closers = append(closers, func() { ln.Close() })
		solvers[acme.ChallengeTypeTLSALPN01] = s
	}
	if c.HTTPOnServer {
		solvers[acme.ChallengeTypeHTTP01] = serverSolver{a: a, check: c.ServerHTTP}
	}
	if c.TLSALPNOnServer {
		solvers[acme.ChallengeTypeTLSALPN01] = serverSolver{a: a, check: c.ServerTLS}
	}
	if c.DNSHook != "" {
		if !filepath.IsAbs(c.DNSHook) {
			closeAll()
			return nil, nil, fmt.Errorf("the dns-01 hook %q is not an absolute path", c.DNSHook)
		}
		solvers[acme.ChallengeTypeDNS01] = dnsHook{path: c.DNSHook}
	}
	return solvers, closeAll, nil
}

func listen(addr, kind string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	fix := "give another address, or stop what listens there"
	if errors.Is(err, syscall.EADDRINUSE) {
		fix = "something already listens there (certrelay serve's own listener, or a web server): answer on another port that the CA's port is forwarded to, or use another challenge"
	} else if errors.Is(err, syscall.EACCES) {
		fix = "ports below 1024 need root or CAP_NET_BIND_SERVICE: run as root, or listen on a higher port that the CA's port is forwarded to"
	}
	return nil, fmt.Errorf("%s: cannot listen on %s: %w; %s", kind, addr, err, fix)
}

// http01 answers http-01 challenges (RFC 8555 §8.3).
type http01 struct {
	mu     sync.Mutex
	tokens map[string]string // token → key authorization
}

func (s *http01) Present(_ context.Context, c acme.Challenge) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[c.Token] = c.KeyAuthorization
	return nil
}

func (s *http01) CleanUp(_ context.Context, c acme.Challenge) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, c.Token)
	return nil
}

func (s *http01) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	s.mu.Lock()
	ka, found := s.tokens[token]
	s.mu.Unlock()
	if !ok || !found || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(ka))
}

// tlsALPN01 answers tls-alpn-01 challenges (RFC 8737): a handshake with
// the ALPN protocol acme-tls/1 and the challenge's name gets a certificate
// carrying the key authorization's digest.
type tlsALPN01 struct {
	mu    sync.Mutex
	certs map[string]*tls.Certificate // name → challenge certificate
}

func (s *tlsALPN01) Present(_ context.Context, c acme.Challenge) error {
	cert, err := acmez.TLSALPN01ChallengeCert(c)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs[strings.ToLower(c.Identifier.Value)] = cert
	return nil
}

func (s *tlsALPN01) CleanUp(_ context.Context, c acme.Challenge) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.certs, strings.ToLower(c.Identifier.Value))
	return nil
}

// Certificate returns the challenge certificate for a handshake that asks
// for acme-tls/1, or nil.
func (s *tlsALPN01) Certificate(hello *tls.ClientHelloInfo) *tls.Certificate {
	for _, p := range hello.SupportedProtos {
		if p == acmez.ACMETLS1Protocol {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.certs[strings.ToLower(hello.ServerName)]
		}
	}
	return nil
}

func (s *tlsALPN01) serve(ln net.Listener) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{acmez.ACMETLS1Protocol},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.Certificate(h); c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("no tls-alpn-01 challenge for %q", h.ServerName)
		},
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_ = tls.Server(c, cfg).Handshake()
		}()
	}
}

// dnsHook answers dns-01 challenges (RFC 8555 §8.4) through a program the
// administrator provides, which knows the DNS provider.
type dnsHook struct{ path string }

func (h dnsHook) run(ctx context.Context, verb string, c acme.Challenge) error {
	ctx, cancel := context.WithTimeout(ctx, HookTimeout)
	defer cancel()
	name, value := c.DNS01TXTRecordName(), c.DNS01KeyAuthorization()
	cmd := exec.CommandContext(ctx, h.path, verb, name, value)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		return &HookError{Hook: h.path, Verb: verb, Name: name, Err: err, Output: msg}
	}
	return nil
}

func (h dnsHook) Present(ctx context.Context, c acme.Challenge) error {
	return h.run(ctx, "present", c)
}
func (h dnsHook) CleanUp(ctx context.Context, c acme.Challenge) error {
	return h.run(ctx, "cleanup", c)
}

// HookError is a dns-01 hook that failed.
type HookError struct {
	Hook, Verb, Name string
	Err              error
	Output           string
}

func (e *HookError) Error() string {
	s := fmt.Sprintf("dns-01 hook %s %s %s: %v", e.Hook, e.Verb, e.Name, e.Err)
	if e.Output != "" {
		s += "; it said: " + e.Output
	}
	return s
}

func (e *HookError) Unwrap() error { return e.Err }
