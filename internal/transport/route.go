package transport

import (
	"fmt"
	"sort"
	"strings"

	"certrelay/internal/directory"
)

// Route picks the send connector for a destination domain: among the
// enabled connectors this server may use, the one whose address space
// matches the domain most specifically (an exact domain, then the longest
// "*.suffix", then "*"), then the lowest cost, then the name. It returns
// nil and the reason when none matches.
func Route(conns []directory.SendConnector, server, domain string) (*directory.SendConnector, string) {
	c := route(conns, domain, func(c *directory.SendConnector) bool { return usableFrom(c, server) })
	if c == nil {
		domain = strings.ToLower(strings.TrimSuffix(domain, "."))
		return nil, fmt.Sprintf("no send connector routes %s: add one with certrelay connector send add NAME --address-space 'smtp:%s;1' (or '*')", domain, domain)
	}
	return c, ""
}

// RouteVia picks, when no connector this server may use routes domain,
// one that other servers of the organisation may use (an edge's
// connector to the internet, SPEC X3), by the same rules as Route, and
// the server to relay the mail to: its first source server that is not
// this one. It returns nil when there is none.
func RouteVia(conns []directory.SendConnector, server, domain string) (*directory.SendConnector, string) {
	c := route(conns, domain, func(c *directory.SendConnector) bool {
		return len(c.SourceTransportServers) > 0 && !usableFrom(c, server)
	})
	if c == nil {
		return nil, ""
	}
	for _, s := range c.SourceTransportServers {
		if !strings.EqualFold(s, server) {
			return c, s
		}
	}
	return nil, ""
}

func route(conns []directory.SendConnector, domain string, ok func(*directory.SendConnector) bool) *directory.SendConnector {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	type match struct {
		c           *directory.SendConnector
		specificity int
		cost        int
	}
	var ms []match
	for i := range conns {
		c := &conns[i]
		if !c.Enabled || !ok(c) {
			continue
		}
		best := -1
		cost := 0
		for _, as := range c.AddressSpaces {
			if s := specificity(as.Domain, domain); s > best || s == best && as.Cost < cost {
				best, cost = s, as.Cost
			}
		}
		if best >= 0 {
			ms = append(ms, match{c, best, cost})
		}
	}
	if len(ms) == 0 {
		return nil
	}
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].specificity != ms[j].specificity {
			return ms[i].specificity > ms[j].specificity
		}
		if ms[i].cost != ms[j].cost {
			return ms[i].cost < ms[j].cost
		}
		return ms[i].c.Name < ms[j].c.Name
	})
	return ms[0].c
}

// specificity scores how an address space matches domain: -1 not at all,
// 0 for "*", the suffix length for "*.d", and more than any suffix for the
// exact domain.
func specificity(space, domain string) int {
	space = strings.ToLower(space)
	switch {
	case space == "*":
		return 0
	case space == domain:
		return 1000
	case strings.HasPrefix(space, "*.") && strings.HasSuffix(domain, space[1:]):
		return len(space)
	}
	return -1
}

func usableFrom(c *directory.SendConnector, server string) bool {
	if len(c.SourceTransportServers) == 0 {
		return true
	}
	for _, s := range c.SourceTransportServers {
		if strings.EqualFold(s, server) {
			return true
		}
	}
	return false
}
