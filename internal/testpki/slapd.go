package testpki

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
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
	Dir    string // its directory: slapd.conf, db/, the log
	Scheme string // "ldap" or "ldaps"

	t       testing.TB
	bin     string
	conf    string
	mu      sync.Mutex
	pid     int
	exited  chan struct{}
	log     *LockedBuffer
	stopped bool
}

// SlapdOptions choose what StartSlapdWith configures. The zero value is
// StartSlapd's: the core, cosine and inetorgperson schemas only.
type SlapdOptions struct {
	// Certrelay adds certrelay's schema (schema/certrelay.schema) and the
	// syncprov overlay (LDAP Sync, RFC 4533), as docs/DIRECTORY.md tells
	// administrators to.
	Certrelay bool
	// NoSyncProv leaves the overlay out (a directory without LDAP Sync).
	NoSyncProv bool
	// Suffix replaces dc=example,dc=test.
	Suffix string
	// TLSCert and TLSKey (PEM files) give slapd a certificate for
	// StartTLS; with LDAPS it speaks TLS from the first byte (ldaps://).
	TLSCert, TLSKey string
	LDAPS           bool
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
func StartSlapd(t testing.TB) *Slapd { return StartSlapdWith(t, SlapdOptions{}) }

// SchemaFile returns the path of certrelay's LDAP schema in this source
// tree.
func SchemaFile() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", "schema", "certrelay.schema")
}

// StartSlapdWith starts slapd as StartSlapd does, configured by o.
func StartSlapdWith(t testing.TB, o SlapdOptions) *Slapd {
	t.Helper()
	bin := Tool(t, "slapd")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := &Slapd{Suffix: "dc=example,dc=test", RootPW: "secret", Dir: dir, Scheme: "ldap", t: t, bin: bin, stopped: true}
	if o.LDAPS {
		s.Scheme = "ldaps"
	}
	if o.Suffix != "" {
		s.Suffix = o.Suffix
	}
	s.RootDN = "cn=admin," + s.Suffix
	var extra, overlay strings.Builder
	if o.TLSCert != "" {
		fmt.Fprintf(&extra, "TLSCertificateFile %s\nTLSCertificateKeyFile %s\n", o.TLSCert, o.TLSKey)
	}
	if o.Certrelay {
		fmt.Fprintf(&extra, "include %s\n", SchemaFile())
		if !o.NoSyncProv {
			extra.WriteString("moduleload syncprov\n")
			// Indexes docs/DIRECTORY.md recommends: LDAP Sync's, and
			// the names servers look objects up by.
			overlay.WriteString("index entryUUID,entryCSN eq\nindex objectClass,cn,certrelayAddress eq\noverlay syncprov\nsyncprov-checkpoint 100 1\n")
		}
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
%[5]spidfile %[1]s/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
%[6]ssizelimit unlimited
database mdb
maxsize 1073741824
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
%[7]s`, dir, s.Suffix, s.RootDN, s.RootPW, extra.String(), "", overlay.String())
	s.conf = filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)

	// The port is picked by listening on :0 and closing; another process
	// could take it in between, hence a few tries.
	for try := 0; try < 3 && s.Addr == ""; try++ {
		addr := FreePort(t)
		if s.start(addr) {
			s.Addr = addr
		}
	}
	if s.Addr == "" {
		t.Fatalf("slapd did not start listening; its output:\n%s", s.log)
	}

	conn := s.DialRoot(t)
	defer conn.Close()
	add := ldap.NewAddRequest(s.Suffix, nil)
	rdn := strings.SplitN(s.Suffix, ",", 2)[0]
	add.Attribute("objectClass", []string{"dcObject", "organization"})
	add.Attribute("dc", []string{strings.TrimPrefix(rdn, "dc=")})
	add.Attribute("o", []string{"certrelay tests"})
	if err := conn.Add(add); err != nil {
		t.Fatalf("slapd: add %s: %v\n%s", s.Suffix, err, s.log)
	}
	return s
}

// start runs slapd on addr and reports whether it listens there.
func (s *Slapd) start(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = &LockedBuffer{}
	cmd := exec.Command(s.bin, "-f", s.conf, "-h", s.Scheme+"://"+addr+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start slapd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.pid, s.exited, s.stopped = cmd.Process.Pid, exited, false
	if waitListening(addr, exited, 10*time.Second) {
		return true
	}
	stopByPID(s.t, s.pid, exited)
	s.stopped = true
	return false
}

// Stop stops slapd (by its PID: SIGTERM, then SIGKILL after 5 s). The
// database stays; Restart starts it again on the same address.
func (s *Slapd) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	stopByPID(s.t, s.pid, s.exited)
	s.stopped = true
}

// Restart starts slapd again on its address, with the same database.
func (s *Slapd) Restart(t testing.TB) {
	t.Helper()
	for try := 0; try < 50; try++ { // the port may linger a moment
		if s.start(s.Addr) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("slapd did not start again on %s; its output:\n%s", s.Addr, s.log)
}

// Log returns what slapd wrote since it last started.
func (s *Slapd) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// URL is the ldap:// URL of a base DN on this slapd.
func (s *Slapd) URL(base string) string { return s.Scheme + "://" + s.Addr + "/" + base }

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
	conn, err := ldap.DialURL(s.Scheme+"://"+s.Addr, ldap.DialWithTLSConfig(&tls.Config{InsecureSkipVerify: true}))
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
