package selection

import (
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certprop"
)

// TestIndexedSelectionEqualsFullWalk holds the index of names to the
// reference: for random stores (exact names, wildcards of several depths,
// mixed case, trailing dots, a name that is not ASCII, pending requests,
// every Status, expired and self-signed certificates, missing and
// unreadable keys, services) and random requests (names held and not,
// wildcard search names, the one-label switch, the Exchange 2007 mode,
// explicit names, other services), an Index's decision — and
// SelectHolding's — has the winner, how and why of Select over every
// candidate, and lists exactly the candidates that hold the name, in the
// same order and with the same verdicts and reasons.
func TestIndexedSelectionEqualsFullWalk(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	pool := []string{"mail.contoso.com", "MAIL.Contoso.com", "a.contoso.com", "b.mail.contoso.com", "*.contoso.com", "*.mail.contoso.com",
		"*.Contoso.COM", "mail.contoso.com.", "*.contoso.com.", "other.test", "*.test", "\u212a.contoso.com", "*", "contoso.com", "*mail.contoso.com"}
	names := []string{"mail.contoso.com", "Mail.Contoso.Com", "a.contoso.com", "k.contoso.com", "b.mail.contoso.com", "x.b.mail.contoso.com",
		"contoso.com", "other.test", "mail.contoso.com.", "*.contoso.com", "", "nothing.example", "\u212a.contoso.com", "c.test"}
	statuses := []certprop.Status{certprop.Valid, certprop.Valid, certprop.Valid, certprop.Unknown, certprop.RevocationCheckFailure, certprop.Revoked, certprop.Untrusted, certprop.Invalid, certprop.DateInvalid}
	services := []certprop.Services{certprop.SMTP, certprop.SMTP | certprop.POP, certprop.IMAP, certprop.POP | certprop.IMAP, certprop.UM, certprop.IIS, certprop.SMTP | certprop.IIS}
	for round := 0; round < 300; round++ {
		n := 1 + rng.Intn(40)
		cands := make([]Candidate, n)
		for i := range cands {
			c := cand(fmt.Sprintf("C%03dR%d", i, round), rng.Intn(30))
			c.Domains = nil
			for k := rng.Intn(4); k >= 0; k-- {
				c.Domains = append(c.Domains, pool[rng.Intn(len(pool))])
			}
			c.Status = statuses[rng.Intn(len(statuses))]
			c.Services = services[rng.Intn(len(services))]
			if rng.Intn(3) == 0 {
				selfSigned(&c)
			}
			if rng.Intn(8) == 0 {
				expired(&c)
			}
			c.Pending = rng.Intn(15) == 0
			c.HasKey = rng.Intn(10) != 0
			c.KeyReadable = rng.Intn(10) != 0
			if rng.Intn(12) == 0 {
				c.KeyWarning = "its key file can be read by others: chmod 600 it"
			}
			cands[i] = c
		}
		ix := NewIndex(cands, now)
		for q := 0; q < 20; q++ {
			req := Request{FQDN: names[rng.Intn(len(names))], Service: []certprop.Services{certprop.SMTP, certprop.POP, certprop.IMAP, certprop.IIS, certprop.UM}[rng.Intn(5)],
				OneLabel: rng.Intn(3) == 0, Compat2007: rng.Intn(5) == 0}
			if rng.Intn(15) == 0 {
				req.Explicit = "<I>" + cands[0].Issuer + "<S>" + cands[0].Subject
			}
			name := fmt.Sprintf("seed %d round %d request %+v", seed, round, req)
			lower := req
			lower.FQDN = strings.ToLower(req.FQDN)
			full := Select(cands, lower, now)
			got := ix.Select(req)
			holding := SelectHolding(cands, lower, now)
			for _, d := range []*Decision{got, &holding} {
				if winnerOf(d) != winnerOf(&full) || d.How != full.How || d.Why != full.Why {
					t.Fatalf("%s: indexed %s/%s %q, full walk %s/%s %q", name, winnerOf(d), d.How, d.Why, winnerOf(&full), full.How, full.Why)
				}
				want := full.Considered
				if ByName(lower) {
					want = nil
					for _, c := range full.Considered {
						if Holds(byThumb(cands, c.Thumbprint), lower.FQDN) {
							want = append(want, c)
						}
					}
				}
				if !reflect.DeepEqual(d.Considered, want) {
					t.Fatalf("%s: indexed lists\n%+v\nthe full walk's holders are\n%+v", name, d.Considered, want)
				}
			}
		}
	}
}

func winnerOf(d *Decision) string {
	if d.Winner == nil {
		return ""
	}
	return d.Winner.Thumbprint
}

func byThumb(cands []Candidate, t string) *Candidate {
	for i := range cands {
		if cands[i].Thumbprint == t {
			return &cands[i]
		}
	}
	return nil
}

// TestIndexWarm: Warm answers as Select does and memoizes what it
// answered, so later lookups find it.
func TestIndexWarm(t *testing.T) {
	cands := []Candidate{cand("A", 1, domains("a.contoso.com")), cand("B", 2, domains("*.contoso.com")), cand("C", 3, selfSigned, domains("c.contoso.com"))}
	ix := NewIndex(cands, now)
	reqs := []Request{{FQDN: "A.contoso.com", Service: certprop.SMTP}, {FQDN: "c.contoso.com", Service: certprop.SMTP}, {FQDN: "none.test", Service: certprop.SMTP}}
	ds := ix.Warm(reqs)
	for i, want := range []string{"A", "B", ""} {
		if got := strings.TrimSpace(winnerOf(ds[i])); got != want {
			t.Errorf("%s: %q, want %q", reqs[i].FQDN, got, want)
		}
	}
	if len(ix.Requests(10)) != 3 {
		t.Errorf("memoized %d requests, want 3", len(ix.Requests(10)))
	}
	if d := ix.Select(Request{FQDN: "c.contoso.com", Service: certprop.SMTP}); d != ds[1] {
		t.Error("Select after Warm decided again")
	}
}
