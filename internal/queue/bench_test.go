package queue

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// processCPU is the process's user + system time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEnqueue4K measures ingest: ~32 concurrent callers enqueueing
// 4 KiB messages with one recipient each, fsync on every commit.
//
//	go test -run '^$' -bench Enqueue4K -benchmem ./internal/queue/
func BenchmarkEnqueue4K(b *testing.B) {
	q, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	body := make([]byte, 4096)
	for i := range body {
		body[i] = 'a' + byte(i%26)
		if i%78 == 77 {
			body[i] = '\n'
		}
	}
	ctx := context.Background()
	b.SetParallelism(max(1, 32/runtimeProcs()))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	start := time.Now()
	c0 := q.Stats().Commits
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := &Message{
				Sender:     "sender@example.com",
				Recipients: []Recipient{{Address: "rcpt@example.net", Destination: "example.net"}},
				Body:       body,
				Meta:       Meta{Helo: "client.example.com", ClientAddr: "192.0.2.1:40000", Connector: "Default"},
			}
			if _, err := q.Enqueue(ctx, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	if c := q.Stats().Commits - c0; c > 0 {
		b.ReportMetric(float64(b.N)/float64(c), "msgs/commit")
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkEnqueueWhileDelivering4K is BenchmarkEnqueue4K with Run active
// and a Local deliverer that accepts at once, so delivery results and
// removals share the writer with the ingest. It reports the ingest rate and
// how far delivery lagged at the end.
func BenchmarkEnqueueWhileDelivering4K(b *testing.B) {
	q, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	q.Handle(Local, DelivererFunc(func(_ context.Context, d Delivery) []Outcome {
		out := make([]Outcome, len(d.Recipients))
		for i, r := range d.Recipients {
			out[i].Idx = r.Idx
		}
		return out
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)
	body := make([]byte, 4096)
	b.SetParallelism(max(1, 32/runtimeProcs()))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	start := time.Now()
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := &Message{Sender: "sender@example.com", Body: body,
				Recipients: []Recipient{{Address: "rcpt@local.test", Destination: Local}}}
			if _, err := q.Enqueue(ctx, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	el := time.Since(start)
	s := q.Stats()
	// The CPU per message counts the deliveries that trail the last
	// Enqueue (their results and removals are the writer's work too):
	// until every message is delivered, or 30 s.
	for end := time.Now().Add(30 * time.Second); q.Stats().Delivered < s.Enqueued && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(s.Enqueued-s.Delivered), "undelivered")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}

// BenchmarkRecoveredDrain4K measures recovery after a crash: a spool of
// b.N messages of 4 KiB as a server killed under load leaves it — every
// message committed, nine in ten pending and never tried, one in ten
// finished (delivered) but not yet removed — is opened by a new server
// with default Options and a Local deliverer that accepts at once; the
// time is from Open to an empty queue (sweep, dispatch, results,
// removals: the queue's part of a drain, without the Maildir's).
//
//	go test -run '^$' -bench RecoveredDrain -benchtime 20000x ./internal/queue/
func BenchmarkRecoveredDrain4K(b *testing.B) {
	dir := b.TempDir()
	q0, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 4096)
	ctx := context.Background()
	sem := make(chan struct{}, 64)
	errs := make(chan error, 1)
	for range b.N {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			m := &Message{Sender: "sender@example.com", Body: body,
				Recipients: []Recipient{{Address: "rcpt@local.test", Destination: Local}}}
			if _, err := q0.Enqueue(ctx, m); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	if _, err := q0.db.Exec(`UPDATE recipients SET status = 'delivered' WHERE msg_id IN
		(SELECT id FROM messages ORDER BY id LIMIT ?)`, b.N/10); err != nil {
		b.Fatal(err)
	}
	q0.Close()

	b.ResetTimer()
	start := time.Now()
	q, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	q.Handle(Local, DelivererFunc(func(_ context.Context, d Delivery) []Outcome {
		out := make([]Outcome, len(d.Recipients))
		for i, r := range d.Recipients {
			out[i].Idx = r.Idx
		}
		return out
	}))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go q.Run(rctx)
	for {
		c, err := q.Count(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if c.Messages == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkLargeQueue measures what a queue of 100,000 waiting messages
// costs the reads that look at it: List's first page of 1,000 (what
// `queue list` shows), and Count (what the metrics endpoint reads at each
// scrape). The queue is filled once (about 10 s).
//
//	go test -run '^$' -bench BenchmarkLargeQueue ./internal/queue/
func BenchmarkLargeQueue(b *testing.B) {
	const n = 100000
	q, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	body := make([]byte, 2048)
	sem := make(chan struct{}, 256)
	for range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if _, err := q.Enqueue(ctx, &Message{Sender: "sender@example.com", Body: body,
				Recipients: []Recipient{{Address: "rcpt@example.net", Destination: "example.net"}}}); err != nil {
				b.Error(err)
			}
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	b.Run("list-first-page", func(b *testing.B) {
		for b.Loop() {
			if items, err := q.List(ctx, Filter{Limit: 1001}); err != nil || len(items) != 1001 {
				b.Fatal(len(items), err)
			}
		}
	})
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			if c, err := q.Count(ctx); err != nil || c.Messages != n {
				b.Fatal(c, err)
			}
		}
	})
}
