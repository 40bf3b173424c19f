package testpki

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Postfix is Debian's Postfix running from a temporary configuration
// directory, listening on 127.0.0.1, for one test (see ENVIRONMENT.md).
type Postfix struct {
	Dir  string // configuration directory (main.cf, master.cf, maillog)
	Addr string // 127.0.0.1:port of its smtpd
}

// PostfixOptions adjust the configuration.
type PostfixOptions struct {
	Hostname string   // myhostname; default peer.example.test
	Main     []string // extra main.cf lines
	Master   []string // extra master.cf lines
	// SmtpdArgs are extra "-o name=value" settings of the listening smtpd.
	SmtpdArgs []string
}

var postfixMu sync.Mutex // alternate_config_directories is one global list

// StartPostfix configures and starts Postfix; it is stopped by its master
// PID when the test ends.
func StartPostfix(t testing.TB, o PostfixOptions) *Postfix {
	t.Helper()
	bin := Tool(t, "postfix")
	postconf := Tool(t, "postconf")
	dir, err := os.MkdirTemp("", "certrelay-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"queue", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("chown", "postfix", filepath.Join(dir, "data"))
	postfixMu.Lock()
	if _, err := os.Stat("/etc/postfix/main.cf"); err != nil {
		os.WriteFile("/etc/postfix/main.cf", nil, 0o644)
	}
	cur, _ := exec.Command(postconf, "-h", "alternate_config_directories").Output()
	list := strings.TrimSpace(string(cur))
	var keep []string
	for _, d := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		if _, err := os.Stat(d); err == nil {
			keep = append(keep, d)
		}
	}
	keep = append(keep, dir)
	run(postconf, "-e", "alternate_config_directories = "+strings.Join(keep, " "))
	postfixMu.Unlock()

	if o.Hostname == "" {
		o.Hostname = "peer.example.test"
	}
	addr := FreePort(t)
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = %[2]s
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_host_lookup = native
disable_dns_lookups = yes
`, dir, o.Hostname)
	main += strings.Join(o.Main, "\n") + "\n"
	smtpd := addr + " inet n - n - - smtpd"
	for _, a := range o.SmtpdArgs {
		smtpd += "\n  -o " + a
	}
	master := smtpd + `
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
` + strings.Join(o.Master, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Postfix{Dir: dir, Addr: addr}
	run(bin, "-c", dir, "start")
	t.Cleanup(p.stop)
	if !waitListening(addr, nil, 15*time.Second) {
		t.Fatalf("postfix did not listen on %s; its log:\n%s", addr, p.Log())
	}
	return p
}

// Log returns Postfix's log so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	return string(b)
}

// WaitLog waits until the log contains s, and fails the test otherwise.
func (p *Postfix) WaitLog(t testing.TB, s string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Log(), s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("postfix never logged %q; its log:\n%s", s, p.Log())
}

// stop stops the master process by its PID.
func (p *Postfix) stop() {
	data, err := os.ReadFile(filepath.Join(p.Dir, "queue", "pid", "master.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
