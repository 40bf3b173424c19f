package revocation

import (
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// dynamicSources makes the responder answer with a CRL and an OCSP
// response dated at the clock's current time, valid for an hour, so that
// fetching again after expiry gets a current answer.
func dynamicSources(t *testing.T, r *responder, clock *fakeClock, l *x509.Certificate) {
	p := getPKI(t)
	r.setCRL("/ca.crl", func() []byte {
		now := clock.Now()
		return makeCRL(t, p.ca, crlSpec{thisUpdate: now, nextUpdate: now.Add(time.Hour)})
	})
	r.setOCSP(func(*ocsp.Request) []byte {
		now := clock.Now()
		return makeOCSP(t, p.ca, ocspSpec{status: ocsp.Good, serial: l.SerialNumber, issuer: p.ca.cert,
			thisUpdate: now, nextUpdate: now.Add(time.Hour)})
	})
}

// TestCache: answers are reused until nextUpdate, fetched again after it,
// and always fetched when fresh.
func TestCache(t *testing.T) {
	p := getPKI(t)
	for _, tc := range []struct {
		name string
		kind string
		path string
	}{
		{"ok/crl", KindCRL, "/ca.crl"},
		{"ok/ocsp", KindOCSP, "/ocsp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newResponder(t)
			clock := newClock()
			var l *x509.Certificate
			if tc.kind == KindCRL {
				l = leaf(t, p.ca, nil, []string{r.url(tc.path)})
			} else {
				l = leaf(t, p.ca, []string{r.url(tc.path)}, nil)
			}
			dynamicSources(t, r, clock, l)
			c := &Checker{Now: clock.Now}
			steps := []struct {
				name      string
				advance   time.Duration
				fresh     bool
				wantHits  int
				fromCache bool
			}{
				{"first check fetches", 0, false, 1, false},
				{"second check within nextUpdate uses the cache", 30 * time.Minute, false, 1, true},
				{"fresh check fetches although cached", 0, true, 2, false},
				{"after nextUpdate the check fetches again", 61 * time.Minute, false, 3, false},
				{"and caches the new answer", time.Minute, false, 3, true},
			}
			for _, s := range steps {
				clock.Advance(s.advance)
				res := c.Check(t.Context(), l, p.ca.cert, s.fresh)
				if res.Status != Good {
					t.Fatalf("%s: Status = %v, want Good; %+v", s.name, res.Status, res.Attempts)
				}
				if n := r.count(tc.path); n != s.wantHits {
					t.Errorf("%s: %d requests, want %d", s.name, n, s.wantHits)
				}
				if got := res.Attempts[0].FromCache; got != s.fromCache {
					t.Errorf("%s: FromCache = %v, want %v", s.name, got, s.fromCache)
				}
			}
		})
	}
}

// TestNegativeCache: a failing source is not asked again for NegativeTTL
// by non-fresh checks, and the failure never reaches the shared Cache.
func TestNegativeCache(t *testing.T) {
	p := getPKI(t)
	r := newResponder(t) // /ca.crl answers 404 until set
	clock := newClock()
	l := leaf(t, p.ca, nil, []string{r.url("/ca.crl")})
	cache := NewMemoryCache()
	c := &Checker{Now: clock.Now, Cache: cache}
	steps := []struct {
		name      string
		advance   time.Duration
		fresh     bool
		fix       bool // the CRL becomes available before this step
		want      Status
		wantHits  int
		fromCache bool
	}{
		{"first failure", 0, false, false, Unknown, 1, false},
		{"within a minute: negative cache", 30 * time.Second, false, false, Unknown, 1, true},
		{"fresh ignores the negative cache", 0, true, false, Unknown, 2, false},
		{"still negative after the fresh failure", 10 * time.Second, false, false, Unknown, 2, true},
		{"source repaired, still negative-cached", 0, false, true, Unknown, 2, true},
		{"after the negative TTL: fetched again", DefaultNegativeTTL, false, false, Good, 3, false},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		if s.fix {
			r.setCRL("/ca.crl", static(makeCRL(t, p.ca, crlSpec{})))
		}
		res := c.Check(t.Context(), l, p.ca.cert, s.fresh)
		if res.Status != s.want {
			t.Errorf("%s: Status = %v, want %v; %+v", s.name, res.Status, s.want, res.Attempts)
		}
		if n := r.count("/ca.crl"); n != s.wantHits {
			t.Errorf("%s: %d requests, want %d", s.name, n, s.wantHits)
		}
		if a := res.Attempts[0]; a.FromCache != s.fromCache {
			t.Errorf("%s: FromCache = %v, want %v", s.name, a.FromCache, s.fromCache)
		}
		if s.want == Unknown {
			if _, _, ok := cache.Get(cacheKeyPrefixCRL + r.url("/ca.crl")); ok {
				t.Errorf("%s: a failure was written to the Cache", s.name)
			}
		}
	}
}

// TestSharedCache: a response fetched by one Checker (the CLI) serves
// another (the server) through the persisted Cache; an entry that does not
// verify is only a cache miss.
func TestSharedCache(t *testing.T) {
	p := getPKI(t)
	r := newResponder(t)
	clock := newClock()
	l := leaf(t, p.ca, nil, []string{r.url("/ca.crl")})
	dynamicSources(t, r, clock, l)
	cache := NewMemoryCache()

	cli := &Checker{Now: clock.Now, Cache: cache}
	if res := cli.Check(t.Context(), l, p.ca.cert, true); res.Status != Good {
		t.Fatalf("CLI check: %+v", res)
	}
	server := &Checker{Now: clock.Now, Cache: cache}
	res := server.Check(t.Context(), l, p.ca.cert, false)
	if res.Status != Good || !res.Attempts[0].FromCache || r.count("/ca.crl") != 1 {
		t.Errorf("server check = %+v after %d fetches, want Good from the shared cache", res, r.count("/ca.crl"))
	}

	t.Run("fail/tampered-entry-is-a-miss", func(t *testing.T) {
		key := cacheKeyPrefixCRL + r.url("/ca.crl")
		forged := makeCRL(t, selfSignedLike(t, p.ca.cert), crlSpec{nextUpdate: t0.Add(1000 * time.Hour)})
		for _, bad := range [][]byte{forged, []byte("garbage")} {
			cache.Put(key, bad, t0.Add(1000*time.Hour))
			r.setCRL("/ca.crl", static(makeCRL(t, p.ca, crlSpec{revoked: []*x509.Certificate{l}})))
			before := r.count("/ca.crl")
			res := (&Checker{Now: clock.Now, Cache: cache}).Check(t.Context(), l, p.ca.cert, false)
			if res.Status != Revoked || r.count("/ca.crl") != before+1 {
				t.Errorf("with a tampered cache entry: %+v, want a fetch and Revoked", res)
			}
		}
	})
}

// TestConcurrentChecks runs many checks at once (under -race) on one
// Checker: all must agree, and the responder is not asked once per check.
func TestConcurrentChecks(t *testing.T) {
	p := getPKI(t)
	r := newResponder(t)
	clock := newClock()
	l := leaf(t, p.ca, []string{r.url("/ocsp")}, []string{r.url("/ca.crl")})
	dynamicSources(t, r, clock, l)
	c := &Checker{Now: clock.Now}
	const n = 32
	var wg sync.WaitGroup
	results := make([]Result, n)
	for i := range n {
		wg.Go(func() { results[i] = c.Check(t.Context(), l, p.ca.cert, i%4 == 0) })
	}
	wg.Wait()
	for i, res := range results {
		if res.Status != Good {
			t.Errorf("check %d: %+v", i, res)
		}
	}
	if hits := r.count("/ocsp"); hits > n/2 {
		t.Errorf("%d OCSP requests for %d checks: fetches are not shared or cached", hits, n)
	}
}

func TestMemoryCacheBound(t *testing.T) {
	m := NewMemoryCache()
	for i := range maxMemCacheEntries + 10 {
		m.Put(string(rune(i)), []byte{1}, t0)
	}
	if len(m.entries) > maxMemCacheEntries {
		t.Errorf("%d entries, want at most %d", len(m.entries), maxMemCacheEntries)
	}
	if _, _, ok := m.Get(string(rune(maxMemCacheEntries + 9))); !ok {
		t.Errorf("the last entry put is missing")
	}
}
