package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a certrelay serve process, stopped by its PID at the end of the
// test.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs strings.Builder
	done chan error
}

// serve starts certrelay serve on the env's data directory and waits until
// it logs that it runs.
func (e *env) serve(args ...string) *proc {
	e.t.Helper()
	argv := append([]string{binary, "--data", e.data, "serve"}, args...)
	if len(e.wrap) > 0 {
		argv = append(append([]string(nil), e.wrap...), argv...) // it execs certrelay: the PID stays
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), e.extra...)
	cmd.Dir = e.work
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	p := &proc{t: e.t, cmd: cmd, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if strings.Contains(line, "certrelay running") {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() { p.done <- cmd.Wait() }()
	e.t.Cleanup(func() { p.kill() })
	select {
	case <-ready:
	case err := <-p.done:
		e.t.Fatalf("certrelay serve exited: %v\n%s", err, p.Logs())
	case <-time.After(60 * time.Second):
		e.t.Fatalf("certrelay serve did not start\n%s", p.Logs())
	}
	return p
}

// Logs returns what the server has logged so far.
func (p *proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Errorf("certrelay serve exited with %v after SIGTERM\n%s", err, p.Logs())
		}
		p.done <- nil
	case <-time.After(30 * time.Second):
		p.t.Errorf("certrelay serve did not stop on SIGTERM")
		p.kill()
	}
}

// kill stops the process by PID with SIGKILL, if it still runs.
func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
}

// TestServeRunsSetup: the README's first command sets a fresh data
// directory up and runs until stopped.
func TestServeRunsSetup(t *testing.T) {
	e := newEnv(t)
	p := e.serve("--fqdn", "edge1.example.test", "--role", "edge")
	srv := e.server()
	if srv.Role != "edge" || srv.Fqdn != "edge1.example.test" || srv.InternalTransportCertificateThumbprint == "" {
		t.Fatalf("server after serve: %+v", srv)
	}
	c := e.show(srv.InternalTransportCertificateThumbprint)
	if !c.IsInternalTransportCertificate || c.Status != "Valid" || strings.Join(c.Services, ",") != "SMTP" {
		t.Fatalf("internal transport certificate: %+v", c)
	}
	// The CLI works beside the running server.
	e.ok("cert", "new", "--domain", "beside.example.test", "--services", "SMTP")
	p.stop()
	// A second start does not set up again.
	p = e.serve()
	if strings.Contains(p.Logs(), "setup complete") {
		t.Error("setup ran again on the second start")
	}
	p.stop()
}
