// Package server runs certrelay: `certrelay serve`. It opens the data
// directory, runs setup on the first start (SPEC M9), checks certificate
// expiry at start and daily (E5), and watches the store so that a change
// made by the CLI in another process takes effect without restart (S7).
// Later issues wire the SMTP transport, POP3, IMAP4 and the HTTPS console
// here.
package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
)

// Options configure Run.
type Options struct {
	DataDir string
	Setup   admin.SetupOptions
	Stderr  io.Writer // where logs go; default os.Stderr
	Now     func() time.Time
	// ExpiryWindow is how long before NotAfter "expires soon" events start
	// (E5); default 30 days.
	ExpiryWindow time.Duration
	// Ready, when set, is called once the server is up.
	Ready func()
}

// DefaultExpiryWindow is E5's default warning window.
const DefaultExpiryWindow = 30 * 24 * time.Hour

// Run runs the server until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.ExpiryWindow == 0 {
		o.ExpiryWindow = DefaultExpiryWindow
	}
	logger := slog.New(slog.NewTextHandler(o.Stderr, nil))
	ad, err := admin.Open(ctx, admin.Options{DataDir: o.DataDir, Logger: logger, Now: o.Now})
	if err != nil {
		return err
	}
	defer ad.Close()
	res, err := ad.Setup(ctx, o.Setup)
	if err != nil {
		return err
	}
	if !res.AlreadyDone {
		logger.Info("setup complete", "server", res.Server.Name, "role", res.Server.Role, "fqdn", res.Server.Fqdn,
			"internal_certificate", res.Server.InternalTransportCertificateThumbprint)
	}
	s := &srv{ad: ad, log: logger, window: o.ExpiryWindow}
	s.checkExpiry(ctx)
	logger.Info("certrelay running", "server", res.Server.Name, "data", ad.DataDir())
	if o.Ready != nil {
		o.Ready()
	}
	go s.refreshRevocation(ctx)
	changes := ad.Store.Watch(ctx, 50*time.Millisecond)
	daily := time.NewTicker(24 * time.Hour)
	defer daily.Stop()
	for {
		select {
		case <-ctx.Done():
			logger.Info("certrelay stopping")
			return nil
		case <-changes:
			logger.Debug("certificate store changed")
		case <-daily.C:
			s.checkExpiry(ctx)
		}
	}
}

type srv struct {
	ad     *admin.Admin
	log    *slog.Logger
	window time.Duration
}

// checkExpiry raises 12015/12017 for the internal transport certificate
// (C12, E5). It is used even when expired; the events say how to renew it.
func (s *srv) checkExpiry(ctx context.Context) {
	me, err := s.ad.LocalServer(ctx)
	if err != nil {
		return
	}
	e, err := s.ad.Store.Get(ctx, me.InternalTransportCertificateThumbprint)
	if err != nil || e.Cert == nil {
		return
	}
	now := s.ad.Now()
	t := certinfo.Thumbprint(e.Cert.Raw)
	switch left := e.Cert.NotAfter.Sub(now); {
	case left <= 0:
		_, _ = s.ad.Events.Raise(ctx, 12015, t, t, e.Cert.NotAfter.UTC().Format(time.RFC3339))
	case left <= s.window:
		_, _ = s.ad.Events.Raise(ctx, 12017, t, t, fmt.Sprint(int(left.Hours())))
	}
}

// RevocationRefresh is how often the server re-checks revocation data that
// is missing or has expired (T4: cert list shows cached results, refreshed
// in the background).
const RevocationRefresh = 5 * time.Minute

func (s *srv) refreshRevocation(ctx context.Context) {
	t := time.NewTicker(RevocationRefresh)
	defer t.Stop()
	for {
		if n, err := s.ad.RefreshRevocation(ctx, ""); err != nil && ctx.Err() == nil {
			s.log.Warn("revocation refresh failed", "error", err)
		} else if n > 0 {
			s.log.Info("revocation refreshed", "certificates", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
