package directory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
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

	mu       sync.RWMutex
	byUUID   map[string]ref
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
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
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
	r.pend[id] = true
	var keys []string
	if had {
		r.drop(old)
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
	r.byUUID[id] = ref{kind, k}
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
	r.drop(old)
	return append(keys, old.kind+"/"+old.key)
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

// Reads, from the copy.

func getCopy[T any](r *Replica, m *kindMap[T], k, what string) (T, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := m.by[k]
	if !ok {
		return v, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return v, nil
}

func listCopy[T any](r *Replica, m *kindMap[T]) []T {
	r.mu.Lock() // list() may build the sorted list
	defer r.mu.Unlock()
	return append([]T(nil), m.list()...)
}

// Server implements Directory.
func (r *Replica) Server(_ context.Context, name string) (Server, error) {
	return getCopy(r, &r.servers, key(name), fmt.Sprintf("server %q", name))
}

// Servers implements Directory.
func (r *Replica) Servers(context.Context) ([]Server, error) { return listCopy(r, &r.servers), nil }

// ReceiveConnectors implements Directory.
func (r *Replica) ReceiveConnectors(_ context.Context, server string) ([]ReceiveConnector, error) {
	prefix := key(server) + `\`
	var out []ReceiveConnector
	for _, c := range listCopy(r, &r.receive) {
		if strings.HasPrefix(connKey(c.Server, c.Name), prefix) {
			out = append(out, c)
		}
	}
	return out, nil
}

// ReceiveConnector implements Directory.
func (r *Replica) ReceiveConnector(_ context.Context, server, name string) (ReceiveConnector, error) {
	return getCopy(r, &r.receive, connKey(server, name), fmt.Sprintf("receive connector %q", name))
}

// SendConnectors implements Directory.
func (r *Replica) SendConnectors(context.Context) ([]SendConnector, error) {
	return listCopy(r, &r.send), nil
}

// SendConnector implements Directory.
func (r *Replica) SendConnector(_ context.Context, name string) (SendConnector, error) {
	return getCopy(r, &r.send, key(name), fmt.Sprintf("send connector %q", name))
}

// AcceptedDomains implements Directory.
func (r *Replica) AcceptedDomains(context.Context) ([]AcceptedDomain, error) {
	return listCopy(r, &r.domains), nil
}

// Mailboxes implements Directory.
func (r *Replica) Mailboxes(context.Context) ([]Mailbox, error) { return listCopy(r, &r.boxes), nil }

// Mailbox implements Directory.
func (r *Replica) Mailbox(_ context.Context, address string) (Mailbox, error) {
	return getCopy(r, &r.boxes, key(address), fmt.Sprintf("mailbox %q", address))
}

// TrustedRoots implements Directory.
func (r *Replica) TrustedRoots(context.Context) ([]TrustedRoot, error) {
	return listCopy(r, &r.roots), nil
}

// Writes: to the directory, then to the copy (the sync search brings the
// same change again, which changes nothing more).

// errCopy is the error of writes to a copy opened with OpenCopy.
var errCopy = fmt.Errorf("%w: this is the copy a server kept; write to the directory itself", ErrUnavailable)

func (r *Replica) wrote(kind, k string, apply func()) {
	r.mu.Lock()
	apply()
	r.mu.Unlock()
	r.changed([]string{kind + "/" + k}, false)
}

// PutServer implements Directory.
func (r *Replica) PutServer(ctx context.Context, s Server) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutServer(ctx, s); err != nil {
		return err
	}
	r.wrote(kindServer, key(s.Name), func() { r.servers.put(key(s.Name), s) })
	return nil
}

// PutReceiveConnector implements Directory.
func (r *Replica) PutReceiveConnector(ctx context.Context, c ReceiveConnector) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutReceiveConnector(ctx, c); err != nil {
		return err
	}
	r.wrote(kindReceive, connKey(c.Server, c.Name), func() { r.receive.put(connKey(c.Server, c.Name), c) })
	return nil
}

// DeleteReceiveConnector implements Directory.
func (r *Replica) DeleteReceiveConnector(ctx context.Context, server, name string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteReceiveConnector(ctx, server, name); err != nil {
		return err
	}
	r.wrote(kindReceive, connKey(server, name), func() { r.receive.del(connKey(server, name)) })
	return nil
}

// PutSendConnector implements Directory.
func (r *Replica) PutSendConnector(ctx context.Context, c SendConnector) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutSendConnector(ctx, c); err != nil {
		return err
	}
	r.wrote(kindSend, key(c.Name), func() { r.send.put(key(c.Name), c) })
	return nil
}

// DeleteSendConnector implements Directory.
func (r *Replica) DeleteSendConnector(ctx context.Context, name string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteSendConnector(ctx, name); err != nil {
		return err
	}
	r.wrote(kindSend, key(name), func() { r.send.del(key(name)) })
	return nil
}

// PutAcceptedDomain implements Directory.
func (r *Replica) PutAcceptedDomain(ctx context.Context, d AcceptedDomain) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutAcceptedDomain(ctx, d); err != nil {
		return err
	}
	r.wrote(kindDomain, key(d.DomainName), func() { r.domains.put(key(d.DomainName), d) })
	return nil
}

// DeleteAcceptedDomain implements Directory.
func (r *Replica) DeleteAcceptedDomain(ctx context.Context, name string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteAcceptedDomain(ctx, name); err != nil {
		return err
	}
	r.wrote(kindDomain, key(name), func() { r.domains.del(key(name)) })
	return nil
}

// PutMailbox implements Directory.
func (r *Replica) PutMailbox(ctx context.Context, m Mailbox) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutMailbox(ctx, m); err != nil {
		return err
	}
	r.wrote(kindMailbox, key(m.Address), func() { r.boxes.put(key(m.Address), m) })
	return nil
}

// DeleteMailbox implements Directory.
func (r *Replica) DeleteMailbox(ctx context.Context, address string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteMailbox(ctx, address); err != nil {
		return err
	}
	r.wrote(kindMailbox, key(address), func() { r.boxes.del(key(address)) })
	return nil
}

// PutTrustedRoot implements Directory.
func (r *Replica) PutTrustedRoot(ctx context.Context, t TrustedRoot) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.PutTrustedRoot(ctx, t); err != nil {
		return err
	}
	r.wrote(kindRoot, key(t.Thumbprint), func() { r.roots.put(key(t.Thumbprint), t) })
	return nil
}

// DeleteTrustedRoot implements Directory.
func (r *Replica) DeleteTrustedRoot(ctx context.Context, thumbprint string) error {
	if r.l == nil {
		return errCopy
	}
	if err := r.l.DeleteTrustedRoot(ctx, thumbprint); err != nil {
		return err
	}
	r.wrote(kindRoot, key(thumbprint), func() { r.roots.del(key(thumbprint)) })
	return nil
}

// The copy on disk.

func (r *Replica) markDirty() {
	if r.o.DB == nil {
		return
	}
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// CopyInterval spaces the writes of the copy on disk: a burst of changes
// is written once. CopyFullDelay is how long after a full refresh the
// whole copy is written (not while the server starts).
const (
	CopyInterval  = time.Second
	CopyFullDelay = 5 * time.Second
)

// writer keeps the copy on disk: the whole copy some time after each
// refresh, then the entries that changed, at most once per CopyInterval.
func (r *Replica) writer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.dirty:
		}
		r.mu.RLock()
		full := r.full
		r.mu.RUnlock()
		if full {
			select {
			case <-ctx.Done():
				return
			case <-time.After(r.o.CopyDelay):
			}
		}
		if err := r.saveCopy(context.WithoutCancel(ctx)); err != nil {
			r.log.Warn("cannot keep the copy of the directory on disk", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(CopyInterval):
		}
	}
}

type copyRow struct{ id, kind, dn, obj string }

// objectJSON encodes the object ref names; the caller holds mu.
func (r *Replica) objectJSON(ref ref) ([]byte, error) {
	switch ref.kind {
	case kindServer:
		return json.Marshal(r.servers.by[ref.key])
	case kindReceive:
		return json.Marshal(r.receive.by[ref.key])
	case kindSend:
		return json.Marshal(r.send.by[ref.key])
	case kindDomain:
		return json.Marshal(r.domains.by[ref.key])
	case kindMailbox:
		return json.Marshal(r.boxes.by[ref.key])
	case kindRoot:
		return json.Marshal(r.roots.by[ref.key])
	}
	return nil, fmt.Errorf("unknown kind %s", ref.kind)
}

// saveCopy writes what changed since the last write to the copy on disk
// (all of it after a refresh), in one transaction.
func (r *Replica) saveCopy(ctx context.Context) error {
	r.mu.Lock()
	full, pend := r.full, r.pend
	r.full, r.pend = false, map[string]bool{}
	var rows []copyRow
	var gone []string
	var err error
	add := func(id string, ref ref) {
		var obj []byte
		if obj, err = r.objectJSON(ref); err == nil {
			rows = append(rows, copyRow{id, ref.kind, ref.key, string(obj)})
		}
	}
	if full {
		rows = make([]copyRow, 0, len(r.byUUID))
		for id, ref := range r.byUUID {
			if add(id, ref); err != nil {
				break
			}
		}
	} else {
		for id := range pend {
			if ref, ok := r.byUUID[id]; ok {
				if add(id, ref); err != nil {
					break
				}
			} else {
				gone = append(gone, id)
			}
		}
	}
	synced := r.synced
	if r.up {
		synced = time.Now() // the copy follows the directory: current now
	}
	if err != nil { // write it all next time
		r.full = true
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	err = db.Tx(ctx, r.o.DB, func(ctx context.Context, tx *sql.Tx) error {
		if full {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dir_copy`); err != nil {
				return err
			}
		}
		for _, id := range gone {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dir_copy WHERE uuid = ?`, id); err != nil {
				return err
			}
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO dir_copy(uuid, kind, dn, object) VALUES(?, ?, ?, ?)
			ON CONFLICT(uuid) DO UPDATE SET kind = excluded.kind, dn = excluded.dn, object = excluded.object`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, row := range rows {
			if _, err := st.ExecContext(ctx, row.id, row.kind, row.dn, row.obj); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO dir_copy_meta(key, value) VALUES('synced', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
			synced.UTC().Format(time.RFC3339Nano))
		return err
	})
	if err != nil {
		r.mu.Lock()
		r.full = true // the transaction rolled back: write it all next time
		r.mu.Unlock()
	}
	return err
}

// loadCopy fills the replica from the copy on disk; it returns how many
// objects it read and when the copy was complete.
func (r *Replica) loadCopy(ctx context.Context) (int, time.Time, error) {
	var when time.Time
	var s string
	err := r.o.DB.QueryRowContext(ctx, `SELECT value FROM dir_copy_meta WHERE key = 'synced'`).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, when, nil
	}
	if err != nil {
		return 0, when, err
	}
	when, _ = time.Parse(time.RFC3339Nano, s)
	rows, err := r.o.DB.QueryContext(ctx, `SELECT uuid, kind, object FROM dir_copy`)
	if err != nil {
		return 0, when, err
	}
	defer rows.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for rows.Next() {
		var id, kind, obj string
		if err := rows.Scan(&id, &kind, &obj); err != nil {
			return n, when, err
		}
		k, err := loadInto(r, kind, []byte(obj))
		if err != nil {
			continue
		}
		r.byUUID[id] = ref{kind, k}
		n++
	}
	r.synced = when
	return n, when, rows.Err()
}

func loadInto(r *Replica, kind string, obj []byte) (string, error) {
	switch kind {
	case kindServer:
		return unjson(&r.servers, obj, func(v *Server) string { return key(v.Name) })
	case kindReceive:
		return unjson(&r.receive, obj, func(v *ReceiveConnector) string { return connKey(v.Server, v.Name) })
	case kindSend:
		return unjson(&r.send, obj, func(v *SendConnector) string { return key(v.Name) })
	case kindDomain:
		return unjson(&r.domains, obj, func(v *AcceptedDomain) string { return key(v.DomainName) })
	case kindMailbox:
		return unjson(&r.boxes, obj, func(v *Mailbox) string { return key(v.Address) })
	case kindRoot:
		return unjson(&r.roots, obj, func(v *TrustedRoot) string { return key(v.Thumbprint) })
	}
	return "", fmt.Errorf("unknown kind %s", kind)
}

func unjson[T any](m *kindMap[T], obj []byte, k func(*T) string) (string, error) {
	var v T
	if err := json.Unmarshal(obj, &v); err != nil {
		return "", err
	}
	m.put(k(&v), v)
	return k(&v), nil
}

// Wait returns when the replica has stopped (its context ended).
func (r *Replica) Wait() { <-r.done }
