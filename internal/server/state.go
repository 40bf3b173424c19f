package server

import (
	"context"
	"strings"
	"time"

	"certrelay/internal/certview"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/settings"
	"certrelay/internal/transport"
)

// dirState makes the transport's snapshots of the directory, reading
// again only the kinds of objects a change names: a new mailbox does not
// re-read the connectors.
type dirState struct {
	src     *certview.Source
	me      directory.Server
	conns   []directory.ReceiveConnector
	send    []directory.SendConnector
	domains []directory.AcceptedDomain
	boxes   []directory.Mailbox
	org     *transport.Org
	// The domain-security lists (DS1), from the local settings.
	sendSecure, recvSecure map[string]bool
}

// Kinds of directory objects, as the change log names them
// ("kind/key").
const (
	kindServer  = "server"
	kindReceive = "receiveconnector"
	kindSend    = "sendconnector"
	kindDomain  = "accepteddomain"
	kindMailbox = "mailbox"
	kindRoot    = "trustedroot"
	// kindSecure is no directory object: the domain-security settings,
	// which the transport's snapshot carries.
	kindSecure = "domainsecure"
)

var allKinds = []string{kindServer, kindReceive, kindSend, kindDomain, kindMailbox, kindRoot, kindSecure}

// kindsOf returns the kinds of objects the change-log keys name; an
// unknown key means every kind.
func kindsOf(keys []string) map[string]bool {
	out := map[string]bool{}
	for _, k := range keys {
		kind, _, _ := strings.Cut(k, "/")
		known := false
		for _, a := range allKinds {
			known = known || a == kind
		}
		if !known {
			for _, a := range allKinds {
				out[a] = true
			}
			return out
		}
		out[kind] = true
	}
	return out
}

// build reads the kinds named (nil: all) and returns a new snapshot.
func (b *dirState) build(ctx context.Context, kinds map[string]bool, now time.Time) (*transport.State, error) {
	all := kinds == nil
	var err error
	if all || kinds[kindServer] {
		if b.me, err = b.src.LocalServer(ctx); err != nil {
			return nil, err
		}
		b.me = b.presentedInternal(ctx, b.me)
		if !all {
			kinds[kindReceive] = true // the server's name picks its connectors
		}
	}
	if all || kinds[kindReceive] {
		if b.conns, err = b.src.Dir.ReceiveConnectors(ctx, b.me.Name); err != nil {
			return nil, err
		}
	}
	if all || kinds[kindServer] || kinds[kindReceive] {
		if b.org, err = b.buildOrg(ctx); err != nil {
			return nil, err
		}
	}
	if all || kinds[kindSend] {
		if b.send, err = b.src.Dir.SendConnectors(ctx); err != nil {
			return nil, err
		}
	}
	if all || kinds[kindDomain] {
		if b.domains, err = b.src.Dir.AcceptedDomains(ctx); err != nil {
			return nil, err
		}
	}
	if all || kinds[kindMailbox] {
		if b.boxes, err = b.src.Dir.Mailboxes(ctx); err != nil {
			return nil, err
		}
	}
	if all || kinds[kindSecure] {
		if b.sendSecure, err = b.domainList(ctx, settings.TLSSendDomainSecureList); err != nil {
			return nil, err
		}
		if b.recvSecure, err = b.domainList(ctx, settings.TLSReceiveDomainSecureList); err != nil {
			return nil, err
		}
	}
	st := transport.NewState(b.me, b.conns, b.send, b.domains, b.boxes, now)
	st.Org = b.org
	st.SendDomainSecure, st.ReceiveDomainSecure = b.sendSecure, b.recvSecure
	return st, nil
}

// domainList reads a domain-security list setting (normalised when it
// was written).
func (b *dirState) domainList(ctx context.Context, key string) (map[string]bool, error) {
	v, err := b.src.Settings.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, d := range settings.SplitList(v) {
		out[strings.ToLower(d)] = true
	}
	return out, nil
}

// buildOrg indexes the organisation's servers for direct trust and
// routing: their objects and the receive connectors they accept
// organisation servers on.
func (b *dirState) buildOrg(ctx context.Context) (*transport.Org, error) {
	servers, err := b.src.Dir.Servers(ctx)
	if err != nil {
		return nil, err
	}
	all, err := directory.AllReceiveConnectors(ctx, b.src.Dir)
	if err != nil {
		return nil, err
	}
	conns := map[string][]directory.ReceiveConnector{}
	for _, c := range all {
		k := strings.ToLower(c.Server)
		conns[k] = append(conns[k], c)
	}
	return transport.NewOrg(servers, conns), nil
}

// nextRebuild returns when every certificate must be judged again even
// without a change: when a certificate's validity begins or ends.
func nextRebuild(ix *selection.Index) time.Duration {
	vu := ix.ValidUntil()
	if vu.IsZero() {
		return time.Hour
	}
	d := time.Until(vu) + time.Second
	if d < time.Second {
		d = time.Second
	}
	if d > time.Hour {
		d = time.Hour
	}
	return d
}
