package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/edgesync"
	"certrelay/internal/settings"
)

// Edge subscriptions (SPEC X3): the edge writes a subscription file, a
// hub imports it, and EdgeSync (internal/edgesync, run by the hubs'
// servers) does the rest.

// EdgeSubscription is an edge subscription as Get-EdgeSubscription lists
// it: on a hub, each edge of the organisation; on an edge, its own.
type EdgeSubscription struct {
	Name                                   string
	Fqdn                                   string
	SyncAddress                            string
	InternalTransportCertificateThumbprint string
	// Status: on a hub, "Subscribed" (waiting for its first round:
	// "Bootstrapping"); on an edge, "NotSubscribed", "WaitingForImport"
	// (a file was written; no hub has synchronised yet) or "Subscribed".
	Status   string
	Created  *time.Time `json:",omitempty"` // when the subscription file was made (edge, waiting)
	Expires  *time.Time `json:",omitempty"` // when its bootstrap account expires (edge, waiting)
	LastSync *time.Time `json:",omitempty"`
}

// Send connectors an import creates, by edge.
func edgeToInternet(edge string) string { return "EdgeSync - " + edge + " to Internet" }
func edgeToOrg(edge string) string      { return "EdgeSync - " + edge + " to organisation" }

// orgDirectory is where a hub writes the organisation's objects that are
// no one server's own (an edge's server object): the organisation's
// directory when it joined one, else the embedded one.
func (a *Admin) orgDirectory() directory.Directory {
	if a.src.Org != nil {
		return a.src.Org
	}
	return a.src.Embedded
}

// SubscribeEdge writes this edge's subscription (New-EdgeSubscription on
// the edge): a new bootstrap account with a random password, valid
// edgesync.Lifetime, kept here as a bcrypt hash; the file is handed to
// deliver inside the transaction, so a file that cannot be written
// leaves nothing behind. binding is where the EdgeSync endpoint listens
// ("" keeps the current one, by default settings.DefaultEdgeSyncBinding).
func (a *Admin) SubscribeEdge(ctx context.Context, binding string, deliver func(File) (string, error)) (EdgeSubscription, error) {
	const op = "new edge subscription"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return EdgeSubscription{}, errorf(op, err)
	}
	if srv.Role != directory.RoleEdge {
		return EdgeSubscription{}, errorf(op, failed(Conflict, "this server is a %s: the subscription file is written on the edge, and imported on a hub", srv.Role).
			fix("on the edge, run %s; here, import its file with {New-EdgeSubscription/FileData -FileData FILE}", cmd("New-EdgeSubscription")))
	}
	if url, _ := a.Settings.Get(ctx, settings.DirectoryURL); url != "" {
		return EdgeSubscription{}, errorf(op, failed(Conflict, "this edge joined the directory %s itself; an edge that subscribes keeps the embedded directory", url).
			fix("set up the edge in a new data directory without {-Directory}"))
	}
	if binding == "" {
		if binding, err = a.Settings.Get(ctx, settings.EdgeSyncBinding); err != nil {
			return EdgeSubscription{}, errorf(op, err)
		}
		if binding == "" {
			binding = settings.DefaultEdgeSyncBinding
		}
	}
	host, portText, err := net.SplitHostPort(binding)
	port, perr := strconv.Atoi(portText)
	ip := net.ParseIP(host)
	if err != nil || perr != nil || port <= 0 || port > 65535 || ip == nil {
		return EdgeSubscription{}, errorf(op, invalid("SyncBinding", binding, "%q is not where a listener can bind: write it as IP:PORT, such as 0.0.0.0:50636", binding))
	}
	addr := ""
	if !ip.IsUnspecified() {
		addr = ip.String()
	}
	e, err := a.Store.Get(ctx, srv.InternalTransportCertificateThumbprint)
	if err != nil || e.Cert == nil {
		return EdgeSubscription{}, errorf(op, failed(Conflict, "this edge has no internal transport certificate to put in the subscription").
			fix("make one with %s", cmd("New-ExchangeCertificate", "-Force")))
	}
	key, err := a.Store.PrivateKey(e)
	if err != nil {
		return EdgeSubscription{}, errorf(op, failed(Conflict, "the key of the internal transport certificate %s cannot be read: %v", e.Thumbprint, err).
			fix("make a new internal transport certificate with %s", cmd("New-ExchangeCertificate", "-Force")))
	}
	pw := make([]byte, 24)
	acct := make([]byte, 6)
	if _, err := a.rand.Read(pw); err != nil {
		return EdgeSubscription{}, errorf(op, err)
	}
	if _, err := a.rand.Read(acct); err != nil {
		return EdgeSubscription{}, errorf(op, err)
	}
	password := base64.RawURLEncoding.EncodeToString(pw)
	account := fmt.Sprintf("ESRA.%s.%x", srv.Name, acct)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return EdgeSubscription{}, errorf(op, err)
	}
	now := a.now()
	sub, err := edgesync.New(srv.Name, srv.Fqdn, e.Cert, key, account, password, now, port, addr)
	if err != nil {
		return EdgeSubscription{}, errorf(op, err)
	}
	out := EdgeSubscription{Name: srv.Name, Fqdn: srv.Fqdn, SyncAddress: sub.Address(), InternalTransportCertificateThumbprint: e.Thumbprint, Status: "WaitingForImport"}
	created, expires := sub.Created, sub.Expires()
	out.Created, out.Expires = &created, &expires
	err = a.atomically(ctx, func(ctx context.Context) error {
		if err := a.Settings.Set(ctx, settings.EdgeSyncBinding, binding); err != nil {
			return err
		}
		if err := a.Settings.Set(ctx, settings.EdgeBootstrap, fmt.Sprintf("%s %s %d", account, hash, expires.Unix())); err != nil {
			return err
		}
		if v, _ := a.Settings.Get(ctx, settings.EdgeSubscribed); v == "" {
			if err := a.Settings.Set(ctx, settings.EdgePresented, e.Thumbprint); err != nil {
				return err
			}
		}
		_, err := deliver(File{Data: sub.Marshal(), Format: "edge subscription (XML)"})
		return err
	})
	if err != nil {
		return EdgeSubscription{}, errorf(op, err)
	}
	return out, nil
}

// ImportEdgeSubscription imports an edge's subscription file on a hub
// (New-EdgeSubscription -FileData): after every check, the edge becomes a
// server object of the organisation with its certificate, and two send
// connectors appear: the edge to the organisation, and the organisation
// to the internet through the edge. A refused file changes nothing.
func (a *Admin) ImportEdgeSubscription(ctx context.Context, data []byte) (EdgeSubscription, error) {
	const op = "import edge subscription"
	me, err := a.requireSetup(ctx)
	if err != nil {
		return EdgeSubscription{}, errorf(op, err)
	}
	again := msgf("on the edge, write a new file with %s and import it", cmd("New-EdgeSubscription"))
	if me.Role != directory.RoleHub {
		return EdgeSubscription{}, errorf(op, failed(Conflict, "this server is an edge: a subscription file is imported on a hub of the organisation").
			fix("copy the file to a hub and import it there"))
	}
	sub, err := edgesync.Parse(data, a.now())
	var fe *edgesync.FileError
	if errors.As(err, &fe) {
		return EdgeSubscription{}, errorf(op, invalid("FileData", "", "the subscription file is refused: %s", fe.Problem).fix("%s", markup(again)))
	}
	if err != nil {
		return EdgeSubscription{}, errorf(op, err)
	}
	thumb := certinfo.Thumbprint(sub.Certificate.Raw)
	name := strings.ToLower(sub.EdgeServerName)
	if n, err := dnsNameLabel(name); err != nil {
		return EdgeSubscription{}, errorf(op, invalid("FileData", "", "the subscription names the edge %q, which is not a server name: %v", sub.EdgeServerName, err).fix("%s", markup(again)))
	} else {
		name = n
	}
	org := a.orgDirectory()
	servers, err := org.Servers(ctx)
	if err != nil {
		return EdgeSubscription{}, errorf(op, err)
	}
	if _, err := a.Store.Get(ctx, thumb); err == nil {
		return EdgeSubscription{}, errorf(op, invalid("FileData", "", "the subscription carries certificate %s, which is this hub's own, not an edge's", thumb).
			fix("write the subscription file on the edge, with %s there", cmd("New-EdgeSubscription")))
	}
	for _, s := range servers {
		if bytes.Equal(s.InternalTransportCertificate, sub.Certificate.Raw) && !strings.EqualFold(s.Name, name) {
			return EdgeSubscription{}, errorf(op, invalid("FileData", "", "the subscription carries certificate %s, which is the internal transport certificate of %s %s", thumb, s.Role, s.Name).
				fix("write the subscription file on the edge, with %s there", cmd("New-EdgeSubscription")))
		}
		if strings.EqualFold(s.Name, name) && !s.Subscribed() {
			return EdgeSubscription{}, errorf(op, failed(Conflict, "the organisation has a %s named %s already, which is no subscribed edge", s.Role, s.Name).field("FileData", "").
				fix("give the edge another name (set it up again with {Install-CertrelayServer -Name NAME -Role edge})"))
		}
	}
	edge := directory.Server{Name: name, Fqdn: strings.ToLower(sub.EdgeServerFQDN), Role: directory.RoleEdge,
		InternalTransportCertificateThumbprint: thumb, InternalTransportCertificate: sub.Certificate.Raw,
		EdgeSyncAddress: sub.Address(), EdgeSyncBootstrap: sub.ESRAUsername + " " + sub.ESRAPassword}
	if err := edge.Check(); err != nil {
		return EdgeSubscription{}, errorf(op, invalid("FileData", "", "the subscription's edge cannot be used: %v", err).fix("%s", markup(again)))
	}
	conns := []directory.SendConnector{
		{Name: edgeToInternet(name), AddressSpaces: []directory.AddressSpace{{Domain: "*", Cost: 100}}, SourceTransportServers: []string{name}, Port: 25, Enabled: true},
		{Name: edgeToOrg(name), AddressSpaces: []directory.AddressSpace{{Domain: "--", Cost: 100}}, SourceTransportServers: []string{name}, Port: 25, Enabled: true},
	}
	// The connectors first, the server object last: a hub's EdgeSync
	// starts on the server object, so it is the commit point; a failure
	// before it takes back what was written.
	var written []string
	undo := func() {
		for _, n := range written {
			_ = org.DeleteSendConnector(context.WithoutCancel(ctx), n)
		}
	}
	// With the embedded directory all of it is one SQLite transaction;
	// with LDAP, undo takes back what was written.
	err = a.atomically(ctx, func(ctx context.Context) error {
		for _, c := range conns {
			if _, err := org.SendConnector(ctx, c.Name); err == nil {
				continue // a renewed subscription keeps the connectors as they were changed
			}
			if err := org.PutSendConnector(ctx, c); err != nil {
				return err
			}
			written = append(written, c.Name)
		}
		if err := org.PutServer(ctx, edge); err != nil {
			return err
		}
		a.raise(ctx, 16090, name, name, edge.Fqdn, thumb, edge.EdgeSyncAddress)
		return nil
	})
	if err != nil {
		if a.src.Org != nil {
			undo()
		}
		return EdgeSubscription{}, errorf(op, err)
	}
	return EdgeSubscription{Name: name, Fqdn: edge.Fqdn, SyncAddress: edge.EdgeSyncAddress, InternalTransportCertificateThumbprint: thumb, Status: "Bootstrapping"}, nil
}

func dnsNameLabel(n string) (string, error) {
	if n == "" || strings.Contains(n, ".") || len(n) > 63 {
		return "", fmt.Errorf("one DNS label is needed")
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return "", fmt.Errorf("%q is not allowed in a DNS label", r)
		}
	}
	return n, nil
}

// ListEdgeSubscriptions lists the edges (Get-EdgeSubscription): on a hub,
// the organisation's subscribed edges; on an edge, its own subscription.
func (a *Admin) ListEdgeSubscriptions(ctx context.Context) ([]EdgeSubscription, error) {
	me, err := a.requireSetup(ctx)
	if err != nil {
		return nil, errorf("list edge subscriptions", err)
	}
	rounds, _ := edgesync.Rounds(ctx, a.db)
	last := func(edge string) *time.Time {
		var t *time.Time
		for _, r := range rounds {
			if strings.EqualFold(r.Edge, edge) && r.Error == "" && (t == nil || r.Time.After(*t)) {
				rt := r.Time
				t = &rt
			}
		}
		return t
	}
	if me.Role == directory.RoleEdge {
		s := EdgeSubscription{Name: me.Name, Fqdn: me.Fqdn, InternalTransportCertificateThumbprint: me.InternalTransportCertificateThumbprint, Status: "NotSubscribed", LastSync: last(me.Name)}
		s.SyncAddress, _ = a.Settings.Get(ctx, settings.EdgeSyncBinding)
		if p, _ := a.Settings.Get(ctx, settings.EdgePresented); p != "" {
			s.InternalTransportCertificateThumbprint = p
		}
		if v, _ := a.Settings.Get(ctx, settings.EdgeSubscribed); v != "" {
			s.Status = "Subscribed"
		} else if b, _ := a.Settings.Get(ctx, settings.EdgeBootstrap); b != "" {
			s.Status = "WaitingForImport"
			if f := strings.Fields(b); len(f) == 3 {
				if n, err := strconv.ParseInt(f[2], 10, 64); err == nil {
					exp := time.Unix(n, 0).UTC()
					created := exp.Add(-edgesync.Lifetime)
					s.Expires, s.Created = &exp, &created
				}
			}
		}
		return []EdgeSubscription{s}, nil
	}
	servers, err := a.Dir.Servers(ctx)
	if err != nil {
		return nil, errorf("list edge subscriptions", err)
	}
	out := []EdgeSubscription{}
	for _, s := range servers {
		if !s.Subscribed() {
			continue
		}
		st := "Subscribed"
		if s.EdgeSyncBootstrap != "" {
			st = "Bootstrapping"
		}
		out = append(out, EdgeSubscription{Name: s.Name, Fqdn: s.Fqdn, SyncAddress: s.EdgeSyncAddress, InternalTransportCertificateThumbprint: s.InternalTransportCertificateThumbprint, Status: st, LastSync: last(s.Name)})
	}
	return out, nil
}

// RemoveEdgeSubscription removes an edge's subscription: on a hub, the
// edge's server object and the two send connectors its import made; on
// the edge, everything EdgeSync replicated, so it stands alone again.
func (a *Admin) RemoveEdgeSubscription(ctx context.Context, name string) error {
	const op = "remove edge subscription"
	me, err := a.requireSetup(ctx)
	if err != nil {
		return errorf(op, err)
	}
	if me.Role == directory.RoleEdge {
		if name != "" && !strings.EqualFold(name, me.Name) {
			return errorf(op, failed(NotFound, "this edge is %s, not %s", me.Name, name).field("Identity", name))
		}
		return errorf(op, a.atomically(ctx, func(ctx context.Context) error { return a.unsubscribeHere(ctx, me.Name) }))
	}
	if strings.TrimSpace(name) == "" {
		return errorf(op, usage("Identity", "name the edge whose subscription to remove ({Get-EdgeSubscription} lists them)"))
	}
	org := a.orgDirectory()
	srv, err := org.Server(ctx, name)
	if err != nil || !srv.Subscribed() {
		// What a removal stopped half-way left: the connectors alone.
		left := false
		for _, c := range []string{edgeToInternet(name), edgeToOrg(name)} {
			if _, err := org.SendConnector(ctx, c); err == nil {
				left = true
				if err := org.DeleteSendConnector(ctx, c); err != nil {
					return errorf(op, err)
				}
			}
		}
		if left {
			return nil
		}
		return errorf(op, failed(NotFound, "%s is no subscribed edge of the organisation", name).field("Identity", name).fix("list them with {Get-EdgeSubscription}"))
	}
	del, ok := org.(directory.ServerDeleter)
	if !ok {
		return errorf(op, fmt.Errorf("this directory cannot remove server objects"))
	}
	// The server object first: the hubs stop synchronising the edge; a
	// failure after it is repaired by running the command again.
	return errorf(op, a.atomically(ctx, func(ctx context.Context) error {
		if err := del.DeleteServer(ctx, srv.Name); err != nil {
			return err
		}
		for _, c := range []string{edgeToInternet(srv.Name), edgeToOrg(srv.Name)} {
			if err := org.DeleteSendConnector(ctx, c); err != nil && !errors.Is(err, directory.ErrNotFound) {
				return err
			}
		}
		return edgesync.Forget(ctx, a.db, srv.Name)
	}))
}

// unsubscribeHere drops, on an edge, what EdgeSync replicated.
func (a *Admin) unsubscribeHere(ctx context.Context, self string) error {
	rctx := directory.Replicating(ctx)
	e := a.src.Embedded
	servers, err := e.Servers(ctx)
	if err != nil {
		return err
	}
	for _, s := range servers {
		if !strings.EqualFold(s.Name, self) {
			if err := e.DeleteServer(rctx, s.Name); err != nil {
				return err
			}
		}
	}
	sends, _ := e.SendConnectors(ctx)
	for _, c := range sends {
		if err := e.DeleteSendConnector(rctx, c.Name); err != nil {
			return err
		}
	}
	domains, _ := e.AcceptedDomains(ctx)
	for _, d := range domains {
		if err := e.DeleteAcceptedDomain(rctx, d.DomainName); err != nil {
			return err
		}
	}
	boxes, _ := e.Mailboxes(ctx)
	for _, m := range boxes {
		if err := e.DeleteMailbox(rctx, m.Address); err != nil {
			return err
		}
	}
	roots, _ := e.TrustedRoots(ctx)
	for _, r := range roots {
		if err := e.DeleteTrustedRoot(rctx, r.Thumbprint); err != nil {
			return err
		}
	}
	for _, k := range []string{settings.EdgeSubscribed, settings.EdgeBootstrap, settings.EdgePresented} {
		if err := a.Settings.Set(ctx, k, ""); err != nil {
			return err
		}
	}
	return edgesync.Forget(ctx, a.db, self)
}

// RequestEdgeSync asks the running hub for a round with every edge now
// (Start-EdgeSynchronization), and waits up to wait for rounds to be
// recorded after the request; it returns the rounds of that time.
func (a *Admin) RequestEdgeSync(ctx context.Context, wait time.Duration) ([]edgesync.Round, error) {
	const op = "start edge synchronization"
	me, err := a.requireSetup(ctx)
	if err != nil {
		return nil, errorf(op, err)
	}
	if me.Role != directory.RoleHub {
		return nil, errorf(op, failed(Conflict, "EdgeSync runs on the hubs, which push to the edge").fix("run {Start-EdgeSynchronization} on a hub"))
	}
	start := a.now()
	err = a.atomically(ctx, func(ctx context.Context) error {
		v, _ := a.Settings.Get(ctx, settings.EdgeSyncRequested)
		n, _ := strconv.Atoi(v)
		return a.Settings.Set(ctx, settings.EdgeSyncRequested, strconv.Itoa(n+1))
	})
	if err != nil {
		return nil, errorf(op, err)
	}
	edges, err := a.ListEdgeSubscriptions(ctx)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		rounds, err := edgesync.Rounds(ctx, a.db)
		if err != nil {
			return nil, errorf(op, err)
		}
		var fresh []edgesync.Round
		done := map[string]bool{}
		for _, r := range rounds {
			if !r.Time.Before(start.Add(-time.Second)) {
				fresh = append(fresh, r)
				if r.Kind != edgesync.KindConfiguration {
					done[strings.ToLower(r.Edge)] = true // recipients come last; or the lease is another hub's
				}
			}
		}
		if len(done) >= len(edges) || time.Now().After(deadline) {
			if fresh == nil {
				fresh = []edgesync.Round{}
			}
			return fresh, nil
		}
		select {
		case <-ctx.Done():
			return nil, errorf(op, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// EdgeSyncStatus returns the last round of each kind with each edge (on
// an edge: the rounds it received).
func (a *Admin) EdgeSyncStatus(ctx context.Context) ([]edgesync.Round, error) {
	r, err := edgesync.Rounds(ctx, a.db)
	if err != nil {
		return nil, errorf("edge synchronization status", err)
	}
	return orEmpty(r), nil
}
