package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"certrelay/internal/testpki"
)

// TestSTSPolicyCache (RFC 8461 3.2, 5.1): a policy is fetched once and
// kept for its max_age; a new id in the _mta-sts record makes it fetched
// again at once; while the record is gone, the cached policy stays in
// force until it expires, also after a restart (PolicyStore); mode none
// is no policy. A real DNS responder and a real HTTPS server answer.
func TestSTSPolicyCache(t *testing.T) {
	var mu sync.Mutex
	txt := "v=STSv1; id=one"
	policy := "version: STSv1\nmode: enforce\nmx: mx.x.test\nmax_age: 3600\n"
	fetches := 0
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "Policy CA"})
	leaf := ca.Issue(t, testpki.Options{CommonName: "mta-sts.x.test", DNSNames: []string{"mta-sts.x.test"}, Key: testpki.ECKey(t)})
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		fmt.Fprint(w, policy)
	}))
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}}}
	hs.StartTLS()
	defer hs.Close()
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ds := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		defer mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		switch {
		case q.Qtype == dns.TypeTXT && q.Name == "_mta-sts.x.test." && txt != "":
			rr, _ := dns.NewRR(`_mta-sts.x.test. 60 IN TXT "` + txt + `"`)
			m.Answer = append(m.Answer, rr)
		case q.Qtype == dns.TypeA && q.Name == "mta-sts.x.test.":
			rr, _ := dns.NewRR("mta-sts.x.test. 60 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
		case q.Qtype == dns.TypeAAAA:
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go ds.ActivateAndServe()
	defer ds.Shutdown()
	addr := pc.LocalAddr().String()

	clock := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	var p int
	fmt.Sscan(port, &p)
	kept := &memPolicies{m: map[string][5]any{}}
	newSTS := func() *STS {
		return &STS{
			Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "udp", addr)
			}},
			Roots:   func(context.Context) *x509.CertPool { return pool },
			Now:     func() time.Time { return clock },
			Port:    p,
			Persist: kept,
		}
	}
	sts := newSTS()
	step := func(name, wantMode, wantWhy string, wantFetches int) {
		t.Helper()
		pol, why := sts.Policy(context.Background(), "x.test")
		mode := "(none)"
		if pol != nil {
			mode = string(pol.Mode)
		}
		mu.Lock()
		n := fetches
		mu.Unlock()
		if mode != wantMode || !strings.Contains(why, wantWhy) || n != wantFetches {
			t.Errorf("%s: mode %s, why %q, %d fetches; want %s, …%s…, %d", name, mode, why, n, wantMode, wantWhy, wantFetches)
		}
	}
	step("first", "enforce", "policy id one fetched now, cached for max_age 3600s", 1)
	clock = clock.Add(30 * time.Minute)
	step("cached", "enforce", "cached policy id one", 1)
	mu.Lock()
	txt, policy = "v=STSv1; id=two", "version: STSv1\nmode: testing\nmx: mx.x.test\nmax_age: 3600\n"
	mu.Unlock()
	step("new id", "testing", "policy id two fetched now", 2)
	mu.Lock()
	txt = ""
	mu.Unlock()
	clock = clock.Add(59 * time.Minute)
	step("record gone, cache valid", "testing", "cached policy id two", 2)
	sts = newSTS() // a restart: the policy kept on disk is still in force
	step("record gone, after a restart", "testing", "cached policy id two", 2)
	clock = clock.Add(2 * time.Minute)
	step("record gone, cache expired", "(none)", "no _mta-sts.x.test record", 2)
	mu.Lock()
	txt, policy = "v=STSv1; id=three", "version: STSv1\nmode: none\nmax_age: 3600\n"
	mu.Unlock()
	step("mode none", "(none)", "mode none: policy id three", 3)
}

// memPolicies is a PolicyStore in memory (internal/policycache is the
// server's, on certrelay.db, with its own test).
type memPolicies struct {
	mu sync.Mutex
	m  map[string][5]any
}

func (k *memPolicies) LoadPolicy(_ context.Context, domain string) (string, string, time.Time, time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[domain]
	if !ok {
		return "", "", time.Time{}, time.Time{}, false
	}
	return v[0].(string), v[1].(string), v[2].(time.Time), v[3].(time.Time), true
}

func (k *memPolicies) SavePolicy(_ context.Context, domain, id, text string, fetched, expires time.Time) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[domain] = [5]any{id, text, fetched, expires, nil}
	return nil
}

// TestTLSRequiredNo: only the header field counts, in any case, with
// either line ending; the body does not.
func TestTLSRequiredNo(t *testing.T) {
	for _, c := range []struct {
		msg  string
		want bool
	}{
		{"Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n", true},
		{"tls-required:   no  \nSubject: x\n\nbody\n", true},
		{"TLS-Required: Yes\r\n\r\n", false},
		{"Subject: x\r\n\r\nTLS-Required: No\r\n", false},
		{"Subject: x\r\n", false},
	} {
		if got := tlsRequiredNo([]byte(c.msg)); got != c.want {
			t.Errorf("%q: %v, want %v", c.msg, got, c.want)
		}
	}
}
