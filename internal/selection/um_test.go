package selection

import (
	"strings"
	"testing"
	"time"

	"certrelay/internal/certprop"
)

// TestUMRanking covers S10: CA-issued with the longest remaining validity,
// then CA-issued with less, then self-signed, longest first; only valid
// certificates.
func TestUMRanking(t *testing.T) {
	um := func(c *Candidate) { c.Services = certprop.UM }
	lasts := func(days int) func(*Candidate) {
		return func(c *Candidate) { c.NotAfter = now.Add(time.Duration(days) * 24 * time.Hour) }
	}
	req := Request{FQDN: "mail.contoso.com", Service: certprop.UM}
	cases := []struct {
		name   string
		cands  []Candidate
		winner string
		how    string
	}{
		{"ok/ca-longest-validity-not-newest", []Candidate{cand("NEWCA", 1, um, lasts(100)), cand("OLDCA", 200, um, lasts(300))}, "OLDCA", WonTrusted},
		{"ok/ca-beats-longer-self-signed", []Candidate{cand("SELF", 1, um, selfSigned, lasts(3000)), cand("CA", 10, um, lasts(20))}, "CA", WonTrusted},
		{"ok/self-signed-longest", []Candidate{cand("SELFA", 1, um, selfSigned, lasts(10)), cand("SELFB", 50, um, selfSigned, lasts(90))}, "SELFB", WonSelfSigned},
		{"none/expired-is-not-used", []Candidate{cand("EXP", 20, um, expired)}, "", ""},
		{"none/revocation-unknown-is-not-valid", []Candidate{cand("REV", 2, um, status(certprop.RevocationCheckFailure))}, "", ""},
		{"reject/not-enabled-for-um", []Candidate{cand("SMTPONLY", 1, lasts(900)), cand("SELF", 1, um, selfSigned, lasts(10))}, "SELF", WonSelfSigned},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Select(c.cands, req, now)
			got := ""
			if d.Winner != nil {
				got = strings.TrimSpace(d.Winner.Thumbprint)
			}
			if got != c.winner || d.How != c.how {
				t.Fatalf("winner %q (%s), want %q (%s): %s %+v", got, d.How, c.winner, c.how, d.Why, d.Considered)
			}
			for _, con := range d.Considered {
				if con.Verdict == "" || con.Reason == "" {
					t.Errorf("unexplained: %+v", con)
				}
			}
		})
	}
}
