// Package access runs certrelay's access services on the serving layer:
// POP3 (internal/pop3), IMAP4 (go-imap v2's imapserver with the Maildir
// backend of internal/imapd) and the Unified Messaging SIP listener
// (internal/sip), each with the certificate selection of SPEC S8 (POP3,
// IMAP4: the settings' X509CertificateName, S2–S4, the S9 switch) or S10
// (UM), served from the next handshake after a change (S7). It owns what
// the protocol engines leave to their caller: the settings, the
// listeners, connection limits, logins against the directory's mailbox
// passwords with failed logins limited per client address, and the
// events 16060–16069.
package access

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/imapd"
	"certrelay/internal/selection"
	"certrelay/internal/serving"
	"certrelay/internal/settings"
	"certrelay/internal/store"
)

// Event IDs of the access services.
const (
	EventBindFailed       = 16060
	EventBindRestored     = 16061
	EventNoCertificate    = 16062
	EventLimitReached     = 16063
	EventLoginsLocked     = 16064
	EventUMCertificate    = 16065
	EventUMExpiresSoon    = 16066
	EventUMExpired        = 16067
	EventUMCertificateNew = 16068
)

// EventSink receives events (events.Log).
type EventSink interface {
	Raise(ctx context.Context, id int, key string, params ...string) (bool, error)
}

// Options configure a Service. All are required but Log, Now and Rand.
type Options struct {
	DataDir  string
	DB       *sql.DB
	Settings *settings.Settings
	Store    *store.Store
	Layer    *serving.Layer
	Events   EventSink
	Log      *slog.Logger
	Now      func() time.Time
	Rand     io.Reader
	// Mailbox returns the mailbox of an address (lower-case), from the
	// server's current snapshot of the directory.
	Mailbox func(address string) (directory.Mailbox, bool)
	// Server returns this server's object now (its names).
	Server func() directory.Server
}

// Service runs the access listeners. Safe for concurrent use.
type Service struct {
	o       Options
	backend *imapd.Backend
	fails   failures
	creds   credCache
	pop     *proto
	imap    *proto
	um      *proto

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	umLast string // the UM certificate last announced (16065)

	thrMu sync.Mutex
	thr   map[string]time.Time // in-memory throttle of limit events

	umTLS *tls.Config // UM's implicit TLS (see New)
}

// proto is one protocol's listeners and configuration.
type proto struct {
	p     Protocol
	ls    *serving.Listeners
	cur   atomic.Pointer[protoConfig]
	conns conns

	imapMu   sync.Mutex
	imapSrvs map[imapKind]*imapInstance
}

// protoConfig is what a connection reads when it starts.
type protoConfig struct {
	s    Settings
	um   UMSettings
	req  selection.Request
	host string // the name in greetings
}

// New returns a service with nothing listening; Reload starts what the
// settings enable.
func New(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{o: o, thr: map[string]time.Time{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.backend = imapd.New(imapd.Options{Login: s.imapLogin})
	mk := func(p Protocol) *proto {
		pr := &proto{p: p, imapSrvs: map[imapKind]*imapInstance{}}
		pr.ls = o.Layer.Listeners(serving.ListenOptions{Kind: string(p) + " listener", LogKey: "service",
			FailedEvent: EventBindFailed, RestoredEvent: EventBindRestored, Events: o.Events})
		pr.cur.Store(&protoConfig{s: DefaultSettings(p), um: DefaultUMSettings()})
		return pr
	}
	s.pop, s.imap, s.um = mk(POP3), mk(IMAP4), mk(UM)
	// UM's TLS: the certificate S10 ranks first, from the serving layer,
	// without TLS 1.3 session tickets — SIP peers keep their connection
	// open rather than resume, and some (sipsak's GnuTLS loop) take the
	// ticket that arrives after the handshake for their answer and give
	// up. The serving layer's configuration is shared: it is copied.
	s.umTLS = &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: serving.CipherSuites,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			req := s.um.cur.Load().req
			cfg, d := o.Layer.Config(req)
			if cfg == nil {
				return nil, fmt.Errorf("no certificate for UM (%s): %s", req.FQDN, d.Why)
			}
			c := cfg.Clone()
			c.SessionTicketsDisabled = true
			return c, nil
		}}
	return s
}

// Reload reads the settings and makes the listeners match them: new
// bindings open, removed ones close, connections in flight keep going.
// It then checks the certificates (CheckCertificates).
func (s *Service) Reload(ctx context.Context) error {
	srv := s.o.Server()
	pop, err := Load(ctx, s.o.Settings, POP3)
	if err != nil {
		return err
	}
	imapS, err := Load(ctx, s.o.Settings, IMAP4)
	if err != nil {
		return err
	}
	um, err := LoadUM(ctx, s.o.Settings)
	if err != nil {
		return err
	}
	for _, x := range []struct {
		pr *proto
		st Settings
	}{{s.pop, pop}, {s.imap, imapS}} {
		name := x.st.X509CertificateName
		if name == "" {
			name = srv.Fqdn
		}
		req := selection.Request{FQDN: strings.ToLower(strings.TrimSuffix(name, ".")), Service: serviceOf(x.pr.p), Compat2007: x.st.Exchange2007CertificateSelection}
		cfg := &protoConfig{s: x.st, req: req, host: req.FQDN}
		x.pr.cur.Store(cfg)
		var want []serving.Binding
		if x.st.Enabled {
			pr := x.pr
			for _, a := range x.st.UnencryptedOrTLSBindings {
				want = append(want, serving.Binding{Addr: a, Owner: string(pr.p), Handle: func(c net.Conn) { s.handle(pr, c, false) }})
			}
			for _, a := range x.st.SSLBindings {
				b := serving.Binding{Addr: a, Owner: string(pr.p), Handle: func(c net.Conn) { s.handle(pr, c, true) },
					TLS: func(*tls.ClientHelloInfo) selection.Request { return pr.cur.Load().req }}
				if pr.p == IMAP4 {
					b.Wrap = func(c net.Conn) net.Conn { return imapd.NewConn(c) } // IDLE without its goroutine
				}
				want = append(want, b)
			}
		}
		x.pr.ls.Set(ctx, want)
	}
	name := um.Fqdn
	if name == "" {
		name = srv.Fqdn
	}
	s.um.cur.Store(&protoConfig{um: um, req: selection.Request{FQDN: strings.ToLower(name), Service: store.UM}, host: strings.ToLower(name)})
	var want []serving.Binding
	if um.Enabled {
		mode := strings.ToUpper(um.UMStartupMode)
		if mode == "TCP" || mode == "DUAL" {
			for _, a := range um.SipTcpBindings {
				want = append(want, serving.Binding{Addr: a, Owner: string(UM), Handle: func(c net.Conn) { s.handle(s.um, c, false) }})
			}
		}
		if mode == "TLS" || mode == "DUAL" {
			for _, a := range um.SipTlsBindings {
				want = append(want, serving.Binding{Addr: a, Owner: string(UM), Handle: func(c net.Conn) { s.handle(s.um, tls.Server(c, s.umTLS), true) }})
			}
		}
	}
	s.um.ls.Set(ctx, want)
	s.CheckCertificates(ctx)
	return nil
}

func serviceOf(p Protocol) store.Services {
	switch p {
	case POP3:
		return store.POP
	case IMAP4:
		return store.IMAP
	}
	return store.UM
}

// Addr returns the address a binding of p listens on (tests use port 0),
// or "".
func (s *Service) Addr(p Protocol, binding string) string {
	switch p {
	case POP3:
		return s.pop.ls.Addr(binding)
	case IMAP4:
		return s.imap.ls.Addr(binding)
	}
	return s.um.ls.Addr(binding)
}

// Listening returns the bindings that listen, per protocol.
func (s *Service) Listening() map[Protocol][]string {
	return map[Protocol][]string{POP3: s.pop.ls.Listening(), IMAP4: s.imap.ls.Listening(), UM: s.um.ls.Listening()}
}

// Close stops listening and ends the IMAP4 sessions; POP3 and SIP
// sessions end with their connections.
func (s *Service) Close() {
	s.cancel()
	for _, pr := range []*proto{s.pop, s.imap, s.um} {
		pr.ls.Close()
		pr.imapMu.Lock()
		for _, in := range pr.imapSrvs {
			in.srv.Close()
		}
		pr.imapMu.Unlock()
	}
}

// handle admits one connection (limits) and runs its protocol.
func (s *Service) handle(pr *proto, c net.Conn, implicit bool) {
	cfg := pr.cur.Load()
	maxTotal, maxPer := cfg.s.MaxConnections, cfg.s.MaxConnectionFromSingleIP
	if pr.p == UM {
		maxTotal, maxPer = cfg.um.MaxConnections, cfg.um.MaxConnectionFromSingleIP
	}
	release, limit := pr.conns.admit(c.RemoteAddr(), maxTotal, maxPer)
	if release == nil {
		s.refuse(pr.p, c, limit, maxTotal, maxPer)
		return
	}
	switch pr.p {
	case POP3:
		defer release()
		s.servePOP(pr, cfg, c, implicit)
	case IMAP4:
		s.serveIMAP(pr, cfg, c, implicit, release)
	case UM:
		defer release()
		s.serveSIP(cfg, c)
	}
}

// refuse answers a connection over a limit, and raises 16063.
func (s *Service) refuse(p Protocol, c net.Conn, limit string, maxTotal, maxPer int) {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	value := maxTotal
	text := "too many connections to this server, try again later"
	if limit == "MaxConnectionFromSingleIP" {
		value, text = maxPer, "too many connections from your address, try again later"
	}
	switch p {
	case POP3:
		io.WriteString(c, "-ERR [SYS/TEMP] "+text+"\r\n")
	case IMAP4:
		io.WriteString(c, "* BYE [UNAVAILABLE] "+text+"\r\n")
	case UM:
		io.WriteString(c, "SIP/2.0 503 Service Unavailable\r\nRetry-After: 60\r\nContent-Length: 0\r\n\r\n")
	}
	s.limitReached(p, hostOf(c.RemoteAddr()), limit, fmt.Sprint(value))
}

// limitThrottle spaces the limit events of one protocol and limit.
const limitThrottle = 5 * time.Minute

// limitReached raises 16063, at most once per limitThrottle per protocol
// and limit (checked in memory first: a flood must not become a flood of
// database writes), off the connection's path.
func (s *Service) limitReached(p Protocol, client, limit, value string) {
	key := string(p) + " " + limit
	now := time.Now()
	s.thrMu.Lock()
	if last, ok := s.thr[key]; ok && now.Sub(last) < limitThrottle {
		s.thrMu.Unlock()
		return
	}
	s.thr[key] = now
	s.thrMu.Unlock()
	s.o.Log.Warn("limit reached", "service", p, "client", client, "limit", limit, "value", value)
	go s.raise(EventLimitReached, key, string(p), client, limit, value, cliWord(p), OptionOf(limit))
}

// OptionOf is the CLI flag of a setting: "--" and its name in kebab case
// (MaxConnectionFromSingleIP: --max-connection-from-single-ip).
func OptionOf(setting string) string {
	if setting == "MaxErrors" {
		return "(none: MaxErrors is fixed at 10 bad commands; the client is broken or hostile) --max-connection-from-single-ip"
	}
	var b strings.Builder
	b.WriteString("--")
	for i, r := range setting {
		upper := r >= 'A' && r <= 'Z'
		if upper && i > 0 {
			prev := rune(setting[i-1])
			nextLower := i+1 < len(setting) && setting[i+1] >= 'a' && setting[i+1] <= 'z'
			if prev >= 'a' && prev <= 'z' || prev >= '0' && prev <= '9' || nextLower && prev >= 'A' && prev <= 'Z' {
				b.WriteByte('-')
			}
		}
		if upper {
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// raise raises an event in the background, logging a failure to.
func (s *Service) raise(id int, key string, params ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.o.Events.Raise(ctx, id, key, params...); err != nil {
		s.o.Log.Warn("cannot log event", "event", id, "err", err)
	}
}

// cliWord is the CLI's word for p (certrelay access pop|imap|um).
func cliWord(p Protocol) string {
	switch p {
	case POP3:
		return "pop"
	case IMAP4:
		return "imap"
	}
	return "um"
}

// Login errors.
var (
	errAuthFailed  = errors.New("authentication failed")
	errRateLimited = errors.New("too many failed logins from this address")
)

// ProbeTarget is a POP3 or IMAP4 binding the server's self-probe
// connects to (SPEC L2): its address, whether TLS starts at once, and the
// request selection answers for it.
type ProbeTarget struct {
	Protocol Protocol
	Addr     string
	Implicit bool
	Request  selection.Request
}

// ProbeTargets lists the POP3 and IMAP4 bindings as configured now
// (enabled protocols only).
func (s *Service) ProbeTargets() []ProbeTarget {
	var out []ProbeTarget
	for _, pr := range []*proto{s.pop, s.imap} {
		cfg := pr.cur.Load()
		if !cfg.s.Enabled {
			continue
		}
		for _, a := range cfg.s.UnencryptedOrTLSBindings {
			out = append(out, ProbeTarget{Protocol: pr.p, Addr: a, Request: cfg.req})
		}
		for _, a := range cfg.s.SSLBindings {
			out = append(out, ProbeTarget{Protocol: pr.p, Addr: a, Implicit: true, Request: cfg.req})
		}
	}
	return out
}
