package edgesync

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/servercred"
)

// Intervals of EdgeSync (SPEC X3): configuration every 3 minutes,
// recipients every 5, and at once on change.
const (
	ConfigEvery     = 3 * time.Minute
	RecipientsEvery = 5 * time.Minute
	// LeaseTTL is how long a hub's lease on an edge lasts; the holder
	// renews it every LeaseTTL/3, so another hub takes over within
	// LeaseTTL of its death.
	LeaseTTL = 30 * time.Second
)

// Syncer is a hub's side of EdgeSync: for each edge subscribed in the
// organisation's directory it takes the edge's lease (so exactly one hub
// synchronises an edge at a time), pushes the configuration and the
// recipients, publishes what the edge answers about itself (its internal
// transport certificate: X4), and follows the edge's changes (OpWait).
// Safe for concurrent use.
type Syncer struct {
	// Dir is the organisation's directory as this hub reads it (for a
	// running hub, its replica); Org is where it writes the edges'
	// objects (the organisation's directory itself); Leaser grants the
	// leases.
	Dir    directory.Directory
	Org    directory.Directory
	Leaser directory.Leaser
	Self   string // this hub's name
	// Client returns the TLS client configuration presenting this hub's
	// internal transport certificate, and its DER.
	Client func() (*tls.Config, []byte, error)
	DB     *sql.DB // where rounds are recorded
	Now    func() time.Time
	Log    *slog.Logger
	// Problem is told of a round that failed (event 16091), and Restored
	// when the edge's rounds work again (16092).
	Problem  func(edge, err string)
	Restored func(edge string)
	// Published is told of an edge's new internal transport certificate
	// published in the organisation (16093).
	Published func(edge, old, new string)
	Dial      func(ctx context.Context, addr string) (net.Conn, error) // default: net.Dialer
	// Credential is this hub's server credential (nil: none), with which
	// it proves itself to an edge that holds an older certificate of it.
	Credential *servercred.Key

	mu      sync.Mutex
	workers map[string]*worker
	started bool
}

type worker struct {
	edge   string
	poke   chan struct{} // something is pending
	cancel context.CancelFunc

	mu                    sync.Mutex
	pendConfig, pendRcpts bool // rounds asked for since the worker last looked
	forced                bool // a round asked for by a person: run it even if nothing changed
}

// take returns and clears what is pending.
func (w *worker) take() (cfg, rcpts, forced bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cfg, rcpts, forced = w.pendConfig, w.pendRcpts, w.forced
	w.pendConfig, w.pendRcpts, w.forced = false, false, false
	return
}

// Run starts and stops a worker per subscribed edge as the directory
// changes, until ctx ends. Call Refresh after each directory change.
func (s *Syncer) Run(ctx context.Context) {
	s.mu.Lock()
	s.workers, s.started = map[string]*worker{}, true
	s.mu.Unlock()
	s.Refresh(ctx)
	<-ctx.Done()
	s.mu.Lock()
	for _, w := range s.workers {
		w.cancel()
	}
	s.mu.Unlock()
}

// Refresh starts workers for new edges and stops those of edges gone.
func (s *Syncer) Refresh(ctx context.Context) {
	servers, err := s.Dir.Servers(ctx)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return
	}
	want := map[string]bool{}
	for _, srv := range servers {
		if !srv.Subscribed() {
			continue
		}
		k := strings.ToLower(srv.Name)
		want[k] = true
		if s.workers[k] == nil {
			wctx, cancel := context.WithCancel(ctx)
			w := &worker{edge: srv.Name, poke: make(chan struct{}, 1), cancel: cancel}
			s.workers[k] = w
			go s.run(wctx, w)
		}
	}
	for k, w := range s.workers {
		if !want[k] {
			w.cancel()
			delete(s.workers, k)
		}
	}
}

// Changed asks for a round of kind (configuration or recipients; "" both,
// as a person asks with Start-EdgeSynchronization) with every edge now. A
// configuration round whose content the edge has already is skipped,
// unless a person asked.
func (s *Syncer) Changed(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.workers {
		w.mu.Lock()
		w.pendConfig = w.pendConfig || kind != KindRecipients
		w.pendRcpts = w.pendRcpts || kind != KindConfiguration
		w.forced = w.forced || kind == ""
		w.mu.Unlock()
		select {
		case w.poke <- struct{}{}:
		default:
		}
	}
}

// run is one edge's worker.
func (s *Syncer) run(ctx context.Context, w *worker) {
	var lastConfig, lastRecipients, leaseUntil, waitAgain time.Time
	dueConfig, dueRecipients, forced := true, true, true
	lastCfg := "" // fingerprint of the configuration the edge has
	rcpts := &recipientsState{}
	wholeRecipients := true
	failing := false
	retry := time.Second
	var waitDone chan Response
	var waitCancel context.CancelFunc
	gen := ""
	timer := time.NewTimer(0)
	defer timer.Stop()
	stopWait := func() {
		if waitCancel != nil {
			waitCancel()
			waitCancel, waitDone = nil, nil
		}
	}
	defer stopWait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.poke:
		case r, ok := <-waitDone:
			waitCancel, waitDone = nil, nil
			if !ok {
				waitAgain = s.Now().Add(time.Second) // the edge did not answer: not in a loop
			} else if r.Generation != gen {
				// The edge changed its own objects: publish them now, and
				// tell the edge what the organisation holds.
				if err := s.publish(ctx, w.edge, r); err != nil {
					s.Log.Warn("EdgeSync: cannot publish the edge's objects", "edge", w.edge, "err", err)
				}
				gen = r.Generation
				dueConfig, forced = true, true
			}
		case <-timer.C:
		}
		c, r, f := w.take()
		dueConfig, dueRecipients, forced = dueConfig || c, dueRecipients || r, forced || f
		now := s.Now()
		if now.Sub(lastConfig) >= ConfigEvery {
			dueConfig, forced = true, true
		}
		if now.Sub(lastRecipients) >= RecipientsEvery {
			dueRecipients, wholeRecipients = true, true
		}
		if forced {
			wholeRecipients = true
		}
		// The lease is taken, then renewed when a third of it is left:
		// each renewal is a write of the directory (which the replicas ignore).
		if now.After(leaseUntil.Add(-LeaseTTL / 3 * 2)) {
			lease, err := s.Leaser.TakeEdgeLease(ctx, w.edge, s.Self, now, LeaseTTL)
			if err != nil || !lease.Held {
				if forced && err == nil {
					// A person asked here: say where the rounds run.
					_ = Record(ctx, s.DB, Round{Edge: w.edge, Kind: KindLease, Hub: lease.Holder, Time: now,
						Error: fmt.Sprintf("%s holds the EdgeSync lease of %s until %s and synchronises it; its rounds are on the edge (edge status there) and on %s", lease.Holder, w.edge, lease.Until.UTC().Format(time.RFC3339), lease.Holder)})
					forced = false
				}
				leaseUntil = time.Time{}
				stopWait()
				timer.Reset(LeaseTTL / 3)
				continue
			}
			leaseUntil = now.Add(LeaseTTL)
		}
		if dueConfig && !forced {
			// A change somewhere in the directory: push only if the
			// edge's configuration is different.
			if cfg, err := s.configuration(ctx, w.edge); err == nil && fingerprint(cfg) == lastCfg {
				dueConfig = false
			}
		}
		if dueConfig || dueRecipients {
			var kinds []string
			if dueConfig {
				kinds = append(kinds, KindConfiguration)
			}
			if dueRecipients {
				kinds = append(kinds, KindRecipients)
			}
			if !wholeRecipients {
				rcpts.delta = true
			}
			r, cfg, err := s.round(ctx, w.edge, rcpts, kinds...)
			if err != nil {
				if !failing && s.Problem != nil {
					s.Problem(w.edge, err.Error())
				}
				failing = true
				s.Log.Warn("EdgeSync round failed", "edge", w.edge, "err", err)
				rcpts.reset()
				timer.Reset(retry)
				retry = min(retry*2, time.Minute)
				continue
			}
			if failing && s.Restored != nil {
				s.Restored(w.edge)
			}
			failing, retry = false, time.Second
			if dueConfig {
				lastConfig, lastCfg = now, cfg
			}
			if dueRecipients && wholeRecipients {
				lastRecipients = now
			}
			wholeRecipients = false
			dueConfig, dueRecipients, forced = false, false, false
			gen = r.Generation
			stopWait()
		}
		if waitDone == nil && !now.Before(waitAgain) {
			wctx, cancel := context.WithCancel(ctx)
			waitCancel, waitDone = cancel, make(chan Response, 1)
			go s.wait(wctx, w.edge, gen, waitDone)
		}
		next := LeaseTTL / 3
		if waitDone == nil {
			next = min(next, max(time.Until(waitAgain), 10*time.Millisecond))
		}
		timer.Reset(next)
	}
}

// fingerprint is a digest of v's JSON.
func fingerprint(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// wait long-polls the edge for a change of its own objects.
func (s *Syncer) wait(ctx context.Context, edge, gen string, out chan Response) {
	defer close(out)
	c, _, err := s.connect(ctx, edge)
	if err != nil {
		return
	}
	defer c.Close()
	go func() { <-ctx.Done(); c.Close() }()
	var r Response
	if err := s.exchange(c, Request{Op: OpWait, Hub: s.Self, Generation: gen}, &r); err == nil && r.Error == "" {
		out <- r
	}
}

// conn is one authenticated connection to an edge.
type conn struct {
	*tls.Conn
	srv directory.Server // the edge as the directory holds it
}

// connect dials the edge, runs TLS and checks the edge's certificate by
// direct trust: it must be the one the directory holds for the edge.
func (s *Syncer) connect(ctx context.Context, edge string) (*conn, *Request, error) {
	srv, err := s.Dir.Server(ctx, edge)
	if err != nil {
		return nil, nil, err
	}
	if !srv.Subscribed() {
		return nil, nil, fmt.Errorf("%s is not a subscribed edge", edge)
	}
	cfg, _, err := s.Client()
	if err != nil {
		return nil, nil, fmt.Errorf("this hub has no internal transport certificate to present: %w", err)
	}
	dial := s.Dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := dial(dctx, srv.EdgeSyncAddress)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach the EdgeSync endpoint of %s at %s: %w", edge, srv.EdgeSyncAddress, err)
	}
	_ = raw.SetDeadline(s.Now().Add(30 * time.Second))
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("TLS with %s at %s: %w", edge, srv.EdgeSyncAddress, err)
	}
	cs := tc.ConnectionState()
	exp, err := cs.ExportKeyingMaterial(servercred.ExporterLabel, nil, servercred.ExporterLength)
	if err != nil || len(cs.PeerCertificates) == 0 {
		tc.Close()
		return nil, nil, fmt.Errorf("TLS with %s: no certificate or exporter", edge)
	}
	hello := Request{Op: OpHello, Hub: s.Self, EdgeThumbprint: srv.InternalTransportCertificateThumbprint}
	if acct, pw, ok := strings.Cut(srv.EdgeSyncBootstrap, " "); ok {
		hello.Bootstrap = &Bootstrap{Account: acct, Password: pw}
	}
	if s.Credential != nil {
		hello.Proof = s.Credential.Prove(servercred.Client, s.Self, exp)
	}
	c := &conn{Conn: tc, srv: srv}
	var r Response
	if err := s.exchange(c, hello, &r); err != nil {
		tc.Close()
		return nil, nil, fmt.Errorf("EdgeSync with %s at %s: %w", edge, srv.EdgeSyncAddress, err)
	}
	// Direct trust: the edge's certificate must be the organisation's copy
	// — or, after the edge renewed it (X4), the edge proves itself with
	// its server credential, and this session publishes its new one.
	peer := cs.PeerCertificates[0].Raw
	if !bytes.Equal(peer, srv.InternalTransportCertificate) &&
		(r.Error != "" || len(srv.ServerCredential) == 0 || servercred.Verify(srv.ServerCredential, servercred.Server, srv.Name, exp, r.Proof) != nil) {
		tc.Close()
		also := ""
		if r.Error != "" {
			also = "; the edge answered: " + r.Error
		}
		return nil, nil, fmt.Errorf("direct trust: %s presented certificate %s, not %s, which the organisation holds for it, and no proof of its server credential (an edge rebuilt from scratch?)%s", edge, certinfo.Thumbprint(peer), srv.InternalTransportCertificateThumbprint, also)
	}
	if r.Error != "" {
		tc.Close()
		return nil, nil, fmt.Errorf("%s refused this hub: %s", edge, r.Error)
	}
	_ = raw.SetDeadline(time.Time{})
	if err := s.publish(ctx, edge, r); err != nil {
		tc.Close()
		return nil, nil, fmt.Errorf("publish %s's own objects in the organisation: %w", edge, err)
	}
	return c, &Request{Hub: s.Self, EdgeThumbprint: srv.InternalTransportCertificateThumbprint}, nil
}

func (s *Syncer) exchange(c *conn, req Request, resp *Response) error {
	if err := writeMsg(c, req); err != nil {
		return err
	}
	if req.Op == OpWait {
		_ = c.SetReadDeadline(time.Time{})
	} else {
		_ = c.SetReadDeadline(s.Now().Add(5 * time.Minute))
	}
	return readMsg(c, resp)
}

// Round runs a round of each kind with edge now, and records it; it
// returns the edge's last answer.
func (s *Syncer) Round(ctx context.Context, edge string, kinds ...string) (Response, error) {
	r, _, err := s.round(ctx, edge, &recipientsState{}, kinds...)
	return r, err
}

// recipientsState is what a worker knows of the edge's recipients: the
// set its last recipients round left there, and that round's name, from
// which a delta can start.
type recipientsState struct {
	last  map[string]string // address → home server
	round string
	delta bool // the next round may be a delta
}

func (r *recipientsState) reset() { r.last, r.round, r.delta = nil, "", false }

// newRoundName names a recipients round.
func newRoundName() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// round is Round, which also returns the fingerprint of the configuration
// it pushed.
func (s *Syncer) round(ctx context.Context, edge string, rs *recipientsState, kinds ...string) (last Response, cfgPrint string, err error) {
	c, base, err := s.connect(ctx, edge)
	if err != nil {
		s.recordFailure(ctx, edge, kinds, err)
		return Response{}, "", err
	}
	defer c.Close()
	for _, kind := range kinds {
		start := s.Now()
		req := *base
		req.Op, req.Kind = OpPush, kind
		n := 0
		switch kind {
		case KindConfiguration:
			cfg, err := s.configuration(ctx, edge)
			if err != nil {
				return last, "", err
			}
			req.Config, cfgPrint = cfg, fingerprint(cfg)
			n = len(cfg.Servers) + len(cfg.ReceiveConnectors) + len(cfg.SendConnectors) + len(cfg.AcceptedDomains) + len(cfg.TrustedRoots)
		case KindRecipients:
			boxes, err := s.Dir.Mailboxes(ctx)
			if err != nil {
				return last, "", err
			}
			now := make(map[string]string, len(boxes))
			for _, m := range boxes {
				now[key(m.Address)] = m.Server
			}
			n = len(boxes)
			req.Round = newRoundName()
			if rs.delta && rs.last != nil {
				req.Base = rs.round
				for a, srv := range now {
					if old, ok := rs.last[a]; !ok || old != srv {
						req.Recipients = append(req.Recipients, Recipient{Address: a, Server: srv})
					}
				}
				for a := range rs.last {
					if _, ok := now[a]; !ok {
						req.Removed = append(req.Removed, a)
					}
				}
				if len(req.Recipients) == 0 && len(req.Removed) == 0 {
					continue // the edge has them all
				}
			} else {
				req.Recipients = make([]Recipient, len(boxes))
				for i, m := range boxes {
					req.Recipients[i] = Recipient{Address: m.Address, Server: m.Server}
				}
			}
			rs.delta = false
			defer func() {
				if err == nil {
					rs.last, rs.round = now, req.Round
				} else {
					rs.reset()
				}
			}()
		}
		var resp Response
		err := s.exchange(c, req, &resp)
		if err == nil && resp.NeedWhole {
			// The edge is not where this hub thought (another hub ran a
			// round meanwhile): every recipient, then.
			req.Base, req.Removed = "", nil
			req.Recipients = req.Recipients[:0]
			for _, m := range rsNow(ctx, s) {
				req.Recipients = append(req.Recipients, m)
			}
			resp = Response{}
			err = s.exchange(c, req, &resp)
		}
		if err == nil && resp.Error != "" {
			err = fmt.Errorf("the edge refused the %s round: %s", kind, resp.Error)
		}
		round := Round{Edge: edge, Kind: kind, Hub: s.Self, Time: start, Objects: n, Changed: resp.Changed, Duration: s.Now().Sub(start).Round(time.Millisecond).String()}
		if err != nil {
			round.Error = err.Error()
			_ = Record(ctx, s.DB, round)
			return last, "", err
		}
		_ = Record(ctx, s.DB, round)
		last = resp
		if err := s.publish(ctx, edge, resp); err != nil {
			return last, "", fmt.Errorf("publish %s's own objects in the organisation: %w", edge, err)
		}
	}
	return last, cfgPrint, nil
}

func (s *Syncer) recordFailure(ctx context.Context, edge string, kinds []string, err error) {
	for _, k := range kinds {
		_ = Record(ctx, s.DB, Round{Edge: edge, Kind: k, Hub: s.Self, Time: s.Now(), Error: err.Error()})
	}
}

// configuration is what the edge needs of the organisation: the other
// servers with their internal certificates and receive connectors, the
// send connectors, accepted domains and roots.
func (s *Syncer) configuration(ctx context.Context, edge string) (*Config, error) {
	servers, err := s.Dir.Servers(ctx)
	if err != nil {
		return nil, err
	}
	cfg := &Config{}
	for _, srv := range servers {
		if strings.EqualFold(srv.Name, edge) {
			continue
		}
		srv.EdgeSyncBootstrap = ""
		cfg.Servers = append(cfg.Servers, srv)
		conns, err := s.Dir.ReceiveConnectors(ctx, srv.Name)
		if err != nil {
			return nil, err
		}
		cfg.ReceiveConnectors = append(cfg.ReceiveConnectors, conns...)
	}
	if cfg.SendConnectors, err = s.Dir.SendConnectors(ctx); err != nil {
		return nil, err
	}
	if cfg.AcceptedDomains, err = s.Dir.AcceptedDomains(ctx); err != nil {
		return nil, err
	}
	if cfg.TrustedRoots, err = s.Dir.TrustedRoots(ctx); err != nil {
		return nil, err
	}
	return cfg, nil
}

// publish writes the edge's own objects, as it reported them, in the
// organisation's directory when they differ from what it holds: its
// server object (names, internal certificate: X4) keeping the
// subscription's fields, and its receive connectors. The bootstrap
// account is cleared once the edge has been synchronised.
func (s *Syncer) publish(ctx context.Context, edge string, r Response) error {
	if !strings.EqualFold(r.Server.Name, edge) {
		return fmt.Errorf("the edge answered as %q", r.Server.Name)
	}
	cur, err := s.Dir.Server(ctx, edge)
	if err != nil {
		return err
	}
	next := r.Server
	next.Name, next.Role, next.EdgeSyncAddress, next.EdgeSyncBootstrap = cur.Name, directory.RoleEdge, cur.EdgeSyncAddress, ""
	if len(cur.ServerCredential) > 0 {
		next.ServerCredential = cur.ServerCredential // set once, by the first round
	}
	if len(next.InternalTransportCertificate) > 0 {
		c, err := x509.ParseCertificate(next.InternalTransportCertificate)
		if err != nil {
			return fmt.Errorf("the edge's internal transport certificate is not a certificate: %w", err)
		}
		next.InternalTransportCertificateThumbprint = certinfo.Thumbprint(c.Raw)
	} else {
		next.InternalTransportCertificate, next.InternalTransportCertificateThumbprint = cur.InternalTransportCertificate, cur.InternalTransportCertificateThumbprint
	}
	if !same(cur, next) {
		if err := s.Org.PutServer(ctx, next); err != nil {
			return err
		}
		if old := cur.InternalTransportCertificateThumbprint; old != next.InternalTransportCertificateThumbprint && s.Published != nil {
			s.Published(edge, old, next.InternalTransportCertificateThumbprint)
		}
		if cur.InternalTransportCertificateThumbprint != next.InternalTransportCertificateThumbprint {
			s.Log.Info("EdgeSync: the edge's new internal transport certificate published", "edge", edge, "old", cur.InternalTransportCertificateThumbprint, "new", next.InternalTransportCertificateThumbprint)
		}
	}
	have, err := s.Dir.ReceiveConnectors(ctx, edge)
	if err != nil && !errors.Is(err, directory.ErrNotFound) {
		return err
	}
	want := make([]directory.ReceiveConnector, len(r.ReceiveConnectors))
	for i, c := range r.ReceiveConnectors {
		c.Server = cur.Name
		want[i] = c
	}
	_, _, err = replace(ctx, func(context.Context) ([]directory.ReceiveConnector, error) { return have, nil },
		func(c directory.ReceiveConnector) string { return strings.ToLower(c.Name) }, nil, want,
		func(ctx context.Context, c directory.ReceiveConnector) error {
			return ignoreNotFound(s.Org.DeleteReceiveConnector(ctx, c.Server, c.Name))
		}, s.Org.PutReceiveConnector)
	return err
}

// rsNow reads every recipient again (a whole round after a delta the
// edge refused).
func rsNow(ctx context.Context, s *Syncer) []Recipient {
	boxes, _ := s.Dir.Mailboxes(ctx)
	out := make([]Recipient, len(boxes))
	for i, m := range boxes {
		out[i] = Recipient{Address: m.Address, Server: m.Server}
	}
	return out
}
