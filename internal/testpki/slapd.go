package testpki

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Slapd is a real OpenLDAP slapd serving one mdb database on
// 127.0.0.1, in a temporary directory, for one test.
type Slapd struct {
	Addr   string // 127.0.0.1:port
	Suffix string // dc=example,dc=test (the entry itself exists)
	RootDN string
	RootPW string
}

// LockedBuffer collects a process's output written from another
// goroutine.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartSlapd starts slapd in the foreground (-d 0) on a free port of
// 127.0.0.1, creates the suffix entry and stops slapd by its PID when the
// test ends.
func StartSlapd(t testing.TB) *Slapd {
	t.Helper()
	bin := Tool(t, "slapd")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := &Slapd{Suffix: "dc=example,dc=test", RootDN: "cn=admin,dc=example,dc=test", RootPW: "secret"}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile %[1]s/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 104857600
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
`, dir, s.Suffix, s.RootDN, s.RootPW)
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	// The port is picked by listening on :0 and closing; another process
	// could take it in between, hence a few tries.
	var log *LockedBuffer
	for try := 0; try < 3 && s.Addr == ""; try++ {
		addr := FreePort(t)
		log = &LockedBuffer{}
		cmd := exec.Command(bin, "-f", confPath, "-h", "ldap://"+addr+"/", "-d", "0")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start slapd: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		pid := cmd.Process.Pid
		t.Cleanup(func() { stopByPID(t, pid, exited) })
		if waitListening(addr, exited, 10*time.Second) {
			s.Addr = addr
		}
	}
	if s.Addr == "" {
		t.Fatalf("slapd did not start listening; its output:\n%s", log)
	}

	conn := s.DialRoot(t)
	defer conn.Close()
	add := ldap.NewAddRequest(s.Suffix, nil)
	add.Attribute("objectClass", []string{"dcObject", "organization"})
	add.Attribute("dc", []string{"example"})
	add.Attribute("o", []string{"certrelay tests"})
	if err := conn.Add(add); err != nil {
		t.Fatalf("slapd: add %s: %v\n%s", s.Suffix, err, log)
	}
	return s
}

// waitListening polls addr until it accepts a connection, slapd exits or
// the time is up.
func waitListening(addr string, exited <-chan struct{}, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// stopByPID sends SIGTERM to the slapd this test started, then SIGKILL if
// it has not exited within five seconds.
func stopByPID(t testing.TB, pid int, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Logf("stop slapd (pid %d): %v", pid, err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Logf("slapd (pid %d) ignored SIGTERM; killing it", pid)
		syscall.Kill(pid, syscall.SIGKILL)
		<-exited
	}
}

// DialRoot connects and binds as the root DN.
func (s *Slapd) DialRoot(t testing.TB) *ldap.Conn {
	t.Helper()
	conn, err := ldap.DialURL("ldap://" + s.Addr)
	if err != nil {
		t.Fatalf("dial slapd: %v", err)
	}
	if err := conn.Bind(s.RootDN, s.RootPW); err != nil {
		conn.Close()
		t.Fatalf("bind to slapd as %s: %v", s.RootDN, err)
	}
	return conn
}

// Add creates an entry as the root DN. Attribute values are raw bytes as
// strings, so binary values (certificates, CRLs) go in unchanged.
func (s *Slapd) Add(t testing.TB, dn string, attrs map[string][]string) {
	t.Helper()
	conn := s.DialRoot(t)
	defer conn.Close()
	req := ldap.NewAddRequest(dn, nil)
	for name, vals := range attrs {
		req.Attribute(name, vals)
	}
	if err := conn.Add(req); err != nil {
		t.Fatalf("slapd: add %s: %v", dn, err)
	}
}

// FreePort returns a 127.0.0.1 address on which nothing listens now.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
