package transport

import (
	"testing"

	"certrelay/internal/directory"
)

func TestRoute(t *testing.T) {
	sc := func(name string, enabled bool, spaces ...directory.AddressSpace) directory.SendConnector {
		return directory.SendConnector{Name: name, Enabled: enabled, AddressSpaces: spaces, SourceTransportServers: []string{"hub1"}}
	}
	as := func(d string, cost int) directory.AddressSpace { return directory.AddressSpace{Domain: d, Cost: cost} }
	conns := []directory.SendConnector{
		sc("Internet", true, as("*", 1)),
		sc("Partner", true, as("partner.test", 10)),
		sc("Partner cheap", true, as("partner.test", 5)),
		sc("Subdomains", true, as("*.fabrikam.test", 1)),
		sc("Deep", true, as("*.eu.fabrikam.test", 50)),
		sc("Off", false, as("off.test", 1)),
	}
	other := directory.SendConnector{Name: "Other server's", Enabled: true, AddressSpaces: []directory.AddressSpace{as("elsewhere.test", 1)}, SourceTransportServers: []string{"hub2"}}
	conns = append(conns, other)
	cases := []struct {
		name, domain, want string
	}{
		{"exact-beats-star", "partner.test", "Partner cheap"},
		{"lowest-cost-among-equals", "PARTNER.test", "Partner cheap"},
		{"star-for-the-rest", "random.example", "Internet"},
		{"suffix-match", "mail.fabrikam.test", "Subdomains"},
		{"longest-suffix-wins-over-cost", "x.eu.fabrikam.test", "Deep"},
		{"suffix-needs-a-label", "fabrikam.test", "Internet"},
		{"disabled-is-skipped", "off.test", "Internet"},
		{"other-server-only", "elsewhere.test", "Internet"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, why := Route(conns, "hub1", c.domain)
			if got == nil || got.Name != c.want {
				t.Fatalf("Route(%s) = %v (%s), want %s", c.domain, got, why, c.want)
			}
		})
	}
	if got, why := Route(conns[1:3], "hub1", "nowhere.example"); got != nil || why == "" {
		t.Errorf("no route: %v %q", got, why)
	}
}
