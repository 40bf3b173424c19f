package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"certrelay/internal/admin"
)

// The CLI is one face of the operation registry (internal/admin): every
// command but serve is an operation, its flags and help come from the
// operation's parameters, and it runs through admin.Call. What is the
// CLI's own — reading a password file or asking for it, reading input
// files, writing output files, asking questions on the terminal, and
// printing tables for people — is here and in faces.go.

// face is what the CLI does around one operation beyond what the
// registry declares. Every field is optional.
type face struct {
	// use is the synopsis after the command's name, when the one made
	// from the positional parameters does not say enough.
	use string
	// args reads the positional arguments into c.raw (default: each to the
	// positional parameter of its place).
	args func(c *call, args []string) error
	// nargs overrides the number of positional arguments (with what, for
	// the usage error).
	nargs *argCount
	// hidden names parameters the CLI accepts but does not show.
	hidden []string
	// outHelp and forceHelp are the help of --out and --force of an
	// operation that hands over a file.
	outHelp, forceHelp, outWhat string
	// jsonHelp is the help of --json ("print JSON").
	jsonHelp string
	// example shows the command at work, in help.
	example string
	// check runs before the data directory is opened: usage errors the
	// registry cannot know of (a file name that promises another format).
	check func(c *call) error
	// human prints the result for people (default: Data as a list of
	// properties).
	human func(c *call, res *admin.Result) error
	// output replaces the whole output of the result, JSON included.
	output func(c *call, res *admin.Result) error
}

type argCount struct {
	n    int
	what string
}

// call is one run of a command.
type call struct {
	a     *app
	op    *admin.Operation
	cmd   *cobra.Command
	args  []string
	raw   admin.Params
	json  bool
	out   string // --out of an operation that hands over a file
	force bool   // --force of such an operation: replace the file
}

// cliSyntax renders the marks of admin's texts as the CLI writes them.
type cliSyntax = admin.CLISyntax

// shellQuote quotes a value for a POSIX shell when it needs it.
func shellQuote(v string) string { return admin.ShellQuote(v) }

// render renders a text of admin (with marks) for the CLI.
func render(text string, op *admin.Operation) string { return admin.Render(text, op, cliSyntax{}) }

// operationCommands adds a command for every operation of the registry,
// at its CLI path, creating the commands that group them (groups).
func (a *app) operationCommands(root *cobra.Command) {
	for _, op := range admin.Operations() {
		path := strings.Fields(op.CLI)
		parent := root
		for i, word := range path[:len(path)-1] {
			parent = groupCommand(parent, word, strings.Join(path[:i+1], " "))
		}
		parent.AddCommand(a.operationCommand(op, faces[op.Name]))
	}
}

// groupCommand returns parent's subcommand named word, made if missing.
func groupCommand(parent *cobra.Command, word, path string) *cobra.Command {
	for _, c := range parent.Commands() {
		if c.Name() == word {
			return c
		}
	}
	c := &cobra.Command{Use: word, Short: groups[path]}
	parent.AddCommand(c)
	return c
}

// operationCommand makes the command of op.
func (a *app) operationCommand(op *admin.Operation, f face) *cobra.Command {
	path := strings.Fields(op.CLI)
	use := path[len(path)-1]
	if f.use != "" {
		use += " " + f.use
	} else {
		for _, p := range op.Positional() {
			if p.Required {
				use += " " + p.CLI
			} else {
				use += " [" + p.CLI + "]"
			}
		}
	}
	c := &call{a: a, op: op}
	cmd := &cobra.Command{
		Use:     use,
		Short:   render(op.Summary, op),
		Long:    render(op.Description, op),
		Args:    positionalArgs(op, f),
		Example: f.example,
		RunE: func(cmd *cobra.Command, args []string) error {
			run := *c // each run its own, should a command run twice
			run.cmd, run.args, run.raw = cmd, args, admin.Params{}
			return run.run(f)
		},
	}
	if op.File {
		cmd.Long = strings.TrimSpace(cmd.Long + "\n\n" + fileHelp)
	}
	fl := cmd.Flags()
	for i := range op.Params {
		p := &op.Params[i]
		if p.Position > 0 {
			continue
		}
		help := render(p.Help, op)
		switch p.Type.Kind {
		case admin.KindBool:
			fl.Bool(p.CLI, p.Default == "true", help)
		case admin.KindInt:
			if p.Type.Unlimited { // a number or the word, read by the operation
				fl.String(p.CLI, p.Default, help)
				break
			}
			n, _ := strconv.Atoi(p.Default)
			fl.Int(p.CLI, n, help)
		case admin.KindList:
			fl.StringArray(p.CLI, nil, help)
		case admin.KindSecret:
			fl.String(p.CLI, "", "file holding "+help+" (- for standard input)")
		case admin.KindData:
			fl.String(p.CLI, "", "file holding "+help+" (- for standard input)")
		default:
			fl.String(p.CLI, p.Default, help)
		}
		if p.Hidden || contains(f.hidden, p.Name) {
			_ = fl.MarkHidden(p.CLI)
		}
	}
	if op.File {
		fl.StringVar(&c.out, "out", "", or(f.outHelp, "file to write (- for standard output)"))
		fl.BoolVar(&c.force, "force", false, or(f.forceHelp, "replace the file if it exists"))
	}
	if op.Returns != nil {
		fl.BoolVar(&c.json, "json", false, or(f.jsonHelp, "print JSON"))
	}
	return cmd
}

// fileHelp ends the help of commands that write a file.
const fileHelp = `--out - writes to standard output. An existing file is only replaced with
--force, and never a file in the data directory. The file name must agree
with the format: .pfx/.p12 for PKCS#12, .pem/.crt for PEM, .der for DER
(.cer, .req and .csr for either).`

// positionalArgs checks the number of positional arguments.
func positionalArgs(op *admin.Operation, f face) cobra.PositionalArgs {
	pos := op.Positional()
	if f.nargs != nil {
		return exactArgs(f.nargs.n, f.nargs.what)
	}
	if len(pos) == 0 {
		return cobra.NoArgs
	}
	var need []string
	for _, p := range pos {
		if p.Required {
			need = append(need, p.Help)
		}
	}
	if len(need) == 0 {
		return cobra.MaximumNArgs(len(pos))
	}
	if len(need) == len(pos) {
		return exactArgs(len(pos), strings.Join(need, " and "))
	}
	return cobra.RangeArgs(len(need), len(pos))
}

// run runs the operation: flags and arguments to parameters, files and
// secrets read, the call (asking on the terminal when the operation
// asks), then its messages and result printed.
func (c *call) run(f face) error {
	a, op := c.a, c.op
	if f.args != nil {
		if err := f.args(c, c.args); err != nil {
			return err
		}
	} else {
		for i, p := range op.Positional() {
			if i < len(c.args) {
				c.raw[p.Name] = c.args[i]
			}
		}
	}
	fl := c.cmd.Flags()
	for i := range op.Params {
		p := &op.Params[i]
		if p.Position > 0 || !fl.Changed(p.CLI) {
			continue
		}
		switch p.Type.Kind {
		case admin.KindBool:
			c.raw[p.Name], _ = fl.GetBool(p.CLI)
		case admin.KindInt:
			if p.Type.Unlimited {
				c.raw[p.Name], _ = fl.GetString(p.CLI)
				break
			}
			c.raw[p.Name], _ = fl.GetInt(p.CLI)
		case admin.KindList:
			// Not GetStringArray: it reads a lone empty value ("--domain ''")
			// as no value at all, and the operation must see it to refuse it.
			c.raw[p.Name] = fl.Lookup(p.CLI).Value.(pflag.SliceValue).GetSlice()
		default:
			c.raw[p.Name], _ = fl.GetString(p.CLI)
		}
	}
	for i := range op.Params {
		if p := &op.Params[i]; p.Required && p.Type.Kind == admin.KindSecret && c.raw[p.Name] == nil {
			return usagef("give %s with --%s FILE (- for standard input); passwords never go on the command line", p.Help, p.CLI)
		}
	}
	if op.File && c.out == "" {
		return usagef("give the %s with --out FILE (or --out - for standard output)", or(f.outWhat, "output file"))
	}
	// Usage errors first, before any file is read.
	if _, err := op.Bind(c.raw); err != nil {
		if e, ok := err.(*admin.Error); ok {
			e.Op = op.Name
		}
		return err
	}
	if f.check != nil {
		if err := f.check(c); err != nil {
			return err
		}
	}
	if err := c.readFiles(); err != nil {
		return err
	}
	if op.Role == admin.ViewOnly {
		if err := a.needData(); err != nil {
			return err
		}
	}
	return a.withAdmin(c.cmd, func(ad *admin.Admin) error {
		req := admin.Request{Op: op.Name, Caller: cliCaller(), Params: c.raw}
		if op.Streams {
			req.Stream = c.stream // records as they come (trace.go)
		}
		if op.File {
			if err := ad.CheckOutputPath(c.out, c.force); err != nil {
				if errors.Is(err, admin.ErrOutputExists) {
					return fmt.Errorf("%w: remove it, choose another name, or add --force to replace it", errors.Unwrap(err))
				}
				return err
			}
			req.Deliver = c.deliver
		}
		res, err := c.callAsking(ad, req)
		if err != nil {
			return err
		}
		for _, m := range res.Messages {
			switch m.Level {
			case admin.Warning:
				fmt.Fprintln(a.stderr, "WARNING: "+render(m.Text, op))
			case admin.Note:
				fmt.Fprintln(a.stderr, render(m.Text, op))
			}
		}
		if err := c.print(f, res); err != nil {
			return err
		}
		if !c.json {
			for _, m := range res.Messages {
				if m.Level == admin.Hint {
					fmt.Fprintln(a.stderr, render(m.Text, op))
				}
			}
		}
		return nil
	})
}

// readFiles reads what the parameters of file and secret kinds name.
func (c *call) readFiles() error {
	for i := range c.op.Params {
		p := &c.op.Params[i]
		name, ok := c.raw[p.Name].(string)
		if !ok {
			continue
		}
		switch p.Type.Kind {
		case admin.KindData:
			data, err := readInput(c.a, name)
			if err != nil {
				return err
			}
			c.raw[p.Name] = data
		case admin.KindSecret:
			s, err := c.a.readSecret(name)
			if err != nil {
				return err
			}
			c.raw[p.Name] = s
		}
	}
	return nil
}

// callAsking calls the operation; when it asks, the question is asked on
// the terminal and the operation called again with the answer; when it
// needs a secret that was not given, the terminal is asked for it.
func (c *call) callAsking(ad *admin.Admin, req admin.Request) (*admin.Result, error) {
	for {
		res, err := ad.Call(c.cmd.Context(), req)
		var cr *admin.ConfirmationRequired
		if errors.As(err, &cr) {
			yes, err := c.a.askTerminal(cr.Question)
			if err != nil {
				return nil, prefixed(cr.Action, err)
			}
			req.Answer = &admin.Answer{Token: cr.Token, Yes: yes}
			continue
		}
		var e *admin.Error
		if errors.As(err, &e) {
			if p := c.op.Param(e.Field); p != nil && p.Type.Kind == admin.KindSecret && p.Prompt != "" && req.Params[p.Name] == nil {
				if pw, ok := c.a.promptSecret(p.Prompt + ": "); ok {
					req.Params[p.Name] = pw
					continue
				}
			}
		}
		return res, err
	}
}

// deliver writes the file an operation hands over to --out.
func (c *call) deliver(_ context.Context, f admin.File) (string, error) {
	mode := os.FileMode(0o644)
	if f.Secret {
		mode = 0o600
	}
	where := c.out
	if abs, err := filepath.Abs(c.out); err == nil && c.out != "-" {
		where = abs // the event of an export names the file wherever it is read (diagnose finds backups by it)
	}
	return where, c.a.writeOutput(c.out, f.Data, mode, c.force)
}

// print prints the result: the face's own way, JSON, or for people.
func (c *call) print(f face, res *admin.Result) error {
	switch {
	case f.output != nil:
		return f.output(c, res)
	case c.json:
		return printJSON(c.a.stdout, res.Data)
	case f.human != nil:
		return f.human(c, res)
	case res.Data != nil:
		printLists(c.a.stdout, res.Data)
	}
	return nil
}

// cliCaller is the CLI's caller: the account running it, with every
// role — what it may change is what the data directory's permissions let
// it change.
func cliCaller() admin.Caller {
	name := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return admin.Caller{Name: name, Role: admin.OrgAdmin, From: "cli"}
}

func prefixed(action string, err error) error {
	if action == "" {
		return err
	}
	return fmt.Errorf("%s: %w", action, err)
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
