package edgesync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"certrelay/internal/db"
	"certrelay/internal/directory"
	"certrelay/internal/servercred"
	"certrelay/internal/settings"
)

// Endpoint is the edge's side of EdgeSync: it serves one hub connection
// at a time per call of Handle. Pushes are applied to the embedded
// directory in one transaction each, so a hub that dies mid-round leaves
// the edge as it was before that round.
type Endpoint struct {
	DB       *sql.DB
	Dir      *directory.Embedded
	Settings *settings.Settings
	// TLS returns the server configuration presenting the certificate
	// the organisation holds for this edge (settings.EdgePresented, or
	// the internal transport certificate before the first round); it
	// requires a client certificate, checked here by direct trust.
	TLS func() (*tls.Config, error)
	Now func() time.Time
	Log *slog.Logger
	// WaitFor bounds an OpWait (default 50 s); Poll is how often it looks
	// for a change of the edge's own objects (default 100 ms).
	WaitFor, Poll time.Duration
	// Applied is called after a push committed, with the kind.
	Applied func(kind string)
	// Credential is this edge's server credential (nil: none), with
	// which it proves itself when its certificate is newer than the
	// organisation's copy.
	Credential *servercred.Key
	// MaxConnections bounds the connections served at once (default
	// DefaultMaxConnections); beyond, a connection is closed at once and
	// logged.
	MaxConnections int

	active atomic.Int32
}

// DefaultMaxConnections is the endpoint's limit of connections at once:
// each hub holds at most two (a round and a wait).
const DefaultMaxConnections = 16

// Handle serves one connection from a hub until it closes.
func (e *Endpoint) Handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	limit := e.MaxConnections
	if limit <= 0 {
		limit = DefaultMaxConnections
	}
	if n := e.active.Add(1); n > int32(limit) {
		e.active.Add(-1)
		e.Log.Warn("EdgeSync: connection limit reached; connection closed", "limit", limit, "client", conn.RemoteAddr().String())
		return
	}
	defer e.active.Add(-1)
	cfg, err := e.TLS()
	if err != nil {
		e.Log.Warn("EdgeSync: no certificate to present", "err", err)
		return
	}
	_ = conn.SetDeadline(e.Now().Add(30 * time.Second))
	tc := tls.Server(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		e.Log.Info("EdgeSync: TLS handshake failed", "client", conn.RemoteAddr().String(), "err", err)
		return
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return
	}
	peer := cs.PeerCertificates[0].Raw
	exp, err := cs.ExportKeyingMaterial(servercred.ExporterLabel, nil, servercred.ExporterLength)
	if err != nil {
		return
	}
	authed := ""
	for {
		_ = conn.SetDeadline(e.Now().Add(5 * time.Minute))
		var req Request
		limit := uint32(MaxMessage)
		if authed == "" {
			limit = MaxHello // nothing large before the hub is authenticated
		}
		if err := readLimited(tc, &req, limit); err != nil {
			if errors.Is(err, errTooLarge) {
				e.Log.Warn("EdgeSync: message refused", "client", conn.RemoteAddr().String(), "err", err)
				_ = writeMsg(tc, Response{Error: err.Error()})
			}
			return
		}
		if authed == "" || !strings.EqualFold(authed, req.Hub) {
			if req.Op != OpHello {
				_ = writeMsg(tc, Response{Error: "the first request of a session is hello"})
				return
			}
			if err := e.authenticate(ctx, req, peer, exp); err != nil {
				e.Log.Warn("EdgeSync: hub refused", "hub", req.Hub, "client", conn.RemoteAddr().String(), "err", err)
				_ = writeMsg(tc, Response{Error: err.Error()})
				return
			}
			authed = req.Hub
		}
		resp, err := e.serve(ctx, req, exp)
		if err != nil {
			e.Log.Warn("EdgeSync: request failed", "hub", req.Hub, "op", req.Op, "kind", req.Kind, "err", err)
			resp = Response{Error: err.Error()}
		}
		_ = conn.SetDeadline(e.Now().Add(5 * time.Minute))
		if err := writeMsg(tc, resp); err != nil {
			return
		}
	}
}

// authenticate checks the hub: by direct trust once the edge holds the
// organisation's servers (its certificate must be the one replicated for
// the hub it claims to be), else by the subscription's bootstrap account
// while it is valid.
func (e *Endpoint) authenticate(ctx context.Context, req Request, peer, exp []byte) error {
	sub, err := e.Settings.Get(ctx, settings.EdgeSubscribed)
	if err != nil {
		return err
	}
	if sub != "" {
		hub, err := e.Dir.Server(ctx, req.Hub)
		if err != nil {
			return fmt.Errorf("direct trust: %q is no hub this edge knows; the organisation's hubs are replicated by EdgeSync", req.Hub)
		}
		if hub.Role != directory.RoleHub {
			return fmt.Errorf("direct trust: %s is not a hub", hub.Name)
		}
		if bytes.Equal(hub.InternalTransportCertificate, peer) {
			return nil
		}
		// A renewed hub certificate (X4): the hub proves itself with its
		// server credential, and this round brings its new certificate.
		if len(hub.ServerCredential) > 0 && servercred.Verify(hub.ServerCredential, servercred.Client, hub.Name, exp, req.Proof) == nil {
			e.Log.Info("EdgeSync: hub authenticated by its server credential (its certificate is newer than this edge's copy)", "hub", hub.Name)
			return nil
		}
		return fmt.Errorf("direct trust: the certificate presented is not the internal transport certificate this edge holds for %s (%s), and no server credential of %s proves it; remove the subscription on a hub and subscribe this edge again", hub.Name, hub.InternalTransportCertificateThumbprint, hub.Name)
	}
	if req.Bootstrap == nil {
		return errors.New("this edge has not been synchronised yet: the first round must carry the subscription's bootstrap account")
	}
	return e.checkBootstrap(ctx, *req.Bootstrap)
}

func (e *Endpoint) checkBootstrap(ctx context.Context, b Bootstrap) error {
	v, err := e.Settings.Get(ctx, settings.EdgeBootstrap)
	if err != nil {
		return err
	}
	f := strings.Fields(v)
	if len(f) != 3 {
		return errors.New("this edge has no subscription waiting: run New-EdgeSubscription on the edge, and import the file on a hub")
	}
	exp, _ := strconv.ParseInt(f[2], 10, 64)
	if !e.Now().Before(time.Unix(exp, 0)) {
		return fmt.Errorf("the subscription's bootstrap account expired at %s: run New-EdgeSubscription on the edge again and import the new file", time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	if b.Account != f[0] || bcrypt.CompareHashAndPassword([]byte(f[1]), []byte(b.Password)) != nil {
		return errors.New("the bootstrap account or password is not this edge's current subscription's (an older file?): import the edge's latest subscription file")
	}
	return nil
}

func (e *Endpoint) serve(ctx context.Context, req Request, exp []byte) (Response, error) {
	switch req.Op {
	case OpHello:
		r, err := e.own(ctx)
		if err == nil && e.Credential != nil {
			r.Proof = e.Credential.Prove(servercred.Server, r.Server.Name, exp)
		}
		return r, err
	case OpPush:
		return e.push(ctx, req)
	case OpWait:
		wait := e.WaitFor
		if wait <= 0 {
			wait = 50 * time.Second
		}
		poll := e.Poll
		if poll <= 0 {
			poll = 100 * time.Millisecond
		}
		deadline := e.Now().Add(wait)
		for {
			r, err := e.own(ctx)
			if err != nil || r.Generation != req.Generation || !e.Now().Before(deadline) {
				return r, err
			}
			select {
			case <-ctx.Done():
				return r, ctx.Err()
			case <-time.After(poll):
			}
		}
	}
	return Response{}, fmt.Errorf("unknown EdgeSync operation %q", req.Op)
}

// own returns the edge's own objects and their fingerprint.
func (e *Endpoint) own(ctx context.Context) (Response, error) {
	self, err := e.Settings.Get(ctx, settings.ServerName)
	if err != nil {
		return Response{}, err
	}
	srv, err := e.Dir.Server(ctx, self)
	if err != nil {
		return Response{}, err
	}
	conns, err := e.Dir.ReceiveConnectors(ctx, self)
	if err != nil {
		return Response{}, err
	}
	r := Response{Server: srv, ReceiveConnectors: conns}
	b, _ := json.Marshal([]any{srv, conns})
	h := sha256.Sum256(b)
	r.Generation = hex.EncodeToString(h[:16])
	return r, nil
}

// push applies one round in one transaction: the replicated objects of
// the kind become exactly the ones sent.
func (e *Endpoint) push(ctx context.Context, req Request) (Response, error) {
	start := e.Now()
	self, err := e.Settings.Get(ctx, settings.ServerName)
	if err != nil {
		return Response{}, err
	}
	changed, objects := 0, 0
	ctx = directory.Replicating(ctx)
	err = db.Tx(ctx, e.DB, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		switch req.Kind {
		case KindConfiguration:
			if req.Config == nil {
				return errors.New("a configuration round without its configuration")
			}
			changed, objects, err = e.applyConfig(ctx, self, req.Config)
		case KindRecipients:
			if req.Base != "" {
				cur, err := e.Settings.Get(ctx, settings.EdgeRecipientsRound)
				if err != nil {
					return err
				}
				if cur != req.Base {
					return errNeedWhole
				}
				changed, objects, err = e.applyRecipientsDelta(ctx, req.Recipients, req.Removed)
			} else {
				changed, objects, err = e.applyRecipients(ctx, req.Recipients)
			}
			if err == nil {
				err = e.Settings.Set(ctx, settings.EdgeRecipientsRound, req.Round)
			}
		default:
			return fmt.Errorf("unknown kind of round %q", req.Kind)
		}
		if err != nil {
			return err
		}
		if v, err := e.Settings.Get(ctx, settings.EdgeSubscribed); err != nil {
			return err
		} else if v == "" && req.Kind == KindConfiguration {
			// The first configuration round: the edge now knows the hubs
			// and authenticates them by direct trust; the bootstrap
			// account has done its work.
			if err := e.Settings.Set(ctx, settings.EdgeSubscribed, e.Now().UTC().Format(time.RFC3339)); err != nil {
				return err
			}
			if err := e.Settings.Set(ctx, settings.EdgeBootstrap, ""); err != nil {
				return err
			}
		}
		if req.EdgeThumbprint != "" {
			if err := e.Settings.Set(ctx, settings.EdgePresented, strings.ToUpper(req.EdgeThumbprint)); err != nil {
				return err
			}
		}
		return Record(ctx, e.DB, Round{Edge: self, Kind: req.Kind, Hub: req.Hub, Time: start, Objects: objects, Changed: changed, Duration: e.Now().Sub(start).Round(time.Millisecond).String()})
	})
	if errors.Is(err, errNeedWhole) {
		return Response{NeedWhole: true}, nil
	}
	if err != nil {
		return Response{}, fmt.Errorf("apply the %s round: %w", req.Kind, err)
	}
	if e.Applied != nil {
		e.Applied(req.Kind)
	}
	r, err := e.own(ctx)
	r.Changed, r.Held = changed, objects
	return r, err
}

var errNeedWhole = errors.New("the delta's base is not this edge's last recipients round")

func (e *Endpoint) applyConfig(ctx context.Context, self string, c *Config) (changed, objects int, err error) {
	// The edge's own objects are its own: never replaced by a hub's copy.
	servers := make([]directory.Server, len(c.Servers))
	for i, s := range c.Servers {
		s.EdgeSyncBootstrap = ""
		servers[i] = s
	}
	steps := []func() (int, int, error){
		func() (int, int, error) {
			return replace(ctx, e.Dir.Servers, func(s directory.Server) string { return strings.ToLower(s.Name) },
				func(s directory.Server) bool { return strings.EqualFold(s.Name, self) }, servers,
				func(ctx context.Context, s directory.Server) error { return e.Dir.DeleteServer(ctx, s.Name) }, e.Dir.PutServer)
		},
		func() (int, int, error) {
			all := func(ctx context.Context) ([]directory.ReceiveConnector, error) {
				return directory.AllReceiveConnectors(ctx, e.Dir)
			}
			return replace(ctx, all, func(rc directory.ReceiveConnector) string { return strings.ToLower(rc.Server + `\` + rc.Name) },
				func(rc directory.ReceiveConnector) bool { return strings.EqualFold(rc.Server, self) }, c.ReceiveConnectors,
				func(ctx context.Context, rc directory.ReceiveConnector) error {
					return ignoreNotFound(e.Dir.DeleteReceiveConnector(ctx, rc.Server, rc.Name))
				}, e.Dir.PutReceiveConnector)
		},
		func() (int, int, error) {
			return replace(ctx, e.Dir.SendConnectors, func(sc directory.SendConnector) string { return strings.ToLower(sc.Name) }, nil, c.SendConnectors,
				func(ctx context.Context, sc directory.SendConnector) error {
					return e.Dir.DeleteSendConnector(ctx, sc.Name)
				}, e.Dir.PutSendConnector)
		},
		func() (int, int, error) {
			return replace(ctx, e.Dir.AcceptedDomains, func(d directory.AcceptedDomain) string { return strings.ToLower(d.DomainName) }, nil, c.AcceptedDomains,
				func(ctx context.Context, d directory.AcceptedDomain) error {
					return e.Dir.DeleteAcceptedDomain(ctx, d.DomainName)
				}, e.Dir.PutAcceptedDomain)
		},
		func() (int, int, error) {
			return replace(ctx, e.Dir.TrustedRoots, func(r directory.TrustedRoot) string { return strings.ToLower(r.Thumbprint) }, nil, c.TrustedRoots,
				func(ctx context.Context, r directory.TrustedRoot) error {
					return e.Dir.DeleteTrustedRoot(ctx, r.Thumbprint)
				}, e.Dir.PutTrustedRoot)
		},
	}
	for _, step := range steps {
		n, wanted, err := step()
		changed += n
		objects += wanted
		if err != nil {
			return changed, 0, err
		}
	}
	return changed, objects, nil
}

func (e *Endpoint) applyRecipients(ctx context.Context, rs []Recipient) (changed, objects int, err error) {
	boxes := make(map[string]directory.Mailbox, len(rs))
	for _, r := range rs {
		a := key(r.Address)
		if a == "" || !strings.Contains(a, "@") {
			continue
		}
		boxes[a] = directory.Mailbox{Address: a, Server: r.Server}
	}
	have, err := e.Dir.Mailboxes(ctx)
	if err != nil {
		return 0, 0, err
	}
	var put []directory.Mailbox
	var del []string
	seen := make(map[string]bool, len(have))
	for _, h := range have {
		k := key(h.Address)
		seen[k] = true
		if w, ok := boxes[k]; !ok {
			del = append(del, h.Address)
		} else if w != h {
			put = append(put, w)
		}
	}
	for k, w := range boxes {
		if !seen[k] {
			put = append(put, w)
		}
	}
	n, err := e.Dir.ChangeMailboxes(ctx, put, del)
	return n, len(boxes), err
}

// applyRecipientsDelta adds, changes and removes the recipients named.
func (e *Endpoint) applyRecipientsDelta(ctx context.Context, put []Recipient, removed []string) (changed, objects int, err error) {
	boxes := make([]directory.Mailbox, 0, len(put))
	for _, r := range put {
		if a := key(r.Address); a != "" && strings.Contains(a, "@") {
			boxes = append(boxes, directory.Mailbox{Address: a, Server: r.Server})
		}
	}
	if changed, err = e.Dir.ChangeMailboxes(ctx, boxes, removed); err != nil {
		return changed, 0, err
	}
	n, err := e.Dir.Count(ctx, directory.KindMailbox)
	return changed, n, err
}

// replace makes the objects list returns exactly want (both without
// those skip names, when skip is set): it deletes those not wanted and
// writes those new or different. It returns how many it changed and how
// many are wanted.
func replace[T any](ctx context.Context, list func(context.Context) ([]T, error), keyOf func(T) string, skip func(T) bool, wantList []T,
	del func(context.Context, T) error, put func(context.Context, T) error) (int, int, error) {
	want := make(map[string]T, len(wantList))
	for _, w := range wantList {
		if skip == nil || !skip(w) {
			want[keyOf(w)] = w
		}
	}
	have, err := list(ctx)
	if err != nil {
		return 0, len(want), err
	}
	n := 0
	seen := make(map[string]bool, len(have))
	for _, h := range have {
		if skip != nil && skip(h) {
			continue
		}
		k := keyOf(h)
		seen[k] = true
		w, ok := want[k]
		if !ok {
			if err := del(ctx, h); err != nil {
				return n, len(want), err
			}
			n++
			continue
		}
		if same(h, w) {
			continue
		}
		if err := put(ctx, w); err != nil {
			return n, len(want), err
		}
		n++
	}
	for k, w := range want {
		if seen[k] {
			continue
		}
		if err := put(ctx, w); err != nil {
			return n, len(want), err
		}
		n++
	}
	return n, len(want), nil
}

func same[T any](a, b T) bool {
	if m, ok := any(a).(directory.Mailbox); ok { // 100,000 of them: no JSON
		return m == any(b).(directory.Mailbox)
	}
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func ignoreNotFound(err error) error {
	if errors.Is(err, directory.ErrNotFound) {
		return nil
	}
	return err
}

func key(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func jsonOf(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func unjson(s string, v any) error { return json.Unmarshal([]byte(s), v) }
