//go:build bench

package bench

import (
	"bufio"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"certrelay/internal/certinfo"
	"certrelay/internal/testpki"
)

// TestOrg is `make bench-org`: the numbers of issue 11.
//
//   - propagation: a new internal transport certificate made on hub1
//     (cert new --force) until hub2 accepts it by direct trust, and until
//     hub1 itself presents it, ORG_SWAPS times (two certrelay serve on one
//     slapd, probed by X-ANONYMOUSTLS sessions every few milliseconds);
//   - scale: certrelay serve joined to a directory of 1,000 server objects
//     and ORG_MAILBOXES (100,000) mailboxes: start time (exec to accepting
//     connections, three starts) and resident memory, against the same
//     directory without mailboxes (the difference per mailbox);
//   - the Go benchmark of the cached direct-trust check.
//
// It writes the "org" section of docs/performance/org.md and asserts nothing
// about timings.
func TestOrg(t *testing.T) {
	build(t)
	swaps := envInt(t, "ORG_SWAPS", 50)
	boxes := envInt(t, "ORG_MAILBOXES", 100000)
	servers := envInt(t, "ORG_SERVERS", 1000)
	started := time.Now().UTC()
	var prop propagation
	t.Run("propagation", func(t *testing.T) { prop = propagate(t, swaps) })
	var sc scale
	t.Run("scale", func(t *testing.T) { sc = measureScale(t, servers, boxes) })
	gob := runGoBenchmarks(t, []goRun{{"./internal/transport/", "BenchmarkDirectTrustCheck", "1s", nil}})

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## The organisation: `make bench-org ORG_SWAPS=%d ORG_MAILBOXES=%d` on %s\n\n", swaps, boxes, started.Format("2006-01-02 15:04 UTC"))
	w("Machine: %s.\n\n", machine(t))
	w("Propagation is from the return of `certrelay cert new --force` on hub1 (its commit is just after it published the certificate in slapd) to the first X-ANONYMOUSTLS session that hub2 accepts by direct trust with the new certificate (a probe presents it, with hub1's key, every %v), and to the first session in which hub1 presents it; %d certificates, 1.5 s apart.\n\n", probeEvery, swaps)
	w("| | swaps | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n")
	w("| accepted by hub2 (directory → LDAP Sync → hub2's rebuild) | %d | %.1f | %.1f | %.1f |\n", len(prop.Accepted), median(prop.Accepted), nearestRank(prop.Accepted, 99), nearestRank(prop.Accepted, 100))
	w("| presented by hub1 (its own rebuild) | %d | %.1f | %.1f | %.1f |\n\n", len(prop.Presented), median(prop.Presented), nearestRank(prop.Presented, 99), nearestRank(prop.Presented, 100))
	w("Scale: slapd holds %d server objects (each with its internal transport certificate) and %d mailboxes, loaded with slapadd; `certrelay serve` joined to it, from exec to accepting connections (its copy of the directory complete, its transport state built):\n\n", servers, boxes)
	w("| directory | serve starts (ms) | median | resident memory after start |\n|---|---|---:|---:|\n")
	w("| %d servers, no mailboxes | %s | %.0f ms | %.1f MiB |\n", servers, floats(sc.EmptyStarts), median(sc.EmptyStarts), sc.EmptyRSS/(1<<20))
	w("| %d servers, %d mailboxes | %s | %.0f ms | %.1f MiB |\n\n", servers, boxes, floats(sc.FullStarts), median(sc.FullStarts), sc.FullRSS/(1<<20))
	perBox := (sc.FullRSS - sc.EmptyRSS) / float64(boxes)
	w("Memory per mailbox: %.0f bytes (the difference of resident memory over %d mailboxes; it holds the replica's copy, the transport's lookup table and what the Go heap keeps free).\n\n", perBox, boxes)
	w("```\n")
	for _, l := range gob {
		w("%s\n", l.Raw)
	}
	w("```\n\n")
	dt := metric(gob, "BenchmarkDirectTrustCheck", "ns/op")
	dtAllocs := metric(gob, "BenchmarkDirectTrustCheck", "allocs/op")
	p99 := nearestRank(prop.Accepted, 99)
	start := median(sc.FullStarts)
	w("| goal (issue 11) | measured | |\n|---|---|---|\n")
	w("| direct-trust check per inbound session, cached: ≤ 1 µs, 0 allocations | %.1f ns, %.0f allocs (1,000 servers) | %s |\n", dt, dtAllocs, verdict(dt > 0 && dt <= 1000 && dtAllocs == 0, "cached"))
	w("| a new internal certificate on one hub to its first use by the other: ≤ 1 s p99 | %.1f ms | %s |\n", p99, verdict(p99 <= 1000 && len(prop.Accepted) == swaps, fmt.Sprintf("%.0f%% of the limit", p99/10)))
	w("| `serve` start ≤ 2 s, %d servers and %d mailboxes | %.0f ms | %s |\n", servers, boxes, start, verdict(start <= 2000, fmt.Sprintf("%.0f%% of the limit", start/20)))
	w("| memory per mailbox stated | %.0f bytes | stated |\n", perBox)
	doc := b.String()
	fmt.Println(doc)
	writeSection(t, "org", doc)
}

// probeEvery spaces the probes of the propagation.
const probeEvery = 5 * time.Millisecond

type propagation struct{ Accepted, Presented []float64 }

// orgServer is a certrelay joined to the benchmark's slapd.
func orgServer(t *testing.T, s *testpki.Slapd, base, pw, name string) *relay {
	t.Helper()
	bin, _ := build(t)
	dir := t.TempDir()
	r := &relay{t: t, bin: bin, dir: dir, data: filepath.Join(dir, "data"), name: name, addr: testpki.FreePort(t)}
	t.Cleanup(r.kill)
	r.cli("setup", "--name", name, "--fqdn", name+".org.test", "--directory", s.URL(base), "--bind-dn", s.RootDN, "--bind-password-file", pw)
	r.cli("connector", "receive", "set", "Default "+name, "--bindings", r.addr)
	return r
}

func newOrgSlapd(t *testing.T) (*testpki.Slapd, string, string) {
	s := testpki.StartSlapdWith(t, testpki.SlapdOptions{Certrelay: true})
	base := "ou=org," + s.Suffix
	s.Add(t, base, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"org"}})
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(s.RootPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, base, pw
}

func propagate(t *testing.T, swaps int) propagation {
	s, base, pw := newOrgSlapd(t)
	h1, h2 := orgServer(t, s, base, pw, "hub1"), orgServer(t, s, base, pw, "hub2")
	h1.start()
	h2.start()
	probe := testpki.SelfSigned(t, testpki.Options{CommonName: "probe"})
	stranger := tls.Certificate{Certificate: [][]byte{probe.Cert.Raw}, PrivateKey: probe.Key, Leaf: probe.Cert}
	var p propagation
	for i := 0; i < swaps; i++ {
		time.Sleep(1500 * time.Millisecond)
		thumb := h1.cli("cert", "new", "--force")
		made := time.Now()
		cert := h1.internalCert(t, s, base, thumb)
		var wg sync.WaitGroup
		var accepted, presented time.Duration
		wg.Add(2)
		go func() { // hub2 accepts hub1's new certificate
			defer wg.Done()
			for time.Since(made) < 30*time.Second {
				if ok, _ := anonymousProbe(h2.addr, "hub1.org.test", cert, true); ok {
					accepted = time.Since(made)
					return
				}
				time.Sleep(probeEvery)
			}
		}()
		go func() { // hub1 presents it
			defer wg.Done()
			for time.Since(made) < 30*time.Second {
				if _, got := anonymousProbe(h1.addr, "probe.org.test", stranger, false); got == thumb {
					presented = time.Since(made)
					return
				}
				time.Sleep(probeEvery)
			}
		}()
		wg.Wait()
		if accepted == 0 || presented == 0 {
			t.Errorf("swap %d: certificate %s accepted after %v, presented after %v\n%s", i, thumb, accepted, presented, h2.Logs())
			continue
		}
		p.Accepted = append(p.Accepted, float64(accepted.Microseconds())/1000)
		p.Presented = append(p.Presented, float64(presented.Microseconds())/1000)
	}
	return p
}

// internalCert returns the certificate the directory publishes for the
// server (read from slapd: it is there before cert new returns) with its
// key (read from the key files, as root may), in a few milliseconds.
func (r *relay) internalCert(t *testing.T, s *testpki.Slapd, base, thumb string) tls.Certificate {
	t.Helper()
	conn := s.DialRoot(t)
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest("cn="+r.name+",ou=Servers,"+base, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"certrelayInternalCert"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("read %s's object: %v", r.name, err)
	}
	c, err := x509.ParseCertificate(res.Entries[0].GetRawAttributeValue("certrelayInternalCert"))
	if err != nil || certinfo.Thumbprint(c.Raw) != thumb {
		t.Fatalf("the directory publishes another certificate than %s: %v", thumb, err)
	}
	keys, _ := filepath.Glob(filepath.Join(r.data, "keys", "*.key"))
	for _, k := range keys {
		data, _ := os.ReadFile(k)
		kb, _ := pem.Decode(data)
		if kb == nil {
			continue
		}
		key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			continue
		}
		if signer, ok := key.(crypto.Signer); ok && certinfo.KeyMatches(signer, c.PublicKey) {
			return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: signer, Leaf: c}
		}
	}
	t.Fatalf("no key file for %s", thumb)
	return tls.Certificate{}
}

// anonymousProbe runs EHLO, X-ANONYMOUSTLS presenting cert, EHLO and
// MAIL FROM:<> against addr: it reports whether MAIL was accepted (the
// server trusted cert for the name claimed) and the thumbprint of the
// server's certificate. Without mail it ends after the handshake.
func anonymousProbe(addr, claim string, cert tls.Certificate, mail bool) (bool, string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	reply := func() string {
		var last string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return ""
			}
			last = line
			if len(line) < 4 || line[3] != '-' {
				return last
			}
		}
	}
	if !strings.HasPrefix(reply(), "220") {
		return false, ""
	}
	fmt.Fprintf(c, "EHLO %s\r\n", claim)
	reply()
	fmt.Fprintf(c, "X-ANONYMOUSTLS\r\n")
	if !strings.HasPrefix(reply(), "220") {
		return false, ""
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }})
	if err := tc.Handshake(); err != nil {
		return false, ""
	}
	cs := tc.ConnectionState()
	thumb := ""
	if len(cs.PeerCertificates) > 0 {
		thumb = certinfo.Thumbprint(cs.PeerCertificates[0].Raw)
	}
	if !mail {
		fmt.Fprintf(tc, "QUIT\r\n")
		return false, thumb
	}
	r = bufio.NewReader(tc)
	fmt.Fprintf(tc, "EHLO %s\r\n", claim)
	if !strings.HasPrefix(reply(), "250") {
		return false, thumb
	}
	fmt.Fprintf(tc, "MAIL FROM:<>\r\n")
	ok := strings.HasPrefix(reply(), "250")
	fmt.Fprintf(tc, "QUIT\r\n")
	return ok, thumb
}

type scale struct {
	EmptyStarts, FullStarts []float64
	EmptyRSS, FullRSS       float64
}

// measureScale loads a directory of servers (and then mailboxes too) with
// slapadd and times certrelay serve joined to it.
func measureScale(t *testing.T, servers, boxes int) scale {
	var sc scale
	for _, withBoxes := range []bool{false, true} {
		s, base, pw := newOrgSlapd(t)
		n := 0
		if withBoxes {
			n = boxes
		}
		// The directory is filled offline: slapd stopped, slapadd, started.
		ldif := filepath.Join(s.Dir, "load.ldif")
		writeOrgLDIF(t, ldif, base, servers, n)
		s.Stop()
		if out, err := exec.Command(testpki.Tool(t, "slapadd"), "-q", "-f", filepath.Join(s.Dir, "slapd.conf"), "-l", ldif).CombinedOutput(); err != nil {
			t.Fatalf("slapadd: %v\n%s", err, out)
		}
		s.Restart(t)
		r := orgServer(t, s, base, pw, "hub0000x")
		var starts []float64
		var rss float64
		for i := 0; i < 3; i++ {
			d := r.start()
			starts = append(starts, float64(d.Milliseconds()))
			time.Sleep(3 * time.Second) // the copy on disk written, the heap settled
			rss = residentBytes(t, r)
			r.stop()
		}
		if withBoxes {
			sc.FullStarts, sc.FullRSS = starts, rss
		} else {
			sc.EmptyStarts, sc.EmptyRSS = starts, rss
		}
	}
	return sc
}

// residentBytes reads the running server's VmRSS.
func residentBytes(t *testing.T, r *relay) float64 {
	r.mu.Lock()
	pid := r.cmd.Process.Pid
	r.mu.Unlock()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) * 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// writeOrgLDIF writes the containers, servers (each with a certificate
// and a receive connector) and mailboxes (homed on the servers in turn).
func writeOrgLDIF(t *testing.T, path, base string, servers, boxes int) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	for _, ou := range []string{"Servers", "Connectors", "Domains", "Mailboxes", "Trust"} {
		fmt.Fprintf(w, "dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n", ou, base, ou)
	}
	fmt.Fprintf(w, "dn: cn=contoso.test,ou=Domains,%s\nobjectClass: certrelayAcceptedDomain\ncn: contoso.test\ncertrelayDomainName: contoso.test\ncertrelayDomainType: Authoritative\n\n", base)
	for i := 0; i < servers; i++ {
		name := fmt.Sprintf("hub%04d", i)
		leaf := testpki.SelfSigned(t, testpki.Options{CommonName: name, DNSNames: []string{name, name + ".org.test"}})
		fmt.Fprintf(w, "dn: cn=%s,ou=Servers,%s\nobjectClass: certrelayServer\ncn: %s\ncertrelayRole: hub\ncertrelayFqdn: %s.org.test\n", name, base, name, name)
		fmt.Fprintf(w, "certrelayInternalCertThumbprint: %s\ncertrelayInternalCert:: %s\n\n", certinfo.Thumbprint(leaf.Cert.Raw), base64.StdEncoding.EncodeToString(leaf.Cert.Raw))
		fmt.Fprintf(w, "dn: cn=Default %s,cn=%s,ou=Servers,%s\nobjectClass: certrelayReceiveConnector\ncn: Default %s\ncertrelayBinding: 0.0.0.0:25\ncertrelayPermissionGroup: AnonymousUsers\ncertrelayPermissionGroup: ExchangeServers\ncertrelayAuthMechanism: Tls\ncertrelayEnabled: TRUE\n\n", name, name, base, name)
	}
	hash := "$2a$10$abcdefghijklmnopqrstuuv9ly3Q8W0l9N3h4l2pRz5J3n5Q8W0l9"
	for i := 0; i < boxes; i++ {
		addr := fmt.Sprintf("user%06d@contoso.test", i)
		fmt.Fprintf(w, "dn: cn=%s,ou=Mailboxes,%s\nobjectClass: certrelayMailbox\ncn: %s\ncertrelayAddress: %s\ncertrelayHomeServer: hub%04d\ncertrelayMaildir: mail/contoso.test/user%06d\ncertrelayPasswordHash: %s\n\n",
			addr, base, addr, addr, i%servers, i, hash)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}
