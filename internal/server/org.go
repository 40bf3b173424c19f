package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/servercred"
)

// A server of an organisation (setup --directory) reads the
// organisation's directory through a replica kept current by LDAP Sync
// (directory.Replica): a change made anywhere reaches it within
// milliseconds and names the objects it touched, so the server rebuilds
// only that kind of object (apply, as for the local change log). When the
// directory is lost the server raises 16050 and keeps running on its
// copy; when it is back, 16051. Its own objects (its server object and
// receive connectors) are kept in its data directory and published; the
// server publishes them again whenever the directory's copy differs
// (directory.Joined.Reconcile), and says so (16053) when that was not its
// own doing.

// orgFeed collects what the replica reports, from its goroutine, for the
// server's loop.
type orgFeed struct {
	mu       sync.Mutex
	keys     []string
	states   []orgState
	problems []directory.Problem
	newProbs bool
	notify   chan struct{}
}

type orgState struct {
	up   bool
	err  error
	when time.Time
}

func newOrgFeed() *orgFeed { return &orgFeed{notify: make(chan struct{}, 1)} }

func (f *orgFeed) wake() {
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

// options are the replica's hooks, feeding f.
func (f *orgFeed) options(d *sql.DB) directory.ReplicaOptions {
	return directory.ReplicaOptions{
		DB: d,
		OnChange: func(keys []string) {
			f.mu.Lock()
			f.keys = append(f.keys, keys...)
			f.mu.Unlock()
			f.wake()
		},
		OnState: func(up bool, err error) {
			f.mu.Lock()
			f.states = append(f.states, orgState{up, err, time.Now()})
			f.mu.Unlock()
			f.wake()
		},
		OnProblems: func(ps []directory.Problem) {
			f.mu.Lock()
			f.problems, f.newProbs = ps, true
			f.mu.Unlock()
			f.wake()
		},
	}
}

// take returns and clears what the feed collected.
func (f *orgFeed) take() (keys []string, states []orgState, problems []directory.Problem, newProbs bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys, states, problems, newProbs = f.keys, f.states, f.problems, f.newProbs
	f.keys, f.states, f.newProbs = nil, nil, false
	return
}

// openReplica is certview's Org for a running server: the replica.
func (s *srv) openReplica(ctx context.Context) func(context.Context, directory.LDAPConfig, *sql.DB) (directory.Directory, error) {
	return func(_ context.Context, cfg directory.LDAPConfig, d *sql.DB) (directory.Directory, error) {
		o := s.feed.options(d)
		o.Log = s.log
		r, err := directory.StartReplica(ctx, cfg, o)
		if err != nil {
			return nil, fmt.Errorf("the organisation's directory: %w", err)
		}
		s.replica = r
		return r, nil
	}
}

// orgChanges handles what the feed reports: the loss and return of the
// directory (events, and publishing this server's objects when it is
// back), unusable objects (16052), and the kinds of objects that changed,
// which it returns for apply. Changes to this server's own objects in
// the directory have them compared with the local copy a moment later
// (reconcileSoon).
func (s *srv) orgChanges(ctx context.Context) (kinds []string) {
	keys, states, problems, newProbs := s.feed.take()
	url := ""
	if s.replica != nil {
		url = s.replica.LDAP().URL().String()
	}
	for _, st := range states {
		if !st.up {
			if s.lostAt.IsZero() {
				s.lostAt = st.when
			}
			_, synced := s.replica.Up()
			copyTime := "(none)"
			if !synced.IsZero() {
				copyTime = synced.UTC().Format(time.RFC3339)
			}
			_, _ = s.events.Raise(ctx, 16050, "", url, fmt.Sprint(st.err), copyTime)
			continue
		}
		outage := "a moment"
		if !s.lostAt.IsZero() {
			outage = st.when.Sub(s.lostAt).Round(time.Second).String()
		}
		s.lostAt = time.Time{}
		_, _ = s.events.Raise(ctx, 16051, "", url, outage)
		s.reconcile(ctx, false)
	}
	if newProbs {
		for _, p := range problems {
			_, _ = s.events.Raise(ctx, 16052, p.DN, fmt.Sprintf("the %s object %s", p.Kind, p.DN), p.Err.Error())
		}
	}
	self := strings.ToLower(s.self)
	for _, k := range keys {
		if k == "server/"+self || k == "server/?" {
			s.checkPublished(ctx)
		}
		if k == "server/"+self || k == "server/?" || strings.HasPrefix(k, "receiveconnector/"+self+`\`) {
			s.reconcileSoon(ctx)
		}
	}
	return keys
}

// checkPublished raises 12012 when the directory's copy of this server's
// object holds no internal transport certificate (someone removed it, or
// the object itself): other servers cannot authenticate this one until
// it is published again, which reconcile does.
func (s *srv) checkPublished(ctx context.Context) {
	if s.replica == nil {
		return
	}
	if pub, err := s.replica.Server(ctx, s.self); err != nil || len(pub.InternalTransportCertificate) == 0 {
		_, _ = s.events.Raise(ctx, 12012, s.self, s.self)
	}
}

// ReconcileDelay is how long after the directory's copy of this server's
// own objects changed the server compares it with its own: a command
// publishes just before its local commit, which the server then sees.
const ReconcileDelay = 2 * time.Second

func (s *srv) reconcileSoon(ctx context.Context) {
	s.orgMu.Lock()
	defer s.orgMu.Unlock()
	if s.reconcileTimer != nil {
		s.reconcileTimer.Stop()
	}
	s.reconcileTimer = time.AfterFunc(ReconcileDelay, func() { s.reconcile(ctx, true) })
}

// reconcile publishes this server's own objects where the directory's
// copy differs, in the background; byHand says the difference was not a
// change this server made (16053 when something was published).
func (s *srv) reconcile(ctx context.Context, byHand bool) {
	if s.src.Joined == nil {
		return
	}
	go func() {
		s.reconcileMu.Lock() // one at a time
		defer s.reconcileMu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		wrote, err := s.src.Joined.Reconcile(rctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, directory.ErrUnavailable) {
				s.log.Warn("cannot publish this server's objects in the directory", "err", err)
			}
			return
		}
		if len(wrote) > 0 {
			s.log.Info("published this server's objects in the directory", "objects", strings.Join(wrote, ", "))
			if byHand {
				_, _ = s.events.Raise(ctx, 16053, s.self, s.self, strings.Join(wrote, ", "))
			}
		}
	}()
}

// loadCredential reads this server's organisation credential; nil (with
// a warning) when it has none, as a data directory set up before they
// existed, until serve's setup step makes it.
func (s *srv) loadCredential(dataDir string) *servercred.Key {
	k, err := servercred.Load(servercred.File(dataDir))
	if err != nil {
		s.log.Warn("this server has no organisation credential: hubs authenticate it by its internal transport certificate only", "err", err)
		return nil
	}
	if why := servercred.Exposed(servercred.File(dataDir)); why != "" {
		s.log.Warn("this server's organisation credential is exposed", "problem", why)
	}
	return &k
}

// raiseDuplicates reports names several server objects claim (16052).
func (s *srv) raiseDuplicates(ctx context.Context) {
	st := s.rcv.State()
	if st == nil || st.Org == nil {
		return
	}
	for _, d := range st.Org.Duplicates {
		_, _ = s.events.Raise(ctx, 16052, "name "+d.Name, "the server objects "+strings.Join(d.Servers, " and "),
			fmt.Sprintf("they all claim the name %s, so direct trust accepts the certificate of any of them for it; give each server its own names with certrelay server set on each, or delete the object that should not be there", d.Name))
	}
}
