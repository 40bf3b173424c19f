package access

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"fmt"
	"net"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/selection"
	"certrelay/internal/sip"
	"certrelay/internal/store"
)

// ExpiryWindow is how long before its NotAfter a certificate in use is
// reported as expiring (E5; S10's "a month before").
const ExpiryWindow = 30 * 24 * time.Hour

// serveSIP answers SIP requests on a UM connection.
func (s *Service) serveSIP(cfg *protoConfig, c net.Conn) {
	um := cfg.um
	sip.Serve(s.ctx, c, sip.Config{
		MaxBody:        int(um.MaxMessageSize),
		SessionTimeout: time.Duration(um.ConnectionTimeout),
		TooLarge: func(remote net.Addr) {
			s.limitReached(UM, hostOf(remote), "MaxMessageSize", fmt.Sprint(um.MaxMessageSize))
		},
	})
}

// CheckCertificates looks at what each enabled service's certificate
// selection gives now (call it after every change of certificates,
// trust or settings): POP3 and IMAP4 without a certificate raise 16062
// (STLS/STARTTLS is not offered, SSL bindings refuse handshakes), with a
// last resort 12016 or 16030; UM in secure mode without a valid
// certificate makes a self-signed one (S10, 16068), and announces the
// certificate it uses when it changes (16065: issuer, serial number,
// thumbprint).
func (s *Service) CheckCertificates(ctx context.Context) {
	now := s.o.Now()
	for _, pr := range []*proto{s.pop, s.imap} {
		cfg := pr.cur.Load()
		if !cfg.s.Enabled {
			continue
		}
		d := s.o.Layer.Select(cfg.req)
		fqdn := cfg.req.FQDN
		switch {
		case d.Winner == nil:
			go s.raise(EventNoCertificate, string(pr.p)+" "+fqdn, string(pr.p), fqdn, d.Why, serviceOf(pr.p).String(), cliWord(pr.p))
		case d.LastResort(now) == selection.WonExpired:
			w := d.Winner
			go s.raise(12016, fqdn, fqdn, w.Thumbprint, w.NotAfter.UTC().Format(time.RFC3339))
		case d.LastResort(now) == selection.WonRevocationUnknown:
			w := d.Winner
			go s.raise(16030, fqdn+" "+w.Thumbprint, fqdn, w.Thumbprint, string(w.Status), string(pr.p)+" listener")
		}
	}
	cfg := s.um.cur.Load()
	if !cfg.um.Enabled || strings.EqualFold(cfg.um.UMStartupMode, "TCP") {
		return
	}
	d := s.o.Layer.Select(cfg.req)
	if d.Winner == nil {
		if err := s.makeUMCertificate(ctx, cfg.req.FQDN); err != nil {
			s.o.Log.Error("UM has no valid certificate and cannot make one", "fqdn", cfg.req.FQDN, "err", err)
		}
		return // the new certificate reaches the layer as any store change does
	}
	w := d.Winner
	s.mu.Lock()
	changed := s.umLast != w.Thumbprint
	s.umLast = w.Thumbprint
	s.mu.Unlock()
	if changed {
		serial := ""
		if w.Cert != nil {
			serial = certinfo.SerialString(w.Cert.SerialNumber)
		}
		s.o.Log.Info("UM certificate in use", "issuer", w.Issuer, "serial", serial, "thumbprint", w.Thumbprint, "fqdn", cfg.req.FQDN)
		go s.raise(EventUMCertificate, w.Thumbprint, w.Issuer, serial, w.Thumbprint, cfg.req.FQDN, w.NotAfter.UTC().Format(time.RFC3339))
	}
}

// CheckExpiry raises the expiry events of the certificates in use (call
// it at start and daily): 12018 for POP3's and IMAP4's within
// ExpiryWindow; for UM (S10) 16066 from a month before expiry, each day,
// and 16067 each day for a UM certificate that has expired, until it is
// replaced (removed from UM).
func (s *Service) CheckExpiry(ctx context.Context) { s.CheckExpiryWithin(ctx, ExpiryWindow) }

// CheckExpiryWithin is CheckExpiry with the server's warning window for
// POP3's and IMAP4's 12018 (server set --expiry-warning-days); UM keeps
// S10's month.
func (s *Service) CheckExpiryWithin(ctx context.Context, window time.Duration) {
	now := s.o.Now()
	for _, pr := range []*proto{s.pop, s.imap} {
		cfg := pr.cur.Load()
		if !cfg.s.Enabled {
			continue
		}
		if w := s.o.Layer.Select(cfg.req).Winner; w != nil {
			if left := w.NotAfter.Sub(now); left > 0 && left <= window {
				go s.raise(12018, cfg.req.FQDN, w.Subject, w.Thumbprint, fmt.Sprint(int(left.Hours())))
			}
		}
	}
	cfg := s.um.cur.Load()
	if !cfg.um.Enabled {
		return
	}
	if w := s.o.Layer.Select(cfg.req).Winner; w != nil {
		if left := w.NotAfter.Sub(now); left > 0 && left <= ExpiryWindow {
			go s.raise(EventUMExpiresSoon, w.Thumbprint, w.Thumbprint, fmt.Sprint(int(left.Hours()/24)), w.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	for _, c := range s.o.Layer.Index().Candidates() {
		if c.Services.Has(store.UM) && !c.Pending && now.After(c.NotAfter) && selection.MatchName(c.Domains, cfg.req.FQDN, false) {
			go s.raise(EventUMExpired, c.Thumbprint, c.Thumbprint, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
}

// makeUMCertificate makes UM's self-signed certificate (S10: "if none
// exists it creates a self-signed one"): the server's host name and fqdn,
// enabled for UM, in one transaction that first checks — under the
// database's write lock — that no valid certificate for UM holds fqdn
// (another process may have made one meanwhile).
func (s *Service) makeUMCertificate(ctx context.Context, fqdn string) error {
	r := s.o.Rand
	if r == nil {
		r = rand.Reader
	}
	key, err := certinfo.GenerateKey(certinfo.KeySpec{}, r)
	if err != nil {
		return err
	}
	domains := []string{fqdn}
	if host := strings.ToLower(s.o.Server().Name); host != "" && host != fqdn {
		domains = append(domains, host)
	}
	now := s.o.Now()
	der, err := certinfo.NewSelfSigned(certinfo.SelfSignedOptions{Domains: domains, Key: key, Now: now}, r)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	return db.Tx(ctx, s.o.DB, func(ctx context.Context, _ *sql.Tx) error {
		list, err := s.o.Store.List(ctx)
		if err != nil {
			return err
		}
		for _, e := range list {
			if e.Cert != nil && e.KeyID != "" && e.Services.Has(store.UM) && now.Before(e.Cert.NotAfter) && selection.MatchName(certinfo.CertificateDomains(e.Cert), fqdn, false) {
				return nil // one exists: the layer will have it with the next snapshot
			}
		}
		e, err := s.o.Store.AddCertificate(ctx, store.NewCertificate{DER: der, Key: key, Services: store.UM, FriendlyName: "UM " + fqdn})
		if err != nil {
			return err
		}
		s.o.Log.Info("made a self-signed certificate for UM", "thumbprint", e.Thumbprint, "fqdn", fqdn)
		_, err = s.o.Events.Raise(ctx, EventUMCertificateNew, e.Thumbprint, e.Thumbprint, fqdn, cert.NotAfter.UTC().Format(time.RFC3339))
		return err
	})
}
