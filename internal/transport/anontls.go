package transport

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"certrelay/internal/directory"
	"certrelay/internal/servercred"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
)

// Sessions between the servers of an organisation (SPEC S6, X2, X5): the
// receiving side offers X-ANONYMOUSTLS on connectors that accept
// organisation servers; both sides present their internal transport
// certificates (serving.Layer.Internal: the configured one, else one for
// the physical FQDN, else — hub to hub — an ephemeral one); each side
// checks the other's by direct trust (Org.Check). When a hub presents a
// certificate direct trust cannot accept (its ephemeral one), the hubs
// prove themselves with their server credentials instead (X-EXPS with
// CredentialMechanism, internal/servercred). A peer that is neither fails
// the session: 1036 and 1037 here, 2018 and 2019 on a sending side.

// CredentialMechanism is certrelay's X-EXPS mechanism: the response and
// the answer are "SERVER-NAME NUL SIGNATURE" (servercred).
const CredentialMechanism = "CERTRELAY-SERVER-CREDENTIAL"

// How a session authenticated an organisation server.
const (
	byDirectTrust = "direct trust"
	byCredential  = "server credential"
)

// internalRequest is the request for this server's internal transport
// certificate; ephemeral allows the last fallback (between hubs).
func internalRequest(me directory.Server, ephemeral bool) serving.InternalRequest {
	names := me.DNSNames()
	return serving.InternalRequest{Thumbprint: me.InternalTransportCertificateThumbprint, PhysicalFQDN: names[2].Name,
		HostName: me.Name, FQDN: me.Fqdn, Ephemeral: ephemeral}
}

// RaiseInternal raises the events of an internal transport certificate
// that is not the configured one (S6, E4): 12012 when the directory names
// none, then 12023 (a certificate for the FQDN), 12024 (an ephemeral one)
// or 12013 (none at all). Throttled by the catalog.
func RaiseInternal(ctx context.Context, ev EventSink, me directory.Server, in serving.Internal) {
	if ev == nil || in.Source == serving.InternalConfigured {
		return
	}
	configured := me.InternalTransportCertificateThumbprint
	if configured == "" {
		_, _ = ev.Raise(ctx, 12012, me.Name, me.Name)
		configured = "(none)"
	}
	switch in.Source {
	case serving.InternalFQDN:
		_, _ = ev.Raise(ctx, 12023, configured, configured, in.Thumbprint)
	case serving.InternalEphemeral:
		_, _ = ev.Raise(ctx, 12024, configured, configured, in.Thumbprint)
	case serving.InternalNone:
		_, _ = ev.Raise(ctx, 12013, configured, configured)
	}
}

// CheckInternal resolves this server's internal transport certificate in
// the current snapshot and raises its events (RaiseInternal); the server
// calls it after each change, so the events come without traffic.
func (r *Receiver) CheckInternal(ctx context.Context) serving.Internal {
	st := r.state.Load()
	if st == nil || r.Serving == nil {
		return serving.Internal{}
	}
	in := r.Serving.Internal(internalRequest(st.Server, st.Server.Role == directory.RoleHub))
	RaiseInternal(ctx, r.Events, st.Server, in)
	return in
}

// orgCapabilities adds what a session offers organisation servers.
func (s *session) orgCapabilities(st smtp.State, cur *State, caps *smtp.Capabilities) {
	if st.TLS == nil && acceptsServers(s.c) && s.r.Serving != nil {
		caps.AnonymousTLS = s.r.Serving.Internal(internalRequest(cur.Server, cur.Server.Role == directory.RoleHub)).Source != serving.InternalNone
	}
	if st.AnonymousTLS && s.r.Credential != nil && s.offersCredential(cur) {
		caps.ServerAuth = []string{CredentialMechanism}
	}
}

// offersCredential says whether X-EXPS is offered after X-ANONYMOUSTLS:
// to a client direct trust did not accept (a hub may prove itself with
// its credential: between hubs, and to an edge that does not hold the
// hub's renewed certificate yet, X4), and, on a hub, to an edge it
// accepted, which may not hold this hub's renewed certificate and asks
// for its proof.
func (s *session) offersCredential(cur *State) bool {
	if s.peer == nil {
		return cur.Server.Role == directory.RoleHub || s.trust.Server == nil || s.trust.Server.Role == directory.RoleHub
	}
	return cur.Server.Role == directory.RoleHub && s.peer.Role == directory.RoleEdge
}

// anonymousTLSConfig is the configuration of X-ANONYMOUSTLS: this
// server's internal transport certificate, and the client's required.
func (s *session) anonymousTLSConfig() *serving.Internal {
	cur := s.r.state.Load()
	in := s.r.Serving.Internal(internalRequest(cur.Server, cur.Server.Role == directory.RoleHub))
	RaiseInternal(s.ctx, s.r.Events, cur.Server, in)
	if in.Source == serving.InternalNone || in.Server == nil {
		return nil
	}
	s.internal = &in
	return &in
}

// peerCert returns the DER of the client's certificate, nil when none.
func peerCert(st smtp.State) []byte {
	if st.TLS == nil || len(st.TLS.PeerCertificates) == 0 {
		return nil
	}
	return st.TLS.PeerCertificates[0].Raw
}

// checkPeer runs direct trust on the client of an X-ANONYMOUSTLS session
// once it has said who it is (EHLO after TLS). When it fails and the
// credentials cannot help (not between hubs), the session ends here.
func (s *session) checkPeer(st smtp.State) error {
	cur := s.r.state.Load()
	der := peerCert(st)
	t := cur.Org.Check(st.Hello, der, s.r.Now())
	s.trust = t
	directTrustChecked(s.ctx, s.r.Events, s.r.Trace, "receive", st.Hello, t, der)
	if t.OK {
		s.peer, s.peerAuth = t.Server, byDirectTrust
		if t.Expired {
			_, _ = s.r.Events.Raise(s.ctx, 12019, t.Server.Name+" "+t.Server.InternalTransportCertificateThumbprint, t.Server.Name, t.Server.InternalTransportCertificateThumbprint)
		}
		return nil
	}
	if s.r.Credential != nil && (t.Server == nil || t.Server.Role == directory.RoleHub) {
		return nil // a hub's X-EXPS may still prove it; MAIL checks
	}
	return s.trustFailed(st, "")
}

// trustFailed raises 1036 and 1037 for the client of this session and
// returns the 421 that ends it. extra adds to the problem.
func (s *session) trustFailed(st smtp.State, extra string) error {
	der := peerCert(st)
	thumb, problem := s.trust.Problem(st.Hello, der)
	if extra != "" {
		problem += "; " + extra
	}
	remote := hostOf(st.RemoteAddr.String())
	if s.r.Events != nil {
		_, _ = s.r.Events.Raise(s.ctx, 1036, thumb+" "+remote, thumb, remote)
		_, _ = s.r.Events.Raise(s.ctx, 1037, thumb+" receive", thumb, problem)
	}
	s.r.Log.Warn("direct trust failed", "trace", `Transport\Certificate`, "remote", remote, "claim", st.Hello, "thumbprint", thumb, "problem", problem)
	return smtp.Reply(421, "4.7.0", "Direct trust authentication failed; closing")
}

// ServerAuth implements smtp.ServerAuthenticator: a hub proves it holds
// the credential of the server it claims to be, bound to this TLS
// session, and gets this server's proof in return.
func (s *session) ServerAuth(st smtp.State, mech string, resp []byte) (string, []byte, error) {
	cur := s.r.state.Load()
	name, proof, ok := bytes.Cut(resp, []byte{0})
	if !ok {
		return "", nil, smtp.Reply(501, "5.5.2", "Malformed server credential")
	}
	srv := cur.Org.Server(string(name))
	fail := func(why string) (string, []byte, error) {
		if srv != nil {
			s.trust.Server = srv
		}
		return "", nil, s.trustFailed(st, why)
	}
	switch {
	case srv == nil:
		return fail(fmt.Sprintf("its server credential names %q, no server of the organisation", name))
	case !claims(cur.Org, st.Hello, srv):
		return fail(fmt.Sprintf("its server credential is %s's, but its EHLO claims %q", srv.Name, st.Hello))
	case srv.Role != directory.RoleHub && (s.peer != srv || s.peerAuth != byDirectTrust || cur.Server.Role != directory.RoleHub):
		// An edge proves its credential only to ask for a hub's proof,
		// once direct trust has accepted it.
		return fail(fmt.Sprintf("%s is an edge server: edges authenticate by direct trust only", srv.Name))
	}
	exp, err := st.TLS.ExportKeyingMaterial(servercred.ExporterLabel, nil, servercred.ExporterLength)
	if err != nil {
		return fail("no TLS exporter: " + err.Error())
	}
	if err := servercred.Verify(srv.ServerCredential, servercred.Client, srv.Name, exp, proof); err != nil {
		return fail("its server credential does not verify: " + err.Error())
	}
	if s.peer == nil {
		s.peer, s.peerAuth = srv, byCredential
	}
	answer := append([]byte(cur.Server.Name+"\x00"), s.r.Credential.Prove(servercred.Server, cur.Server.Name, exp)...)
	return srv.Name, answer, nil
}

// claims reports whether srv holds name among its DNS names.
func claims(o *Org, name string, srv *OrgServer) bool {
	for _, x := range o.Claimed(name) {
		if x == srv {
			return true
		}
	}
	return false
}

// anonymousTrace is the comment a Received header carries for a session
// between organisation servers: how the peer was authenticated, and
// both internal certificates.
func (s *session) anonymousTrace(st smtp.State) string {
	if !st.AnonymousTLS || s.peer == nil {
		return ""
	}
	mine := "(none)"
	if s.internal != nil {
		mine = s.internal.Thumbprint
		if s.internal.Source == serving.InternalEphemeral {
			mine += " ephemeral"
		}
	}
	theirs := "(none)"
	if der := peerCert(st); der != nil {
		theirs = thumbprint(der)
	}
	return fmt.Sprintf("%s: %s presented %s; %s presented %s", s.peerAuth, sanitize(s.peer.Name), theirs, sanitize(s.r.state.Load().Server.Name), mine)
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}
