package testpki

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestFreePortOutsideEphemeralRange: a port FreePort gives is never one
// the kernel hands to an outgoing connection (a test's client, another
// test process's), which took a reserved port between FreePort and the
// server's bind and failed tests under load ("address already in use").
func TestFreePortOutsideEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	for range 200 {
		_, p, _ := net.SplitHostPort(FreePort(t))
		n, _ := strconv.Atoi(p)
		if n >= lo && n <= hi {
			t.Fatalf("FreePort gave %d, inside the ephemeral range %d–%d", n, lo, hi)
		}
	}
}

// TestFreePortReservedAcrossProcesses: a port this process was given is
// not given to another test process while this one runs.
func TestFreePortReservedAcrossProcesses(t *testing.T) {
	if os.Getenv("FREEPORT_CHILD") != "" {
		for range 300 {
			os.Stdout.WriteString(FreePort(t) + "\n")
		}
		return
	}
	mine := map[string]bool{}
	for range 300 {
		mine[FreePort(t)] = true
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFreePortReservedAcrossProcesses$")
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, l := range strings.Fields(string(out)) {
		if strings.HasPrefix(l, "127.0.0.1:") && mine[l] {
			t.Errorf("another process was given %s, which this one holds", l)
		}
	}
}
