package server

import (
	"context"
	"strings"
	"time"

	"certrelay/internal/certview"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
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
}

// Kinds of directory objects, as the change log names them
// ("kind/key").
const (
	kindServer  = "server"
	kindReceive = "receiveconnector"
	kindSend    = "sendconnector"
	kindDomain  = "accepteddomain"
	kindMailbox = "mailbox"
)

var allKinds = []string{kindServer, kindReceive, kindSend, kindDomain, kindMailbox}

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
		if !all {
			kinds[kindReceive] = true // the server's name picks its connectors
		}
	}
	if all || kinds[kindReceive] {
		if b.conns, err = b.src.Dir.ReceiveConnectors(ctx, b.me.Name); err != nil {
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
	return transport.NewState(b.me, b.conns, b.send, b.domains, b.boxes, now), nil
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
