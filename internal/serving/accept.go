package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"certrelay/internal/selection"
)

// AcceptOptions say how Accept treats each connection.
type AcceptOptions struct {
	// TLS, when set, makes every connection TLS from its first byte
	// (implicit TLS, RFC 8314: HTTPS, IMAPS, POP3S, SMTPS): at each
	// handshake the certificate is the one the published snapshot selects
	// for the request TLS returns, which may use the client's server name
	// (SNI, hello.ServerName). A connection no certificate can serve
	// fails its handshake.
	TLS func(hello *tls.ClientHelloInfo) selection.Request
}

// Accept returns a Binding.Serve function that accepts connections until
// the listener closes and runs handle for each in its own goroutine;
// handle owns the connection and closes it. A failing accept (out of
// file descriptors) is retried after a pause that doubles up to a second.
// Protocols with their own accept loop (SMTP's engine admits connections
// there) give that instead.
func (l *Layer) Accept(handle func(net.Conn), o AcceptOptions) func(net.Listener) error {
	var outer *tls.Config
	if o.TLS != nil {
		outer = &tls.Config{
			MinVersion:   tls.VersionTLS12,
			CipherSuites: CipherSuites,
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				cfg, d := l.Config(o.TLS(hello))
				if cfg == nil {
					return nil, fmt.Errorf("no certificate for %s: %s", d.Request.FQDN, d.Why)
				}
				return cfg, nil
			},
		}
	}
	return func(ln net.Listener) error {
		var pause time.Duration
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return nil
				}
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				l.o.Log.Warn("accept failed; pausing", "binding", ln.Addr().String(), "err", err, "pause", pause)
				time.Sleep(pause)
				continue
			}
			pause = 0
			if outer != nil {
				c = tls.Server(c, outer)
			}
			go handle(c)
		}
	}
}

// StartTLS upgrades conn, which spoke plain text until now, to TLS with
// the certificate the published snapshot selects for req, and completes
// the handshake (honouring ctx): what a protocol does after its STARTTLS
// (RFC 3207) or STLS (RFC 2595) exchange. It returns the decision too;
// without a certificate for req it fails before touching conn, and the
// protocol answers that TLS is not available.
func (l *Layer) StartTLS(ctx context.Context, conn net.Conn, req selection.Request) (*tls.Conn, *selection.Decision, error) {
	cfg, d := l.Config(req)
	if cfg == nil {
		return nil, d, fmt.Errorf("no certificate for %s: %s", req.FQDN, d.Why)
	}
	tc := tls.Server(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, d, err
	}
	return tc, d, nil
}
