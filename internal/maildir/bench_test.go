package maildir

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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

// BenchmarkDeliverStream4K: 4 KiB deliveries into one Maildir arriving at
// a steady rate — the STARTTLS ingest rate (1,250/s) and the plain-text
// one (3,000/s) — taken by 32 workers (the queue's default), with the
// rounds as shipped and with roundInterval 0 (rounds back to back, as
// before they gathered). Reports the process's CPU per delivery (user +
// system, getrusage), the deliveries per syncfs and the median and
// 99th-percentile time a delivery took. Run with -benchtime 6000x or so:
// the rate, not b.N, sets the duration.
//
// Every run delivers into a mailbox of its own under one directory
// removed only at the end: on ext4 without a journal, files created
// where thousands were just removed cost several times more (the inode
// allocator skips inodes freed in the last minute; see
// docs/performance/ingest-19.md), so a run after a removal, or a
// benchmark repeated within a minute in the same place, measures that.
func BenchmarkDeliverStream4K(b *testing.B) {
	root := b.TempDir()
	run := 0
	for _, rate := range []int{1250, 3000} {
		for _, iv := range []time.Duration{0, roundInterval} {
			b.Run(fmt.Sprintf("rate=%d/interval=%v", rate, iv), func(b *testing.B) {
				old := roundInterval
				roundInterval = iv
				defer func() { roundInterval = old }()
				run++
				deliverStream(b, root, fmt.Sprintf("box%d", run), rate)
			})
		}
	}
}

func deliverStream(b *testing.B, root, box string, rate int) {
	body := make([]byte, 4096)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var fsN atomic.Int64
	oldFS := syncFS
	syncFS = func(d string) error { fsN.Add(1); return oldFS(d) }
	defer func() { syncFS = oldFS }()
	// One delivery first, so the Maildir exists.
	if _, err := Deliver(root, box, Key{MsgID: "warm", Received: received, Fresh: true}, body); err != nil {
		b.Fatal(err)
	}
	fsN.Store(0)
	jobs := make(chan int, 64)
	took := make([]time.Duration, b.N)
	start := time.Now()
	cpu0, csw0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range jobs {
				t := time.Now()
				k := Key{MsgID: fmt.Sprintf("s%d", i), Received: received, Fresh: true}
				if _, err := Deliver(root, box, k, body); err != nil {
					b.Error(err)
				}
				took[i] = time.Since(t)
			}
		})
	}
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	cpu1, csw1 := cpuTime()
	cpu := cpu1 - cpu0
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(float64(csw1-csw0)/float64(b.N), "csw/msg")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if n := fsN.Load(); n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "msgs/syncfs")
	}
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}

// cpuTime is the process's user + system time, and its voluntary
// context switches (a thread that went to sleep: the wake-ups).
func cpuTime() (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw
}
