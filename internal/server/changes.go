package server

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"time"

	"certrelay/internal/access"
	"certrelay/internal/acme"
	"certrelay/internal/db"
	"certrelay/internal/fswatch"
	"certrelay/internal/settings"
	"certrelay/internal/store"
)

// How a running server learns of changes (SPEC S7, issue 10).
//
// Every process that commits to the data directory's database writes its
// write-ahead log, certrelay.db-wal, and the kernel closes that file when
// the process ends — also when it is killed right after its commit. The
// server watches the data directory with inotify (internal/fswatch):
//
//   - the log closed by a process that wrote it (a CLI command ending):
//     its commit is visible, the server reads the change log at once;
//   - the log written by a process that stays (another long-running
//     writer): the server reads the change log at once and again 1, 2, 4,
//     … ms after the last write, up to RecheckUntil, because a commit
//     becomes visible to readers only once its log is synced, after the
//     write the server saw;
//   - and in any case every DefaultCheckInterval, in case a change came
//     in a way the watch cannot see.
//
// What it reads is the change log (db.ChangesSince): which certificates
// changed, whether trust did, which kinds of directory objects, which
// settings — logged by each writer in the transaction of its change — and
// it rebuilds only that: one certificate's facts, not the whole store. The
// key directory is watched too: a key file written, removed, or given
// another owner or mode has the certificates that use it judged again.
// Without inotify the change log is read every WatchInterval.

// Intervals of the watch.
const (
	// WatchInterval is how often the change log is read when inotify
	// cannot be used (S7 allows 100 ms from commit to the next handshake).
	WatchInterval = 50 * time.Millisecond
	// DefaultCheckInterval is how often it is read even when the watch is
	// quiet (Options.CheckInterval).
	DefaultCheckInterval = time.Second
	// RecheckUntil is how long after a process's last write to the log
	// the server keeps re-reading the change log (with doubling pauses
	// from 1 ms) for a commit that was not visible yet.
	RecheckUntil = time.Second
	// RejudgeSpacing is the least time between two judgements of every
	// certificate: a trust change is judged at once, but a stream of them
	// (a revocation refresh stores one result per certificate) is judged
	// once per spacing, not once per result.
	RejudgeSpacing = time.Second
)

// pending is what the server learned since it last applied changes.
type pending struct {
	check   bool            // read the change log
	rejudge bool            // judge every certificate again (time passed)
	keys    map[string]bool // key IDs whose files changed
	allKeys bool            // anything may have changed (the watch overflowed)
	dirKeys []string        // objects the organisation's directory changed ("kind/key")
}

// watcher is the server's view of the data directory: inotify events, or
// nothing (then the loop polls).
type watcher struct {
	w        *fswatch.Watcher
	events   <-chan fswatch.Event
	dataDir  string
	keysDir  string
	interval time.Duration // how often to read the change log anyway
}

func (s *srv) startWatch(dataDir string, interval time.Duration) *watcher {
	if interval <= 0 {
		interval = DefaultCheckInterval
	}
	abs, _ := filepath.Abs(dataDir)
	w := &watcher{dataDir: abs, keysDir: s.src.Store.KeysDir(), interval: interval}
	fw, err := fswatch.New(w.dataDir, w.keysDir)
	if err != nil {
		s.log.Warn("cannot watch the data directory; reading its change log every "+WatchInterval.String(), "err", err)
		w.interval = WatchInterval
		return w
	}
	w.w, w.events = fw, fw.Events
	return w
}

func (w *watcher) close() {
	if w.w != nil {
		w.w.Close()
	}
}

// note records what ev says changed; it reports whether ev was a write
// to the database's log by a process still running.
func (w *watcher) note(p *pending, ev fswatch.Event) (wrote bool) {
	switch {
	case ev.Op&fswatch.Overflow != 0:
		p.check, p.allKeys = true, true
	case ev.Dir == w.keysDir:
		if id, ok := strings.CutSuffix(ev.Name, ".key"); ok && !strings.HasPrefix(id, ".") {
			if p.keys == nil {
				p.keys = map[string]bool{}
			}
			p.keys[id] = true
		}
	case ev.Dir == w.dataDir && (ev.Name == db.FileName+"-wal" || ev.Name == db.FileName):
		p.check = true
		return ev.Op&fswatch.Closed == 0
	}
	return false
}

// apply reads what changed and rebuilds it: the certificates' facts and
// the published snapshot, the directory's snapshot and the listeners.
func (s *srv) apply(ctx context.Context, p pending) {
	start := time.Now()
	certs, full, web, accessChanged := false, false, false, false
	var dirKinds map[string]bool
	var edgeKeys []string // EdgeSync's settings that changed
	if p.check {
		changes, next, complete, err := db.ChangesSince(ctx, s.src.DB, s.seq)
		if err != nil {
			s.log.Error("cannot read the change log; keeping the current configuration", "err", err)
			return
		}
		if !complete {
			full = true
		} else if len(changes) > 0 {
			var thumbs, dirKeys []string
			trust, challenges := false, false
			for _, c := range changes {
				switch c.Scope {
				case db.ScopeCert:
					thumbs = append(thumbs, c.Key)
				case db.ScopeTrust:
					trust = true
				case acme.ScopeChallenge:
					challenges = true
				case db.ScopeDirectory:
					dirKeys = append(dirKeys, c.Key)
				case db.ScopeSettings:
					if strings.HasPrefix(c.Key, "edgesync.") {
						edgeKeys = append(edgeKeys, c.Key)
						if c.Key == settings.EdgePresented {
							dirKeys = append(dirKeys, kindServer+"/") // the internal certificate in use (X4)
						}
					}
					switch c.Key {
					case settings.ConsoleBindings, settings.ConsoleHostName, settings.MetricsBindings:
						web = true
					}
					for _, prefix := range access.SettingsKeyPrefixes {
						accessChanged = accessChanged || strings.HasPrefix(c.Key, prefix)
					}
					if c.Key == settings.ExpiryWarning {
						s.lastCheck = time.Time{} // the new window is checked at once
					}
					if c.Key == settings.TLSSendDomainSecureList || c.Key == settings.TLSReceiveDomainSecureList {
						dirKeys = append(dirKeys, kindSecure+"/"+c.Key)
					}
					if c.Key == settings.ServiceAccount {
						if err := s.reloadAccount(ctx); err != nil {
							s.log.Error("cannot read the service account", "err", err)
						}
						thumbs = append(thumbs, "") // every key's facts, for the new account
					}
				}
			}
			if len(thumbs) > 0 {
				if err := s.cands.Update(ctx, thumbs); err != nil {
					s.log.Error("cannot read the changed certificates; keeping the current ones", "err", err)
					return
				}
				certs = true
			}
			if trust {
				p.rejudge = true
			}
			if challenges {
				s.reloadChallenges(ctx)
			}
			if len(dirKeys) > 0 {
				dirKinds = kindsOf(dirKeys)
			}
		}
		if full {
			if err := s.cands.Load(ctx); err != nil {
				s.log.Error("cannot read the certificate store; keeping the current certificates", "err", err)
				return
			}
			certs, dirKinds, web, accessChanged = true, kindsOf([]string{"?"}), true, true
		}
		s.seq = next
	}
	if len(p.dirKeys) > 0 {
		if dirKinds == nil {
			dirKinds = map[string]bool{}
		}
		for k := range kindsOf(p.dirKeys) {
			dirKinds[k] = true
		}
	}
	if dirKinds != nil || len(edgeKeys) > 0 {
		// First: EdgeSync reads the directory itself, and need not wait
		// for this server's own rebuild (100,000 mailboxes take a while).
		s.edgeChanges(ctx, maps.Clone(dirKinds), edgeKeys)
	}
	if dirKinds[kindRoot] { // a root the organisation distributes (T2)
		p.rejudge = true
	}
	if s.src.Joined != nil && (dirKinds[kindServer] || dirKinds[kindReceive]) && len(p.dirKeys) == 0 {
		s.reconcile(ctx, false) // this server's own objects changed here: the directory gets them
	}
	if p.rejudge {
		s.peers.invalidate() // partners are judged with the new roots
	}
	if p.rejudge || s.rejudgeDue {
		if wait := RejudgeSpacing - time.Since(s.lastRejudge); wait > 0 {
			s.rejudgeDue = true // the loop comes back for it
		} else if err := s.cands.Rejudge(ctx); err != nil {
			s.log.Error("cannot judge the certificates again", "err", err)
		} else {
			certs, s.rejudgeDue, s.lastRejudge = true, false, time.Now()
		}
	}
	if len(p.keys) > 0 || p.allKeys {
		ids := make([]string, 0, len(p.keys))
		for id := range p.keys {
			ids = append(ids, id)
		}
		if p.allKeys {
			if err := s.cands.Load(ctx); err == nil {
				certs = true
			}
		} else if s.cands.KeysChanged(ids) > 0 {
			certs = true
		}
		s.layer.ForgetKeys(ids)
	}
	if certs {
		cands, _ := s.cands.Candidates()
		s.layer.Publish(cands, s.src.Now())
		s.met.Rebuilt(time.Since(start))
	}
	if dirKinds != nil {
		st, err := s.dir.build(ctx, dirKinds, s.src.Now())
		if err != nil {
			s.log.Error("cannot read the directory; keeping the previous configuration", "err", err)
		} else {
			s.rcv.Update(ctx, st) // failed bindings: logged, 16027, retried; checks the certificates too
			s.checkOpenFiles(ctx, st)
			if dirKinds[kindServer] {
				s.raiseDuplicates(ctx)
			}
		}
	} else if certs {
		s.rcv.CheckCertificates(ctx)
	}
	if certs || dirKinds[kindServer] {
		s.rcv.CheckInternal(ctx)
	}
	if certs || dirKinds != nil {
		st := s.rcv.State()
		s.checkSendCertificates(ctx, st)
		s.traceDecisions(st)
	}
	if web || dirKinds[kindServer] {
		s.applyHTTP(ctx) // the console's host name defaults to the server's FQDN
	} else if certs {
		s.checkConsole(ctx)
	}
	if dirKinds[kindServer] {
		me := s.dir.me
		s.me.Store(&me)
		accessChanged = true // the server's FQDN names the certificates
	}
	if accessChanged {
		if err := s.acc.Reload(ctx); err != nil {
			s.log.Error("cannot read the POP3, IMAP4 and UM settings; keeping the current ones", "err", err)
		}
	} else if certs {
		s.acc.CheckCertificates(ctx)
	}
}

// reloadAccount makes the service account configured now the one whose
// access to key files the store reports (another process changed it).
func (s *srv) reloadAccount(ctx context.Context) error {
	name, err := s.src.Settings.Get(ctx, settings.ServiceAccount)
	if err != nil {
		return err
	}
	acct := store.DirOwner(filepath.Dir(s.src.Store.KeysDir()))
	if name != "" {
		if acct, err = store.LookupAccount(name); err != nil {
			return err
		}
	}
	s.src.Store.SetAccount(acct)
	return nil
}

// keyFault is told by the serving layer that a selected certificate's
// key cannot be loaded. Off the handshake that found it, it raises 16040
// and records the fact in the store (store.RecordKeyFault), so that cert
// explain and cert show judge the key as the server does; the change that
// records it reaches this server's own watch like any other.
func (s *srv) keyFault(thumbprint, keyID string, err error) {
	path := filepath.Join(s.src.Store.KeysDir(), keyID+".key")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, rerr := s.events.Raise(ctx, 16040, thumbprint, thumbprint, path, fmt.Sprint(err)); rerr != nil {
			s.log.Warn("cannot log event", "event", 16040, "err", rerr)
		}
		if rerr := s.src.Store.RecordKeyFault(ctx, keyID, err); rerr != nil {
			s.log.Warn("cannot record that a key cannot be loaded", "key", path, "err", rerr)
		}
	}()
}

// reloadChallenges loads the ACME challenges an order stored for this
// server to answer (acme.Responder).
func (s *srv) reloadChallenges(ctx context.Context) {
	if err := s.acme.Load(ctx, s.challenges); err != nil {
		s.log.Error("cannot read the ACME challenges to answer", "err", err)
	}
}
