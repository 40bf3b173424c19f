package selection

import (
	"fmt"
	"testing"

	"certrelay/internal/certprop"
)

// BenchmarkSelect measures a handshake's selection cost with 10, 1,000
// and 10,000 certificates in the store: a memoized lookup (the target is
// at most 200 ns and 0 allocations with 10,000), and the first, walking
// lookup after a store change.
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
