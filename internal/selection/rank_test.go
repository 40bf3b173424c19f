package selection

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certprop"
)

func thumbs(rs []Ranked) string {
	var out []string
	for _, r := range rs {
		t := strings.TrimSpace(r.Thumbprint)
		if r.Rank == 0 {
			t = "(" + t + ")"
		}
		out = append(out, t)
	}
	return strings.Join(out, " ")
}

// TestRank: the order cert list --domain shows is selection's own; names
// in parentheses are never used for the request.
func TestRank(t *testing.T) {
	cases := []struct {
		name  string
		cands []Candidate
		req   Request
		want  string
	}{
		{"ok/ca-issued-then-self-signed", []Candidate{cand("SELF", 1, selfSigned), cand("CA", 100)}, smtpFor, "CA SELF"},
		{"ok/revocation-fallback-before-self-signed", []Candidate{cand("SELF", 1, selfSigned), cand("REVUNK", 10, status(certprop.RevocationCheckFailure))}, smtpFor, "REVUNK SELF"},
		{"ok/newest-first-among-equals", []Candidate{cand("OLD", 100), cand("NEW", 10), cand("MID", 50)}, smtpFor, "NEW MID OLD"},
		// The expired CA-issued certificate ends the walk before the older
		// valid one: it is what sessions get once NEW is gone.
		{"ok/expired-ends-the-walk-before-older-valid", []Candidate{cand("NEW", 1), cand("EXP", 20, expired), cand("OLD", 300)}, smtpFor, "NEW EXP OLD"},
		{"ok/expired-self-signed-wins-before-older-self-signed", []Candidate{cand("EXPSELF", 20, selfSigned, expired), cand("SELFOLD", 200, selfSigned)}, smtpFor, "EXPSELF SELFOLD"},
		{"never/revoked-and-not-enabled", []Candidate{cand("REV", 1, status(certprop.Revoked)), cand("POP", 2, func(c *Candidate) { c.Services = certprop.POP }), cand("GOOD", 30)}, smtpFor, "GOOD (REV) (POP)"},
		{"never/behind-an-expired-revoked-one", []Candidate{cand("EXPREV", 5, func(c *Candidate) { c.NotAfter = now.Add(-time.Hour); c.Status = certprop.Revoked }), cand("GOOD", 30)}, smtpFor, "(EXPREV) (GOOD)"},
		{"never/search-name-is-wildcard", []Candidate{cand("A", 1, domains("*.contoso.com"))}, Request{FQDN: "*.contoso.com", Service: certprop.SMTP}, "(A)"},
		{"ok/explicit-binding-newest-first", []Candidate{cand("N1", 1, named), cand("N2", 5, named), cand("OTHER", 0)}, Request{Service: certprop.SMTP, Explicit: "<I>CN=Fabrikam CA<S>CN=named.contoso.com"}, "N1 N2 (OTHER)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := Rank(c.cands, c.req, now)
			if got := thumbs(rs); got != c.want {
				t.Fatalf("Rank = %s, want %s\n%+v", got, c.want, rs)
			}
			for k, r := range rs {
				if r.Reason == "" {
					t.Errorf("%s has no reason", r.Thumbprint)
				}
				if r.Rank != 0 && (r.Rank != k+1 || r.How == "") {
					t.Errorf("%s: rank %d at position %d, how %q", r.Thumbprint, r.Rank, k, r.How)
				}
			}
			d := Select(c.cands, c.req, now)
			if (d.Winner == nil) != (rs[0].Rank == 0) || d.Winner != nil && d.Winner.Thumbprint != rs[0].Thumbprint {
				t.Errorf("Select chose %v, Rank put %s first", d.Winner, rs[0].Thumbprint)
			}
		})
	}
}

func named(c *Candidate) { c.Issuer, c.Subject = "CN=Fabrikam CA", "CN=named.contoso.com" }

// TestRankAgreesWithSelect: on random stores, each rank is the winner of
// Select over the candidates not ranked above it, and nothing unranked
// would win.
func TestRankAgreesWithSelect(t *testing.T) {
	r := rand.New(rand.NewSource(9))
	statuses := []certprop.Status{certprop.Valid, certprop.Valid, certprop.Valid, certprop.RevocationCheckFailure, certprop.Unknown, certprop.Revoked, certprop.Untrusted, certprop.DateInvalid}
	for round := 0; round < 300; round++ {
		n := 1 + r.Intn(8)
		var cs []Candidate
		for i := 0; i < n; i++ {
			c := cand(fmt.Sprintf("C%d", i), r.Intn(40))
			c.Status = statuses[r.Intn(len(statuses))]
			if r.Intn(3) == 0 {
				selfSigned(&c)
			}
			if c.Status == certprop.DateInvalid && r.Intn(2) == 0 {
				c.NotAfter = now.Add(-time.Hour)
			}
			if r.Intn(6) == 0 {
				c.Services = certprop.POP
			}
			cs = append(cs, c)
		}
		rs := Rank(cs, smtpFor, now)
		left := append([]Candidate(nil), cs...)
		for _, rk := range rs {
			d := Select(left, smtpFor, now)
			if rk.Rank == 0 {
				if d.Winner != nil {
					t.Fatalf("round %d: %s unranked but Select over the rest chose %s\n%s", round, rk.Thumbprint, d.Winner.Thumbprint, thumbs(rs))
				}
				continue
			}
			if d.Winner == nil || d.Winner.Thumbprint != rk.Thumbprint || d.How != rk.How {
				t.Fatalf("round %d: rank %d is %s (%s), Select over the rest chose %v\n%s", round, rk.Rank, rk.Thumbprint, rk.How, d.Winner, thumbs(rs))
			}
			for i := range left {
				if left[i].Thumbprint == rk.Thumbprint {
					left = append(left[:i], left[i+1:]...)
					break
				}
			}
		}
		if len(rs) != len(cs) {
			t.Fatalf("round %d: %d ranked entries for %d candidates", round, len(rs), len(cs))
		}
	}
}

// TestLastResort: the winners that must come with an event (C9, S4).
func TestLastResort(t *testing.T) {
	cases := []struct {
		name  string
		cands []Candidate
		req   Request
		want  string
	}{
		{"none/trusted", []Candidate{cand("CA", 1)}, smtpFor, ""},
		{"none/self-signed", []Candidate{cand("SELF", 1, selfSigned)}, smtpFor, ""},
		{"last-resort/revocation-unknown", []Candidate{cand("SELF", 1, selfSigned), cand("REVUNK", 10, status(certprop.Unknown))}, smtpFor, WonRevocationUnknown},
		{"last-resort/expired", []Candidate{cand("EXP", 10, expired)}, smtpFor, WonExpired},
		{"last-resort/explicit-binding-revocation-unknown", []Candidate{cand("N", 1, named, status(certprop.RevocationCheckFailure))}, Request{Service: certprop.SMTP, Explicit: "<I>CN=Fabrikam CA<S>CN=named.contoso.com"}, WonRevocationUnknown},
		{"none/no-winner", []Candidate{cand("REV", 1, status(certprop.Revoked))}, smtpFor, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Select(c.cands, c.req, now)
			if got := d.LastResort(now); got != c.want {
				t.Fatalf("LastResort = %q, want %q (winner %v, %s)", got, c.want, d.Winner, d.How)
			}
			if c.want == WonRevocationUnknown && c.req.Explicit == "" && !strings.Contains(d.Why, "16030") {
				t.Errorf("the explanation does not name event 16030: %s", d.Why)
			}
		})
	}
}

// TestKeyTroubleExplained: a candidate whose key cannot be used is
// rejected with the builder's words, "no certificate" says that
// certificates hold the name but none has a usable key, and a key other
// accounts can read is a warning on the winner.
func TestKeyTroubleExplained(t *testing.T) {
	missing := func(c *Candidate) {
		c.HasKey = false
		c.KeyError = "its private key file /data/keys/ab.key is missing (restore it)"
	}
	d := Select([]Candidate{cand("GONE", 1, missing), cand("GONETOO", 2, selfSigned, missing), cand("OTHER", 3, domains("other.contoso.com"))}, smtpFor, now)
	if d.Winner != nil {
		t.Fatalf("chose %s", d.Winner.Thumbprint)
	}
	for _, want := range []string{"2 certificates hold mail.contoso.com", "none has a usable private key", "/data/keys/ab.key is missing", "GONE"} {
		if !strings.Contains(d.Why, want) {
			t.Errorf("why %q lacks %q", d.Why, want)
		}
	}
	if strings.Contains(d.Why, "OTHER") {
		t.Errorf("why names a certificate that does not hold the name: %s", d.Why)
	}
	if con := d.Considered[0]; con.Verdict != Rejected || !strings.Contains(con.Reason, "is missing") {
		t.Errorf("reason %+v", con)
	}

	d = Select([]Candidate{cand("NOTSMTP", 1, func(c *Candidate) { c.Services = certprop.POP })}, smtpFor, now)
	if !strings.Contains(d.Why, "no usable certificate enabled for SMTP holds mail.contoso.com") || !strings.Contains(d.Why, "certrelay cert enable") {
		t.Errorf("not enabled: %s", d.Why)
	}

	open := func(c *Candidate) {
		c.KeyWarning = "its private key file /data/keys/cd.key has mode 0644: chmod 600 /data/keys/cd.key"
	}
	d = Select([]Candidate{cand("OPEN", 1, open)}, smtpFor, now)
	if d.Winner == nil || !strings.Contains(d.Why, "mode 0644") || !strings.Contains(d.Considered[0].Reason, "chmod 600") {
		t.Errorf("a loose key is not mentioned: %s / %+v", d.Why, d.Considered)
	}
	if rs := Rank([]Candidate{cand("OPEN", 1, open)}, smtpFor, now); !strings.Contains(rs[0].Reason, "mode 0644") {
		t.Errorf("Rank: %+v", rs)
	}
}
