package e2e

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/testpki"
)

// tty is certrelay shell running in a pseudo-terminal of tmux, typed into
// with send-keys and read with capture-pane, as a person would use it.
type tty struct {
	t      *testing.T
	socket string
}

func startTTY(t *testing.T, e *env) *tty {
	t.Helper()
	tmux := testpki.Tool(t, "tmux")
	tt := &tty{t: t, socket: fmt.Sprintf("certrelay-%d-%d", os.Getpid(), time.Now().UnixNano())}
	args := []string{"-L", tt.socket, "-f", "/dev/null", "new-session", "-d", "-s", "s", "-x", "180", "-y", "50", "-c", e.work}
	for _, kv := range e.extra {
		args = append(args, "-e", kv)
	}
	args = append(args, binary+" --data "+e.data+" shell")
	if out, err := exec.Command(tmux, args...).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(tmux, "-L", tt.socket, "kill-server").Run() })
	tt.wait("certrelay cmdlet shell")
	return tt
}

// keys types: literal text, or tmux key names (Enter, Tab, Up, C-c).
func (tt *tty) keys(keys ...string) {
	tt.t.Helper()
	for _, k := range keys {
		args := []string{"-L", tt.socket, "send-keys", "-t", "s"}
		switch k {
		case "Enter", "Tab", "Up", "Down", "C-c", "C-u", "BSpace":
			args = append(args, k)
		default:
			args = append(args, "-l", "--", k)
		}
		if out, err := exec.Command("tmux", args...).CombinedOutput(); err != nil {
			tt.t.Fatalf("send-keys %q: %v %s", k, err, out)
		}
		time.Sleep(60 * time.Millisecond)
	}
}

func (tt *tty) screen() string {
	out, _ := exec.Command("tmux", "-L", tt.socket, "capture-pane", "-p", "-t", "s", "-S", "-200").Output()
	return string(out)
}

// wait waits until the screen shows want and returns it.
func (tt *tty) wait(want string) string {
	tt.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := tt.screen()
		if strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			tt.t.Fatalf("the screen does not show %q:\n%s", want, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastLine is the screen's last line that is not blank.
func (tt *tty) lastLine() string {
	lines := strings.Split(strings.TrimRight(tt.screen(), "\n "), "\n")
	return lines[len(lines)-1]
}

// TestShellInteractive drives the interactive shell through a
// pseudo-terminal: Tab completes cmdlets, parameters and values; Up
// recalls the history, which is kept in the data directory across
// sessions without the lines that write a password; a password is asked
// without echo; Ctrl-C abandons a line and a question and leaves the
// shell usable; exit leaves.
func TestShellInteractive(t *testing.T) {
	e := newEnv(t)
	e.ok("setup", "--fqdn", "hub1.contoso.test")
	it := e.server().InternalTransportCertificateThumbprint
	tt := startTTY(t, e)
	prompt := "[PS] " + e.server().Name + "> "

	// Completion of a cmdlet, then of a parameter and its value.
	// (The screen loses trailing blanks: each check includes what follows.)
	tt.keys("Get-ExchangeCert", "Tab", "| fl Thumbprint")
	tt.wait(prompt + "Get-ExchangeCertificate | fl Thumbprint")
	tt.keys("Enter")
	tt.wait("Thumbprint : " + it)
	tt.keys("Enable-ExchangeCertificate -Thumb", "Tab", it[:8], "Tab", "-Serv", "Tab", "II", "Tab")
	tt.wait("Enable-ExchangeCertificate -Thumbprint " + it + " -Services IIS")
	tt.keys("Enter")
	tt.wait("IIS, SMTP")
	if s := strings.Join(e.show(it).Services, ","); s != "IIS,SMTP" {
		t.Fatalf("enabled from the terminal: %s", s)
	}

	// Ctrl-C abandons the line being typed; the shell goes on.
	tt.keys("Get-Bogus-Half-Typed", "C-c")
	tt.wait("^C")
	tt.keys("Get-ExchangeServer | fl Fqdn", "Enter")
	tt.wait("Fqdn : hub1.contoso.test")
	if strings.Contains(tt.screen(), "Get-Bogus-Half-Typed : ") {
		t.Error("the abandoned line ran")
	}
	// Ctrl-C at a question: nothing is done, and the shell goes on.
	before := e.state()
	tt.keys("New-ExchangeCertificate", "Enter")
	tt.wait("[Y] Yes  [A] Yes to All")
	tt.keys("C-c")
	tt.wait("nothing was changed")
	if e.state() != before {
		t.Fatal("Ctrl-C at the question changed something")
	}
	tt.keys("Get-ExchangeCertificate | Measure-Nothing", "Enter")
	tt.wait("The term 'Measure-Nothing' is not recognized")

	// Ctrl-C while a command runs stops that command: certutil waits on a
	// CRL server that never answers (the fetch's own limit is 5 s).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	hangCA := testpki.NewRoot(t, testpki.Options{CommonName: "Hanging CA"})
	hang := hangCA.Issue(t, testpki.Options{CommonName: "hang.contoso.test", CRL: []string{"http://" + ln.Addr().String() + "/ca.crl"}})
	e.write("hang.pem", testpki.PEM(hang.Cert, hangCA.Cert))
	tt.keys(`certutil -verify -urlfetch C:\hang.pem`, "Enter")
	time.Sleep(700 * time.Millisecond)
	start := time.Now()
	tt.keys("C-c")
	tt.wait("^C (stopping the command)")
	tt.keys("Get-ExchangeServer | fl Name", "Enter")
	tt.wait("Name : " + e.server().Name)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the command went on for %v after Ctrl-C", d)
	}

	// A password written on the line is refused and not kept; one asked
	// for is not shown.
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "TTY CA"})
	leaf := ca.Issue(t, testpki.Options{CommonName: "tty.contoso.test", DNSNames: []string{"tty.contoso.test"}})
	pfx, err := certinfo.EncodePKCS12(leaf.Key, leaf.Cert, nil, "Sesame 42", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.write("tty.pfx", pfx)
	tt.keys(`Import-ExchangeCertificate -Path C:\tty.pfx -Password 'Literal 99'`, "Enter")
	tt.wait("Cannot bind parameter 'Password'")
	tt.keys(`Import-ExchangeCertificate -Path C:\tty.pfx -Password:(Get-Credential).password`, "Enter")
	tt.wait("Password (not shown):")
	tt.keys("Sesame 42", "Enter")
	thumb := certinfo.Thumbprint(leaf.Cert.Raw)
	tt.wait(thumb)
	if strings.Contains(tt.screen(), "Sesame 42") {
		t.Error("the password was echoed")
	}

	// Up recalls the last line kept.
	tt.keys("Up")
	tt.wait(prompt + `Import-ExchangeCertificate -Path C:\tty.pfx -Password:(Get-Credential).password`)
	tt.keys("C-u", "exit", "Enter")
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("tmux", "-L", tt.socket, "has-session", "-t", "s").Run() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("exit did not leave:\n%s", tt.screen())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The history is in the data directory, private, without the password.
	hist := filepath.Join(e.data, "shell_history")
	fi, err := os.Stat(hist)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("history mode %v", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(hist)
	if strings.Contains(string(data), "Literal 99") || strings.Contains(string(data), "Sesame 42") {
		t.Errorf("the history holds a password:\n%s", data)
	}
	if !strings.Contains(string(data), "Get-ExchangeServer | fl Fqdn") {
		t.Errorf("the history lacks a line typed:\n%s", data)
	}
	// A new session recalls it.
	tt2 := startTTY(t, e)
	tt2.keys("Up")
	tt2.wait(prompt + "exit")
	tt2.keys("Up")
	tt2.wait(prompt + `Import-ExchangeCertificate -Path C:\tty.pfx -Password:(Get-Credential).password`)
	tt2.keys("C-u", "Get-Help Enable-ExchangeCertificate", "Enter")
	tt2.wait("Enable-ExchangeCertificate [-Thumbprint] <string> -Services <services>")
	_ = tt2.lastLine()
}
