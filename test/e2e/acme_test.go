package e2e

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// acmeAccount registers an account at pebble through the CLI and trusts
// pebble's root, so the certificates it issues are Valid.
func acmeAccount(t *testing.T, e *env, p *testpki.Pebble) {
	t.Helper()
	e.write("pebble-wfe.pem", p.CAPEM)
	var acct struct {
		Identity   int64
		Directory  string
		AccountUrl string
		KeyFile    string
	}
	e.jsonOf(&acct, "acme", "account", "add", "--directory", p.Directory, "--email", "postmaster@contoso.test", "--ca-file", "pebble-wfe.pem")
	if acct.AccountUrl == "" || acct.Directory != p.Directory {
		t.Fatalf("account %+v", acct)
	}
	fi, err := os.Stat(acct.KeyFile)
	if err != nil || fi.Mode().Perm() != 0o600 || !strings.HasPrefix(acct.KeyFile, e.data) {
		t.Fatalf("account key %s: %v %v", acct.KeyFile, fi, err)
	}
	e.write("pebble-root.pem", p.Root(t))
	e.ok("trust", "add", "pebble-root.pem", "--source", "registry")
}

// TestAcmeCertificates: an administrator registers at an ACME CA
// (pebble, with challtestsrv as DNS) and orders certificates over each
// challenge with the CLI; each goes through the ordinary store with its
// chain and its services, and the SMTP listener serves it. A failed order
// is explained (the challenge, the name, what the CA saw, the fix) and
// changes nothing in the store.
func TestAcmeCertificates(t *testing.T) {
	p := testpki.StartPebble(t)
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	acmeAccount(t, e, p)

	before := e.state()
	r := e.run("", "cert", "new", "--acme", "--domain", "down.contoso.test", "--services", "SMTP", "--http-01", testpki.FreePort(t))
	if r.code == 0 {
		t.Fatal("an order whose challenge nobody answers succeeded")
	}
	for _, want := range []string{"http-01", "down.contoso.test", "connection refused", "port 80", "--http-01"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the failure does not say %q:\n%s", want, r.stderr)
		}
	}
	if after := e.state(); strings.Split(after, "\nevents:")[0] != strings.Split(before, "\nevents:")[0] {
		t.Errorf("a failed order changed the store:\n%s\n---\n%s", before, after)
	}
	var evs []map[string]any
	e.jsonOf(&evs, "events", "--id", "16102")
	if len(evs) != 1 {
		t.Errorf("AcmeOrderFailed logged %d times", len(evs))
	}

	hook := p.HookScript(t)
	cases := []struct {
		name, domain string
		args         []string
	}{
		{"http-01", "hub.contoso.test", []string{"--http-01", "127.0.0.1:" + p.HTTPPort}},
		{"tls-alpn-01", "alpn.contoso.test", []string{"--tls-alpn-01", "127.0.0.1:" + p.TLSPort}},
		{"dns-01", "dns.contoso.test", []string{"--dns-01-hook", hook}},
	}
	var smtpCert string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got certJSON
			e.jsonOf(&got, append([]string{"cert", "new", "--acme", "--domain", c.domain, "--services", "SMTP"}, c.args...)...)
			if got.IsSelfSigned || got.Status != "Valid" || !strings.Contains(strings.Join(got.Services, ","), "SMTP") {
				t.Fatalf("ACME certificate %+v", got)
			}
			if len(got.CertificateDomains) != 1 || got.CertificateDomains[0] != c.domain {
				t.Errorf("domains %v", got.CertificateDomains)
			}
			// The chain was kept: verify shows the intermediate up to the trusted root.
			v := e.ok("cert", "verify", got.Thumbprint)
			if !strings.Contains(v, "Pebble Intermediate CA") || !strings.Contains(v, "root (Registry)") {
				t.Errorf("cert verify shows no chain:\n%s", v)
			}
			if c.domain == "hub.contoso.test" {
				smtpCert = got.Thumbprint
			}
		})
	}
	if smtpCert == "" {
		t.Fatal("no certificate for the SMTP listener")
	}
	keys, _ := filepath.Glob(filepath.Join(e.data, "keys", "*.key"))
	for _, k := range keys {
		if fi, _ := os.Stat(k); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", k, fi.Mode())
		}
	}
	m.start()
	th, err := starttlsOnce(m.addr)
	if err != nil || th != smtpCert {
		t.Fatalf("STARTTLS served %s (%v), want the ACME certificate %s", th, err, smtpCert)
	}
}

// TestAcmeRenewUnderLoad: during a load of STARTTLS sessions, cert renew
// orders the ACME certificate again from pebble; the new one takes over
// SMTP and is served from the next handshakes, with no failed session.
// cert renewals then shows the old one renewed and the new one's next
// renewal.
func TestAcmeRenewUnderLoad(t *testing.T) {
	p := testpki.StartPebble(t)
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	acmeAccount(t, e, p)
	var first certJSON
	e.jsonOf(&first, "cert", "new", "--acme", "--domain", "hub.contoso.test", "--services", "SMTP", "--http-01", "127.0.0.1:"+p.HTTPPort)
	m.start()
	if th, err := starttlsOnce(m.addr); err != nil || th != first.Thumbprint {
		t.Fatalf("served %s (%v), want %s", th, err, first.Thumbprint)
	}
	var mu sync.Mutex
	n, fails, old, newer := 0, 0, 0, 0
	var renewed string
	var firstNew time.Time
	var failures []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				th, err := starttlsOnce(m.addr)
				mu.Lock()
				n++
				switch {
				case err != nil:
					fails++
					failures = append(failures, err)
				case th == first.Thumbprint:
					old++
				case th == renewed:
					newer++
					if firstNew.IsZero() {
						firstNew = time.Now()
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	var nw certJSON
	e.jsonOf(&nw, "cert", "renew", first.Thumbprint)
	mu.Lock()
	renewed = nw.Thumbprint
	mu.Unlock()
	done := time.Now()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		seen := newer > 0
		mu.Unlock()
		if seen {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if fails != 0 || newer == 0 || old == 0 || nw.Thumbprint == first.Thumbprint {
		t.Fatalf("%d sessions: %d failed %v, %d with the old certificate, %d with the renewed one", n, fails, failures, old, newer)
	}
	t.Logf("%d STARTTLS sessions, 0 failed; the renewed certificate was served %v after cert renew returned", n, firstNew.Sub(done).Round(time.Millisecond))
	var rs []struct {
		Thumbprint  string
		RenewedBy   string
		NextRenewal *time.Time
	}
	e.jsonOf(&rs, "cert", "renewals")
	got := map[string]string{}
	for _, r := range rs {
		got[r.Thumbprint] = r.RenewedBy
		if r.Thumbprint == nw.Thumbprint && r.NextRenewal == nil {
			t.Error("the renewed certificate has no next renewal")
		}
	}
	if got[first.Thumbprint] != nw.Thumbprint {
		t.Errorf("cert renewals: %+v", rs)
	}
	var evs []map[string]any
	e.jsonOf(&evs, "events", "--id", "16103")
	if len(evs) != 1 {
		t.Errorf("CertificateRenewed logged %d times", len(evs))
	}
}

// TestAcmeOnServerListeners: with --http-01 server and --tls-alpn-01
// server, the running certrelay serve answers the CA's challenges on its
// own listeners (http-01 on its plain HTTP listener, tls-alpn-01 on the
// console's HTTPS listener), learning of them through the data
// directory; the console then serves the certificate ordered for it.
func TestAcmeOnServerListeners(t *testing.T) {
	p := testpki.StartPebble(t)
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	acmeAccount(t, e, p)
	console := "127.0.0.1:" + p.TLSPort
	e.ok("console", "set", "--bindings", console, "--metrics-bindings", "127.0.0.1:"+p.HTTPPort)
	// Without a running server nobody answers: the order says so.
	r := e.run("", "cert", "new", "--acme", "--domain", "hub.contoso.test", "--http-01", "server", "--services", "SMTP")
	if r.code == 0 || !strings.Contains(r.stderr, "certrelay serve running") {
		t.Fatalf("an order nobody answers: exit %d\n%s", r.code, r.stderr)
	}
	m.start()
	waitPort(t, console)
	var smtp, iis certJSON
	e.jsonOf(&smtp, "cert", "new", "--acme", "--domain", "hub.contoso.test", "--http-01", "server", "--services", "SMTP")
	e.jsonOf(&iis, "cert", "new", "--acme", "--domain", "hub.contoso.test", "--tls-alpn-01", "server", "--services", "IIS")
	if smtp.Status != "Valid" || iis.Status != "Valid" {
		t.Fatalf("statuses %s %s", smtp.Status, iis.Status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := tls.Dial("tcp", console, &tls.Config{ServerName: "hub.contoso.test", InsecureSkipVerify: true})
		if err == nil {
			th := thumb(c.ConnectionState().PeerCertificates[0])
			c.Close()
			if th == iis.Thumbprint {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console does not serve the ACME certificate %s (%v)", iis.Thumbprint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// cert renew of a certificate ordered this way asks the server again.
	var nw certJSON
	e.jsonOf(&nw, "cert", "renew", smtp.Thumbprint)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		th, err := starttlsOnce(m.addr)
		if err == nil && th == nw.Thumbprint {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SMTP serves %s (%v) after the renewal, want %s", th, err, nw.Thumbprint)
		}
	}
}

// TestOrgInternalRenewal: cert renew of hub2's internal transport
// certificate publishes the new one in the organisation's directory
// (slapd); hub1, which follows the directory, authenticates hub2 with it by
// direct trust from then on, and no hop between the hubs fails (every
// record of hub1's message trace is delivered, no direct-trust event).
func TestOrgInternalRenewal(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test")
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")
	old := h2.internal()
	h1.start()
	h2.start()
	send := func(i int) {
		t.Helper()
		if out, code := swaks(t, "--server", h1.addr, "--from", "carol@example.org", "--to", "bob@contoso.test", "--header", fmt.Sprintf("Subject: renewal %d", i)); code != 0 {
			t.Fatalf("swaks %d: %d\n%s", i, code, out)
		}
	}
	send(1)
	h2.waitMail("contoso.test", "bob", 1, 20*time.Second)

	renewed := h2.e.ok("cert", "renew", old)
	if renewed == old || h2.internal() != renewed {
		t.Fatalf("renewed as %s; hub2's internal certificate is %s", renewed, h2.internal())
	}
	// hub1 sees the new certificate in the directory.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var servers []struct{ Name, InternalTransportCertificateThumbprint string }
		h1.e.jsonOf(&servers, "server", "list")
		if len(servers) == 2 && servers[1].InternalTransportCertificateThumbprint == renewed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub1's directory still shows %+v", servers)
		}
	}
	for i := 2; i <= 4; i++ {
		send(i)
	}
	msgs := h2.waitMail("contoso.test", "bob", 4, 30*time.Second)
	var last []string
	for _, m := range msgs {
		if strings.Contains(m, "Subject: renewal 4") {
			last = orgComment.FindStringSubmatch(m)
		}
	}
	if last == nil || last[4] != "hub2" || last[5] != renewed {
		t.Fatalf("the last message's hop: %v, want hub2 presenting %s", last, renewed)
	}
	for _, r := range h1.track() {
		if r.PeerServer == "hub2" && r.Result != "delivered" {
			t.Errorf("a hop to hub2 did not deliver: %+v", r)
		}
	}
	for _, id := range []int{1036, 1037, 2018, 2019} {
		if evs := h1.events(id); len(evs) != 0 {
			t.Errorf("hub1 logged %d: %+v", id, evs)
		}
		if evs := h2.events(id); len(evs) != 0 {
			t.Errorf("hub2 logged %d: %+v", id, evs)
		}
	}
}

// TestAcmeAccountEAB: against a CA that requires an external account
// binding, acme account add without one is refused with the fix, a key ID
// without its MAC key is a usage error, and the MAC key read from a file
// registers the account (never on the command line).
func TestAcmeAccountEAB(t *testing.T) {
	mac := "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	p := testpki.StartPebbleWith(t, testpki.PebbleOptions{EAB: map[string]string{"kid-1": mac}})
	e := newEnv(t)
	e.ok("setup", "--fqdn", "hub.contoso.test")
	e.write("ca.pem", p.CAPEM)
	e.write("eab.key", []byte(mac+"\n"))
	r := e.run("", "acme", "account", "add", "--directory", p.Directory, "--ca-file", "ca.pem")
	if r.code != 1 || !strings.Contains(r.stderr, "externalAccountRequired") || !strings.Contains(r.stderr, "external account binding") {
		t.Fatalf("without EAB: exit %d\n%s", r.code, r.stderr)
	}
	r = e.run("", "acme", "account", "add", "--directory", p.Directory, "--ca-file", "ca.pem", "--eab-kid", "kid-1")
	if r.code != 2 || !strings.Contains(r.stderr, "--eab-key-file") {
		t.Fatalf("a key ID without its MAC key: exit %d\n%s", r.code, r.stderr)
	}
	var acct struct{ ExternalAccountBinding bool }
	e.jsonOf(&acct, "acme", "account", "add", "--directory", p.Directory, "--ca-file", "ca.pem", "--eab-kid", "kid-1", "--eab-key-file", "eab.key")
	if !acct.ExternalAccountBinding {
		t.Fatalf("account %+v", acct)
	}
}
