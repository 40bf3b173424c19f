package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"certrelay/internal/acme"
	"certrelay/internal/events"
	"certrelay/internal/metrics"
	"certrelay/internal/selection"
	"certrelay/internal/serving"
	"certrelay/internal/settings"
	"certrelay/internal/store"
)

// The HTTPS console and API, and the metrics endpoint (SPEC I3, S8;
// issue 16). The server runs their listeners on the serving layer like
// any protocol's: the console's bindings are TLS from the first byte,
// with the certificate the published snapshot selects for the console's
// host name and service IIS at each handshake — so a certificate enabled,
// renewed or removed is served from the next handshake on, without a
// restart (S7). What the console serves is an http.Handler the serve
// command builds over the admin layer (internal/web): the server never
// imports admin, and knows no page of the console.
//
// Both are off until `certrelay console set` gives them bindings; a
// change of the settings (or of the server's FQDN, the console's default
// host name) applies at once.

// Timeouts of the HTTP listeners: slow clients cannot hold connections
// (or file descriptors) for long.
const (
	httpHandshakeTimeout = 10 * time.Second
	httpHeaderTimeout    = 10 * time.Second
	httpIOTimeout        = 2 * time.Minute
	httpIdleTimeout      = 2 * time.Minute
)

// httpFace is one HTTP server (the console's, or the metrics') on the
// serving layer's listeners: each binding's accepted connections go to
// one http.Server through a channel listener.
type httpFace struct {
	name string // "HTTPS console", "metrics endpoint"
	tls  bool
	ls   *serving.Listeners
	srv  *http.Server
	ln   *chanListener
	done chan struct{}
}

func (s *srv) newHTTPFace(name string, h http.Handler, useTLS bool) *httpFace {
	f := &httpFace{name: name, tls: useTLS, ln: newChanListener(), done: make(chan struct{})}
	f.ls = s.layer.Listeners(serving.ListenOptions{Kind: name, LogKey: "listener", FailedEvent: 16085, RestoredEvent: 16086})
	f.srv = &http.Server{
		Handler: s.challenges.Handler(h), // ACME http-01 for an order of this data directory

		ReadHeaderTimeout: httpHeaderTimeout,
		ReadTimeout:       httpIOTimeout,
		WriteTimeout:      httpIOTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(f.done)
		if err := f.srv.Serve(f.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("HTTP server stopped", "listener", name, "err", err)
		}
	}()
	return f
}

// set makes the face listen on bindings (none: off).
func (s *srv) setHTTP(ctx context.Context, f *httpFace, bindings []string, req func() selection.Request) {
	want := make([]serving.Binding, 0, len(bindings))
	for _, addr := range bindings {
		b := serving.Binding{Addr: addr, Owner: f.name}
		if f.tls {
			b.TLS = func(hello *tls.ClientHelloInfo) selection.Request { return s.httpsRequest(hello, req) }
			b.Challenge = s.challenges.TLSConfig // ACME tls-alpn-01 for an order of this data directory
			b.Handle = func(c net.Conn) { s.handshake(f, c) }
		} else {
			b.Handle = f.ln.push
		}
		want = append(want, b)
	}
	f.ls.Set(ctx, want) // a binding that cannot open: logged, 16085, retried
}

// handshake completes the TLS handshake of a console connection (the
// serving layer picked its certificate), counts it, and hands the
// connection to the HTTP server.
func (s *srv) handshake(f *httpFace, c net.Conn) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		c.Close()
		return
	}
	_ = tc.SetDeadline(time.Now().Add(httpHandshakeTimeout))
	err := tc.HandshakeContext(context.Background())
	s.met.Handshake("https", "console", err)
	if err != nil {
		s.log.Debug("console TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	if acme.IsChallenge(tc.ConnectionState()) {
		c.Close() // the CA validated tls-alpn-01: nothing follows
		return
	}
	_ = tc.SetDeadline(time.Time{})
	f.ln.push(tc)
}

// httpsRequest is the certificate request of an HTTPS connection: the
// console's (req), except for a client that asks for mta-sts.DOMAIN of
// an accepted domain (the MTA-STS policy host, RFC 8461) when a
// certificate enabled for IIS holds that name.
func (s *srv) httpsRequest(hello *tls.ClientHelloInfo, req func() selection.Request) selection.Request {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if d, ok := strings.CutPrefix(name, "mta-sts."); ok {
		if st := s.rcv.State(); st != nil && st.Domains[d] {
			r := selection.ForConnector(name, "", "", false, store.IIS)
			if s.layer.Select(r).Winner != nil {
				return r
			}
		}
	}
	return req()
}

// consoleRequest is what the console asks selection for (S8): its host
// name (the setting, or the server's FQDN), service IIS.
func (s *srv) consoleRequest() selection.Request {
	s.httpMu.Lock()
	host := s.consoleHost
	s.httpMu.Unlock()
	return selection.ForConnector(host, "", "", false, store.IIS)
}

// applyHTTP reads the console's and the metrics' settings and makes
// their listeners match; then it checks the console's certificate.
func (s *srv) applyHTTP(ctx context.Context) {
	get := func(key string) string { v, _ := s.src.Settings.Get(ctx, key); return v }
	host := get(settings.ConsoleHostName)
	if host == "" {
		if st := s.rcv.State(); st != nil {
			host = st.Server.Fqdn
		}
	}
	s.httpMu.Lock()
	s.consoleHost = host
	s.consoleOn = false
	s.httpMu.Unlock()
	if s.console != nil {
		b := splitBindings(get(settings.ConsoleBindings))
		s.setHTTP(ctx, s.console, b, s.consoleRequest)
		s.httpMu.Lock()
		s.consoleOn = len(b) > 0
		s.consoleBindings = b
		s.httpMu.Unlock()
	}
	s.setHTTP(ctx, s.metricsFace, splitBindings(get(settings.MetricsBindings)), nil)
	s.checkConsole(ctx)
}

// checkConsole raises 16084 when the console listens but no certificate
// can serve its host name, and 16087 when it serves a last resort.
func (s *srv) checkConsole(ctx context.Context) {
	s.httpMu.Lock()
	on := s.consoleOn
	s.httpMu.Unlock()
	if !on {
		return
	}
	req := s.consoleRequest()
	d := s.layer.Select(req)
	switch how := d.LastResort(s.src.Now()); {
	case d.Winner == nil:
		_, _ = s.events.Raise(ctx, 16084, req.FQDN, req.FQDN, d.Why)
	case how != "":
		_, _ = s.events.Raise(ctx, 16087, req.FQDN+" "+d.Winner.Thumbprint, req.FQDN, d.Winner.Thumbprint, how)
	}
}

// closeHTTP stops the listeners and the HTTP servers, letting requests
// in flight finish until ctx ends.
func (s *srv) closeHTTP(ctx context.Context) {
	for _, f := range []*httpFace{s.console, s.metricsFace} {
		if f == nil {
			continue
		}
		f.ls.Close()
		_ = f.srv.Shutdown(ctx)
		f.ln.Close()
		<-f.done
	}
}

func splitBindings(v string) []string {
	var out []string
	for _, b := range strings.Split(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// chanListener is the net.Listener an http.Server accepts from: the
// serving layer's listeners accept the connections, and push them here.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// metricsSource gives the metrics what the server knows now.
type metricsSource struct{ s *srv }

var _ metrics.Source = metricsSource{}

func (m metricsSource) Certificates(context.Context) []metrics.Certificate {
	internal := ""
	if st := m.s.rcv.State(); st != nil {
		internal = st.Server.InternalTransportCertificateThumbprint
	}
	var out []metrics.Certificate
	for _, c := range m.s.layer.Index().Candidates() {
		if c.Pending || (c.Services == store.None && c.Thumbprint != internal) {
			continue
		}
		out = append(out, metrics.Certificate{Thumbprint: c.Thumbprint, Subject: c.Subject, Services: c.Services.String(),
			Internal: c.Thumbprint == internal, NotAfter: c.NotAfter})
	}
	return out
}

func (m metricsSource) Connectors(context.Context) []metrics.Connector {
	st := m.s.rcv.State()
	if st == nil {
		return nil
	}
	var out []metrics.Connector
	for _, c := range st.Connectors {
		if c.Enabled && hasTLS(c.AuthMechanism) {
			d := m.s.layer.Select(selection.ForConnector(c.Fqdn, st.Server.Fqdn, c.TlsCertificateName, c.TlsWildcardOneLabel, store.SMTP))
			out = append(out, metrics.Connector{Name: c.Name, Offered: d.Winner != nil})
		}
	}
	return out
}

func (m metricsSource) Queue(ctx context.Context) (int, time.Time, error) {
	c, err := m.s.q.Count(ctx)
	return c.Messages, c.Oldest, err
}

func (m metricsSource) Events(ctx context.Context) ([]metrics.Event, error) {
	counts, err := m.s.events.CountByID(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.Event, 0, len(counts))
	for id, n := range counts {
		name := ""
		if d, ok := events.Lookup(id); ok {
			name = d.Name
		}
		out = append(out, metrics.Event{ID: id, Name: name, Count: n})
	}
	return out, nil
}
