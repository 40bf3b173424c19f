// Package server runs certrelay: `certrelay serve`. On a data directory
// that setup has prepared (the command runs setup first, SPEC M9), it
// opens the queue, the TLS serving layer and the receive connectors, and
// watches the data directory so that a change made by the CLI in another
// process — a certificate enabled, imported or removed, a connector added
// or changed — takes effect at once, without a restart (S7), rebuilding
// only what changed (see changes.go). It checks certificate expiry at
// start and daily (E5) and refreshes revocation data in the background
// (T4).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"certrelay/internal/access"
	"certrelay/internal/acme"
	"certrelay/internal/certinfo"
	"certrelay/internal/certview"
	"certrelay/internal/db"
	"certrelay/internal/directory"
	"certrelay/internal/events"
	"certrelay/internal/metrics"
	"certrelay/internal/policycache"
	"certrelay/internal/queue"
	"certrelay/internal/selection"
	"certrelay/internal/servercred"
	"certrelay/internal/serving"
	"certrelay/internal/settings"
	"certrelay/internal/store"
	"certrelay/internal/tlsrpt"
	livetrace "certrelay/internal/trace"
	"certrelay/internal/tracking"
	"certrelay/internal/transport"
)

// Options configure Run.
type Options struct {
	DataDir string       // a data directory setup has prepared
	Logger  *slog.Logger // default: text to os.Stderr
	Now     func() time.Time
	// SystemRoots lists the system bundle files for ThirdParty roots; nil
	// takes trust.DefaultSystemBundles (or CERTRELAY_SYSTEM_ROOTS).
	SystemRoots []string
	// ExpiryWindow is how long before NotAfter "expires soon" events start
	// (E5); default 30 days.
	ExpiryWindow time.Duration
	// Ready, when set, is called once the server is up.
	Ready func()
	// CheckInterval is how often the change log is read even when the
	// watch reports nothing; default DefaultCheckInterval.
	CheckInterval time.Duration
	// ProbeInterval is how often the server probes its own listeners
	// (SPEC L2); 0: DefaultProbeInterval; negative: never.
	ProbeInterval time.Duration
	// Console, when set, is the HTTPS console and API (internal/web,
	// which the serve command builds over the admin layer): the server
	// serves it on the console's bindings with the certificate selected
	// for its host name and IIS (see https.go). nil: no console.
	Console http.Handler
}

// DefaultExpiryWindow is E5's default warning window.
const DefaultExpiryWindow = 30 * 24 * time.Hour

// Run runs the server until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.ExpiryWindow == 0 {
		o.ExpiryWindow = DefaultExpiryWindow
	}
	defer keepHeapHeadroom()()
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	s := &srv{log: logger, window: o.ExpiryWindow, feed: newOrgFeed()}
	// The server opens the parts it runs on itself (as the admin layer
	// does for commands), so it shares no state with the process that
	// started it but the data directory. The organisation's directory, if
	// it joined one, is followed by a replica (org.go).
	src, err := certview.Open(ctx, o.DataDir, certview.OpenOptions{Now: o.Now, SystemRoots: o.SystemRoots, Org: s.openReplica(ctx)})
	if err != nil {
		return err
	}
	defer src.Close()
	me, err := src.LocalServer(ctx)
	if err != nil {
		return err
	}
	evlog, err := events.Open(ctx, src.DB, src.Now, logger, me.Name)
	if err != nil {
		return err
	}
	q, err := queue.Open(filepath.Join(o.DataDir, "queue"), queue.Options{Now: src.Now, Logger: logger})
	if err != nil {
		return err
	}
	defer q.Close()

	s.src, s.events, s.q, s.dir, s.cands, s.self = src, evlog, q, &dirState{src: src}, src.NewCandidateSet(), me.Name
	s.windowSet = o.ExpiryWindow != DefaultExpiryWindow
	s.hub = livetrace.NewHub(me.Name)
	cred := s.loadCredential(o.DataDir)
	s.cred = cred
	s.layer = serving.New(serving.Options{LoadKey: src.Store.PrivateKeyByID, KeyFault: s.keyFault, Events: evlog, Log: logger, Now: src.Now})
	s.met = metrics.New(metricsSource{s}, src.Now)
	if s.fileLimit, err = raiseOpenFileLimit(); err != nil {
		logger.Warn("cannot read the open-file limit; SMTP sessions are capped by the connectors only", "err", err)
	} else {
		logger.Info("open files", "limit", s.fileLimit, "smtp_sessions", sessionsFor(s.fileLimit))
	}
	s.peers = &peerVerifier{src: src}
	s.rcv = &transport.Receiver{Spool: transport.QueueSpool{Q: q}, Log: logger, Now: src.Now, Events: evlog, NewID: q.NewID, Peers: s.peers,
		FileLimit: s.fileLimit, Serving: s.layer, Credential: cred, Trace: s.hub, Handshake: func(conn string, err error) { s.met.Handshake("smtp", conn, err) }}
	if s.fileLimit > 0 {
		s.rcv.MaxConnections = sessionsFor(s.fileLimit)
	}
	s.rcv.Start()
	reports, err := tlsrpt.Open(ctx, src.DB)
	if err != nil {
		return err
	}
	policies, err := policycache.Open(ctx, src.DB)
	if err != nil {
		return err
	}
	local := &transport.LocalDeliverer{Root: o.DataDir, Lookup: s.mailboxPath}
	q.Handle(queue.Local, local)
	trace, err := tracking.Open(o.DataDir)
	if err != nil {
		return err
	}
	resolver, err := s.resolver(ctx)
	if err != nil {
		return err
	}
	dnssec, err := s.dnssecResolver(ctx)
	if err != nil {
		return err
	}
	s.reporter = &transport.Reporter{Store: reports, Queue: q, Resolver: resolver, Roots: s.peers.Roots, Org: me.Fqdn, Contact: "postmaster@" + me.Fqdn, Now: src.Now}
	local.Delivered = func(ctx context.Context, body []byte) {
		if ok, err := s.reporter.Received(ctx, body); ok && err != nil {
			logger.Warn("a TLS report arrived but could not be stored", "err", err)
		} else if ok {
			logger.Info("TLS report received")
		}
	}
	q.Handle(queue.AnyRemote, &transport.Sender{State: s.rcv.State, Serving: s.layer, Resolver: resolver, DNSSEC: dnssec, STS: &transport.STS{Resolver: resolver, Roots: s.peers.Roots, Now: src.Now, Persist: policies}, Log: logger,
		Results: func(ctx context.Context, r tlsrpt.Result) {
			if err := reports.Record(ctx, r); err != nil {
				logger.Warn("cannot record a TLS result for reporting", "err", err)
			}
		}, Events: evlog, Credential: cred, Peers: s.peers, Trace: s.hub, Track: func(r tracking.Record) {
			if err := trace.Append(r); err != nil {
				logger.Warn("cannot write the message trace", "err", err)
			}
		}})
	q.SetBouncer(&transport.Bouncer{Queue: q, State: s.rcv.State, Now: src.Now})

	// Everything the change log holds after seq is applied by the loop,
	// so a change committed while this start reads the store is not lost.
	if s.seq, err = db.LastChange(ctx, src.DB); err != nil {
		return err
	}
	if err := s.cands.Load(ctx); err != nil {
		return fmt.Errorf("read the certificate store: %w", err)
	}
	cands, _ := s.cands.Candidates()
	s.layer.Publish(cands, src.Now())
	st, err := s.dir.build(ctx, nil, src.Now())
	if err != nil {
		return err
	}
	if errs := s.rcv.Update(ctx, st); len(errs) > 0 && len(s.rcv.Listening()) == 0 {
		// The transport logged each failure and raised 16027.
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.rcv.Shutdown(shut)
		cancel()
		return noListenerError(errs)
	}
	s.checkOpenFiles(ctx, st)
	s.checkSendCertificates(ctx, st)
	s.traceDecisions(st)
	s.startAccess(ctx, o.DataDir)
	defer s.acc.Close()
	s.startEdgeSync(ctx)
	if s.edge.ls != nil {
		defer s.edge.ls.Close()
	}
	s.checkExpiry(ctx)
	if s.acme, err = acme.Open(ctx, src.DB, o.DataDir, src.Now); err != nil {
		return err
	}
	s.challenges = &acme.Responder{}
	s.reloadChallenges(ctx)
	if o.Console != nil {
		s.console = s.newHTTPFace("HTTPS console", o.Console, true)
	}
	s.metricsFace = s.newHTTPFace("metrics endpoint", s.met.Handler(), false)
	s.applyHTTP(ctx)
	s.rcv.CheckInternal(ctx)
	s.raiseDuplicates(ctx)
	if s.replica != nil {
		if up, _ := s.replica.Up(); up {
			s.reconcile(ctx, true)
		}
		for _, p := range s.replica.Problems() {
			_, _ = s.events.Raise(ctx, 16052, p.DN, fmt.Sprintf("the %s object %s", p.Kind, p.DN), p.Err.Error())
		}
	}
	w := s.startWatch(o.DataDir, o.CheckInterval)
	defer w.close()
	qdone := make(chan error, 1)
	qctx, stopQueue := context.WithCancel(context.Background())
	go func() { qdone <- q.Run(qctx) }()
	go s.refreshRevocation(ctx)
	// Live tracing (D2): the socket is this process's account's alone.
	if err := s.hub.Serve(ctx, livetrace.SocketPath(o.DataDir), -1, -1); err != nil {
		logger.Warn("live tracing is off", "err", err)
	}
	go s.probeLoop(ctx, o.ProbeInterval)
	go s.sendReports(ctx)
	logger.Info("certrelay running", "server", me.Name, "data", o.DataDir)
	if o.Ready != nil {
		o.Ready()
	}
	s.loop(ctx, w)

	logger.Info("certrelay stopping")
	shut, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.closeHTTP(shut)
	if err := s.rcv.Shutdown(shut); err != nil {
		logger.Warn("sessions did not end in time", "err", err)
	}
	stopQueue()
	if err := <-qdone; err != nil && !errors.Is(err, context.Canceled) {
		logger.Warn("queue stopped", "err", err)
	}
	return nil
}

type srv struct {
	fileLimit uint64 // the open-file limit in force; 0 when unknown
	src       *certview.Source
	events    *events.Log
	log       *slog.Logger
	window    time.Duration // E5's window: Options.ExpiryWindow when set, else the setting
	windowSet bool          // Options.ExpiryWindow was given (tests): the setting is not read
	lastCheck time.Time     // the last expiry check, on the server's clock
	hub       *livetrace.Hub
	q         *queue.Queue
	rcv       *transport.Receiver
	layer     *serving.Layer         // certificates, TLS configurations, listeners
	cands     *certview.CandidateSet // the store's facts, rebuilt a certificate at a time
	peers     *peerVerifier          // partners' certificates (domain security)
	reporter  *transport.Reporter    // TLS reports (RFC 8460)
	dir       *dirState              // the directory's snapshot
	acc       *access.Service        // POP3, IMAP4 and UM
	me        atomic.Pointer[directory.Server]
	seq       int64 // the change log read up to here

	lastRejudge time.Time // when every certificate was last judged (RejudgeSpacing)
	rejudgeDue  bool      // a judgement waits for RejudgeSpacing to pass

	met         *metrics.Metrics
	console     *httpFace // nil without Options.Console
	metricsFace *httpFace
	httpMu      sync.Mutex
	consoleHost string // the name the console selects its certificate for
	consoleOn   bool   // the console has bindings
	// consoleBindings are the console's configured bindings (probed even
	// when another program holds one).
	consoleBindings []string
	// ACME challenges an order of this data directory asked the server
	// to answer on its HTTP and HTTPS listeners (acme.Responder).
	acme       *acme.Accounts
	challenges *acme.Responder
	// The organisation's directory (org.go).
	self           string // this server's name (it never changes)
	feed           *orgFeed
	replica        *directory.Replica // nil: the embedded directory
	lostAt         time.Time          // when the directory was lost (zero: it is up)
	orgMu          sync.Mutex
	reconcileTimer *time.Timer
	reconcileMu    sync.Mutex
	// EdgeSync (edge.go).
	edge edgeSync
	cred *servercred.Key
}

// loop applies the changes the watch reports (see changes.go), judges
// every certificate again when one's validity begins or ends, and checks
// expiry daily.
func (s *srv) loop(ctx context.Context, w *watcher) {
	check := time.NewTicker(w.interval)
	defer check.Stop()
	rebuild := time.NewTimer(nextRebuild(s.layer.Index()))
	defer rebuild.Stop()
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	defer recheck.Stop()
	later := time.NewTimer(time.Hour) // a judgement of every certificate put off (RejudgeSpacing)
	later.Stop()
	defer later.Stop()
	var pause time.Duration // of the rechecks after a write; 0: none due
	for {
		var p pending
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.events:
			if !ok { // the watch failed: read the change log often
				w.events = nil
				check.Reset(WatchInterval)
				continue
			}
			wrote := w.note(&p, ev)
		drain:
			for { // take what else is there now: one rebuild for a burst
				select {
				case ev, ok := <-w.events:
					if !ok {
						break drain
					}
					wrote = w.note(&p, ev) || wrote
				default:
					break drain
				}
			}
			if wrote {
				pause = time.Millisecond
				recheck.Reset(pause)
			}
		case <-recheck.C:
			p.check = true
			if pause *= 2; pause <= RecheckUntil {
				recheck.Reset(pause)
			}
		case <-check.C:
			p.check = true
		case <-rebuild.C:
			p.rejudge = true
		case <-later.C:
		case <-s.feed.notify:
			p.dirKeys = s.orgChanges(ctx)
		}
		s.apply(ctx, p)
		if s.src.Now().Sub(s.lastCheck) >= 24*time.Hour {
			s.checkExpiry(ctx) // daily, on the server's clock (injected in tests)
		}
		rebuild.Reset(nextRebuild(s.layer.Index()))
		if s.rejudgeDue {
			later.Reset(max(RejudgeSpacing-time.Since(s.lastRejudge), time.Millisecond))
		}
	}
}

// traceDecisions logs each connector's selection at debug level, and
// publishes it to the live tracers, under Transport\Certificate, with
// every certificate's judgement under Common\Certificate (D2).
func (s *srv) traceDecisions(st *transport.State) {
	debug := s.log.Enabled(context.Background(), slog.LevelDebug)
	if s.hub.Wants(livetrace.CommonCertificate) {
		cands, _ := s.cands.Candidates()
		for _, c := range cands {
			problem := c.KeyError
			if problem == "" {
				problem = c.KeyWarning
			}
			s.hub.Publish(livetrace.Record{Component: livetrace.CommonCertificate, Tag: "validation",
				Summary: fmt.Sprintf("certificate %s (%s): %s, services %s, key %s", c.Thumbprint, c.Subject, c.Status, c.Services, keyState(c)),
				Fields: map[string]any{"Thumbprint": c.Thumbprint, "Subject": c.Subject, "Status": string(c.Status), "Services": c.Services.String(),
					"NotAfter": c.NotAfter, "HasKey": c.HasKey, "KeyReadable": c.KeyReadable, "KeyProblem": problem}})
		}
	}
	wants := s.hub.Wants(livetrace.TransportCertificate)
	if !debug && !wants {
		return
	}
	for _, c := range st.Connectors {
		d := s.layer.Select(selection.ForConnector(c.Fqdn, st.Server.Fqdn, c.TlsCertificateName, c.TlsWildcardOneLabel, store.SMTP))
		winner := "none"
		if d.Winner != nil {
			winner = d.Winner.Thumbprint
		}
		if debug {
			s.log.Debug("certificate selected", "trace", `Transport\Certificate`, "connector", c.Name, "fqdn", d.Request.FQDN, "winner", winner, "why", d.Why)
		}
		if wants {
			s.hub.Publish(livetrace.Record{Component: livetrace.TransportCertificate, Tag: "selection",
				Summary: fmt.Sprintf("selection for %s on connector %s (after a change): %s — %s", d.Request.FQDN, c.Name, winner, d.Why),
				Fields:  map[string]any{"FQDN": d.Request.FQDN, "Connector": c.Name, "Winner": winner, "Why": d.Why}})
		}
	}
}

// keyState says in a word what is known of a candidate's key.
func keyState(c selection.Candidate) string {
	switch {
	case !c.HasKey:
		return "missing"
	case !c.KeyReadable:
		return "unreadable by the service account"
	case c.KeyError != "":
		return "unusable"
	}
	return "ok"
}

// mailboxPath maps a local recipient to its Maildir, from the current
// snapshot.
func (s *srv) mailboxPath(address string) (string, bool) {
	m, ok := s.rcv.State().Mailboxes[strings.ToLower(address)]
	return m.Maildir, ok
}

// checkExpiry raises the expiry events (C12, E5): 12015/12017 for the
// internal transport certificate, which is still used when expired, and
// 12018 for each STARTTLS certificate a connector uses that expires within
// the window (12016, expired, comes with each rebuild).
func (s *srv) checkExpiry(ctx context.Context) {
	now := s.src.Now()
	s.lastCheck = now
	if !s.windowSet {
		days, err := settings.ExpiryWarningDays(ctx, s.src.Settings)
		if err != nil {
			s.log.Warn("the expiry warning window is unreadable; using the default", "err", err)
		}
		s.window = time.Duration(days) * 24 * time.Hour
	}
	if me, err := s.src.LocalServer(ctx); err == nil {
		if e, err := s.src.Store.Get(ctx, me.InternalTransportCertificateThumbprint); err == nil && e.Cert != nil {
			t := certinfo.Thumbprint(e.Cert.Raw)
			switch left := e.Cert.NotAfter.Sub(now); {
			case left <= 0:
				_, _ = s.events.Raise(ctx, 12015, t, t, e.Cert.NotAfter.UTC().Format(time.RFC3339))
			case left <= s.window:
				_, _ = s.events.Raise(ctx, 12017, t, t, fmt.Sprint(int(left.Hours())))
			}
		}
	}
	st := s.rcv.State()
	if st == nil {
		return
	}
	for _, d := range s.connectorDecisions(st) {
		if w := d.Winner; w != nil {
			if left := w.NotAfter.Sub(now); left > 0 && left <= s.window {
				_, _ = s.events.Raise(ctx, 12018, d.Request.FQDN, w.Subject, w.Thumbprint, fmt.Sprint(int(left.Hours())))
			}
		}
	}
	s.checkSendCertificates(ctx, st)
	if s.acc != nil {
		s.acc.CheckExpiryWithin(ctx, s.window)
	}
}

// startAccess starts POP3, IMAP4 and UM as their settings say (issue 14).
func (s *srv) startAccess(ctx context.Context, dataDir string) {
	me := s.dir.me
	s.me.Store(&me)
	s.acc = access.New(access.Options{DataDir: dataDir, DB: s.src.DB, Settings: s.src.Settings, Store: s.src.Store, Layer: s.layer,
		Events: s.events, Log: s.log, Now: s.src.Now,
		Mailbox: func(address string) (directory.Mailbox, bool) {
			m, ok := s.rcv.State().Mailboxes[address]
			return m, ok
		},
		Server: func() directory.Server { return *s.me.Load() },
	})
	if err := s.acc.Reload(ctx); err != nil {
		s.log.Error("cannot read the POP3, IMAP4 and UM settings; they do not run", "err", err)
	}
}

// connectorDecisions returns the selection of every receive and send
// connector (TLS-enabled receive connectors only).
func (s *srv) connectorDecisions(st *transport.State) []*selection.Decision {
	var out []*selection.Decision
	for _, c := range st.Connectors {
		if c.Enabled && hasTLS(c.AuthMechanism) {
			out = append(out, s.layer.Select(selection.ForConnector(c.Fqdn, st.Server.Fqdn, c.TlsCertificateName, c.TlsWildcardOneLabel, store.SMTP)))
		}
	}
	for _, c := range st.Send {
		if c.Enabled {
			out = append(out, s.layer.Select(selection.ForConnector(c.Fqdn, st.Server.Fqdn, c.TlsCertificateName, false, store.SMTP)))
		}
	}
	return out
}

func hasTLS(mechs []string) bool {
	for _, m := range mechs {
		if strings.EqualFold(m, "Tls") {
			return true
		}
	}
	return false
}

// checkSendCertificates raises the last-resort events of the send
// connectors' client certificates, which are still offered: 12016 for an
// expired one, 16030 for one whose revocation could not be established.
// Receive connectors are checked by the transport, on every update and
// when a session uses the certificate.
func (s *srv) checkSendCertificates(ctx context.Context, st *transport.State) {
	now := s.src.Now()
	for _, c := range st.Send {
		if !c.Enabled {
			continue
		}
		d := s.layer.Select(selection.ForConnector(c.Fqdn, st.Server.Fqdn, c.TlsCertificateName, false, store.SMTP))
		w, fqdn := d.Winner, d.Request.FQDN
		switch d.LastResort(now) {
		case selection.WonExpired:
			_, _ = s.events.Raise(ctx, 12016, fqdn, fqdn, w.Thumbprint, w.NotAfter.UTC().Format(time.RFC3339))
		case selection.WonRevocationUnknown:
			_, _ = s.events.Raise(ctx, 16030, fqdn+" "+w.Thumbprint, fqdn, w.Thumbprint, string(w.Status), c.Name)
		}
	}
}

// resolver returns the DNS resolver MX lookups use: the configured server
// (server set --dns-resolver), or the system's.
func (s *srv) resolver(ctx context.Context) (*net.Resolver, error) {
	addr, err := s.src.Settings.Get(ctx, settings.DNSResolver)
	if err != nil {
		return nil, err
	}
	if addr == "" { // the validating resolver answers address lookups too
		if addr, err = s.src.Settings.Get(ctx, settings.DNSSECResolver); err != nil || addr == "" {
			return nil, err
		}
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}, nil
}

// dnssecResolver returns the validating resolver DANE trusts (server set
// --dnssec-resolver), or nil: no DANE.
func (s *srv) dnssecResolver(ctx context.Context) (*transport.DNSSECResolver, error) {
	addr, err := s.src.Settings.Get(ctx, settings.DNSSECResolver)
	if err != nil || addr == "" {
		return nil, err
	}
	return &transport.DNSSECResolver{Addr: addr}, nil
}

// sendReports sends, every hour, the TLS reports of finished days not
// sent yet (RFC 8460 says daily; a report that could not be delivered is
// tried again the next hour).
func (s *srv) sendReports(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent, err := s.reporter.SendUnsent(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("cannot send the TLS reports", "err", err)
		}
		for _, r := range sent {
			s.log.Info("TLS report", "day", r.Day, "domain", r.Domain, "to", strings.Join(r.Destinations, " "), "problems", strings.Join(r.Problems, "; "))
		}
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
		if n, err := s.src.RefreshRevocation(ctx, ""); err != nil && ctx.Err() == nil {
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
