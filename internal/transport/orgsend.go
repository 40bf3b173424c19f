package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/queue"
	"certrelay/internal/servercred"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
	"certrelay/internal/tracking"
)

// deliverOrg sends mail for the mailboxes homed on another server of the
// organisation to that server (S6, X2): X-ANONYMOUSTLS with this server's
// internal transport certificate, the peer checked by direct trust (or,
// between hubs, by its server credential), never in plain text. A failure
// leaves the mail in the queue.
func (s *Sender) deliverOrg(ctx context.Context, st *State, name string, d queue.Delivery) []queue.Outcome {
	all := func(err error) []queue.Outcome {
		out := make([]queue.Outcome, len(d.Recipients))
		for i, r := range d.Recipients {
			out[i] = queue.Outcome{Idx: r.Idx, Err: err}
		}
		return out
	}
	peer := st.Org.Server(name)
	if peer == nil {
		return all(tempf("4.4.0", "server %s, where these mailboxes are homed, is not in the directory (certrelay server list shows the organisation)", name))
	}
	if len(peer.Addrs) == 0 {
		return all(tempf("4.4.0", "server %s has no enabled receive connector that accepts organisation servers (ExchangeServers); on %s: certrelay connector receive set NAME --permission-groups ...,ExchangeServers", peer.Name, peer.Name))
	}
	me := st.Server
	hubs := me.Role == directory.RoleHub && peer.Role == directory.RoleHub
	in := s.Serving.Internal(internalRequest(me, hubs))
	RaiseInternal(ctx, s.Events, me, in)
	if in.Source == serving.InternalNone {
		// X5: between a hub and an edge, direct trust needs the
		// certificate; nothing stands in for it.
		return all(tempf("4.7.0", "this server has no internal transport certificate (%s), and sessions with %s server %s authenticate by direct trust only: make one with certrelay cert new, which publishes it", in.Why, peer.Role, peer.Name))
	}
	var lastErr error
	for _, addr := range peer.Addrs {
		outs, err := s.tryOrg(ctx, st, peer, in, hubs, addr, d)
		if err == nil {
			return outs
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return all(lastErr)
}

// tryOrg runs one session with an organisation server at addr.
func (s *Sender) tryOrg(ctx context.Context, st *State, peer *OrgServer, in serving.Internal, hubs bool, addr string, d queue.Delivery) ([]queue.Outcome, error) {
	me := st.Server
	rec := tracking.Record{Time: time.Now(), MessageID: d.MsgID, Connector: "organisation server " + peer.Name, Host: addr, ClientCert: in.Thumbprint, PeerServer: peer.Name, Policy: PolicyDirectTrust}
	for _, r := range d.Recipients {
		rec.Recipients = append(rec.Recipients, r.Address)
	}
	client, err := s.connect(ctx, addr)
	if err != nil {
		return nil, s.track(rec, tempf("4.4.1", "cannot connect to %s (server %s): %v", addr, peer.Name, err))
	}
	defer client.Close()
	client.LocalName = me.Fqdn
	if err := client.Hello(ctx, me.Fqdn); err != nil {
		return nil, s.track(rec, sessionError(addr, "EHLO", err))
	}
	if !client.Supports("X-ANONYMOUSTLS") {
		_ = client.Quit(ctx)
		return nil, s.track(rec, tempf("4.7.0", "%s (server %s) does not offer X-ANONYMOUSTLS, and mail between the organisation's servers is never sent in plain text; check that its connector accepts organisation servers (ExchangeServers) and that it has an internal transport certificate", addr, peer.Name))
	}
	if err := client.AnonymousTLS(ctx, in.Client); err != nil {
		return nil, s.track(rec, tempf("4.7.0", "X-ANONYMOUSTLS with %s (server %s) failed: %v", addr, peer.Name, err))
	}
	cs, _ := client.TLSConnectionState()
	rec.TLS = "X-AnonymousTLS " + tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	var der []byte
	if len(cs.PeerCertificates) > 0 {
		der = cs.PeerCertificates[0].Raw
		rec.PeerCert = cs.PeerCertificates[0].Subject.String()
		rec.PeerThumb = thumbprint(der)
	}
	t := peer.Check(der, time.Now())
	directTrustChecked(ctx, s.Events, s.Trace, "send", peer.Name, t, der)
	if t.OK {
		rec.Auth = byDirectTrust
		if t.Expired {
			s.raise(ctx, 12019, peer.Name+" "+peer.InternalTransportCertificateThumbprint, peer.Name, peer.InternalTransportCertificateThumbprint)
		}
	}
	// The credentials: between hubs, when this side presented a
	// certificate direct trust cannot accept (a fallback), or the peer
	// did; between a hub and an edge (X4), when the peer asks for this
	// hub's proof (the edge does not hold its renewed certificate yet), or
	// when an edge does not hold the hub's renewed certificate: the edge
	// then proves itself and checks the hub's proof. An edge itself is
	// only ever accepted by direct trust.
	offered := s.Credential != nil && has(client.ServerAuthMechanisms(), CredentialMechanism)
	useCred := hubs && (!t.OK || in.Source != serving.InternalConfigured)
	switch {
	case me.Role == directory.RoleHub && peer.Role == directory.RoleEdge:
		useCred = t.OK
	case me.Role == directory.RoleEdge && peer.Role == directory.RoleHub:
		useCred = !t.OK
	}
	if useCred && offered {
		if err := s.proveCredential(ctx, client, &cs, me, peer); err != nil {
			if !t.OK {
				return nil, s.trustFailed(ctx, rec, t, der, addr, err.Error())
			}
			_ = client.Quit(ctx)
			return nil, s.track(rec, tempf("4.7.0", "%s (server %s) did not accept this server's credential: %v", addr, peer.Name, err))
		}
		if !t.OK {
			rec.Auth = byCredential
		}
	}
	if !t.OK && rec.Auth == "" {
		return nil, s.trustFailed(ctx, rec, t, der, addr, "")
	}
	// REQUIRETLS (RFC 8689) travels on between the organisation's
	// servers, which direct trust authenticates.
	return s.sendMessage(ctx, client, rec, addr, d, d.Meta.RequireTLS && client.Supports("REQUIRETLS"))
}

// proveCredential runs X-EXPS: this server's proof out, the peer's back.
func (s *Sender) proveCredential(ctx context.Context, client *smtp.Client, cs *tls.ConnectionState, me directory.Server, peer *OrgServer) error {
	exp, err := cs.ExportKeyingMaterial(servercred.ExporterLabel, nil, servercred.ExporterLength)
	if err != nil {
		return err
	}
	resp := append([]byte(me.Name+"\x00"), s.Credential.Prove(servercred.Client, me.Name, exp)...)
	answer, err := client.ServerAuth(ctx, CredentialMechanism, resp)
	if err != nil {
		return err
	}
	name, proof, ok := bytes.Cut(answer, []byte{0})
	if !ok || !strings.EqualFold(string(name), peer.Name) {
		return fmt.Errorf("the answer names %q, not %s", name, peer.Name)
	}
	return servercred.Verify(peer.ServerCredential, servercred.Server, peer.Name, exp, proof)
}

// trustFailed raises 2018 and 2019 for a peer direct trust (and the
// credentials) refused, and returns the error that keeps the mail queued.
func (s *Sender) trustFailed(ctx context.Context, rec tracking.Record, t Trust, der []byte, addr, extra string) error {
	thumb, problem := t.Problem(t.Server.Fqdn, der)
	if extra != "" {
		problem += "; its server credential: " + extra
	}
	host := hostOf(addr)
	s.raise(ctx, 2018, thumb+" "+host, thumb, host)
	s.raise(ctx, 2019, thumb+" send", thumb, problem)
	s.Log.Warn("direct trust failed", "trace", `Transport\Certificate`, "server", t.Server.Name, "host", addr, "thumbprint", thumb, "problem", problem)
	return s.track(rec, tempf("4.7.0", "direct trust with %s (server %s) failed: %s", addr, t.Server.Name, problem))
}

func (s *Sender) raise(ctx context.Context, id int, key string, params ...string) {
	if s.Events != nil {
		_, _ = s.Events.Raise(ctx, id, key, params...)
	}
}

// outcomes turns the per-recipient results of a transaction into the
// queue's outcomes, and records the attempt.
func (s *Sender) outcomes(rec tracking.Record, host string, d queue.Delivery, results []smtp.RcptResult) []queue.Outcome {
	outs := make([]queue.Outcome, len(d.Recipients))
	delivered, failed := 0, 0
	for i, r := range d.Recipients {
		outs[i] = queue.Outcome{Idx: r.Idx}
		if i < len(results) && results[i].Err != nil {
			outs[i].Err = replyOutcome(host, results[i].Err)
			failed++
		} else {
			delivered++
		}
	}
	rec.Result = fmt.Sprintf("delivered to %d, refused for %d", delivered, failed)
	if failed == 0 {
		rec.Result = "delivered"
	}
	if s.Track != nil {
		s.Track(rec)
	}
	return outs
}
