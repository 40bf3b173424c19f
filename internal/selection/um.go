package selection

import (
	"sort"
	"time"

	"certrelay/internal/certprop"
)

// walkUM is the ranking of a Unified Messaging listener in secure mode
// (SPEC S10), used for every request for the UM service: among the
// candidates that passed S2 and are valid now (Status Valid, within their
// validity), a CA-issued certificate with the longest remaining validity
// wins, then CA-issued ones with less, then self-signed ones, longest
// first; ties go to the thumbprint. There is no last resort: an expired
// certificate, or one whose revocation is unknown, is not valid for UM,
// which makes its own self-signed certificate when nothing is
// (internal/access).
func walkUM(cands []Candidate, walk []int, now time.Time, verdict []Consideration) (int, string, string) {
	var usable []int
	for _, i := range walk {
		c := &cands[i]
		switch u := Usability(c, now); u {
		case WonTrusted, WonSelfSigned:
			usable = append(usable, i)
		case WonExpired:
			verdict[i] = consider(*c, Rejected, "it has expired: UM uses only valid certificates (S10)")
		default:
			verdict[i] = consider(*c, Rejected, "its Status is "+string(c.Status)+": UM uses only valid certificates (S10)")
		}
	}
	if len(usable) == 0 {
		return -1, "", ""
	}
	sort.SliceStable(usable, func(a, b int) bool {
		ca, cb := &cands[usable[a]], &cands[usable[b]]
		if ca.IsSelfSigned != cb.IsSelfSigned {
			return !ca.IsSelfSigned
		}
		if !ca.NotAfter.Equal(cb.NotAfter) {
			return ca.NotAfter.After(cb.NotAfter)
		}
		return ca.Thumbprint < cb.Thumbprint
	})
	win := usable[0]
	w := &cands[win]
	how, why := WonTrusted, "issued by a trusted CA and valid the longest (S10: CA-issued first, then by remaining validity)"
	if w.IsSelfSigned {
		how, why = WonSelfSigned, "self-signed and valid the longest: no valid CA-issued certificate holds the name (S10)"
	}
	for _, i := range usable[1:] {
		c := &cands[i]
		switch {
		case c.IsSelfSigned && !w.IsSelfSigned:
			verdict[i] = consider(*c, PassedOver, "self-signed: a CA-issued certificate comes first (S10)")
		default:
			verdict[i] = consider(*c, PassedOver, "valid for less time than the winner (S10)")
		}
	}
	verdict[win] = consider(*w, Chosen, why)
	return win, how, why
}

// umService reports whether req is ranked by S10.
func umService(req Request) bool { return req.Service == certprop.UM && req.Explicit == "" }
