package transport

import (
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
)

// State is one immutable snapshot of what the transport needs from the
// directory: this server, its connectors, the accepted domains and
// mailboxes. Certificates come from the serving layer.
type State struct {
	Server     directory.Server
	Connectors []directory.ReceiveConnector
	Send       []directory.SendConnector
	Domains    map[string]bool              // accepted domains, lower-case
	Mailboxes  map[string]directory.Mailbox // by address, lower-case
	// Org is the organisation's servers for direct trust and routing
	// (nil: this server alone).
	Org   *Org
	Built time.Time
	// SendDomainSecure and ReceiveDomainSecure are domain security's
	// partner domains (DS1), lower-case; nil: none.
	SendDomainSecure    map[string]bool
	ReceiveDomainSecure map[string]bool
}

// NewState builds a snapshot; it normalises names so lookups need no
// allocation.
func NewState(srv directory.Server, conns []directory.ReceiveConnector, send []directory.SendConnector, domains []directory.AcceptedDomain, boxes []directory.Mailbox, now time.Time) *State {
	st := &State{Server: srv, Connectors: conns, Send: send, Domains: map[string]bool{}, Mailboxes: map[string]directory.Mailbox{}, Built: now}
	for _, d := range domains {
		st.Domains[strings.ToLower(d.DomainName)] = true
	}
	for _, m := range boxes {
		st.Mailboxes[strings.ToLower(m.Address)] = m
	}
	return st
}

// connectorFor returns the enabled connector listening on local, an
// "ip:port" address; a connector bound to 0.0.0.0 or [::] on the port
// serves any address.
func (st *State) connectorFor(local string) *directory.ReceiveConnector {
	var wildcard *directory.ReceiveConnector
	_, port := splitPort(local)
	for i := range st.Connectors {
		c := &st.Connectors[i]
		if !c.Enabled {
			continue
		}
		for _, b := range c.Bindings {
			if b == local {
				return c
			}
			host, p := splitPort(b)
			if p == port && (host == "0.0.0.0" || host == "::") {
				wildcard = c
			}
		}
	}
	return wildcard
}

func splitPort(addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr, ""
	}
	return strings.Trim(addr[:i], "[]"), addr[i+1:]
}

// fqdn returns the connector's FQDN, or the server's (S1).
func (st *State) fqdn(c *directory.ReceiveConnector) string {
	if c.Fqdn != "" {
		return c.Fqdn
	}
	return st.Server.Fqdn
}

func has(list []string, v string) bool {
	for _, s := range list {
		if strings.EqualFold(s, v) {
			return true
		}
	}
	return false
}

func thumbprint(der []byte) string { return certinfo.Thumbprint(der) }

// postmaster returns the mailbox that receives mail for <postmaster>: the
// first postmaster@DOMAIN mailbox of the accepted domains, in order.
func (st *State) postmaster() string {
	best := ""
	for d := range st.Domains {
		if _, ok := st.Mailboxes["postmaster@"+d]; ok && (best == "" || d < best) {
			best = d
		}
	}
	if best == "" {
		return ""
	}
	return "postmaster@" + best
}
