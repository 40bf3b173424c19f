package maildir

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDeliverConcurrent4K: 16 goroutines (the queue's default
// workers) deliver 4 KiB messages into one Maildir, each delivery durable
// before it returns — the Maildir half of "ingest with delivery running".
func BenchmarkDeliverConcurrent4K(b *testing.B) {
	root := b.TempDir()
	body := make([]byte, 4096)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var fsN, fsNs atomic.Int64
	oldFS := syncFS
	syncFS = func(d string) error {
		t := time.Now()
		defer func() { fsN.Add(1); fsNs.Add(int64(time.Since(t))) }()
		return oldFS(d)
	}
	b.Cleanup(func() { syncFS = oldFS })
	var next atomic.Int64
	start := time.Now()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				k := Key{MsgID: fmt.Sprintf("b%d", i), Received: received, Fresh: true}
				if _, err := Deliver(root, "bob", k, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if n := fsN.Load(); n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "msgs/syncfs")
		b.ReportMetric(float64(fsNs.Load())/float64(n)/1e6, "ms/syncfs")
	}
}
