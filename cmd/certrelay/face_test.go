package main

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"
)

// leaves returns the commands of root that run something, by path.
func leaves(root *cobra.Command) map[string]*cobra.Command {
	out := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.HasSubCommands() {
				walk(sub)
				continue
			}
			out[strings.TrimPrefix(sub.CommandPath(), root.Name()+" ")] = sub
		}
	}
	walk(root)
	return out
}

// TestCLIExposesExactlyTheRegistry: every command of the CLI but serve
// is an operation of the registry, every operation has its command, and
// each command's flags, arguments and help are the operation's.
func TestCLIExposesExactlyTheRegistry(t *testing.T) {
	a := &app{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	cmds := leaves(a.rootCommand())
	if _, ok := cmds["serve"]; !ok {
		t.Error("no serve command")
	}
	delete(cmds, "serve") // hand-written: it runs the server, not an operation
	if _, ok := cmds["shell"]; !ok {
		t.Error("no shell command")
	}
	delete(cmds, "shell") // the cmdlet shell: another face of the registry
	var missing, extra []string
	byPath := map[string]*admin.Operation{}
	for _, op := range admin.Operations() {
		byPath[op.CLI] = op
		if _, ok := cmds[op.CLI]; !ok {
			missing = append(missing, op.CLI)
		}
	}
	for path := range cmds {
		if byPath[path] == nil {
			extra = append(extra, path)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("operations without a command: %q; commands outside the registry: %q", missing, extra)
	}
	// The commands the CLI had before the registry (README, SPEC I2) are
	// all still there.
	for _, path := range strings.Split(`setup,server show,server set,cert new,cert request,cert import,cert enable,cert list,cert show,`+
		`cert export,cert remove,cert verify,cert explain,trust add,trust list,trust remove,connector receive add,connector receive set,`+
		`connector receive list,connector receive show,connector receive remove,connector send add,connector send set,connector send list,`+
		`connector send show,connector send remove,domain add,domain list,domain remove,mailbox add,mailbox list,mailbox remove,`+
		`queue list,queue retry,queue remove,track,events,loglevel get,loglevel set`, ",") {
		if cmds[path] == nil {
			t.Errorf("certrelay %s is gone", path)
		}
	}
	for path, cmd := range cmds {
		op := byPath[path]
		t.Run(op.Name, func(t *testing.T) {
			if cmd.Short != render(op.Summary, op) {
				t.Errorf("help %q, want the operation's summary", cmd.Short)
			}
			for _, p := range op.Params {
				if p.Position > 0 {
					if !strings.Contains(cmd.Use, p.CLI) && faces[op.Name].use == "" {
						t.Errorf("usage %q does not show %s", cmd.Use, p.CLI)
					}
					continue
				}
				if f := cmd.Flags().Lookup(p.CLI); f == nil {
					t.Errorf("no --%s for %s", p.CLI, p.Name)
				} else if p.Type.Kind == admin.KindSecret && !strings.HasSuffix(p.CLI, "-file") {
					t.Errorf("secret %s is read from --%s, which does not say it takes a file", p.Name, p.CLI)
				}
			}
			if (cmd.Flags().Lookup("json") != nil) != (op.Returns != nil) {
				t.Errorf("--json offered: %v; the operation returns data: %v", cmd.Flags().Lookup("json") != nil, op.Returns != nil)
			}
			if (cmd.Flags().Lookup("out") != nil) != op.File {
				t.Errorf("--out offered: %v; the operation hands over a file: %v", cmd.Flags().Lookup("out") != nil, op.File)
			}
		})
	}
	for name := range faces {
		if admin.Lookup(name) == nil {
			t.Errorf("faces has %q, which is no operation", name)
		}
	}
	for path := range groups {
		found := false
		for p := range byPath {
			found = found || strings.HasPrefix(p, path+" ")
		}
		if !found {
			t.Errorf("group %q holds no operation", path)
		}
	}
}

// TestCLIRendersAdminTexts: admin's texts name operations and parameters
// with marks; the CLI writes them as its commands and flags.
func TestCLIRendersAdminTexts(t *testing.T) {
	enable := admin.Lookup("Enable-ExchangeCertificate")
	for text, want := range map[string]string{
		"add {-Services}":                       "add --services",
		"{-Thumbprint}":                         "THUMBPRINT",
		"see {Get-ExchangeCertificate}":         "see certrelay cert list",
		"{Import-ExchangeCertificate#Password}": "--password-file",
		"{Set-ReceiveConnector 'Default hub1' -Fqdn mail.contoso.com -RequireTLS}": "certrelay connector receive set 'Default hub1' --fqdn mail.contoso.com --require-tls",
	} {
		if got := render(text, enable); got != want {
			t.Errorf("%q: %q, want %q", text, got, want)
		}
	}
}

// TestCLIExitStatus: usage errors exit 2, failed operations 1, and the
// fixes admin names are written as CLI commands and flags.
func TestCLIExitStatus(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	t.Setenv("CERTRELAY_SYSTEM_ROOTS", filepath.Join(dir, "none.pem"))
	run := func(args ...string) (int, string) { t.Helper(); return runCLI(t, dir, data, args...) }
	if code, stderr := run("setup", "--fqdn", "hub1.contoso.test"); code != 0 {
		t.Fatalf("setup: %d %s", code, stderr)
	}
	ad, err := admin.Open(context.Background(), admin.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := ad.ServerShow(context.Background())
	ad.Close()
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"cert", "enable", info.InternalTransportCertificateThumbprint}, 2, []string{"give --services"}},
		{[]string{"cert", "list", "--service", "SMTP,POP"}, 2, []string{"--service"}},
		{[]string{"cert", "export", "x", "--out", "x.pem", "--der", "--password-file", "pw"}, 2, []string{"--der and --password-file"}},
		{[]string{"cert", "remove", info.InternalTransportCertificateThumbprint, "--force"}, 1, []string{"certrelay cert new"}},
		{[]string{"cert", "new"}, 1, []string{"new certificate: ", "add --force"}},
		{[]string{"cert", "show", strings.Repeat("AB", 20)}, 1, []string{"certrelay cert list"}},
		{[]string{"connector", "receive", "set", "Default " + info.Name, "--max-inbound-connection", "0"}, 1, []string{"--max-inbound-connection \"0\""}},
		{[]string{"setup", "--role", "edge"}, 1, []string{"certrelay setup --role edge"}},
		{[]string{"queue", "list", "--result-size", "lots"}, 2, []string{"--result-size", "Unlimited"}},
	} {
		code, stderr := run(c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v: %q lacks %q", c.args, stderr, w)
			}
		}
		for _, bad := range []string{"-Services", "Get-ExchangeCertificate", "New-ExchangeCertificate", "{"} {
			if strings.Contains(stderr, bad) {
				t.Errorf("%v: %q has the cmdlet syntax or a mark: %q", c.args, stderr, bad)
			}
		}
	}
}

// TestCLIPrintsEveryResult: every operation's result prints, for people
// and as JSON, whatever its type — empty lists and zero values included.
func TestCLIPrintsEveryResult(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, op := range admin.Operations() {
		if op.Returns == nil {
			continue
		}
		for _, asJSON := range []bool{false, true} {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s (json %v): %v", op.Name, asJSON, r)
					}
				}()
				c := &call{a: &app{stdout: null, stderr: null, stdin: null}, op: op, args: []string{"x"}, json: asJSON, out: "x.pem"}
				if err := c.print(faces[op.Name], &admin.Result{Data: op.Returns}); err != nil && err != errNotValid {
					t.Errorf("%s (json %v): %v", op.Name, asJSON, err)
				}
			}()
		}
	}
}

// TestReadCommandNeedsData: a command that only reads, run on a data
// directory that does not exist (a mistyped --data), says so and creates
// nothing; a command that changes something still creates it.
func TestReadCommandNeedsData(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "typo")
	t.Setenv("CERTRELAY_SYSTEM_ROOTS", filepath.Join(dir, "none.pem"))
	run := func(args ...string) (int, string) { t.Helper(); return runCLI(t, dir, data, args...) }
	for _, args := range [][]string{{"cert", "list"}, {"server", "show"}, {"cert", "list", "--json"}} {
		code, stderr := run(args...)
		if code != 1 {
			t.Errorf("%v on a missing data directory: exit %d, want 1 (%s)", args, code, stderr)
		}
		for _, w := range []string{data, "--data", "certrelay setup"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v: %q lacks %q", args, stderr, w)
			}
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Fatalf("%v created %s (stat: %v)", args, data, err)
		}
	}
	if code, stderr := run("setup", "--fqdn", "hub1.contoso.test"); code != 0 {
		t.Fatalf("setup on a new data directory: %d %s", code, stderr)
	}
	if code, stderr := run("cert", "list"); code != 0 {
		t.Errorf("cert list after setup: %d %s", code, stderr)
	}
}

// runCLI runs certrelay --data data args in this process, with standard
// output and error in files under dir, and returns the exit status and
// what it wrote to standard error.
func runCLI(t *testing.T, dir, data string, args ...string) (int, string) {
	t.Helper()
	out, _ := os.Create(filepath.Join(dir, "out"))
	errf, _ := os.Create(filepath.Join(dir, "err"))
	in, _ := os.Open(os.DevNull)
	defer out.Close()
	defer errf.Close()
	defer in.Close()
	code := (&app{stdout: out, stderr: errf, stdin: in}).run(context.Background(), append([]string{"--data", data}, args...))
	b, _ := os.ReadFile(errf.Name())
	return code, string(b)
}
