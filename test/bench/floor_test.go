//go:build bench

package bench

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The crypto/tls floor measured as the sessions are: the server side of
// bare handshakes in a process of its own (this test binary run again with
// BENCH_FLOOR_SERVER set), its CPU read from /proc like certrelay's, the
// clients in the test process. The server is configured as
// BenchmarkTLSHandshake's (certrelay's receive connector: TLS 1.2
// minimum, client certificate requested) and, like it, waits for the
// client's close after the handshake.

const floorEnv = "BENCH_FLOOR_SERVER"

// floorServerMain is the floor server's process: it listens on a free
// loopback port, prints it, and serves handshakes until stdin closes.
func floorServerMain(keyType string) {
	var key crypto.Signer
	var err error
	if keyType == "rsa" {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cert := selfSigned(nil, key)
	// Keep-alive off, as on certrelay's receive connectors (serving's
	// ListenOptions.KeepAlive): the floor's sockets cost what the
	// sessions' do.
	l, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(l.Addr().String())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	smtp := os.Getenv(smtpFloorEnv) != ""
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
		if smtp {
			go minimalSMTP(c, conf)
			continue
		}
		go func() {
			defer c.Close()
			tc := tls.Server(c, conf)
			if tc.Handshake() != nil {
				return
			}
			var one [1]byte
			tc.Read(one[:])
		}()
	}
}

// selfCPU is this process's CPU time (user + system).
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// floorResult is one measurement of the floor.
type floorResult struct {
	Handshakes int
	Rate       float64 // handshakes/s (wall time, clients in the test process)
	ServerCPU  float64 // µs of the server process's CPU per handshake
	ClientCPU  float64 // µs of the clients' CPU per handshake (this process, idle otherwise)
}

// measureFloor starts a floor server with a keyType key on cpus (taskset's
// list; "": any) and runs n bare handshakes against it from clients
// goroutines offering curves (nil: Go's defaults).
func measureFloor(t *testing.T, keyType, cpus string, curves []tls.CurveID, clients, n int) floorResult {
	t.Helper()
	addr, pid, stop := startFloor(t, keyType, cpus, false)
	defer stop()
	conf := &tls.Config{InsecureSkipVerify: true, CurvePreferences: curves}
	handshakes := func(n int) { floorHandshakes(t, addr, conf, clients, n) }
	handshakes(max(100, n/10)) // warm up, as the loads do
	cpu := func() (time.Duration, error) { return procCPU(pid) }
	before := settledCPU(t, cpu, 5*time.Second)
	self0 := selfCPU()
	began := time.Now()
	handshakes(n)
	elapsed := time.Since(began)
	self1 := selfCPU()
	after := settledCPU(t, cpu, 5*time.Second)
	return floorResult{Handshakes: n, Rate: float64(n) / elapsed.Seconds(), ServerCPU: micros(after-before, n), ClientCPU: micros(self1-self0, n)}
}

// floorHandshakes makes n bare handshakes with addr from clients
// goroutines.
func floorHandshakes(t *testing.T, addr string, conf *tls.Config, clients, n int) {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				tc := tls.Client(c, conf)
				if err := tc.Handshake(); err != nil {
					t.Error(err)
				}
				tc.Close()
			}
		}()
	}
	wg.Wait()
}

// startFloor starts a floor server process (a minimal SMTP server with
// smtp) on cpus (taskset's list; "": any) and returns its address, its
// PID and how to stop it.
func startFloor(t *testing.T, keyType, cpus string, smtp bool) (addr string, pid int, stop func()) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	pinCommand(t, cmd, cpus)
	cmd.Env = append(os.Environ(), floorEnv+"="+keyType)
	if smtp {
		cmd.Env = append(cmd.Env, smtpFloorEnv+"=1")
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop = func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		t.Fatalf("floor server: %v", err)
	}
	return strings.TrimSpace(line), cmd.Process.Pid, stop
}
