package diagnose

import (
	"slices"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certprop"
	"certrelay/internal/certview"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

const (
	internalT = "1111111111111111111111111111111111111111"
	mailT     = "2222222222222222222222222222222222222222"
)

// cert is a certificate of the store with its candidate.
type cert struct {
	view certview.Certificate
	cand selection.Candidate
}

func newCert(t string, selfSigned bool, services certprop.Services, notAfter time.Time, domains ...string) cert {
	nb := now.Add(-24 * time.Hour)
	status, root := trust.Valid, trust.RootNone
	if !selfSigned {
		root = trust.RootThirdParty
	}
	return cert{
		view: certview.Certificate{Thumbprint: t, Subject: "CN=" + domains[0], Issuer: "CN=issuer", CertificateDomains: domains,
			NotBefore: &nb, NotAfter: &notAfter, IsSelfSigned: selfSigned, RootCAType: root, Services: services.Names(), Status: status,
			HasPrivateKey: true, AccessRules: []store.AccessRule{{Account: "certrelay", Kind: "owner", Rights: "Read, Write"}}},
		cand: selection.Candidate{Thumbprint: t, Subject: "CN=" + domains[0], Domains: domains, NotBefore: nb, NotAfter: notAfter,
			IsSelfSigned: selfSigned, Services: services, Status: status, HasKey: true, KeyReadable: true},
	}
}

// healthy is a hub with nothing wrong: its internal certificate holds
// every name and is enabled for SMTP; a TLS connector for
// mail.contoso.test has a CA-issued certificate.
func healthy() *Facts {
	year := now.AddDate(1, 0, 0)
	certs := []cert{
		newCert(internalT, true, certprop.SMTP|certprop.POP|certprop.IMAP, year, "hub1", "hub1.contoso.test"),
		newCert(mailT, false, certprop.SMTP, year, "mail.contoso.test"),
	}
	f := &Facts{
		Now:     now,
		Server:  directory.Server{Name: "hub1", Fqdn: "hub1.contoso.test", Role: directory.RoleHub, InternalTransportCertificateThumbprint: internalT},
		Receive: []directory.ReceiveConnector{{Name: "Default hub1", Fqdn: "mail.contoso.test", AuthMechanism: []string{"Tls"}, Enabled: true}},
		Send:    []directory.SendConnector{{Name: "Internet", Enabled: true}},
		Backups: map[string]string{}, ServiceAccount: "certrelay",
	}
	f.Servers = []directory.Server{f.Server}
	for _, c := range certs {
		f.Certificates = append(f.Certificates, c.view)
		f.Candidates = append(f.Candidates, c.cand)
	}
	return f
}

// mutate changes the certificate t in both views.
func mutate(f *Facts, t string, fn func(*certview.Certificate, *selection.Candidate)) {
	for i := range f.Certificates {
		if f.Certificates[i].Thumbprint == t {
			fn(&f.Certificates[i], &f.Candidates[i])
		}
	}
}

func setServices(f *Facts, t string, s certprop.Services) {
	mutate(f, t, func(v *certview.Certificate, c *selection.Candidate) { v.Services, c.Services = s.Names(), s })
}

// TestChecks runs each check on a healthy server (no finding) and on the
// broken state it is for (its finding, with the events, evidence and the
// fix the seeds' procedure leads to).
func TestChecks(t *testing.T) {
	cases := []struct {
		name     string
		check    string
		broken   func(*Facts)
		events   []int
		evidence string // an evidence value the finding must show
		fix      []string
	}{
		{"Q1/internal-not-enabled-for-smtp", "Q1", func(f *Facts) { setServices(f, internalT, certprop.POP|certprop.IMAP) },
			[]int{1037, 2019, 12023, 12024}, "IMAP,POP", []string{"{Enable-ExchangeCertificate " + internalT + " -Services SMTP}"}},
		{"Q2/key-unreadable", "Q2", func(f *Facts) {
			mutate(f, internalT, func(v *certview.Certificate, c *selection.Candidate) {
				c.KeyReadable = false
				c.KeyError = "the service account nobody cannot read its private key file /d/keys/k.key (mode 0600)"
				v.AccessRules = []store.AccessRule{{Account: "root", Kind: "owner", Rights: "Read, Write"}}
			})
			f.ServiceAccount = "nobody"
		}, []int{1037, 2019, 12023, 12024}, "owner root: Read, Write", []string{"{Enable-ExchangeCertificate " + internalT + " -Services SMTP}"}},
		{"Q2/pop-certificate-key-unreadable", "Q2", func(f *Facts) {
			setServices(f, mailT, certprop.POP)
			mutate(f, mailT, func(_ *certview.Certificate, c *selection.Candidate) { c.KeyReadable = false })
			f.Receive = nil
		}, []int{12014}, mailT, []string{"{Enable-ExchangeCertificate " + mailT + " -Services POP}"}},
		{"Q3/fqdn-missing", "Q3", func(f *Facts) { f.Server.Fqdn = "hub1.fabrikam.test"; f.Servers[0] = f.Server },
			[]int{1037, 2019}, "hub1.fabrikam.test", []string{"{New-ExchangeCertificate -Force}"}},
		{"Q3/physical-name-missing", "Q3", func(f *Facts) { f.Server.PhysicalFqdn = "node7.contoso.test" },
			[]int{1037, 2019}, "node7.contoso.test", []string{"{New-ExchangeCertificate -Force}"}},
		{"Q4/nlb-name-missing", "Q4", func(f *Facts) { f.Server.NLBNames = []string{"nlb.contoso.test"} },
			[]int{1037, 2019}, "nlb.contoso.test", []string{"{New-ExchangeCertificate -Force}"}},
		{"Q5/fqdn-in-no-certificate", "Q5", func(f *Facts) { f.Receive[0].Fqdn = "smtp.contoso.test" },
			[]int{12014}, "smtp.contoso.test", []string{"{New-ExchangeCertificate -DomainName smtp.contoso.test -Services SMTP}"}},
		{"Q5/fqdn-in-certificate-not-enabled", "Q5", func(f *Facts) { setServices(f, mailT, certprop.IIS) },
			[]int{12014}, mailT, []string{"{Enable-ExchangeCertificate " + mailT + " -Services SMTP}"}},
		{"Q5/send-connector-fqdn", "Q5", func(f *Facts) { f.Send[0].Fqdn = "out.contoso.test" },
			[]int{12014}, "out.contoso.test", []string{"{New-ExchangeCertificate -DomainName out.contoso.test -Services SMTP}"}},
		{"Q6/missing-no-backup", "Q6", func(f *Facts) {
			f.Server.InternalTransportCertificateThumbprint = "3333333333333333333333333333333333333333"
		},
			[]int{12013, 12024}, "3333333333333333333333333333333333333333", []string{"{New-ExchangeCertificate -Force}"}},
		{"Q6/missing-with-backup", "Q6", func(f *Facts) {
			f.Server.InternalTransportCertificateThumbprint = "3333333333333333333333333333333333333333"
			f.Backups["3333333333333333333333333333333333333333"] = "/backup/internal cert.pfx"
		}, []int{12013, 12024}, "/backup/internal cert.pfx", []string{"{Import-ExchangeCertificate '/backup/internal cert.pfx' -Password '-'}",
			"{Enable-ExchangeCertificate 3333333333333333333333333333333333333333 -Services SMTP}"}},
		{"Q6/missing-on-edge", "Q6", func(f *Facts) {
			f.Server.Role = directory.RoleEdge
			f.Server.InternalTransportCertificateThumbprint = "3333333333333333333333333333333333333333"
		}, []int{12013}, "edge", []string{"{New-ExchangeCertificate -Force}"}},
		{"Q6/none-in-directory", "Q6", func(f *Facts) { f.Server.InternalTransportCertificateThumbprint = "" },
			[]int{12012}, "hub1", []string{"{New-ExchangeCertificate -Force}"}},
		{"Q7/self-signed-with-root-type", "Q7", func(f *Facts) {
			mutate(f, internalT, func(v *certview.Certificate, _ *selection.Candidate) { v.RootCAType = trust.RootRegistry })
		}, nil, "Registry", []string{"{Remove-CertrelayTrustedCertificate " + internalT + "}"}},
		{"Q7/root-on-this-server-only", "Q7", func(f *Facts) {
			mutate(f, mailT, func(v *certview.Certificate, _ *selection.Candidate) {
				v.RootCAType = trust.RootRegistry
				v.Chain = []trust.Element{{Thumbprint: mailT}, {Thumbprint: "4444444444444444444444444444444444444444", Subject: "CN=Contoso Root"}}
			})
			f.Servers = append(f.Servers, directory.Server{Name: "hub2", Fqdn: "hub2.contoso.test", Role: directory.RoleHub})
		}, nil, "4444444444444444444444444444444444444444 (CN=Contoso Root)", []string{"{Add-CertrelayTrustedCertificate ROOT.cer -Source grouppolicy}"}},
		{"Q8/internal-expired", "Q8", func(f *Facts) {
			mutate(f, internalT, func(v *certview.Certificate, c *selection.Candidate) {
				na := now.Add(-time.Hour)
				v.NotAfter, c.NotAfter, v.Status, c.Status = &na, na, trust.DateInvalid, trust.DateInvalid
			})
		}, []int{12015}, "DateInvalid", []string{"{New-ExchangeCertificate -Force}"}},
		{"Q8/starttls-expires-soon", "Q8", func(f *Facts) {
			mutate(f, mailT, func(v *certview.Certificate, c *selection.Candidate) {
				na := now.Add(10 * 24 * time.Hour)
				v.NotAfter, c.NotAfter = &na, na
			})
		}, []int{12018}, "240", []string{"{New-ExchangeCertificate -Instance " + mailT + "}"}},
		{"Q8/internal-expires-soon", "Q8", func(f *Facts) {
			mutate(f, internalT, func(v *certview.Certificate, c *selection.Candidate) {
				na := now.Add(48 * time.Hour)
				v.NotAfter, c.NotAfter = &na, na
			})
		}, []int{12017}, "48", []string{"{New-ExchangeCertificate -Force}"}},
		{"Q8/revocation-unknown", "Q8", func(f *Facts) {
			mutate(f, mailT, func(v *certview.Certificate, _ *selection.Candidate) {
				v.Status, v.StatusDetail = trust.RevocationCheckFailure, "the CRL at http://crl.contoso.test/ca.crl could not be fetched"
			})
		}, []int{12014}, "the CRL at http://crl.contoso.test/ca.crl could not be fetched", []string{"{Test-CertrelayCertificate " + mailT + "}"}},
		{"Q8/no-private-key", "Q8", func(f *Facts) {
			mutate(f, mailT, func(v *certview.Certificate, _ *selection.Candidate) { v.HasPrivateKey = false })
		}, []int{12014}, mailT, []string{"{Remove-ExchangeCertificate " + mailT + " -Force}"}},
		{"Q9/hub-edge-rebuilt", "Q9", func(f *Facts) {
			f.Servers = append(f.Servers, subscribedEdge())
			f.EdgeRounds = []EdgeRound{
				{Edge: "edge1", Kind: "configuration", Hub: "hub1", Time: now.Add(-time.Hour)},
				{Edge: "edge1", Kind: "recipients", Hub: "hub1", Time: now.Add(-time.Minute), Error: "direct trust: edge1 presented certificate AB, not CD, which the organisation holds for it"},
			}
		}, []int{16091, 1036, 2018}, "direct trust: edge1 presented", []string{"{Remove-EdgeSubscription edge1 -Force}", "{New-EdgeSubscription -FileName EdgeSubscription.xml}", "{New-EdgeSubscription/FileData EdgeSubscription.xml}"}},
		{"Q9/edge-no-rounds", "Q9", func(f *Facts) {
			f.Server.Role = directory.RoleEdge
			f.Servers = []directory.Server{f.Server}
			f.EdgeSubscribed = now.Add(-48 * time.Hour)
			f.EdgeRounds = []EdgeRound{{Edge: "hub1", Kind: "recipients", Hub: "hub2", Time: now.Add(-40 * time.Minute)}}
		}, []int{16091}, now.Add(-40 * time.Minute).Format(time.RFC3339), []string{"{Remove-EdgeSubscription hub1 -Force}", "{New-EdgeSubscription -FileName EdgeSubscription.xml}", "{New-EdgeSubscription/FileData EdgeSubscription.xml}"}},
	}
	checks := map[string]Check{}
	for _, c := range Checks {
		checks[c.ID] = c
	}
	for _, c := range Checks {
		t.Run(c.ID+"/healthy", func(t *testing.T) {
			if got := c.Run(healthy()); len(got) != 0 {
				t.Errorf("%s finds on a healthy server: %+v", c.ID, got)
			}
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := healthy()
			tc.broken(f)
			got := checks[tc.check].Run(f)
			if len(got) != 1 {
				t.Fatalf("%d findings, want 1: %+v", len(got), got)
			}
			x := got[0]
			if !slices.Equal(x.Events, tc.events) {
				t.Errorf("events %v, want %v", x.Events, tc.events)
			}
			found := false
			for _, e := range x.Evidence {
				found = found || strings.Contains(e.Value, tc.evidence)
			}
			if !found {
				t.Errorf("no evidence shows %q: %+v", tc.evidence, x.Evidence)
			}
			var fix []string
			for _, s := range x.Fix {
				fix = append(fix, s.Command)
			}
			if !slices.Equal(fix, tc.fix) {
				t.Errorf("fix %q, want %q", fix, tc.fix)
			}
			if x.Problem == "" || x.Severity == "" {
				t.Errorf("no problem or severity: %+v", x)
			}
			// Every other check stays quiet, except those the state
			// breaks too (an expired certificate is also DateInvalid).
			for _, all := range Run(f) {
				if all.Check != tc.check && !(tc.check == "Q8" && all.Check == "Q8") {
					t.Errorf("check %s also finds: %s", all.Check, all.Problem)
				}
			}
		})
	}
}

// TestRunOrder: Run puts errors first and names each finding's check.
func TestRunOrder(t *testing.T) {
	f := healthy()
	f.Server.NLBNames = []string{"nlb.contoso.test"}                         // Q4, an error
	mutate(f, mailT, func(v *certview.Certificate, c *selection.Candidate) { // Q8, a warning
		na := now.Add(5 * 24 * time.Hour)
		v.NotAfter, c.NotAfter = &na, na
	})
	got := Run(f)
	if len(got) != 2 || got[0].Check != "Q4" || got[0].Name != "InternalCertificateLacksNLBName" || got[1].Severity != Warning {
		t.Fatalf("Run: %+v", got)
	}
	if got := Run(healthy()); got == nil || len(got) != 0 {
		t.Errorf("Run on a healthy server: %#v, want an empty list", got)
	}
}

// TestExpiryWindow: the window of "expires soon" is the configured one.
func TestExpiryWindow(t *testing.T) {
	f := healthy()
	mutate(f, mailT, func(v *certview.Certificate, c *selection.Candidate) {
		na := now.Add(60 * 24 * time.Hour)
		v.NotAfter, c.NotAfter = &na, na
	})
	if got := checkInUse(f); len(got) != 0 {
		t.Errorf("60 days left, window 30: %+v", got)
	}
	f.ExpiryWindow = 90 * 24 * time.Hour
	if got := checkInUse(f); len(got) != 1 || got[0].Events[0] != 12018 {
		t.Errorf("60 days left, window 90: %+v", got)
	}
}

// TestConnectorDefers: a connector whose FQDN is the server's own, when
// the internal transport certificate is missing, and a connector whose
// only certificate has a key the service account cannot read, are not
// reported by Q5: Q6's and Q2's fixes repair them, and one problem gets
// one finding.
func TestConnectorDefers(t *testing.T) {
	f := healthy()
	f.Receive[0].Fqdn = "hub1.contoso.test"
	f.Server.InternalTransportCertificateThumbprint = "3333333333333333333333333333333333333333"
	f.Certificates, f.Candidates = f.Certificates[1:], f.Candidates[1:]
	if got := Run(f); len(got) != 1 || got[0].Check != "Q6" {
		t.Errorf("the internal certificate missing: %+v", got)
	}
	f = healthy()
	mutate(f, mailT, func(_ *certview.Certificate, c *selection.Candidate) { c.KeyReadable = false })
	if got := Run(f); len(got) != 1 || got[0].Check != "Q2" {
		t.Errorf("the connector's key unreadable: %+v", got)
	}
}

// TestConnectorDefersToUnfitCertificate: the connector's only certificate
// is enabled for SMTP but not Valid: Q8 reports it, with its fix, and Q5
// does not report the connector as well.
func TestConnectorDefersToUnfitCertificate(t *testing.T) {
	f := healthy()
	mutate(f, mailT, func(v *certview.Certificate, c *selection.Candidate) {
		v.Status, c.Status, v.StatusDetail = trust.Untrusted, trust.Untrusted, "its chain ends at CN=Issuing CA, which is not a trusted root"
	})
	if got := Run(f); len(got) != 1 || got[0].Check != "Q8" {
		t.Errorf("an untrusted certificate for the connector: %+v", got)
	}
}

// TestProbeFinding (L2): a probe served another certificate than intended
// is an Error naming both, with cert probe as its first fix; a listener
// that did not answer, or served the intended one, is none.
func TestProbeFinding(t *testing.T) {
	f := &Facts{Probes: []Probe{
		{Listener: "HTTPS", Name: "console", Address: "127.0.0.1:443", Fqdn: "hub1.contoso.test", Intended: "AA", Served: "BB"},
		{Listener: "ReceiveConnector", Name: "Default", Address: "127.0.0.1:25", Fqdn: "hub1.contoso.test", Intended: "AA", Served: "AA"},
		{Listener: "POP3", Name: "POP3", Address: "127.0.0.1:110", Fqdn: "hub1.contoso.test", Intended: "AA", Served: ""},
	}}
	got := checkProbes(f)
	if len(got) != 1 || got[0].Severity != Error || !strings.Contains(got[0].Problem, "BB") || !strings.Contains(got[0].Problem, "AA") ||
		got[0].Fix[0].Command != "{Test-CertrelayCertificateServing}" || got[0].Events[0] != 16106 {
		t.Fatalf("findings %+v", got)
	}
}

func subscribedEdge() directory.Server {
	return directory.Server{Name: "edge1", Fqdn: "edge1.contoso.test", Role: directory.RoleEdge, EdgeSyncAddress: "192.0.2.1:50636",
		InternalTransportCertificateThumbprint: "3333333333333333333333333333333333333333"}
}

// TestEdgeSubscriptionsWorking: Q9 says nothing of an edge whose rounds
// work (a failure other than direct trust is 16091's, not a stale
// subscription), nor of an edge that received a round recently.
func TestEdgeSubscriptionsWorking(t *testing.T) {
	f := healthy()
	f.Servers = append(f.Servers, subscribedEdge())
	f.EdgeRounds = []EdgeRound{
		{Edge: "edge1", Kind: "recipients", Hub: "hub1", Time: now.Add(-2 * time.Minute)},
		{Edge: "edge1", Kind: "lease", Hub: "hub2", Time: now, Error: "hub2 holds the EdgeSync lease of edge1"},
	}
	if got := checkEdgeStale(f); len(got) != 0 {
		t.Errorf("hub with a working edge: %+v", got)
	}
	f.EdgeRounds[0].Error = "cannot reach the EdgeSync endpoint of edge1 at 192.0.2.1:50636: connection refused"
	if got := checkEdgeStale(f); len(got) != 0 {
		t.Errorf("an edge that is down is not a stale subscription: %+v", got)
	}
	e := healthy()
	e.Server.Role = directory.RoleEdge
	e.EdgeSubscribed = now.Add(-48 * time.Hour)
	e.EdgeRounds = []EdgeRound{{Edge: "hub1", Kind: "recipients", Hub: "hub2", Time: now.Add(-3 * time.Minute)}}
	if got := checkEdgeStale(e); len(got) != 0 {
		t.Errorf("an edge with a recent round: %+v", got)
	}
}
