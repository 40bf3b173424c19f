package selection

import (
	"fmt"
	"testing"

	"certrelay/internal/certprop"
)

// BenchmarkSelect measures a handshake's selection cost with 10, 1,000
// and 10,000 certificates in the store: a memoized lookup (the target is
// at most 200 ns and 0 allocations with 10,000), and the first, walking
// lookup after a store change — here every certificate holds the name,
// the worst case: the walk is as long as the store.
func BenchmarkSelect(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		cs := make([]Candidate, n)
		for i := range cs {
			c := cand(fmt.Sprintf("C%d", i), i%300, domains(fmt.Sprintf("host%d.contoso.com", i), "mail.contoso.com"))
			if i%3 == 0 {
				selfSigned(&c)
			}
			c.Thumbprint = fmt.Sprintf("%040X", i)
			cs[i] = c
		}
		req := Request{FQDN: "mail.contoso.com", Service: certprop.SMTP}
		b.Run(fmt.Sprintf("memoized/%d", n), func(b *testing.B) {
			ix := NewIndex(cs, now)
			ix.Select(req)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ix.Select(req)
			}
		})
		b.Run(fmt.Sprintf("first/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				NewIndex(cs, now).Select(req)
			}
		})
	}
}

// BenchmarkWarmByName measures what a new snapshot costs a server with
// many connectors (issue 19): 10,000 certificates, each for its own name,
// and the first decisions for 1,000 of those names (Index.Warm, as the
// serving layer answers the old snapshot's requests before publishing),
// then one first decision (Select) — each walks only the certificates
// that hold its name, found through the index of names, which the first
// decision builds.
func BenchmarkWarmByName(b *testing.B) {
	const n, names = 10000, 1000
	cs := make([]Candidate, n)
	for i := range cs {
		c := cand(fmt.Sprintf("C%d", i), i%300, domains(fmt.Sprintf("host%05d.contoso.com", i)))
		if i%3 == 0 {
			selfSigned(&c)
		}
		c.Thumbprint = fmt.Sprintf("%040X", i)
		cs[i] = c
	}
	reqs := make([]Request, names)
	for i := range reqs {
		reqs[i] = Request{FQDN: fmt.Sprintf("host%05d.contoso.com", i*10), Service: certprop.SMTP}
	}
	b.Run("warm1000", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			NewIndex(cs, now).Warm(reqs)
		}
	})
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			NewIndex(cs, now).Select(reqs[0])
		}
	})
}
