//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// The binaries, built once per run from this checkout.
var bins struct {
	once                sync.Once
	dir                 string
	certrelay, smtpload string
	err                 error
}

func TestMain(m *testing.M) {
	if k := os.Getenv(floorEnv); k != "" {
		floorServerMain(k)
		return
	}
	var cleanup func()
	spreadNote, cleanup = spreadTempDirs()
	code := m.Run()
	cleanup()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// spreadNote says where the runs' directories are (spreadTempDirs).
var spreadNote string

// repoRoot is the checkout this file is in.
func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(self), "..", ".."))
}

// build builds certrelay and smtpload (once) and returns their paths.
func build(t *testing.T) (certrelay, smtpload string) {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "certrelay-bench-bin-")
		if bins.err != nil {
			return
		}
		for _, b := range []struct {
			out       *string
			name, pkg string
		}{
			{&bins.certrelay, "certrelay", "./cmd/certrelay"},
			{&bins.smtpload, "smtpload", "./cmd/smtpload"},
		} {
			*b.out = filepath.Join(bins.dir, b.name)
			cmd := exec.Command("go", "build", "-o", *b.out, b.pkg)
			cmd.Dir = repoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.certrelay, bins.smtpload
}

// envInt reads a positive integer setting from the environment.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// Names certrelay is set up with in the benchmarks.
const (
	serverFqdn    = "hub.bench.test"
	connectorFqdn = "mail.bench.test"
	mailbox       = "user@bench.test"
)

// relay is one certrelay data directory with its default receive
// connector on a free port, FQDN mail.bench.test, the accepted domain
// bench.test and the mailbox user@bench.test.
type relay struct {
	t    *testing.T
	bin  string
	dir  string // removed at the end of the test
	data string
	addr string // the connector's binding
	name string // the server's name
	// serveArgs are more arguments of certrelay serve.
	serveArgs []string
	cpus      string // relayOptions.CPUs

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
	logs *testpki.LockedBuffer
}

// relayOptions say how newRelay sets the data directory up.
type relayOptions struct {
	// KeyType, when set ("rsa" or "ecdsa"), makes a self-signed
	// certificate for the connector's FQDN (RSA-2048 or ECDSA P-256),
	// enabled for SMTP: STARTTLS is offered with it.
	KeyType string
	// HoldDelivery blocks the mailbox path with a file, so each delivery
	// fails at once and is deferred: the queue still dispatches every
	// message, but nothing is written to a Maildir.
	HoldDelivery bool
	// Data, when set, is an existing data directory to use (and keep).
	Data string
	// CPUs, when set (taskset's list: "0"), is where serve runs.
	CPUs string
}

func newRelay(t *testing.T, o relayOptions) *relay {
	t.Helper()
	bin, _ := build(t)
	dir, err := os.MkdirTemp("", "certrelay-bench-")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, bin: bin, dir: dir, data: filepath.Join(dir, "data"), cpus: o.CPUs}
	if o.Data != "" {
		r.data = o.Data
	}
	t.Cleanup(func() {
		// A CPU profile is written when serve stops on SIGTERM; SIGKILL
		// would leave an empty file.
		if os.Getenv("BENCH_CPUPROFILE") != "" {
			r.signal(syscall.SIGTERM, 30*time.Second)
		}
		r.kill()
		os.RemoveAll(dir)
	})
	r.cli("setup", "--fqdn", serverFqdn)
	var srv struct{ Name string }
	if err := json.Unmarshal([]byte(r.cli("server", "show", "--json")), &srv); err != nil {
		t.Fatal(err)
	}
	r.name = srv.Name
	r.addr = testpki.FreePort(t)
	// Every load client connects from 127.0.0.1: lift the per-address
	// limit (default 20, SPEC P1) above any CLIENTS a run asks for.
	r.cli("connector", "receive", "set", "Default "+r.name, "--bindings", r.addr, "--fqdn", connectorFqdn,
		"--max-inbound-connection-per-source", "5000")
	if !strings.Contains(r.cli("domain", "list"), "bench.test") {
		r.cli("domain", "add", "bench.test")
	}
	if !strings.Contains(r.cli("mailbox", "list"), mailbox) {
		pw := filepath.Join(dir, "pw")
		if err := os.WriteFile(pw, []byte("bench-password-1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r.cli("mailbox", "add", mailbox, "--password-file", pw)
	}
	if o.KeyType != "" {
		r.newCert(o.KeyType)
	}
	if o.HoldDelivery {
		box := filepath.Join(r.data, "mail", "bench.test")
		if err := os.MkdirAll(box, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(box, "user"), []byte("delivery held for the benchmark\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// newCert makes a self-signed certificate for the connector's FQDN,
// enabled for SMTP, and returns its thumbprint.
func (r *relay) newCert(keyType string) string {
	args := []string{"cert", "new", "--domain", connectorFqdn, "--services", "SMTP", "--key-type", keyType}
	if keyType == "rsa" {
		args = append(args, "--key-size", "2048")
	}
	return r.cli(args...)
}

// cli runs a certrelay command that must succeed; it returns stdout.
func (r *relay) cli(args ...string) string {
	r.t.Helper()
	cmd := exec.Command(r.bin, append([]string{"--data", r.data}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("certrelay %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return strings.TrimSpace(out.String())
}

// start runs certrelay serve and waits until it logs that it runs and
// its connector accepts connections. It returns how long that took.
func (r *relay) start() time.Duration {
	r.t.Helper()
	began := time.Now()
	args := append([]string{"--data", r.data, "serve"}, r.serveArgs...)
	if dir := os.Getenv("BENCH_CPUPROFILE"); dir != "" {
		f, err := os.CreateTemp(dir, "certrelay-*.pprof")
		if err != nil {
			r.t.Fatal(err)
		}
		f.Close()
		args = append(args, "--cpuprofile", f.Name())
		r.t.Logf("CPU profile of certrelay serve: %s", f.Name())
	}
	cmd := exec.Command(r.bin, args...)
	pinCommand(r.t, cmd, r.cpus)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	logs := &testpki.LockedBuffer{}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			if strings.Contains(sc.Text(), "certrelay running") {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(logs, stderr)
		done <- cmd.Wait()
	}()
	r.mu.Lock()
	r.cmd, r.done, r.logs = cmd, done, logs
	r.mu.Unlock()
	select {
	case <-ready:
	case err := <-done:
		done <- err
		r.t.Fatalf("certrelay serve exited: %v\n%s", err, logs.String())
	case <-time.After(120 * time.Second):
		r.t.Fatalf("certrelay serve did not start\n%s", logs.String())
	}
	waitPort(r.t, r.addr)
	return time.Since(began)
}

// signal sends sig to the running server and waits up to limit for it to
// exit; it returns false if it did not.
func (r *relay) signal(sig syscall.Signal, limit time.Duration) bool {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return false
	}
}

// stop stops the server with SIGTERM.
func (r *relay) stop() {
	if !r.signal(syscall.SIGTERM, 30*time.Second) {
		r.t.Errorf("certrelay serve did not stop on SIGTERM")
	}
}

// kill stops the server with SIGKILL, if it runs.
func (r *relay) kill() { r.signal(syscall.SIGKILL, 10*time.Second) }

// Logs returns the running (or last) server's log.
func (r *relay) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logs == nil {
		return ""
	}
	return r.logs.String()
}

func waitPort(t *testing.T, addr string) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

// postfixOptions say how newPostfix configures Postfix.
type postfixOptions struct {
	KeyType string // "rsa" or "ecdsa": STARTTLS with a certificate made by openssl now
	// Maildir delivers bench.test with virtual(8) to a Maildir instead of
	// discarding it.
	Maildir bool
	// RecipientChecks refuses every bench.test recipient but user@bench.test
	// (relay_recipient_maps), as an edge checks its replicated recipients.
	RecipientChecks bool
	// Main are extra main.cf lines, after the others.
	Main []string
}

// newPostfix starts Debian's Postfix from a temporary directory, with its
// default queue durability, accepting mail for user@bench.test.
func newPostfix(t *testing.T, o postfixOptions) *testpki.Postfix {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	main := []string{"smtpd_banner = $myhostname ESMTP"}
	if o.Maildir {
		uid, gid := nobody(t)
		base := filepath.Join(dir, "mail")
		if err := os.Mkdir(base, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(base, uid, gid); err != nil {
			t.Fatal(err)
		}
		main = append(main,
			"virtual_mailbox_domains = bench.test",
			"virtual_mailbox_base = "+base,
			"virtual_mailbox_maps = inline:{ "+mailbox+"=bench.test/user/ }",
			fmt.Sprintf("virtual_uid_maps = static:%d", uid),
			fmt.Sprintf("virtual_gid_maps = static:%d", gid),
		)
	} else {
		main = append(main, "relay_domains = bench.test", "relay_transport = discard:")
		if o.RecipientChecks {
			main = append(main, "relay_recipient_maps = inline:{ "+mailbox+"=ok }")
		}
	}
	if o.KeyType != "" {
		key, cert := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
		newkey := "rsa:2048"
		var extra []string
		if o.KeyType == "ecdsa" {
			newkey = "ec"
			extra = []string{"-pkeyopt", "ec_paramgen_curve:P-256"}
		}
		args := append([]string{"req", "-x509", "-newkey", newkey}, extra...)
		args = append(args, "-nodes", "-keyout", key, "-out", cert, "-days", "2",
			"-subj", "/CN="+connectorFqdn, "-addext", "subjectAltName=DNS:"+connectorFqdn)
		if out, err := exec.Command(testpki.Tool(t, "openssl"), args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		main = append(main,
			"smtpd_tls_security_level = may",
			"smtpd_tls_chain_files = "+key+", "+cert,
			"smtpd_tls_loglevel = 0",
		)
	}
	main = append(main, o.Main...)
	return testpki.StartPostfix(t, testpki.PostfixOptions{Hostname: connectorFqdn, Main: main})
}

// nobody returns the uid and gid of the unprivileged account Postfix's
// virtual(8) delivers as.
func nobody(t *testing.T) (int, int) {
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// load is one smtpload invocation.
type load struct {
	Name        string
	Clients     int
	Messages    int
	Size        int
	TLS         bool
	SessionOnly bool
	Duration    time.Duration // with Messages 0
	Record      string
	IDPrefix    string
	Curves      string // smtpload -curves; "" for Go's defaults
}

func (l load) args(addr string) []string {
	a := []string{"-addr", addr, "-c", fmt.Sprint(l.Clients), "-n", fmt.Sprint(l.Messages), "-size", fmt.Sprint(l.Size), "-json"}
	if l.TLS {
		a = append(a, "-tls")
	}
	if l.SessionOnly {
		a = append(a, "-session-only")
	}
	if l.Duration > 0 {
		a = append(a, "-duration", l.Duration.String())
	}
	if l.Record != "" {
		a = append(a, "-record", l.Record)
	}
	if l.IDPrefix != "" {
		a = append(a, "-id-prefix", l.IDPrefix)
	}
	if l.Curves != "" {
		a = append(a, "-curves", l.Curves)
	}
	return a
}

// loadReport is smtpload's -json output (the fields used here).
type loadReport struct {
	OK       int     `json:"ok"`
	Failed   int     `json:"failed"`
	Sessions int     `json:"sessions"`
	Elapsed  float64 `json:"elapsed_s"`
	Rate     float64 `json:"per_s"`
	Latency  struct {
		P50, P90, P99, Max, Mean float64
	} `json:"latency_ms"`
	Errors      map[string]int `json:"errors"`
	Replies     map[string]int `json:"replies"`
	FirstErrors []string       `json:"first_errors"`
	TLSVersion  string         `json:"tls_version"`
	Cipher      string         `json:"cipher"`
	KeyExchange string         `json:"key_exchange"`

	// ClientCPU is smtpload's own CPU time (user + system), set by runLoad.
	ClientCPU time.Duration `json:"-"`
}

// runLoad runs smtpload against addr and returns its report.
func runLoad(t *testing.T, addr string, l load) loadReport {
	t.Helper()
	_, bin := build(t)
	cmd := exec.Command(bin, l.args(addr)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("smtpload: %v", err)
	}
	var r loadReport
	if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil {
		t.Fatalf("smtpload %s: %v (%v)\n%s%s", strings.Join(l.args(addr), " "), jerr, err, out.String(), errb.String())
	}
	if ps := cmd.ProcessState; ps != nil {
		r.ClientCPU = ps.UserTime() + ps.SystemTime()
	}
	return r
}

// startLoad starts smtpload in the background; wait returns its report.
func startLoad(t *testing.T, addr string, l load) (stop func(), wait func() loadReport) {
	t.Helper()
	_, bin := build(t)
	cmd := exec.Command(bin, l.args(addr)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	var rep loadReport
	wait = func() loadReport {
		once.Do(func() {
			select {
			case <-done:
			case <-time.After(10 * time.Minute):
				cmd.Process.Kill()
				<-done
			}
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Errorf("smtpload: %v\n%s%s", err, out.String(), errb.String())
			}
		})
		return rep
	}
	stop = func() { _ = cmd.Process.Signal(syscall.SIGINT) }
	t.Cleanup(func() {
		stop()
		wait()
	})
	return stop, wait
}

// median returns the median of v (the mean of the middle two for an even
// count), 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// nearestRank returns the p-th percentile of v by the nearest-rank method.
func nearestRank(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	r := int(float64(len(s))*p/100 + 0.999999)
	if r < 1 {
		r = 1
	}
	if r > len(s) {
		r = len(s)
	}
	return s[r-1]
}

// machine describes where the numbers were taken.
func machine(t *testing.T) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	gov, _ := exec.Command("go", "version").Output()
	pf, _ := exec.Command(testpki.Tool(t, "postconf"), "-h", "mail_version").Output()
	ossl, _ := exec.Command("openssl", "version").Output()
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		if len(f) >= 2 {
			kb, _ := strconv.Atoi(f[1])
			mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
		}
	}
	fs := ""
	if out, err := exec.Command("df", "-T", os.TempDir()).Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if f := strings.Fields(lines[len(lines)-1]); len(f) > 1 {
			fs = fmt.Sprintf("; temporary directories on %s (%s)", f[0], f[1])
		}
	}
	return fmt.Sprintf("%d × %s (nproc %d)%s; Linux %s; %s; Postfix %s; %s%s",
		runtime.NumCPU(), cpu, runtime.NumCPU(), mem, strings.TrimSpace(string(kernel)),
		strings.TrimSpace(string(gov)), strings.TrimSpace(string(pf)), strings.TrimSpace(string(ossl)), fs)
}

// writeSection replaces the text between "<!-- NAME:begin -->" and
// "<!-- NAME:end -->" in the file of docs/PERFORMANCE.md or
// docs/performance/*.md that holds them (adding them at the end of
// docs/PERFORMANCE.md when no file does), leaving what people wrote around
// them alone.
func writeSection(t *testing.T, name, body string) {
	t.Helper()
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	path := filepath.Join(repoRoot(), "docs", "PERFORMANCE.md")
	topics, _ := filepath.Glob(filepath.Join(repoRoot(), "docs", "performance", "*.md"))
	for _, p := range append([]string{path}, topics...) {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), begin) {
			path = p
			break
		}
	}
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	doc := string(old)
	if doc == "" {
		doc = "# certrelay performance\n\nMeasured by `make bench` and `make crashtest`; the sections between markers are generated.\n"
	}
	section := begin + "\n" + strings.TrimSpace(body) + "\n" + end
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i >= 0 && j > i {
		doc = doc[:i] + section + doc[j+len(end):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section + "\n"
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the %s section of %s", name, path)
}
