//go:build !race

package smtp

// raceEnabled: the race detector is on (stacks are larger under it).
const raceEnabled = false
