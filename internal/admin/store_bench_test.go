package admin

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// storeBenchSize is how many certificates BenchmarkStore10k puts in the
// store.
const storeBenchSize = 10000

// BenchmarkStore10k measures what `cert list` and a server start cost
// with 10,000 certificates in the personal store:
//
//   - ListCertificates: every certificate judged (chain, status) and
//     described — `cert list` before it prints;
//   - Candidates: the selection candidates, facts only (no key is
//     read), built at once — cert explain, and a server's start;
//   - OneChange: what a running server pays when one certificate changed
//     (S7): its candidate read again (certview.CandidateSet.Update), and
//     a new index's first selection for the connector's FQDN;
//   - IndexFirstSelect: a new index and its first, walking selection for
//     a connector's FQDN (later ones are memoized: see
//     internal/selection BenchmarkSelect).
//
// The store is filled once: 10,000 self-signed certificates (90% ECDSA
// P-256, 10% RSA-2048) sharing 12 keys — certificates may share keys, and
// the store names key files by public key hash — every one enabled for
// SMTP, each for its own host name, every 100th also for the name the
// connector selects on. With CERTRELAY_BENCH_STORE_DIR set, the data
// directory is made there (or reused when it already holds the store) and
// kept, so `make bench` can time the real `certrelay cert list` and
// `certrelay serve` start on it.
//
//	go test -run '^$' -bench Store10k -benchmem ./internal/admin/
func BenchmarkStore10k(b *testing.B) {
	bctx := context.Background()
	dir := os.Getenv("CERTRELAY_BENCH_STORE_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	a, err := Open(bctx, Options{DataDir: dir, Hostname: func() (string, error) { return "bench", nil }})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Setup(bctx, SetupOptions{Fqdn: "hub.bench.test"}); err != nil {
		b.Fatal(err)
	}
	entries, err := a.Store.List(bctx)
	if err != nil {
		b.Fatal(err)
	}
	if have := len(entries); have < storeBenchSize {
		start := time.Now()
		fillStore(b, a, storeBenchSize-have)
		b.Logf("filled the store with %d certificates in %v", storeBenchSize-have, time.Since(start).Round(time.Millisecond))
	}

	b.Run("ListCertificates", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			list, err := a.ListCertificates(bctx, ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if len(list) < storeBenchSize {
				b.Fatalf("%d certificates listed", len(list))
			}
		}
	})
	b.Run("Candidates", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, err := a.NewCandidateBuilder().Build(bctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	cands, now, err := a.NewCandidateBuilder().Build(bctx)
	if err != nil {
		b.Fatal(err)
	}
	req := selection.ForConnector("mail.bench.test", "hub.bench.test", "", false, store.SMTP)
	set := a.Source().NewCandidateSet()
	if err := set.Load(bctx); err != nil {
		b.Fatal(err)
	}
	changed := []string{entries[len(entries)/2].Thumbprint}
	b.Run("OneChange", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := set.Update(bctx, changed); err != nil {
				b.Fatal(err)
			}
			cs, at := set.Candidates()
			if d := selection.NewIndex(cs, at).Select(req); d.Winner == nil {
				b.Fatalf("no winner for mail.bench.test: %s", d.Why)
			}
		}
	})
	b.Run("IndexFirstSelect", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if d := selection.NewIndex(cands, now).Select(req); d.Winner == nil {
				b.Fatalf("no winner for mail.bench.test: %s", d.Why)
			}
		}
	})
}

// fillStore adds n self-signed certificates to the store.
func fillStore(b *testing.B, a *Admin, n int) {
	bctx := context.Background()
	var keys []crypto.Signer
	for i := 0; i < 10; i++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, k)
	}
	for i := 0; i < 2; i++ {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, k)
	}
	base := time.Now().Add(-time.Hour)
	for i := 0; i < n; i++ {
		key := keys[i%10]
		if i%10 == 9 {
			key = keys[10+i/10%2]
		}
		domains := []string{fmt.Sprintf("host%05d.bench.test", i)}
		if i%100 == 0 {
			domains = append(domains, "mail.bench.test")
		}
		der, err := certinfo.NewSelfSigned(certinfo.SelfSignedOptions{Domains: domains, Key: key, Now: base.Add(-time.Duration(i) * time.Second)}, rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Store.AddCertificate(bctx, store.NewCertificate{DER: der, Key: key, Services: store.SMTP}); err != nil {
			b.Fatal(err)
		}
	}
}
