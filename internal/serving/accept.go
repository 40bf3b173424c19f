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

// acceptLoop serves a Handle binding: it accepts connections until the
// listener closes and hands each to the binding's current Handle, in TLS
// first when the binding has TLS. A failing accept (out of file
// descriptors) is retried after a pause that doubles up to a second.
func (l *Layer) acceptLoop(li *listener) func(net.Listener) error {
	implicit := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			b := li.cur.Load()
			if b.TLS == nil {
				return nil, errors.New("the binding no longer serves TLS")
			}
			if b.Challenge != nil {
				if cfg := b.Challenge(hello); cfg != nil {
					return cfg, nil
				}
			}
			cfg, d := l.Config(b.TLS(hello))
			if cfg == nil {
				return nil, fmt.Errorf("no certificate for %s: %s", d.Request.FQDN, d.Why)
			}
			return cfg, nil
		},
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
			b := li.cur.Load()
			if b.TLS != nil {
				if b.Wrap != nil {
					c = b.Wrap(c)
				}
				c = tls.Server(c, implicit)
			}
			go b.Handle(c)
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
