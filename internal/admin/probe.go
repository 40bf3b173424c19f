package admin

import (
	"context"
	"sync"

	"certrelay/internal/access"
	"certrelay/internal/parallel"
	"certrelay/internal/probe"
)

// ProbeResult is one listener and name probed by cert probe (SPEC L2):
// the certificate served against the one selection intends.
type ProbeResult struct {
	Listener string // ReceiveConnector, POP3, IMAP4, HTTPS
	Name     string
	Address  string
	Fqdn     string // the name asked for (SNI)
	Intended string // the thumbprint selection intends ("" when none)
	Served   string // the thumbprint served ("" when the probe failed)
	Match    bool
	Error    string `json:",omitempty"`
	Millis   float64
}

// ProbeTargets lists what a self-probe connects to, from this server's
// configuration: each receive connector's bindings with its FQDN (SMTP
// STARTTLS), the POP3 and IMAP4 listeners with their X509CertificateName
// (STLS, STARTTLS, and TLS from the first byte), the console's bindings
// with its host name; with the certificate selection intends for each.
func (a *Admin) ProbeTargets(ctx context.Context) ([]ProbeResult, []probe.Target, error) {
	m, err := a.SelectionMap(ctx)
	if err != nil {
		return nil, nil, err
	}
	var rs []ProbeResult
	var ts []probe.Target
	add := func(e SelectionMapEntry, addr, mode string) {
		rs = append(rs, ProbeResult{Listener: e.Listener, Name: e.Name, Address: addr, Fqdn: e.Fqdn, Intended: e.Winner})
		ts = append(ts, probe.Target{Addr: addr, Mode: mode, ServerName: e.Fqdn})
	}
	for _, e := range m {
		switch e.Listener {
		case "ReceiveConnector":
			if e.TLS == "connector disabled" || e.Winner == "" {
				continue // STARTTLS not offered: nothing to compare
			}
			for _, b := range e.Bindings {
				add(e, b, probe.SMTP)
			}
		case "HTTPS":
			for _, b := range e.Bindings {
				add(e, b, probe.TLS)
			}
		case "POP3", "IMAP4":
			p, mode := access.POP3, probe.POP3
			if e.Listener == "IMAP4" {
				p, mode = access.IMAP4, probe.IMAP
			}
			s, err := a.GetAccessSettings(ctx, p)
			if err != nil || !s.Enabled {
				continue
			}
			for _, b := range s.UnencryptedOrTLSBindings {
				add(e, b, mode)
			}
			for _, b := range s.SSLBindings {
				add(e, b, probe.TLS)
			}
		}
	}
	return rs, ts, nil
}

// Probe connects to each of this server's listeners with each name it
// serves, as a client would, and compares the certificate served with
// the one selection intends (SPEC L2). A difference — or a listener that
// does not answer — is reported, and raises 16106.
func (a *Admin) Probe(ctx context.Context) ([]ProbeResult, error) {
	rs, ts, err := a.ProbeTargets(ctx)
	if err != nil {
		return nil, errorf("probe", err)
	}
	var mu sync.Mutex
	parallel.Each(len(ts), func(i int) {
		r := probe.Run(ctx, ts[i])
		mu.Lock()
		defer mu.Unlock()
		rs[i].Served, rs[i].Millis = r.Thumbprint, float64(r.Took.Microseconds())/1000
		rs[i].Match = r.Err == nil && r.Thumbprint == rs[i].Intended
		if r.Err != nil {
			rs[i].Error = r.Err.Error()
		}
	})
	for _, r := range rs {
		if !r.Match {
			served := r.Served
			if served == "" {
				served = "nothing (" + r.Error + ")"
			}
			a.raise(ctx, 16106, r.Address+" "+r.Fqdn, r.Listener+" "+r.Name, r.Address, r.Fqdn, served, orNone(r.Intended))
		}
	}
	if rs == nil {
		rs = []ProbeResult{}
	}
	return rs, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
