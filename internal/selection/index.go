package selection

import (
	"hash/maphash"
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
// lookup without locks or allocations. The memo is split in shards by
// name, each replaced whole when a decision is added, so that adding the
// decisions of 1,000 connectors one by one copies a sixty-fourth of the
// memo each time, not all of it. Build a new Index on every store or
// trust change (S7) and when ValidUntil passes. Safe for concurrent use.
type Index struct {
	cands      []Candidate
	now        time.Time
	validUntil time.Time
	seed       maphash.Seed
	memo       [memoShards]atomic.Pointer[map[Request]*Decision]
	mu         sync.Mutex // serialises writers of memo
	memoized   int        // decisions in memo, under mu

	namesOnce sync.Once
	byName    *names // the candidates by the names they hold, built at the first decision by name
}

// MaxMemo bounds the decisions an Index remembers; beyond it, a request
// not yet answered is decided anew each time.
const MaxMemo = 4096

// memoShards is how many parts the memo is split into.
const memoShards = 64

var emptyMemo = map[Request]*Decision{}

// NewIndex builds an index over cands as of now. The index keeps cands:
// the caller must not change the slice afterwards.
func NewIndex(cands []Candidate, now time.Time) *Index {
	ix := &Index{cands: cands, now: now, seed: maphash.MakeSeed()}
	for i := range ix.memo {
		ix.memo[i].Store(&emptyMemo)
	}
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
	var out []Request
	for i := range ix.memo {
		for r := range *ix.memo[i].Load() {
			if len(out) == max {
				return out
			}
			out = append(out, r)
		}
	}
	return out
}

// shard returns the part of the memo that holds decisions for fqdn.
func (ix *Index) shard(fqdn string) *atomic.Pointer[map[Request]*Decision] {
	return &ix.memo[maphash.String(ix.seed, fqdn)%memoShards]
}

// Select returns the decision for req. req.FQDN should be lower-case
// (callers normalise connector FQDNs once); it is lower-cased here when it
// is not, at the cost of an allocation.
func (ix *Index) Select(req Request) *Decision {
	if d, ok := (*ix.shard(req.FQDN).Load())[req]; ok {
		return d
	}
	if lower := strings.ToLower(req.FQDN); lower != req.FQDN {
		req.FQDN = lower
		if d, ok := (*ix.shard(req.FQDN).Load())[req]; ok {
			return d
		}
	}
	d := ix.decide(req)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.add(map[Request]*Decision{req: &d})[req]
}

// add memoizes the decisions of fresh not memoized yet (while there is
// room), copying each shard they fall in once, and returns, for each
// request of fresh, the decision memoized for it (an earlier one, if
// another goroutine made it first) or fresh's. The caller holds mu.
func (ix *Index) add(fresh map[Request]*Decision) map[Request]*Decision {
	byShard := map[*atomic.Pointer[map[Request]*Decision]][]Request{}
	for r := range fresh {
		sh := ix.shard(r.FQDN)
		if prev, ok := (*sh.Load())[r]; ok {
			fresh[r] = prev
			continue
		}
		byShard[sh] = append(byShard[sh], r)
	}
	for sh, reqs := range byShard {
		room := MaxMemo - ix.memoized
		if room <= 0 {
			break // names chosen by clients (SNI) must not grow the memo without end
		}
		old := *sh.Load()
		next := make(map[Request]*Decision, len(old)+min(len(reqs), room))
		for k, v := range old {
			next[k] = v
		}
		for _, r := range reqs[:min(len(reqs), room)] {
			next[r] = fresh[r]
		}
		ix.memoized += len(next) - len(old)
		sh.Store(&next)
	}
	return fresh
}

// Warm decides every request of reqs not decided yet and memoizes them
// at once (up to MaxMemo in all), copying each shard of the memo once: a
// new index answers the requests of the one it replaces before it is
// published. It returns the decisions, in the order of reqs.
func (ix *Index) Warm(reqs []Request) []*Decision {
	fresh := map[Request]*Decision{}
	for _, r := range reqs {
		r.FQDN = strings.ToLower(r.FQDN)
		if _, ok := fresh[r]; ok {
			continue
		}
		if _, ok := (*ix.shard(r.FQDN).Load())[r]; ok {
			continue
		}
		d := ix.decide(r)
		fresh[r] = &d
	}
	ix.mu.Lock()
	ix.add(fresh)
	ix.mu.Unlock()
	out := make([]*Decision, len(reqs))
	for i, r := range reqs {
		r.FQDN = strings.ToLower(r.FQDN)
		if d, ok := fresh[r]; ok {
			out[i] = d
		} else {
			out[i] = ix.Select(r)
		}
	}
	return out
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
