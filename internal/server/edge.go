package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"certrelay/internal/directory"
	"certrelay/internal/edgesync"
	"certrelay/internal/serving"
	"certrelay/internal/settings"
)

// EdgeSync in a running server (SPEC X3, X4): a hub runs an
// edgesync.Syncer, told of every change of the directory so that edges
// get it at once; an edge that has written a subscription runs the
// EdgeSync endpoint on the serving layer's listeners, presenting the
// certificate the organisation holds for it.

type edgeSync struct {
	syncer   *edgesync.Syncer
	endpoint *edgesync.Endpoint
	ls       *serving.Listeners
}

// startEdgeSync starts the side of EdgeSync this server's role runs.
func (s *srv) startEdgeSync(ctx context.Context) {
	me := s.dir.me
	switch me.Role {
	case directory.RoleHub:
		org := directory.Directory(s.src.Embedded)
		if s.src.Org != nil {
			org = s.src.Org
		}
		leaser, ok := org.(directory.Leaser)
		if !ok {
			return
		}
		sy := &edgesync.Syncer{Dir: s.src.Dir, Org: org, Leaser: leaser, Self: me.Name, DB: s.src.DB, Now: s.src.Now, Log: s.log,
			Client: s.edgeClient, Credential: s.cred,
			Problem: func(edge, err string) {
				_, _ = s.events.Raise(context.Background(), 16091, edge, edge, err)
			},
			Restored: func(edge string) { _, _ = s.events.Raise(context.Background(), 16092, edge, edge) },
			Published: func(edge, old, new string) {
				_, _ = s.events.Raise(context.Background(), 16093, edge+" "+new, edge, old, new)
			},
		}
		s.edge.syncer = sy
		go sy.Run(ctx)
	case directory.RoleEdge:
		if s.src.Joined != nil {
			return // an edge that joined the directory itself needs no EdgeSync
		}
		s.edge.endpoint = &edgesync.Endpoint{DB: s.src.DB, Dir: s.src.Embedded, Settings: s.src.Settings, Now: s.src.Now, Log: s.log, TLS: s.edgeServerTLS, Credential: s.cred}
		s.edge.ls = s.layer.Listeners(serving.ListenOptions{Kind: "EdgeSync endpoint"})
		s.applyEdgeEndpoint(ctx)
	}
}

// edgeClient is a hub's TLS client configuration for EdgeSync: its
// internal transport certificate, which the edge checks by direct trust.
func (s *srv) edgeClient() (*tls.Config, []byte, error) {
	me := *s.me.Load()
	names := me.DNSNames()
	in := s.layer.Internal(serving.InternalRequest{Thumbprint: me.InternalTransportCertificateThumbprint, PhysicalFQDN: names[2].Name, HostName: me.Name, FQDN: me.Fqdn})
	if in.Source == serving.InternalNone {
		return nil, nil, fmt.Errorf("%s", in.Why)
	}
	return in.Client, in.Leaf.Raw, nil
}

// edgeServerTLS is the edge endpoint's TLS configuration: the
// certificate the organisation holds for this edge (before the first
// round, the one its subscription file carried).
func (s *srv) edgeServerTLS() (*tls.Config, error) {
	ctx := context.Background()
	me, err := s.src.LocalServer(ctx)
	if err != nil {
		return nil, err
	}
	thumb, _ := s.src.Settings.Get(ctx, settings.EdgePresented)
	if thumb == "" {
		thumb = me.InternalTransportCertificateThumbprint
	}
	names := me.DNSNames()
	in := s.layer.Internal(serving.InternalRequest{Thumbprint: thumb, PhysicalFQDN: names[2].Name, HostName: me.Name, FQDN: me.Fqdn})
	if in.Source != serving.InternalConfigured && thumb != me.InternalTransportCertificateThumbprint {
		// The old certificate is gone (removed before the organisation
		// had the new one): the current one, which the hubs accept with
		// this edge's server credential.
		in = s.layer.Internal(serving.InternalRequest{Thumbprint: me.InternalTransportCertificateThumbprint, PhysicalFQDN: names[2].Name, HostName: me.Name, FQDN: me.Fqdn})
	}
	if in.Source != serving.InternalConfigured {
		return nil, fmt.Errorf("the internal transport certificate %s the organisation holds for this edge cannot be used (%s): restore its key, or make a new internal certificate (New-ExchangeCertificate) and subscribe this edge again (Remove-EdgeSubscription on a hub, New-EdgeSubscription here)", thumb, in.Why)
	}
	return in.Server, nil
}

// applyEdgeEndpoint opens, moves or closes the endpoint as the settings
// say: it listens once a subscription file was written.
func (s *srv) applyEdgeEndpoint(ctx context.Context) {
	if s.edge.ls == nil {
		return
	}
	binding, _ := s.src.Settings.Get(ctx, settings.EdgeSyncBinding)
	boot, _ := s.src.Settings.Get(ctx, settings.EdgeBootstrap)
	sub, _ := s.src.Settings.Get(ctx, settings.EdgeSubscribed)
	var want []serving.Binding
	if binding != "" && (boot != "" || sub != "") {
		ep := s.edge.endpoint
		want = append(want, serving.Binding{Addr: binding, Owner: "EdgeSync", Handle: func(c net.Conn) { ep.Handle(ctx, c) }})
	}
	for _, err := range s.edge.ls.Set(ctx, want) {
		s.log.Error("EdgeSync endpoint", "err", err)
	}
}

// edgeChanges tells EdgeSync what changed: on a hub, the kinds of
// directory objects (mailboxes are the recipients round, the rest
// configuration) and a round asked for by Start-EdgeSynchronization; on
// an edge, its EdgeSync settings.
func (s *srv) edgeChanges(ctx context.Context, kinds map[string]bool, settingKeys []string) {
	if sy := s.edge.syncer; sy != nil {
		if kinds[kindServer] {
			sy.Refresh(ctx)
		}
		cfg := false
		for k := range kinds {
			cfg = cfg || k != kindMailbox
		}
		if cfg {
			sy.Changed(edgesync.KindConfiguration)
		}
		if kinds[kindMailbox] {
			sy.Changed(edgesync.KindRecipients)
		}
		for _, k := range settingKeys {
			if k == settings.EdgeSyncRequested {
				sy.Changed("")
			}
		}
	}
	if s.edge.ls != nil {
		for _, k := range settingKeys {
			if k == settings.EdgeSyncBinding || k == settings.EdgeBootstrap || k == settings.EdgeSubscribed {
				s.applyEdgeEndpoint(ctx)
				break
			}
		}
	}
}

// presentedInternal is, on a subscribed edge, its server object with the
// internal transport certificate the organisation holds for it: after a
// renewal the edge keeps presenting the old one until EdgeSync has
// published the new one, so no session between hub and edge fails (X4).
func (b *dirState) presentedInternal(ctx context.Context, me directory.Server) directory.Server {
	if me.Role != directory.RoleEdge || b.src.Joined != nil {
		return me
	}
	p, err := b.src.Settings.Get(ctx, settings.EdgePresented)
	if err != nil || p == "" || strings.EqualFold(p, me.InternalTransportCertificateThumbprint) {
		return me
	}
	e, err := b.src.Store.Get(ctx, p)
	if err != nil || e.Cert == nil {
		return me
	}
	me.InternalTransportCertificateThumbprint, me.InternalTransportCertificate = e.Thumbprint, e.Cert.Raw
	return me
}
