package server

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// The garbage collector's pace (issue 19). With Go's default (GOGC=100)
// a collection starts when the heap has grown by as much as was live
// after the last one. A server's live heap is a few MiB (its
// configuration, the trusted roots, caches) while each STARTTLS session
// allocates about 40 KiB, nearly all of it crypto/tls's: a collection
// every hundred sessions, each marking the whole live heap — 13% of the
// server's CPU in a STARTTLS session load, where a bare crypto/tls server,
// whose live heap is nearly empty, pays little. So the server keeps at
// least minHeapHeadroom between the live heap and the next collection:
// while the live heap is small, GOGC is raised after each collection so
// that the goal is live + minHeapHeadroom; once the live heap is larger
// than minHeapHeadroom (thousands of connections), Go's default applies
// unchanged. The cost is memory: up to minHeapHeadroom of garbage more
// under load. A GOGC set in the environment is left alone.

// minHeapHeadroom is the least heap growth between two collections.
const minHeapHeadroom = 32 << 20

// gcPercentFor is the GOGC that gives a heap goal of live +
// minHeapHeadroom, and at least Go's default of 100.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return 100
	}
	return max(100, int(min(uint64(minHeapHeadroom)*100/live, 10000)))
}

// keepHeapHeadroom sets GOGC after every collection (see above) until
// stop is called; it does nothing when GOGC is set in the environment.
func keepHeapHeadroom() (stop func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	var stopped atomic.Bool
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var arm func()
	arm = func() {
		// A finalizer runs after the collection that finds its object
		// unreachable: one per collection, re-armed each time.
		runtime.SetFinalizer(new(gcTick), func(*gcTick) {
			if stopped.Load() {
				debug.SetGCPercent(100)
				return
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				// Set every time (once a collection): another server in
				// the same process (tests) may have stopped and reset it.
				debug.SetGCPercent(gcPercentFor(sample[0].Value.Uint64()))
			}
			arm()
		})
	}
	arm()
	return func() { stopped.Store(true) }
}

// gcTick is the object whose finalizer marks a collection (it holds a
// pointer, so it is never one of the tiny allocations a finalizer may
// not run for).
type gcTick struct{ _ *int }
