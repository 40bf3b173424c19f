//go:build !race

package smtp

// raceEnabled: see race_on_test.go.
const raceEnabled = false
