package selection

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Index answers selection requests for one state of the store, memoizing
// each decision (up to MaxMemo of them): the first request for a name
// walks the candidates that hold it, found through an index of names
// (SelectHolding's decision: the holders only, so with 10,000
// certificates it costs what a handful does), every later one is a map
// lookup without locks or allocations. Build a new
// Index on every store or trust change (S7) and when ValidUntil passes.
// Safe for concurrent use.
type Index struct {
	cands      []Candidate
	now        time.Time
	validUntil time.Time
	memo       atomic.Pointer[map[Request]*Decision]
	mu         sync.Mutex // serialises writers of memo

	namesOnce sync.Once
	byName    *names // the candidates by the names they hold, built at the first decision by name
}

// MaxMemo bounds the decisions an Index remembers; beyond it, a request
// not yet answered is decided anew each time.
const MaxMemo = 4096

// NewIndex builds an index over cands as of now. The index keeps cands:
// the caller must not change the slice afterwards.
func NewIndex(cands []Candidate, now time.Time) *Index {
	ix := &Index{cands: cands, now: now}
	m := map[Request]*Decision{}
	ix.memo.Store(&m)
	// Decisions change when a candidate becomes valid or expires.
	for _, c := range cands {
		for _, t := range []time.Time{c.NotBefore, c.NotAfter} {
			if t.After(now) && (ix.validUntil.IsZero() || t.Before(ix.validUntil)) {
				ix.validUntil = t
			}
		}
	}
	return ix
}

// Candidates returns the candidates the index was built from.
func (ix *Index) Candidates() []Candidate { return ix.cands }

// Built returns the time the index judges validity at.
func (ix *Index) Built() time.Time { return ix.now }

// ValidUntil returns when a candidate's validity changes (zero: never):
// rebuild the index then.
func (ix *Index) ValidUntil() time.Time { return ix.validUntil }

// Requests returns up to max of the requests answered so far, so that
// the index built after a change can answer them before it is used.
func (ix *Index) Requests(max int) []Request {
	m := *ix.memo.Load()
	out := make([]Request, 0, min(len(m), max))
	for r := range m {
		if len(out) == max {
			break
		}
		out = append(out, r)
	}
	return out
}

// Select returns the decision for req. req.FQDN should be lower-case
// (callers normalise connector FQDNs once); it is lower-cased here when it
// is not, at the cost of an allocation.
func (ix *Index) Select(req Request) *Decision {
	if d, ok := (*ix.memo.Load())[req]; ok {
		return d
	}
	if lower := strings.ToLower(req.FQDN); lower != req.FQDN {
		req.FQDN = lower
		if d, ok := (*ix.memo.Load())[req]; ok {
			return d
		}
	}
	d := ix.decide(req)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := *ix.memo.Load()
	if prev, ok := old[req]; ok {
		return prev
	}
	if len(old) >= MaxMemo {
		return &d // names chosen by clients (SNI) must not grow the memo without end
	}
	next := make(map[Request]*Decision, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[req] = &d
	ix.memo.Store(&next)
	return &d
}

// decide makes the decision for req: SelectHolding's, the holders found
// through the index of names.
func (ix *Index) decide(req Request) Decision {
	if !ByName(req) {
		return Select(ix.cands, req, ix.now)
	}
	ix.namesOnce.Do(func() { ix.byName = buildNames(ix.cands) })
	pos, ok := ix.byName.lookup(req.FQDN)
	if !ok {
		return SelectHolding(ix.cands, req, ix.now)
	}
	held := make([]Candidate, 0, len(pos))
	for _, p := range pos {
		if c := &ix.cands[p]; Holds(c, req.FQDN) {
			held = append(held, *c)
		}
	}
	return Select(held, req, ix.now)
}

// Warm decides every request of reqs not decided yet and memoizes them
// at once (up to MaxMemo in all): a new index answers the requests of the
// one it replaces before it is published, without copying the memo once
// per request. It returns the decisions, in the order of reqs.
func (ix *Index) Warm(reqs []Request) []*Decision {
	out := make([]*Decision, len(reqs))
	old := *ix.memo.Load()
	fresh := map[Request]*Decision{}
	for i, r := range reqs {
		r.FQDN = strings.ToLower(r.FQDN)
		if d, ok := old[r]; ok {
			out[i] = d
			continue
		}
		if d, ok := fresh[r]; ok {
			out[i] = d
			continue
		}
		d := ix.decide(r)
		out[i] = &d
		fresh[r] = &d
	}
	if len(fresh) == 0 {
		return out
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old = *ix.memo.Load()
	next := make(map[Request]*Decision, min(len(old)+len(fresh), MaxMemo))
	for k, v := range old {
		next[k] = v
	}
	for k, v := range fresh {
		if len(next) >= MaxMemo {
			break
		}
		if _, ok := next[k]; !ok {
			next[k] = v
		}
	}
	ix.memo.Store(&next)
	return out
}
