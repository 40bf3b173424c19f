package selection

import "time"

// Ranked is one candidate's place in the order Rank gives.
type Ranked struct {
	Thumbprint string
	// Rank is 1 for the certificate Select chooses, 2 for the one it
	// would choose were the first removed, and so on; 0 when selection
	// would not use the candidate for this request at all.
	Rank   int
	How    string // how it wins at its rank (a Won* constant); "" when Rank is 0
	Reason string // why it wins at its rank, or why it is never used
}

// Rank orders cands as selection uses them for req (SPEC S4): it walks
// the candidates, takes the winner out, and walks again, until no
// candidate wins. The first is therefore always Select's winner, and
// every later one is the certificate sessions would get were those above
// it removed: the ranking is selection's own, not a second opinion of it.
// Candidates that never win follow, in walk order (newest NotBefore
// first, then by thumbprint), with the reason: rejected by S2, a Status
// S4 never uses, or behind an expired certificate that ends every walk
// before them. The result has one entry per candidate.
//
// Rank walks once per winner, so it costs O(n²) in the worst case: it is
// meant for listings (cert list --domain), not handshakes.
func Rank(cands []Candidate, req Request, now time.Time) []Ranked {
	p := plan(cands, req)
	out := make([]Ranked, 0, len(cands))
	ranked := make([]bool, len(cands))
	if p.refused == "" {
		remaining := append([]int(nil), p.walk...)
		for len(remaining) > 0 {
			win, how, why := walkS4(cands, remaining, req, now, p.verdict)
			if win < 0 {
				break
			}
			if len(out) > 0 {
				why = "were the certificates ranked above it removed: " + why
			}
			if w := cands[win].KeyWarning; w != "" {
				why += "; warning: " + w
			}
			ranked[win] = true
			out = append(out, Ranked{Thumbprint: cands[win].Thumbprint, Rank: len(out) + 1, How: how, Reason: why})
			remaining = without(remaining, win)
		}
	}
	for _, i := range p.order {
		if ranked[i] {
			continue
		}
		reason := p.verdict[i].Reason
		if p.verdict[i].Verdict == NotReached {
			reason = "never reached: every walk ends before it, at an expired certificate that cannot be used (S4)"
		}
		out = append(out, Ranked{Thumbprint: cands[i].Thumbprint, Reason: reason})
	}
	return out
}

func without(list []int, v int) []int {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
