package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"

	"certrelay/internal/certinfo"
	"certrelay/internal/selection"
	"certrelay/internal/trace"
)

// The decisions of each session, for the event log above Lowest (SPEC
// D1: 16070 TLS negotiated at Medium, 16071 selection at High, 16072
// direct trust at Expert) and for live tracing (D2). Nothing is built
// when neither the level nor a tracer asks for it.

// levelChecker is an EventSink that says whether an event would be
// written (events.Log).
type levelChecker interface {
	Enabled(ctx context.Context, id int) bool
}

// wants reports whether event id would be written, or the component is
// traced.
func wants(ctx context.Context, ev EventSink, h *trace.Hub, id int, component string) bool {
	if h.Wants(component) {
		return true
	}
	if ev == nil {
		return false
	}
	if lc, ok := ev.(levelChecker); ok {
		return lc.Enabled(ctx, id)
	}
	return false // a sink that cannot say gets none of the events above Lowest
}

// enabled reports whether event id would be written.
func enabled(ctx context.Context, ev EventSink, id int) bool {
	lc, ok := ev.(levelChecker)
	return ok && lc.Enabled(ctx, id)
}

// selected records a STARTTLS selection: 16071 and a Transport\Certificate
// record with every candidate and its verdict.
func selected(ctx context.Context, ev EventSink, h *trace.Hub, d *selection.Decision, connector string) {
	if d == nil || !wants(ctx, ev, h, 16071, trace.TransportCertificate) {
		return
	}
	winner := "none"
	if d.Winner != nil {
		winner = d.Winner.Thumbprint
	}
	var parts []string
	cands := make([]map[string]any, 0, len(d.Considered))
	for _, c := range d.Considered {
		parts = append(parts, fmt.Sprintf("%s %s (%s)", c.Thumbprint, c.Verdict, c.Reason))
		cands = append(cands, map[string]any{"Thumbprint": c.Thumbprint, "Subject": c.Subject, "Verdict": string(c.Verdict), "Reason": c.Reason})
	}
	considered := strings.Join(parts, "; ")
	if considered == "" {
		considered = "no certificate"
	}
	if enabled(ctx, ev, 16071) {
		_, _ = ev.Raise(ctx, 16071, "", d.Request.FQDN, connector, winner, d.Why, considered)
	}
	h.Publish(trace.Record{Component: trace.TransportCertificate, Tag: "selection",
		Summary: fmt.Sprintf("selection for %s on connector %s (%s): %s — %s", d.Request.FQDN, connector, d.Request.Service, winner, d.Why),
		Fields: map[string]any{"FQDN": d.Request.FQDN, "Connector": connector, "Service": d.Request.Service.String(), "Winner": winner,
			"How": d.How, "Why": d.Why, "Candidates": cands}})
}

// negotiated records a TLS handshake's outcome: 16070 and a
// NetworkingLayer\Certificate record.
func negotiated(ctx context.Context, ev EventSink, h *trace.Hub, connector string, remote net.Addr, cs *tls.ConnectionState, served string, err error) {
	if !wants(ctx, ev, h, 16070, trace.NetworkingCertificate) {
		return
	}
	// Formatted only when wanted: a string per session otherwise (issue 19).
	client := hostOf(remote.String())
	if err != nil {
		h.Publish(trace.Record{Component: trace.NetworkingCertificate, Tag: "tls",
			Summary: fmt.Sprintf("TLS with %s on connector %s failed: %v", client, connector, err),
			Fields:  map[string]any{"Connector": connector, "Client": client, "Error": err.Error()}})
		return
	}
	if cs == nil {
		return
	}
	version, cipher := tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite)
	if served == "" {
		served = "(none)"
	}
	if enabled(ctx, ev, 16070) {
		_, _ = ev.Raise(ctx, 16070, "", connector, client, version, cipher, served)
	}
	h.Publish(trace.Record{Component: trace.NetworkingCertificate, Tag: "tls",
		Summary: fmt.Sprintf("TLS with %s on connector %s: %s %s, certificate %s", client, connector, version, cipher, served),
		Fields:  map[string]any{"Connector": connector, "Client": client, "Version": version, "Cipher": cipher, "Certificate": served}})
}

// directTrustChecked records a direct-trust check: 16072 and a
// Transport\Certificate record with the D3 names of the server and
// whether the certificate holds each.
func directTrustChecked(ctx context.Context, ev EventSink, h *trace.Hub, direction, claim string, t Trust, der []byte) {
	if !wants(ctx, ev, h, 16072, trace.TransportCertificate) {
		return
	}
	thumb, result := "(none)", "trusted"
	if len(der) > 0 {
		thumb = certinfo.Thumbprint(der)
	}
	server := claim
	var names []string
	nameFields := []map[string]any{}
	if t.Server != nil {
		server = t.Server.Name
		var domains []string
		if len(der) > 0 {
			if c, err := x509.ParseCertificate(der); err == nil {
				domains = certinfo.CertificateDomains(c)
			}
		}
		for _, n := range t.Server.DNSNames() {
			if n.Name == "" {
				continue
			}
			held := selection.MatchName(domains, n.Name, false)
			names = append(names, fmt.Sprintf("%s %s %s", n.Property, n.Name, map[bool]string{true: "held", false: "MISSING"}[held]))
			nameFields = append(nameFields, map[string]any{"Property": n.Property, "Name": n.Name, "Held": held})
		}
	}
	if !t.OK {
		_, result = t.Problem(claim, der)
		result = "refused: " + result
	} else if t.Expired {
		result = "trusted, but the certificate has expired (12019)"
	}
	if enabled(ctx, ev, 16072) {
		_, _ = ev.Raise(ctx, 16072, "", direction, server, thumb, result, strings.Join(names, ", "))
	}
	h.Publish(trace.Record{Component: trace.TransportCertificate, Tag: "direct-trust",
		Summary: fmt.Sprintf("direct trust (%s) of %s, certificate %s: %s", direction, server, thumb, result),
		Fields: map[string]any{"Direction": direction, "Server": server, "Claim": claim, "Thumbprint": thumb, "Trusted": t.OK,
			"Result": result, "Names": nameFields}})
}
