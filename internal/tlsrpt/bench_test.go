package tlsrpt

import (
	"context"
	"testing"
	"time"

	"certrelay/internal/db"
)

// BenchmarkRecord is what TLS reporting adds to each outbound session to
// an MX host: one upsert in its own SQLite transaction (WAL, fsync as
// db.Open sets it), a success or a failure with its details.
func BenchmarkRecord(b *testing.B) {
	ctx := context.Background()
	d, err := db.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	s, err := Open(ctx, d)
	if err != nil {
		b.Fatal(err)
	}
	sts := []string{"version: STSv1", "mode: enforce", "mx: mx1.partner.test", "max_age: 86400"}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := Result{Time: now, PolicyDomain: "partner.test", PolicyType: "sts", PolicyString: sts, MXHost: "mx1.partner.test", OK: i%10 != 0,
			ResultType: "certificate-not-trusted", ReceivingIP: "192.0.2.1"}
		if err := s.Record(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}
