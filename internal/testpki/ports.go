package testpki

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// FreePort returns a 127.0.0.1 address on which nothing listens now,
// free for TCP and UDP, that no other test process is given while this
// one runs. Tests start servers on it later, so two things must not take
// it meanwhile:
//   - the kernel, for an outgoing connection: the port comes from below
//     its ephemeral range (asking the kernel for port 0 gave a port from
//     that range, which the next connect of any process could take);
//   - another test process (packages run in parallel): each port is
//     reserved by a lock on a file in a directory the account's test
//     processes share, held until this process exits.
func FreePort(t testing.TB) string {
	t.Helper()
	lo, hi := reservedRange()
	for range 2000 {
		p := lo + rand.IntN(hi-lo)
		if !reservePort(p) {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(p)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // something listens there: the reservation stays, unused
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return addr
	}
	t.Fatalf("no free port in %d–%d", lo, hi)
	return ""
}

// ports holds the lock files of the ports this process reserved.
var ports struct {
	sync.Mutex
	held map[int]*os.File
}

// reservePort reserves port p for this process unless this or another
// test process holds it.
func reservePort(p int) bool {
	ports.Lock()
	defer ports.Unlock()
	if ports.held[p] != nil {
		return false
	}
	dir := portLockDir()
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return true // no shared directory: in-process reservation only
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return false
	}
	if ports.held == nil {
		ports.held = map[int]*os.File{}
	}
	ports.held[p] = f // the lock ends with the process
	return true
}

// portLockDir is the directory of the ports' lock files, the same for
// every test process of the machine (not TMPDIR, which benchmarks move).
func portLockDir() string {
	dir := filepath.Join("/tmp", fmt.Sprintf("certrelay-test-ports-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return os.TempDir()
	}
	return dir
}

// reservedRange is where FreePort picks: the 12,000 ports below the
// kernel's ephemeral range, or above it when that starts too low.
func reservedRange() (lo, hi int) {
	elo, ehi := ephemeralRange()
	if elo-1024 >= 4000 {
		return max(1024, elo-12000), elo
	}
	return ehi + 1, 65536
}

// ephemeralRange is the kernel's range of local ports for outgoing
// connections (net.ipv4.ip_local_port_range; Linux's default when it
// cannot be read).
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if a, err := strconv.Atoi(f[0]); err == nil {
				if b, err := strconv.Atoi(f[1]); err == nil {
					lo, hi = a, b
				}
			}
		}
	}
	return lo, hi
}
