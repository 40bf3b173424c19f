// Package parallel runs independent pieces of CPU-bound work on every
// core: parsing and judging thousands of certificates is most of a cold
// `cert list` and of a server's start.
package parallel

import (
	"runtime"
	"sync"
)

// minPerWorker is the least work worth a goroutine of its own.
const minPerWorker = 64

// Each calls fn(i) for every i in [0, n), spread over up to GOMAXPROCS
// goroutines, and returns when all calls have. fn must be safe for
// concurrent use on different i.
func Each(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/minPerWorker+1)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				fn(i)
			}
		}(w)
	}
	wg.Wait()
}
