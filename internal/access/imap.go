package access

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"certrelay/internal/imapd"
	"certrelay/internal/serving"
)

// IMAP4 runs on go-imap's imapserver, whose options (STARTTLS offered or
// not, plain-text logins allowed or not) are fixed per server: the service
// keeps one imapserver.Server for each combination in use and hands each
// accepted connection to the one that fits the settings and the
// certificates at that moment, through a listener of its own (chanLn).

type imapKind struct {
	plainText bool // LoginType PlainTextLogin
	startTLS  bool // STARTTLS offered: a plain binding with a certificate
}

type imapInstance struct {
	srv *imapserver.Server
	ln  *chanLn
}

// imapCaps: IMAP4rev1 and rev2 with the extensions the backend supports.
var imapCaps = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapMove: {},
	imap.CapESearch: {}, imap.CapSearchRes: {}, imap.CapListStatus: {}, imap.CapStatusSize: {}, imap.CapLiteralPlus: {},
}

// connMeta is what a connection brings to its session.
type connMeta struct {
	release func()
	timeout time.Duration
	client  string
}

var imapConns sync.Map // net.Conn → connMeta, until the session starts

func (s *Service) serveIMAP(pr *proto, cfg *protoConfig, c net.Conn, implicit bool, release func()) {
	kind := imapKind{plainText: cfg.s.LoginType == PlainTextLogin}
	if !implicit {
		tc, _ := s.o.Layer.Config(cfg.req)
		kind.startTLS = tc != nil
	}
	if implicit {
		// The handshake here, in this goroutine that ends with it, not
		// in imapserver's connection goroutine, whose stack it would
		// leave grown (see imapd.Conn); a failure ends the connection
		// as imapserver's greeting would have.
		if !handshakeIMAPS(c) {
			release()
			c.Close()
			return
		}
	} else {
		c = imapd.NewConn(c) // STARTTLS's handshake and IDLE without their goroutine
	}
	in := s.imapInstance(pr, kind)
	imapConns.Store(c, connMeta{release: release, timeout: time.Duration(cfg.s.ConnectionTimeout), client: hostOf(c.RemoteAddr())})
	if !in.ln.push(c) {
		imapConns.Delete(c)
		release()
		c.Close()
	}
}

// imapsHandshakeTimeout bounds the handshake of an implicit-TLS
// connection (imapserver's limit on writing its greeting, whose first
// write ran the handshake before).
const imapsHandshakeTimeout = 30 * time.Second

// handshakeIMAPS completes the handshake of an implicit-TLS connection.
func handshakeIMAPS(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return true
	}
	tc.SetDeadline(time.Now().Add(imapsHandshakeTimeout))
	if tc.Handshake() != nil {
		return false
	}
	tc.SetDeadline(time.Time{})
	return true
}

func (s *Service) imapInstance(pr *proto, k imapKind) *imapInstance {
	pr.imapMu.Lock()
	defer pr.imapMu.Unlock()
	if in := pr.imapSrvs[k]; in != nil {
		return in
	}
	o := &imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return s.newIMAPSession(pr, c)
		},
		Caps:         imapCaps,
		InsecureAuth: k.plainText,
		Logger:       imapLogger{s},
	}
	if k.startTLS {
		o.TLSConfig = &tls.Config{
			MinVersion:   tls.VersionTLS12,
			CipherSuites: serving.CipherSuites,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				req := pr.cur.Load().req
				cfg, d := s.o.Layer.Config(req)
				if cfg == nil {
					return nil, fmt.Errorf("no certificate for %s: %s", req.FQDN, d.Why)
				}
				return cfg, nil
			},
		}
	}
	in := &imapInstance{srv: imapserver.New(o), ln: newChanLn()}
	go in.srv.Serve(in.ln)
	pr.imapSrvs[k] = in
	return in
}

// imapSession adds the connection's limits to a backend session.
type imapSession struct {
	*imapd.Session
	once  sync.Once
	done  func()
	timer *time.Timer
	limit uint32 // MaxMessageSize when the session started
}

// AppendLimit is the settings' MaxMessageSize (imapserver answers a
// larger literal NO [TOOBIG] before reading it).
func (x *imapSession) AppendLimit() uint32 { return x.limit }

func (s *Service) newIMAPSession(pr *proto, c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	nc := c.NetConn()
	v, ok := imapConns.LoadAndDelete(nc)
	meta, _ := v.(connMeta)
	if !ok {
		meta = connMeta{release: func() {}, timeout: 24 * time.Hour, client: hostOf(nc.RemoteAddr())}
	}
	sess := &imapSession{Session: s.backend.NewSession(c).(*imapd.Session), done: meta.release, limit: uint32(min(pr.cur.Load().s.MaxMessageSize, 1<<31))}
	sess.timer = time.AfterFunc(meta.timeout, func() {
		s.limitReached(IMAP4, meta.client, "ConnectionTimeout", meta.timeout.String())
		c.Bye("session time limit reached")
	})
	return sess, nil, nil
}

func (x *imapSession) Close() error {
	x.once.Do(func() {
		x.timer.Stop()
		x.done()
	})
	return x.Session.Close()
}

// imapLogin is the backend's password check.
func (s *Service) imapLogin(user, password string, remote net.Addr, _ bool) (string, error) {
	cfg := s.imap.cur.Load().s
	root, err := s.login(IMAP4, cfg, user, password, remote)
	switch {
	case errors.Is(err, errRateLimited):
		return "", &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "too many failed logins from your address: try again later"}
	case err != nil:
		return "", imapserver.ErrAuthFailed
	}
	return root, nil
}

type imapLogger struct{ s *Service }

func (l imapLogger) Printf(format string, args ...any) {
	l.s.o.Log.Debug("IMAP4: "+fmt.Sprintf(format, args...), "service", IMAP4)
}

// chanLn is a net.Listener whose connections are handed to it.
type chanLn struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanLn() *chanLn { return &chanLn{ch: make(chan net.Conn, 64), done: make(chan struct{})} }

func (l *chanLn) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanLn) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanLn) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanLn) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }
