package testpki

import (
	"crypto/x509"
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
	// Addr fixes the listening address (default: a free port).
	Addr string
	// Mailboxes are addresses Postfix delivers to, one mbox file each
	// (virtual delivery); others of their domains get 550 5.1.1.
	Mailboxes []string
	// TLS offers STARTTLS with a certificate made at run time, asks for
	// client certificates and records TLS in the Received header.
	TLS bool
	// TLSLeaf, with TLS, is the certificate Postfix presents instead of
	// a self-signed one for Hostname, followed by TLSChain.
	TLSLeaf  *Leaf
	TLSChain []*x509.Certificate
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
	addr := o.Addr
	if addr == "" {
		addr = FreePort(t)
	}
	if len(o.Mailboxes) > 0 {
		vmail := filepath.Join(dir, "vmail")
		if err := os.Mkdir(vmail, 0o755); err != nil {
			t.Fatal(err)
		}
		run("chown", "65534:65534", vmail)
		domains := map[string]bool{}
		var maps []string
		for _, m := range o.Mailboxes {
			_, d, _ := strings.Cut(m, "@")
			domains[d] = true
			maps = append(maps, m+"="+m)
		}
		var ds []string
		for d := range domains {
			ds = append(ds, d)
		}
		o.Main = append(o.Main,
			"virtual_mailbox_domains = "+strings.Join(ds, " "),
			"virtual_mailbox_base = "+vmail,
			"virtual_mailbox_maps = inline:{ "+strings.Join(maps, ", ")+" }",
			"virtual_uid_maps = static:65534", "virtual_gid_maps = static:65534", "virtual_minimum_uid = 100")
	}
	if o.TLS {
		leaf := o.TLSLeaf
		if leaf == nil {
			leaf = SelfSigned(t, Options{CommonName: o.Hostname, DNSNames: []string{o.Hostname}})
		}
		cert := filepath.Join(dir, "tls-cert.pem")
		key := filepath.Join(dir, "tls-key.pem")
		if err := os.WriteFile(cert, PEM(append([]*x509.Certificate{leaf.Cert}, o.TLSChain...)...), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, KeyPEM(t, leaf.Key), 0o600); err != nil {
			t.Fatal(err)
		}
		o.Main = append(o.Main, "smtpd_tls_security_level = may", "smtpd_tls_cert_file = "+cert, "smtpd_tls_key_file = "+key,
			"smtpd_tls_ask_ccert = yes", "smtpd_tls_received_header = yes", "smtpd_tls_loglevel = 1")
	}
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

// Mailbox returns the mbox content delivered to address ("" if none).
func (p *Postfix) Mailbox(address string) string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "vmail", address))
	return string(b)
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
		if !alive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// alive reports whether pid runs; a zombie (an exited daemon nobody has
// reaped, as happens when PID 1 does not reap) counts as gone.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}
