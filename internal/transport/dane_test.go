package transport

import (
	"context"
	"encoding/hex"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// cnameResolver answers as a validating recursive resolver does: an
// address query for an alias brings the CNAME chain and the target's
// records; the AD bit is set unless a name on the way is in unsigned.
func cnameResolver(t *testing.T, zone string, unsigned map[string]bool) string {
	t.Helper()
	byName := map[string][]dns.RR{}
	for _, line := range strings.Split(strings.TrimSpace(zone), "\n") {
		rr, err := dns.NewRR(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		byName[strings.ToLower(rr.Header().Name)] = append(byName[strings.ToLower(rr.Header().Name)], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.AuthenticatedData = true
		q := r.Question[0]
		name, found := strings.ToLower(q.Name), false
		for hops := 0; hops < 10; hops++ {
			if unsigned[name] {
				m.AuthenticatedData = false
			}
			rrs, ok := byName[name]
			found = found || ok
			next := ""
			for _, rr := range rrs {
				if c, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME {
					m.Answer = append(m.Answer, rr)
					next = strings.ToLower(c.Target)
				} else if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
			if next == "" {
				break
			}
			name = next
		}
		if !found {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestDANEFollowsCNAME (RFC 7672 2.2.2): an MX host that is an alias
// takes the TLSA records of its final name when the expansion is
// validated, falls back to its own name's when the target has none, and
// ignores the target when the expansion is not validated.
func TestDANEFollowsCNAME(t *testing.T) {
	const target = "3 1 1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	const own = "3 1 1 bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	zone := `
mx.partner.test. 60 IN CNAME mail.hoster.test.
mail.hoster.test. 60 IN A 127.0.0.1
_25._tcp.mail.hoster.test. 60 IN TLSA ` + target + `
_25._tcp.mx.partner.test. 60 IN TLSA ` + own + `
mx2.partner.test. 60 IN CNAME bare.hoster.test.
bare.hoster.test. 60 IN A 127.0.0.1
_25._tcp.mx2.partner.test. 60 IN TLSA ` + own + `
plain.partner.test. 60 IN A 127.0.0.1
_25._tcp.plain.partner.test. 60 IN TLSA ` + own
	for _, c := range []struct {
		name, host string
		unsigned   []string
		base, mx   string // "" base: DANE does not apply
		record     string
	}{
		{"alias with records at its target", "mx.partner.test", nil, "mail.hoster.test", "mx.partner.test", target},
		{"alias whose target has none", "mx2.partner.test", nil, "mx2.partner.test", "mx2.partner.test", own},
		{"alias expanded without validation", "mx.partner.test", []string{"mail.hoster.test."}, "mx.partner.test", "mx.partner.test", own},
		{"no alias", "plain.partner.test", nil, "plain.partner.test", "plain.partner.test", own},
		{"records not validated", "plain.partner.test", []string{"_25._tcp.plain.partner.test."}, "", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			unsigned := map[string]bool{}
			for _, n := range c.unsigned {
				unsigned[n] = true
			}
			s := &Sender{DNSSEC: &DNSSECResolver{Addr: cnameResolver(t, zone, unsigned)}}
			p, err := s.daneFor(context.Background(), net.JoinHostPort(c.host, "25"))
			if err != nil {
				t.Fatal(err)
			}
			if c.base == "" {
				if p != nil {
					t.Fatalf("DANE applies: %+v", p)
				}
				return
			}
			if p == nil {
				t.Fatal("DANE does not apply")
			}
			if p.host != c.base || p.mxHost != c.mx || len(p.records) != 1 || hex.EncodeToString(p.records[0].CertAssoc) != c.record[6:] {
				t.Errorf("policy base %s, MX host %s, records %v; want %s, %s, %s", p.host, p.mxHost, p.records, c.base, c.mx, c.record)
			}
		})
	}
}
