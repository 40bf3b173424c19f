package revocation

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// silentListener accepts connections and never answers; it holds them
// open until the test ends.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c) // read and ignore the request
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// closedPort returns an address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestUnreachable: a responder that never answers, or is not there, gives
// Unknown with an "unreachable" attempt, bounded by Timeout (the test does
// not time it: a hang would trip the test's own deadline).
func TestUnreachable(t *testing.T) {
	p := getPKI(t)
	silent, closed := silentListener(t), closedPort(t)
	cases := []struct {
		name      string
		ocsp, crl []string
		wantError string // regexp
	}{
		{"fail/ocsp-never-answers", []string{"http://" + silent + "/ocsp"}, nil, "deadline exceeded"},
		{"fail/crl-never-answers", nil, []string{"http://" + silent + "/ca.crl"}, "deadline exceeded"},
		{"fail/ldap-never-answers", nil, []string{"ldap://" + silent + "/cn=CA,dc=example,dc=test"}, "deadline exceeded"},
		{"fail/ocsp-closed-port", []string{"http://" + closed + "/ocsp"}, nil, "refused"},
		{"fail/crl-closed-port", nil, []string{"http://" + closed + "/ca.crl"}, "refused"},
		{"fail/ldap-closed-port", nil, []string{"ldap://" + closed + "/cn=CA,dc=example,dc=test"}, "refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := leaf(t, p.ca, tc.ocsp, tc.crl)
			c := &Checker{Now: newClock().Now, Timeout: 200 * time.Millisecond}
			res := c.Check(t.Context(), l, p.ca.cert, false)
			wantResult(t, res, Unknown, ResultUnreachable)
			if a := res.Attempts[0]; !regexp.MustCompile(tc.wantError).MatchString(a.Error) {
				t.Errorf("attempt error %q does not match %q", a.Error, tc.wantError)
			}
			// The negative cache answers the next check without waiting.
			if res := c.Check(t.Context(), l, p.ca.cert, false); !res.Attempts[0].FromCache || res.Status != Unknown {
				t.Errorf("second check = %+v, want Unknown from the negative cache", res)
			}
		})
	}
}

// forwardProxy is an HTTP proxy for plain http: it receives absolute-URI
// requests and serves them itself from hosts it knows (*.invalid names
// that no resolver would find, so a fetch that bypassed the proxy fails).
type forwardProxy struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newForwardProxy(t *testing.T, hosts map[string]http.Handler) *forwardProxy {
	fp := &forwardProxy{}
	fp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fp.mu.Lock()
		fp.seen = append(fp.seen, r.Method+" "+r.RequestURI)
		fp.mu.Unlock()
		h, ok := hosts[r.URL.Host]
		if !r.URL.IsAbs() || !ok {
			http.Error(w, "not a proxy request for a known host", http.StatusBadGateway)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(fp.srv.Close)
	return fp
}

func TestProxy(t *testing.T) {
	p := getPKI(t)
	origin := newResponder(t) // its handler answers for the .invalid hosts, through the proxy
	const crlURL, ocspURL = "http://crl.example.invalid/ca.crl", "http://ocsp.example.invalid/ocsp"
	l := leaf(t, p.ca, []string{ocspURL}, []string{crlURL})
	origin.setCRL("/ca.crl", static(makeCRL(t, p.ca, crlSpec{})))
	origin.setOCSP(func(*ocsp.Request) []byte {
		return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert})
	})
	fp := newForwardProxy(t, map[string]http.Handler{
		"crl.example.invalid":  http.HandlerFunc(origin.serve),
		"ocsp.example.invalid": http.HandlerFunc(origin.serve),
	})

	t.Run("ok/every-fetch-through-the-proxy", func(t *testing.T) {
		proxy, _ := url.Parse(fp.srv.URL)
		c := &Checker{Now: newClock().Now, Proxy: proxy, Timeout: 2 * time.Second}
		res := c.Check(t.Context(), l, p.ca.cert, true)
		if res.Status != Good || len(res.Attempts) != 2 {
			t.Fatalf("Check = %+v, want Good from both sources", res)
		}
		fp.mu.Lock()
		defer fp.mu.Unlock()
		want := []string{"POST " + ocspURL, "GET " + crlURL}
		if strings.Join(fp.seen, ",") != strings.Join(want, ",") {
			t.Errorf("proxy saw %q, want %q", fp.seen, want)
		}
	})
	t.Run("fail/proxy-down", func(t *testing.T) {
		proxy := &url.URL{Scheme: "http", Host: closedPort(t)}
		c := &Checker{Now: newClock().Now, Proxy: proxy, Timeout: 2 * time.Second}
		res := c.Check(t.Context(), l, p.ca.cert, true)
		wantResult(t, res, Unknown, ResultUnreachable)
		for _, a := range res.Attempts {
			if a.Result != ResultUnreachable || !strings.Contains(a.Error, "proxyconnect") {
				t.Errorf("attempt %+v, want unreachable through the proxy", a)
			}
		}
	})
}
