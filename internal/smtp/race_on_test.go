//go:build race

package smtp

// raceEnabled: the tests run under the race detector, whose sync.Pool
// drops a quarter of what is put back, on purpose.
const raceEnabled = true
