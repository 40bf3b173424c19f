package server

import (
	"context"
	"time"

	"certrelay/internal/access"
	"certrelay/internal/probe"
	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// The self-probe (SPEC L2): every ProbeInterval the server connects to
// each of its own TLS listeners with the name it serves there — SMTP
// STARTTLS on each receive connector's bindings with the connector's
// FQDN, POP3 STLS, IMAP4 STARTTLS and their TLS bindings with their
// X509CertificateName, the console's bindings with its host name — as a
// client would,
// and compares the certificate served with the one its published
// selection intends. A difference (another program holds the address, a
// snapshot not applied, a key replaced behind its back) raises 16106 and
// sets certrelay_probe_mismatch; every probe is timed in
// certrelay_probe_duration_seconds.

// DefaultProbeInterval is how often the server probes itself
// (Options.ProbeInterval).
const DefaultProbeInterval = 5 * time.Minute

type probeTarget struct {
	listener, name string
	target         probe.Target
	req            selection.Request
}

// probeTargets lists the listeners to probe, from the current state.
func (s *srv) probeTargets() []probeTarget {
	var out []probeTarget
	st := s.rcv.State()
	if st == nil {
		return nil
	}
	for _, c := range st.Connectors {
		if !c.Enabled {
			continue
		}
		req := selection.ForConnector(c.Fqdn, st.Server.Fqdn, c.TlsCertificateName, c.TlsWildcardOneLabel, store.SMTP)
		for _, b := range c.Bindings {
			out = append(out, probeTarget{"ReceiveConnector", c.Name, probe.Target{Addr: b, Mode: probe.SMTP, ServerName: req.FQDN}, req})
		}
	}
	if s.acc != nil {
		for _, a := range s.acc.ProbeTargets() {
			mode := probe.POP3
			if a.Protocol == access.IMAP4 {
				mode = probe.IMAP
			}
			if a.Implicit {
				mode = probe.TLS
			}
			out = append(out, probeTarget{string(a.Protocol), string(a.Protocol), probe.Target{Addr: a.Addr, Mode: mode, ServerName: a.Request.FQDN}, a.Request})
		}
	}
	s.httpMu.Lock()
	on, bindings := s.consoleOn, s.consoleBindings
	s.httpMu.Unlock()
	if on && s.console != nil {
		req := s.consoleRequest()
		for _, b := range bindings {
			out = append(out, probeTarget{"HTTPS", "console", probe.Target{Addr: b, Mode: probe.TLS, ServerName: req.FQDN}, req})
		}
	}
	return out
}

// probeOnce probes every target and reports differences; it returns how
// many it probed and how many differed.
func (s *srv) probeOnce(ctx context.Context) (n, bad int) {
	for _, t := range s.probeTargets() {
		d := s.layer.Select(t.req)
		if d.Winner == nil {
			continue // nothing to serve: the listener's own events say so (12014, 16084)
		}
		r := probe.Run(ctx, t.target)
		match := r.Err == nil && r.Thumbprint == d.Winner.Thumbprint
		s.met.Probed(t.listener, t.target.Addr, t.target.ServerName, r.Took, match)
		n++
		if match {
			continue
		}
		bad++
		served := r.Thumbprint
		if r.Err != nil {
			served = "nothing (" + r.Err.Error() + ")"
		}
		_, _ = s.events.Raise(ctx, 16106, t.target.Addr+" "+t.target.ServerName, t.listener+" "+t.name, t.target.Addr, t.target.ServerName, served, d.Winner.Thumbprint)
	}
	return n, bad
}

func (s *srv) probeLoop(ctx context.Context, every time.Duration) {
	if every < 0 {
		return
	}
	if every == 0 {
		every = DefaultProbeInterval
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		s.probeOnce(ctx)
	}
}
