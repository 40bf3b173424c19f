package selection

import (
	"sort"
	"strings"
	"time"
)

// Selection by name (issue 19): with 10,000 certificates and 1,000
// connectors, walking every candidate for every connector's name after
// each change costs seconds, and a decision that lists 10,000
// certificates that do not even hold the name weighs megabytes. Only the
// certificates that hold the name (S3) can take part in the S2/S4 walk:
// every other one is rejected by S2 before the walk, and "no certificate"
// names only near misses that hold it. So a decision made over the
// holders alone has the same winner, the same how and the same why as one
// made over the whole store; its explanation lists the holders only.
// SelectHolding is that decision; an Index finds the holders through a
// map of names (names, below) instead of testing every candidate.

// Holds reports whether c takes part in a decision by name for fqdn: not
// a pending request, and holding fqdn exactly or through a wildcard of
// any depth (S3, the widest reading: the one-label switch and the
// Exchange 2007 mode are applied by the walk, which explains them).
func Holds(c *Candidate, fqdn string) bool {
	return !c.Pending && MatchName(c.Domains, fqdn, false)
}

// ByName reports whether req is decided by name — not by an explicit
// certificate name (S4a), and not a wildcard search name (refused, with
// every candidate listed) — so that SelectHolding and an Index consider
// only the certificates that hold the name.
func ByName(req Request) bool { return req.Explicit == "" && !IsWildcard(req.FQDN) }

// SelectHolding decides req as Select does, over the candidates that hold
// req's name (Holds) when req is decided by name (ByName), over all of
// them otherwise: the same winner, how and why as Select(cands, req, now),
// with an explanation that leaves out the certificates that do not hold
// the name. cands may hold others; it is not changed.
func SelectHolding(cands []Candidate, req Request, now time.Time) Decision {
	if !ByName(req) {
		return Select(cands, req, now)
	}
	var held []Candidate
	for i := range cands {
		if Holds(&cands[i], req.FQDN) {
			held = append(held, cands[i])
		}
	}
	return Select(held, req, now)
}

// names indexes candidates by the DNS names they hold, so that the
// holders of a name are found with a few map lookups: exact names by
// their lower-case form, wildcards "*.d" by ".d". It finds a superset of
// the holders (Holds decides); candidates with a name that is not ASCII
// are in every answer, since Unicode case folding is not lower-casing.
type names struct {
	exact map[string][]int32
	wild  map[string][]int32
	odd   []int32
}

func buildNames(cands []Candidate) *names {
	n := &names{exact: make(map[string][]int32, len(cands)), wild: map[string][]int32{}}
	for i := range cands {
		c := &cands[i]
		if c.Pending {
			continue
		}
		for _, d := range c.Domains {
			if !isASCII(d) {
				n.odd = append(n.odd, int32(i))
				break
			}
			l := strings.ToLower(d)
			if suffix, ok := strings.CutPrefix(l, "*"); ok && strings.HasPrefix(suffix, ".") {
				n.wild[suffix] = appendOnce(n.wild[suffix], int32(i))
			} else {
				n.exact[l] = appendOnce(n.exact[l], int32(i))
			}
		}
	}
	return n
}

// appendOnce appends i unless it is already the last element (a
// certificate may hold a name twice).
func appendOnce(s []int32, i int32) []int32 {
	if len(s) > 0 && s[len(s)-1] == i {
		return s
	}
	return append(s, i)
}

// lookup returns, in ascending order, the positions of candidates that
// may hold fqdn; ok is false when the index cannot tell (a name that is
// not ASCII): then every candidate must be tested.
func (n *names) lookup(fqdn string) (pos []int32, ok bool) {
	fqdn = strings.TrimSuffix(fqdn, ".")
	if !isASCII(fqdn) {
		return nil, false
	}
	l := strings.ToLower(fqdn)
	pos = append(pos, n.exact[l]...)
	for i := 1; i < len(l); i++ { // ".d" for every label boundary with something before it
		if l[i] == '.' {
			pos = append(pos, n.wild[l[i:]]...)
		}
	}
	pos = append(pos, n.odd...)
	sort.Slice(pos, func(a, b int) bool { return pos[a] < pos[b] })
	out := pos[:0]
	for k, p := range pos {
		if k == 0 || p != pos[k-1] {
			out = append(out, p)
		}
	}
	return out, true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
