package transport

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/testpki"
)

func orgServer(t testing.TB, name string, names []string, key int) (directory.Server, *testpki.Leaf) {
	leaf := testpki.SelfSigned(t, testpki.Options{CommonName: name, DNSNames: names, Key: testpki.RSAKey(t, key)})
	return directory.Server{Name: name, Fqdn: name + ".org.test", Role: directory.RoleHub,
		InternalTransportCertificateThumbprint: certinfo.Thumbprint(leaf.Cert.Raw), InternalTransportCertificate: leaf.Cert.Raw}, leaf
}

// TestDirectTrust: a peer is trusted when it presents the certificate the
// directory holds for the server it claims to be, and that certificate
// holds the server's D3 names; each failure says why, naming the names
// the certificate lacks.
func TestDirectTrust(t *testing.T) {
	now := time.Now()
	hub1, l1 := orgServer(t, "hub1", []string{"hub1", "hub1.org.test"}, 1)
	hub2, l2 := orgServer(t, "hub2", []string{"hub2", "hub2.org.test"}, 2)
	nlb, lnlb := orgServer(t, "hub3", []string{"hub3", "hub3.org.test"}, 3)
	nlb.NLBNames = []string{"mail.org.test"}
	impostor := testpki.SelfSigned(t, testpki.Options{CommonName: "hub2", DNSNames: []string{"hub2", "hub2.org.test"}, Key: testpki.RSAKey(t, 4)})
	o := NewOrg([]directory.Server{hub1, hub2, nlb}, map[string][]directory.ReceiveConnector{
		"hub2": {{Name: "Default hub2", Server: "hub2", Bindings: []string{"0.0.0.0:2525", "10.0.0.2:25"}, PermissionGroups: []string{"ExchangeServers"}, Enabled: true},
			{Name: "Client", Server: "hub2", Bindings: []string{"0.0.0.0:587"}, PermissionGroups: []string{"ExchangeUsers"}, Enabled: true}},
	})
	for _, c := range []struct {
		name, claim string
		der         []byte
		ok          bool
		server      string
		problem     string
	}{
		{"ok/fqdn", "hub1.org.test", l1.Cert.Raw, true, "hub1", ""},
		{"ok/host-name-any-case", "HUB2", l2.Cert.Raw, true, "hub2", ""},
		{"fail/impostor-key", "hub2.org.test", impostor.Cert.Raw, false, "hub2", "not the certificate the directory holds for server hub2 (" + hub2.InternalTransportCertificateThumbprint + ")"},
		{"fail/another-servers-certificate", "hub2.org.test", l1.Cert.Raw, false, "hub2", "lacks DnsFullyQualifiedDomainName hub2.org.test, DnsHostName hub2"},
		{"fail/unknown-name", "hub9.org.test", l1.Cert.Raw, false, "", "no server of the organisation has the name"},
		{"fail/no-certificate", "hub1.org.test", nil, false, "hub1", "presented no certificate"},
		{"fail/nlb-name-not-in-certificate", "hub3.org.test", lnlb.Cert.Raw, false, "hub3", "it is the certificate the directory holds for server hub3, but lacks NLBName mail.org.test"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := o.Check(c.claim, c.der, now)
			if tr.OK != c.ok || (c.server == "" && tr.Server != nil) || (c.server != "" && (tr.Server == nil || tr.Server.Name != c.server)) {
				t.Fatalf("Check = %+v", tr)
			}
			if !c.ok {
				_, problem := tr.Problem(c.claim, c.der)
				if !strings.Contains(problem, c.problem) {
					t.Errorf("problem %q, want it to say %q", problem, c.problem)
				}
			}
		})
	}
	if s := o.Server("hub2"); s == nil || strings.Join(s.Addrs, " ") != "hub2.org.test:2525 10.0.0.2:25" {
		t.Errorf("hub2's addresses for organisation servers: %+v", s)
	}
	expired, le := orgServer(t, "hub4", []string{"hub4", "hub4.org.test"}, 5)
	le2 := testpki.SelfSigned(t, testpki.Options{CommonName: "hub4", DNSNames: []string{"hub4", "hub4.org.test"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour), Key: le.Key})
	expired.InternalTransportCertificate, expired.InternalTransportCertificateThumbprint = le2.Cert.Raw, certinfo.Thumbprint(le2.Cert.Raw)
	if tr := NewOrg([]directory.Server{expired}, nil).Check("hub4", le2.Cert.Raw, now); !tr.OK || !tr.Expired {
		t.Errorf("an expired certificate the directory holds: %+v (want trusted, expired: 12019)", tr)
	}
	dup := hub2
	dup.Name = "hub2copy"
	if d := NewOrg([]directory.Server{hub1, hub2, dup}, nil).Duplicates; len(d) != 1 || d[0].Name != "hub2.org.test" || strings.Join(d[0].Servers, ",") != "hub2,hub2copy" {
		t.Errorf("duplicates: %+v", d)
	}
}

// BenchmarkDirectTrustCheck: the check of an inbound session's
// certificate against the cached organisation (1,000 servers): SPEC
// target ≤ 1 µs, 0 allocations.
func BenchmarkDirectTrustCheck(b *testing.B) {
	var servers []directory.Server
	var target []byte
	for i := 0; i < 1000; i++ {
		name := "hub" + strconv.Itoa(i)
		s, l := orgServer(b, name, []string{name, name + ".org.test"}, i%12)
		servers = append(servers, s)
		if i == 500 {
			target = l.Cert.Raw
		}
	}
	o := NewOrg(servers, nil)
	claim := servers[500].Fqdn
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !o.Check(claim, target, now).OK {
			b.Fatal("not trusted")
		}
	}
}
