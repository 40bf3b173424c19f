package directory

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"certrelay/internal/db"
)

// Replica is a copy of an organisation's LDAP directory, kept current by
// LDAP Sync (RFC 4533, refreshAndPersist): the directory sends each
// change as it commits, so a change reaches a running server in
// milliseconds. Reads answer from memory — so a server keeps running on
// the last copy while the directory is unreachable — and writes go to the
// directory (then to the copy at once, so the writer reads its own
// writes). When the connection breaks, the replica says so (OnState),
// reconnects by itself with a back-off, and on reconnecting refreshes
// the whole copy and reports what changed meanwhile. The copy is also
// kept in the data directory's database, so a server that starts while
// the directory is down starts on it. Safe for concurrent use.
type Replica struct {
	l   *LDAP
	o   ReplicaOptions
	log *slog.Logger

	mu     sync.RWMutex
	byUUID map[string]ref
	// owner is the entry (entryUUID) whose object the copy holds under
	// each name: an entry deleted and made again under the same name
	// while the replica was away has a new entryUUID, and the refresh
	// brings the new entry before it sweeps the old one, which must then
	// leave the new object in place.
	owner    map[ref]string
	servers  kindMap[Server]
	receive  kindMap[ReceiveConnector]
	send     kindMap[SendConnector]
	domains  kindMap[AcceptedDomain]
	boxes    kindMap[Mailbox]
	roots    kindMap[TrustedRoot]
	problems map[string]Problem // by entryUUID
	up       bool
	synced   time.Time // when the copy was last complete

	containersOnce sync.Once
	containers     [][2]string // kind, DN of each container (kindByDN)

	dirty chan struct{}   // the copy on disk needs writing
	pend  map[string]bool // entries (entryUUID) to write to the copy on disk, or delete from it
	full  bool            // write the whole copy (after a refresh)
	done  chan struct{}
}

var _ Directory = (*Replica)(nil)

// ReplicaOptions configure StartReplica.
type ReplicaOptions struct {
	// DB keeps the last copy on disk (table dir_copy); nil: memory only.
	DB *sql.DB
	// OnChange hears the objects that changed ("kind/key", as the change
	// log names them), once the copy holds the change. It is called from
	// the replica's goroutine: it must not block for long.
	OnChange func(keys []string)
	// OnState hears that the directory was lost (up false, with why) or
	// is back (up true).
	OnState func(up bool, err error)
	// OnProblems hears the objects that cannot be used, after each
	// refresh and each change of one.
	OnProblems func([]Problem)
	// Wait bounds how long StartReplica waits for the first copy before
	// starting on the copy on disk; default DefaultLDAPTimeout.
	Wait time.Duration
	// RetryMax caps the pause between reconnection attempts; default 2 s.
	RetryMax time.Duration
	// CopyDelay is how long after a full refresh the whole copy is
	// written to disk; default CopyFullDelay.
	CopyDelay time.Duration
	Log       *slog.Logger
}

// ref locates an object of the copy.
type ref struct{ kind, key string }

// kindMap holds the objects of one kind by key, with their sorted list
// made when first asked for after a change.
type kindMap[T any] struct {
	by     map[string]T
	sorted []T
}

func (m *kindMap[T]) put(k string, v T) {
	if m.by == nil {
		m.by = map[string]T{}
	}
	m.by[k] = v
	m.sorted = nil
}

func (m *kindMap[T]) del(k string) {
	delete(m.by, k)
	m.sorted = nil
}

func (m *kindMap[T]) list() []T {
	if m.sorted == nil {
		keys := make([]string, 0, len(m.by))
		for k := range m.by {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([]T, len(keys))
		for i, k := range keys {
			out[i] = m.by[k]
		}
		m.sorted = out
	}
	return m.sorted
}

// syncAttrs are the attributes the sync search asks for: every kind's
// fields, not cn, objectClass or entryUUID — the DN names the object and
// its kind (kindByDN), the Sync State control carries the entryUUID — so
// that slapd sends a third less for 100,000 mailboxes.
var syncAttrs = func() []string {
	seen := map[string]bool{"cn": true, "objectClass": true, "entryUUID": true}
	var out []string
	add := func(names []string) {
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	add(serverCodec.attrNames())
	add(receiveCodec.attrNames())
	add(sendCodec.attrNames())
	add(domainCodec.attrNames())
	add(mailboxCodec.attrNames())
	add(rootCodec.attrNames())
	return out
}()

// kindByDN returns the kind of an object by where it is in certrelay's
// tree (see ldapmap.go), "" when it is elsewhere.
func (r *Replica) kindByDN(dn string) string {
	_, parent, ok := rdnValue(dn)
	if !ok {
		return ""
	}
	_, grand, _ := rdnValue(parent)
	r.containersOnce.Do(func() {
		for _, c := range []struct{ kind, ou string }{
			{kindMailbox, "Mailboxes"}, {kindServer, "Servers"}, {kindDomain, "Domains"}, {kindSend, "Connectors"}, {kindRoot, "Trust"},
		} {
			r.containers = append(r.containers, [2]string{c.kind, "ou=" + c.ou + "," + r.l.base})
		}
	})
	for _, same := range []func(a, b string) bool{strings.EqualFold, sameDN} { // as written, then parsed
		for _, c := range r.containers {
			if same(parent, c[1]) {
				return c[0]
			}
		}
		if grand != "" && same(grand, r.containers[1][1]) {
			return kindReceive
		}
	}
	return ""
}

// sameDN compares DNs: as text, then, for DNs written differently
// (spaces, case of attribute types), parsed.
func sameDN(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	da, err := ldap.ParseDN(a)
	if err != nil {
		return false
	}
	db, err := ldap.ParseDN(b)
	return err == nil && da.EqualFold(db)
}

const syncFilter = "(|(objectClass=certrelayServer)(objectClass=certrelayReceiveConnector)(objectClass=certrelaySendConnector)(objectClass=certrelayAcceptedDomain)(objectClass=certrelayMailbox)(objectClass=certrelayTrustedRoot))"

// StartReplica starts following the directory cfg names until ctx ends.
// It returns once it holds a first copy: the directory's, read within
// o.Wait, or else the copy on disk (OnState has then heard why the
// directory cannot be read). Without either it fails.
func StartReplica(ctx context.Context, cfg LDAPConfig, o ReplicaOptions) (*Replica, error) {
	l, err := OpenLDAP(cfg)
	if err != nil {
		return nil, err
	}
	if o.Wait <= 0 {
		o.Wait = l.c.cfg.Timeout
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 2 * time.Second
	}
	if o.CopyDelay <= 0 {
		o.CopyDelay = CopyFullDelay
	}
	r := &Replica{l: l, o: o, log: o.Log, byUUID: map[string]ref{}, problems: map[string]Problem{}, dirty: make(chan struct{}, 1), pend: map[string]bool{}, done: make(chan struct{})}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.DB != nil {
		if err := db.Migrate(ctx, o.DB, "directory-copy",
			`CREATE TABLE IF NOT EXISTS dir_copy (uuid TEXT PRIMARY KEY, kind TEXT NOT NULL, dn TEXT NOT NULL, object TEXT NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS dir_copy_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`); err != nil {
			return nil, err
		}
	}
	first := make(chan error, 1)
	go r.run(ctx, first)
	select {
	case err := <-first:
		if err == nil {
			return r, nil
		}
		if o.DB == nil {
			return nil, err
		}
		n, when, lerr := r.loadCopy(ctx)
		if lerr != nil {
			return nil, fmt.Errorf("%w; and the last copy on disk cannot be read: %v", err, lerr)
		}
		if n == 0 && when.IsZero() {
			return nil, fmt.Errorf("%w (and this server has no copy of it yet)", err)
		}
		r.log.Warn("the directory cannot be read; starting on the last copy", "copied", when, "objects", n, "err", err)
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// LDAP returns the directory the replica copies (for writes and checks).
func (r *Replica) LDAP() *LDAP { return r.l }

// Up reports whether the replica follows the directory now, and when its
// copy was last complete.
func (r *Replica) Up() (bool, time.Time) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.up, r.synced
}

// Problems returns the objects of the copy that cannot be used.
func (r *Replica) Problems() []Problem {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.problemList()
}

func (r *Replica) problemList() []Problem {
	out := make([]Problem, 0, len(r.problems))
	for _, p := range r.problems {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DN < out[j].DN })
	return out
}

// run follows the directory until ctx ends: one sync search at a time,
// reconnecting after a failure. first hears the outcome of the first
// refresh (nil once complete).
func (r *Replica) run(ctx context.Context, first chan<- error) {
	defer close(r.done)
	defer r.l.Close()
	if r.o.DB != nil {
		go r.writer(ctx)
	}
	pause := 100 * time.Millisecond
	announced := false // OnState heard of the outage
	for {
		err := r.follow(ctx, func() {
			if first != nil {
				first <- nil
				first = nil
			}
			if announced && r.o.OnState != nil {
				r.o.OnState(true, nil)
			}
			announced = false
			pause = 100 * time.Millisecond
		})
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.up = false
		r.mu.Unlock()
		if first != nil {
			first <- err
			first = nil
		}
		if !announced {
			announced = true
			r.log.Warn("the directory is lost; running on the last copy", "err", err)
			if r.o.OnState != nil {
				r.o.OnState(false, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(pause*2, r.o.RetryMax)
	}
}

// follow runs one sync search: a full refresh, then changes as they
// come, until the connection fails. refreshed runs once the copy is
// complete.
func (r *Replica) follow(ctx context.Context, refreshed func()) error {
	conn, err := r.l.c.dialSync()
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := conn.search(r.l.base, syncFilter, syncAttrs, ldap.NewControlSyncRequest(ldap.SyncRequestModeRefreshAndPersist, nil, false)); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	seen := map[string]bool{}
	refreshing := true
	r.mu.RLock()
	first := len(r.byUUID) == 0 && len(r.problems) == 0 // nothing to tell OnChange about: it is all new
	r.mu.RUnlock()
	var changed []string
	for {
		m, err := conn.next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: following the directory: %v", ErrUnavailable, err)
		}
		switch m.op {
		case ldap.ApplicationSearchResultEntry:
			if m.state == nil {
				continue
			}
			id := uuidString(m.entryUUID)
			if refreshing {
				seen[id] = true
			}
			var keys []string
			if *m.state == ldap.SyncStateDelete {
				keys = r.remove(id)
			} else if *m.state != ldap.SyncStatePresent || !r.has(id) {
				keys = r.upsert(id, m.entry)
			}
			if refreshing {
				changed = append(changed, keys...)
			} else if len(keys) > 0 {
				r.changed(keys, true)
			}
		case ldap.ApplicationIntermediateResponse:
			for _, u := range m.syncIDs {
				id := uuidString(u)
				if m.deletes {
					keys := r.remove(id)
					if refreshing {
						changed = append(changed, keys...)
					} else {
						r.changed(keys, true)
					}
				} else if refreshing {
					seen[id] = true
				}
			}
			if refreshing && m.refreshDone {
				refreshing = false
				changed = append(changed, r.sweep(seen)...)
				seen = nil
				r.mu.Lock()
				r.up, r.synced, r.full = true, time.Now(), true
				r.mu.Unlock()
				r.markDirty()
				refreshed()
				if first {
					if r.o.OnProblems != nil {
						r.o.OnProblems(r.Problems())
					}
				} else {
					r.changed(changed, true)
				}
				changed = nil
			}
		case ldap.ApplicationSearchResultDone:
			if m.code == ldap.LDAPResultUnavailableCriticalExtension {
				return fmt.Errorf("%w on %s", ErrNoSync, r.l.base)
			}
			return fmt.Errorf("%w: the directory ended the sync search: %s", ErrUnavailable, orText(nil, m.code, m.diag))
		}
	}
}

// has reports whether the copy holds the entry id.
func (r *Replica) has(id string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.byUUID[id]
	return ok
}

func uuidString(b []byte) string {
	if len(b) != 16 {
		return hex.EncodeToString(b)
	}
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:16])
	return string(out[:])
}

// changed tells OnChange (and the problems hook) what changed.
func (r *Replica) changed(keys []string, problems bool) {
	if len(keys) == 0 {
		return
	}
	r.markDirty()
	if problems && r.o.OnProblems != nil {
		r.o.OnProblems(r.Problems())
	}
	if r.o.OnChange != nil {
		r.o.OnChange(dedupe(keys))
	}
}

func dedupe(keys []string) []string {
	sort.Strings(keys)
	out := keys[:0]
	for i, k := range keys {
		if i == 0 || k != keys[i-1] {
			out = append(out, k)
		}
	}
	return out
}

// upsert puts an entry into the copy and returns the keys it changed.
func (r *Replica) upsert(id string, e *ldap.Entry) []string {
	kind := kindOf(e)
	if kind == "" {
		kind = r.kindByDN(e.DN)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.byUUID[id]
	if had && kind == kindServer && old.kind == kindServer {
		// A change of what the copy does not keep (an edge's EdgeSync
		// lease, renewed every few seconds): nothing changed.
		if v, err := serverCodec.decode(e); err == nil && key(v.Name) == old.key {
			if cur, ok := r.servers.by[old.key]; ok && sameObject(&serverCodec, &cur, &v) {
				return nil
			}
		}
	}
	r.pend[id] = true
	var keys []string
	if had {
		r.release(old, id)
		keys = append(keys, old.kind+"/"+old.key)
	}
	_, hadProblem := r.problems[id]
	delete(r.problems, id)
	if kind == "" {
		delete(r.byUUID, id)
		if hadProblem {
			keys = append(keys, "?/problem")
		}
		return keys
	}
	k, err := r.decodeInto(kind, e)
	if err != nil {
		r.problems[id] = Problem{DN: e.DN, Kind: kind, Err: err}
		delete(r.byUUID, id)
		return append(keys, kind+"/?")
	}
	r.own(id, ref{kind, k})
	return append(keys, kind+"/"+k)
}

// remove takes an entry out of the copy.
func (r *Replica) remove(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	if p, ok := r.problems[id]; ok {
		delete(r.problems, id)
		keys = append(keys, p.Kind+"/?")
	}
	old, ok := r.byUUID[id]
	if !ok {
		return keys
	}
	r.pend[id] = true
	delete(r.byUUID, id)
	r.release(old, id)
	return append(keys, old.kind+"/"+old.key)
}

// own records that entry id holds the object at ref; the caller holds mu.
func (r *Replica) own(id string, at ref) {
	if r.owner == nil {
		r.owner = map[ref]string{}
	}
	r.byUUID[id] = at
	r.owner[at] = id
}

// release drops the object at ref that entry id held, unless another
// entry holds that name now; the caller holds mu.
func (r *Replica) release(at ref, id string) {
	if o, ok := r.owner[at]; ok && o != id {
		return
	}
	delete(r.owner, at)
	r.drop(at)
}

// sweep removes what a full refresh did not send.
func (r *Replica) sweep(seen map[string]bool) []string {
	var gone []string
	r.mu.RLock()
	for id := range r.byUUID {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	for id := range r.problems {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	r.mu.RUnlock()
	var keys []string
	for _, id := range gone {
		keys = append(keys, r.remove(id)...)
	}
	return keys
}

// drop deletes the object old names; the caller holds mu.
func (r *Replica) drop(old ref) {
	switch old.kind {
	case kindServer:
		r.servers.del(old.key)
	case kindReceive:
		r.receive.del(old.key)
	case kindSend:
		r.send.del(old.key)
	case kindDomain:
		r.domains.del(old.key)
	case kindMailbox:
		r.boxes.del(old.key)
	case kindRoot:
		r.roots.del(old.key)
	}
}

// decodeInto decodes an entry of kind into the copy and returns its key;
// the caller holds mu.
func (r *Replica) decodeInto(kind string, e *ldap.Entry) (string, error) {
	switch kind {
	case kindServer:
		v, err := serverCodec.decode(e)
		return keyed(&r.servers, key(v.Name), v, err)
	case kindReceive:
		v, err := receiveCodec.decode(e)
		return keyed(&r.receive, connKey(v.Server, v.Name), v, err)
	case kindSend:
		v, err := sendCodec.decode(e)
		return keyed(&r.send, key(v.Name), v, err)
	case kindDomain:
		v, err := domainCodec.decode(e)
		return keyed(&r.domains, key(v.DomainName), v, err)
	case kindMailbox:
		v, err := mailboxCodec.decode(e)
		return keyed(&r.boxes, key(v.Address), v, err)
	case kindRoot:
		v, err := rootCodec.decode(e)
		return keyed(&r.roots, key(v.Thumbprint), v, err)
	}
	return "", fmt.Errorf("unknown kind %s", kind)
}

func keyed[T any](m *kindMap[T], k string, v T, err error) (string, error) {
	if err != nil {
		return "", err
	}
	m.put(k, v)
	return k, nil
}

// Wait returns when the replica has stopped (its context ended).
func (r *Replica) Wait() { <-r.done }
