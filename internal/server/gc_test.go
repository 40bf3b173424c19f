package server

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		live uint64
		want int
	}{
		{"small-heap/goal-is-live-plus-headroom", 4 << 20, 800},
		{"headroom-equal-live/default", 32 << 20, 100},
		{"large-heap/default", 200 << 20, 100},
		{"nearly-empty/capped", 1 << 10, 10000},
		{"unknown/default", 0, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gcPercentFor(tc.live); got != tc.want {
				t.Errorf("gcPercentFor(%d) = %d, want %d", tc.live, got, tc.want)
			}
		})
	}
}

// gcPercent reads the current GOGC.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestKeepHeapHeadroom: after a collection the server's GOGC leaves
// minHeapHeadroom between its (small) live heap and the next collection;
// after stop, Go's default is back. A GOGC in the environment is left
// alone.
func TestKeepHeapHeadroom(t *testing.T) {
	waitPercent := func(ok func(int) bool) int {
		deadline := time.Now().Add(5 * time.Second)
		for {
			runtime.GC()
			time.Sleep(20 * time.Millisecond) // the finalizer runs after the collection
			if p := gcPercent(); ok(p) || time.Now().After(deadline) {
				return p
			}
		}
	}
	t.Setenv("GOGC", "")
	stop := keepHeapHeadroom()
	if p := waitPercent(func(p int) bool { return p > 100 }); p <= 100 {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		t.Errorf("GOGC %d with a live heap of %d bytes, want above 100", p, s[0].Value.Uint64())
	}
	stop()
	if p := waitPercent(func(p int) bool { return p == 100 }); p != 100 {
		t.Errorf("GOGC %d after stop, want 100", p)
	}

	t.Setenv("GOGC", "100")
	stop = keepHeapHeadroom()
	defer stop()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if p := gcPercent(); p != 100 {
		t.Errorf("GOGC %d with GOGC=100 in the environment, want it left alone", p)
	}
}
