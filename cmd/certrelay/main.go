// Command certrelay is the mail transport server and its management CLI:
// `certrelay serve` runs a server from a data directory; every other
// command manages that data directory, with or without a running server.
//
// The commands are thin: each is an operation of internal/admin's
// registry (face.go builds them), whose flags and help come from the
// operation's parameters; they call admin.Call and print tables for
// people or JSON (--json) for scripts. Errors go to stderr with a non-zero
// exit status: 1 for a failed operation, 2 for a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"
	"certrelay/internal/db"
)

// usageError marks errors in how a command was called (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type app struct {
	dataDir string
	stdout  *os.File
	stderr  *os.File
	stdin   *os.File
}

func main() {
	if !slices.Contains(os.Args[1:], "serve") {
		batchGC()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// batchGC tunes the garbage collector for a command that runs for a
// moment and exits: no collection until the heap nears 256 MiB (a listing
// of 10,000 certificates spent a fifth of its time collecting garbage it
// would free at exit anyway). `serve` keeps Go's defaults. GOGC or
// GOMEMLIMIT in the environment win.
func batchGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(256 << 20)
	debug.SetGCPercent(-1)
}

func run(ctx context.Context, args []string) int {
	return (&app{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}).run(ctx, args)
}

// run runs the command args and returns the exit status.
func (a *app) run(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if errors.Is(err, errNotValid) {
		return 1 // the report said why
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code // the shell reported its errors
	}
	var ue usageError
	var ae *admin.Error
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "certrelay: %v\n", err)
		return 2
	case errors.Is(err, admin.ErrCancelled):
		fmt.Fprintln(a.stderr, "certrelay: cancelled; nothing was changed")
		return 1
	case errors.As(err, &ae) && ae == err:
		msg := ae.Render(cliSyntax{})
		if errors.Is(err, db.ErrReadOnly) {
			msg += " (--data DIR)"
		}
		fmt.Fprintf(a.stderr, "certrelay: %s\n", msg)
		if ae.Usage {
			return 2
		}
		return 1
	default:
		fmt.Fprintf(a.stderr, "certrelay: %v\n", err)
		return 1
	}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "certrelay",
		Short:         "A mail transport server whose certificates administrators can trust",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	def := os.Getenv("CERTRELAY_DATA")
	if def == "" {
		def = "./data"
	}
	root.PersistentFlags().StringVar(&a.dataDir, "data", def, "data directory (env CERTRELAY_DATA)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.serveCommand())
	root.AddCommand(a.shellCommand())
	a.operationCommands(root)
	refuseUnknownCommands(root)
	return root
}

// refuseUnknownCommands makes every command that only groups others
// (certrelay, certrelay cert, …) answer an unknown command with a usage
// error (exit status 2) that names it and suggests the closest, instead
// of printing its help and succeeding. Called alone, it prints its help.
func refuseUnknownCommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownCommands(sub)
	}
	if !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.SuggestionsMinimumDistance = 2
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		hint := ""
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			hint = fmt.Sprintf("; did you mean %s %s?", cmd.CommandPath(), strings.Join(s, " or "))
		}
		return usagef("unknown command %q for %s%s (see %s --help)", args[0], cmd.CommandPath(), hint, cmd.CommandPath())
	}
}

// withAdmin opens the data directory, runs fn, and closes it.
func (a *app) withAdmin(cmd *cobra.Command, fn func(ad *admin.Admin) error) error {
	ad, err := a.open(cmd.Context())
	if err != nil {
		return err
	}
	defer ad.Close()
	return fn(ad)
}

// needData refuses a command that only reads when the data directory
// holds no database: opening it would create an empty store, and a
// mistyped --data would then show no certificates as if the server had
// none (and leave a stray directory behind).
func (a *app) needData() error {
	abs, err := filepath.Abs(a.dataDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(abs, db.FileName)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no certrelay data directory at %s (no %s there), so there is nothing to show: check --data or CERTRELAY_DATA; `certrelay setup` or `certrelay serve` creates one", abs, db.FileName)
	}
	return nil
}

// open opens the data directory for a command.
func (a *app) open(ctx context.Context) (*admin.Admin, error) {
	return admin.Open(ctx, admin.Options{DataDir: a.dataDir})
}

// exactArgs is cobra.ExactArgs with a usage error that names the argument.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s (see %s --help)", cmd.CommandPath(), what, cmd.CommandPath())
		}
		return nil
	}
}
