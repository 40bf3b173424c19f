package revocation

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"
)

// Cache keeps trusted revocation responses between checks. The caller
// persists it (SQLite in the data directory) so that the CLI and the
// server share what they fetched.
//
// Keys are opaque, printable strings ("crl|" + URL for a CRL; "ocsp|" +
// issuer key hash + serial + URL for an OCSP response); values are DER
// responses (a PEM CRL is stored decoded).
// Only trusted answers (good or revoked) are Put, with the time until
// which they may be used; Checker re-verifies whatever Get returns
// (signature, issuer, times), so a tampered or stale entry is only a cache
// miss. Implementations must be safe for concurrent use; Get reports
// ok=false for a missing key, and may drop entries whenever they like.
type Cache interface {
	Get(key string) (der []byte, nextUpdate time.Time, ok bool)
	Put(key string, der []byte, nextUpdate time.Time)
}

var _ Cache = (*MemoryCache)(nil)

// MemoryCache is a Cache in memory, safe for concurrent use. It holds at
// most 4096 entries: when full, a Put drops arbitrary ones (a cache miss
// costs only a fetch).
type MemoryCache struct {
	mu      sync.Mutex
	entries map[string]memoryEntry
}

type memoryEntry struct {
	der        []byte
	nextUpdate time.Time
}

// NewMemoryCache returns an empty MemoryCache.
func NewMemoryCache() *MemoryCache {
	return &MemoryCache{entries: make(map[string]memoryEntry)}
}

// Get returns the entry for key; ok is false when there is none.
func (m *MemoryCache) Get(key string) ([]byte, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	return e.der, e.nextUpdate, ok
}

// Put stores der for key until nextUpdate, replacing any previous entry.
func (m *MemoryCache) Put(key string, der []byte, nextUpdate time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries == nil {
		m.entries = make(map[string]memoryEntry)
	}
	for k := range m.entries {
		if len(m.entries) < maxMemCacheEntries {
			break
		}
		if k != key {
			delete(m.entries, k)
		}
	}
	m.entries[key] = memoryEntry{der: der, nextUpdate: nextUpdate}
}

// negativeEntry remembers a failed source so that non-fresh checks do not
// ask it again before until.
type negativeEntry struct {
	attempt Attempt
	until   time.Time
}

func (c *Checker) getNegative(key string, now time.Time) (Attempt, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.negative[key]
	if !ok || !now.Before(e.until) {
		return Attempt{}, false
	}
	a := e.attempt
	a.FromCache = true
	return a, true
}

func (c *Checker) putNegative(key string, a Attempt, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.negative) >= maxNegativeEntries {
		for k, e := range c.negative {
			if !now.Before(e.until) {
				delete(c.negative, k)
			}
		}
		if len(c.negative) >= maxNegativeEntries {
			clear(c.negative)
		}
	}
	c.negative[key] = negativeEntry{attempt: a, until: now.Add(c.negativeTTL())}
}

func (c *Checker) clearNegative(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.negative, key)
}

// flight is one fetch shared by every concurrent Check that needs it.
type flight struct {
	done chan struct{}
	der  []byte
	err  error
}

// fetchShared runs fetch once for concurrent callers with the same key.
// The fetch itself runs without the callers' cancellation but within
// Timeout; each caller stops waiting when its own ctx is done.
func (c *Checker) fetchShared(ctx context.Context, key string, fetch func(context.Context) ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	f, ok := c.flights[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		c.flights[key] = f
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout())
			defer cancel()
			f.der, f.err = fetch(fctx)
			c.mu.Lock()
			delete(c.flights, key)
			c.mu.Unlock()
			close(f.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.der, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("gave up waiting for the response: %w", ctx.Err())
	}
}

// crlMemo is a CRL already parsed and verified against one issuer key, so
// that a large CRL read again from the cache is not parsed and verified on
// every handshake.
type crlMemo struct {
	crl     *parsedCRL
	lastUse time.Time
}

func memoKey(der []byte, issuerRaw []byte) [32]byte {
	h := sha256.New()
	h.Write(issuerRaw)
	h.Write([]byte{0})
	h.Write(der)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *Checker) getMemo(k [32]byte, now time.Time) *parsedCRL {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.memo[k]
	if !ok {
		return nil
	}
	m.lastUse = now
	return m.crl
}

func (c *Checker) putMemo(k [32]byte, p *parsedCRL, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.memo) >= maxMemoCRLs {
		var oldest [32]byte
		first := true
		for mk, m := range c.memo {
			if first || m.lastUse.Before(c.memo[oldest].lastUse) {
				oldest, first = mk, false
			}
		}
		delete(c.memo, oldest)
	}
	c.memo[k] = &crlMemo{crl: p, lastUse: now}
}
