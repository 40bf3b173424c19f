// Package shell is certrelay's cmdlet shell (SPEC I4): the commands the
// seed documents show — Exchange Management Shell command lines — run as
// written, as a face of the operation registry beside the CLI. Every
// management cmdlet is an operation of internal/admin, found by its
// cmdlet name (admin.LookupCmdlet) and run through admin.Call; what is
// the shell's own is the PowerShell subset that reads a line (parse.go),
// pipelines that pass objects, Where-Object, the Format- cmdlets and
// ConvertTo-Json, Get-Help and Get-Command built from the registry's
// declarations, questions asked as PowerShell asks them, errors written
// in PowerShell's shape, and the interactive line editor.
//
// A cmdlet added to the registry is a cmdlet of the shell, with its help,
// completion and piped parameters, without a change here.
package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"certrelay/internal/admin"
)

// Asker asks the administrator for what a command needs and was not
// given: a confirmation, a mandatory parameter, a password. Shell.Ask is
// nil when nobody can answer (a script without a terminal); questions
// then fail, naming the parameter that answers them.
type Asker interface {
	// Line asks for one line of text; the prompt ends the question.
	Line(prompt string) (string, error)
	// Secret asks for a password without showing it.
	Secret(prompt string) (string, error)
}

// Shell runs command lines against one data directory. Not safe for
// concurrent use: one administrator types into it.
type Shell struct {
	Admin  *admin.Admin
	Caller admin.Caller
	// Out receives results, Err errors, warnings and notes.
	Out, Err io.Writer
	// Ask asks questions; nil when nobody can answer.
	Ask Asker
	// Dir is the working directory local file names are read in ("": the
	// process's).
	Dir string

	// ExitCode is the status exit gave (exit 3).
	ExitCode int

	said map[string]bool // notes said once
	// exited is set by exit.
	exited bool
}

// Failure is a command that failed: it was reported on Err.
type Failure struct {
	// Usage: the line was written wrongly (a parse error, an unknown
	// command or parameter, a missing or mistyped value), rather than
	// refused by the operation.
	Usage bool
	Err   error
}

func (f *Failure) Error() string { return f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// Exited reports whether exit was run.
func (s *Shell) Exited() bool { return s.exited }

// Run parses text and runs its statements in order. The first statement
// that fails is reported on Err and stops the run: a *Failure is
// returned, and the statements after it are not run (a script that goes
// on after a failed step could, say, remove a certificate whose
// replacement was never made).
func (s *Shell) Run(ctx context.Context, text string) error {
	script, err := Parse(text)
	if err != nil {
		s.report(syntaxFailure(err, text))
		return &Failure{Usage: true, Err: err}
	}
	for i, st := range script.Statements {
		if s.exited {
			return nil
		}
		if err := s.runStatement(ctx, st); err != nil {
			f := s.failure(err, text)
			s.report(f)
			if rest := len(script.Statements) - i - 1; rest > 0 {
				fmt.Fprintf(s.Err, "(stopped: %d more command(s) on the line were not run)\n", rest)
			}
			return f
		}
	}
	return nil
}

// runStatement runs one pipeline, printing what comes out of its end.
func (s *Shell) runStatement(ctx context.Context, pl *Pipeline) error {
	for _, part := range s.repair(pl) {
		out, err := s.pipeline(ctx, part)
		if err != nil {
			return err
		}
		if len(out.objs) > 0 {
			s.display(out.objs)
		}
	}
	return nil
}

// stream is what flows between commands: objects, and whether they are
// a list (an operation that returns a list, even of one or none).
type stream struct {
	objs []*Object
	list bool
}

// pipeline runs the commands of pl, each on what the one before it
// output.
func (s *Shell) pipeline(ctx context.Context, pl *Pipeline) (stream, error) {
	var in stream
	for i, c := range pl.Commands {
		if err := ctx.Err(); err != nil {
			return stream{}, &cmdError{cmd: c.Name, msg: "interrupted; the command was not run", kind: admin.Cancelled}
		}
		if i > 0 && len(in.objs) == 0 && !isFormatter(c.Name) {
			return stream{list: in.list}, nil // nothing to process: PowerShell runs no process block
		}
		out, err := s.command(ctx, c, in, i == 0, i == len(pl.Commands)-1)
		if err != nil {
			return stream{}, err
		}
		in = out
	}
	return in, nil
}

// command runs one command on its input.
func (s *Shell) command(ctx context.Context, c *Command, in stream, first, last bool) (stream, error) {
	name := canonical(c.Name)
	for _, el := range c.Elems {
		if el.Param == "?" { // Cmdlet -? is Get-Help Cmdlet
			help := &Command{Name: "Get-Help", Pos: c.Pos, Elems: []*Elem{{Value: &Value{Kind: Word, Text: name, Pos: c.Pos}, Pos: c.Pos}}}
			return builtins["get-help"].run(s, ctx, &call{cmd: help, name: "Get-Help", first: true, last: true})
		}
	}
	if b, ok := builtins[strings.ToLower(name)]; ok {
		return b.run(s, ctx, &call{cmd: c, name: b.name, in: in, first: first, last: last})
	}
	if ops := cmdletOps(name); len(ops) > 0 {
		return s.runCmdlet(ctx, c, ops, in, first)
	}
	if why, ok := planned[strings.ToLower(name)]; ok {
		return stream{}, &cmdError{cmd: c.Name, msg: "not available yet: " + why, pos: &c.Pos, kind: admin.Unavailable}
	}
	msg := fmt.Sprintf("The term '%s' is not recognized as the name of a cmdlet, function, script file, or operable program.", c.Name)
	if sug := suggest(c.Name); sug != "" {
		msg += " Did you mean " + sug + "?"
	}
	msg += " Get-Command lists the cmdlets."
	return stream{}, &cmdError{cmd: c.Name, msg: msg, pos: &c.Pos, usage: true}
}

// cmdError is a command's failure in PowerShell's shape:
// "Cmdlet : message", with where on the line it went wrong.
type cmdError struct {
	cmd   string
	msg   string
	pos   *Pos
	usage bool
	kind  admin.Kind
	err   error
}

func (e *cmdError) Error() string { return e.cmd + " : " + e.msg }
func (e *cmdError) Unwrap() error { return e.err }

// failure makes err a Failure with the text to report; text is the
// whole text the statement was parsed from.
func (s *Shell) failure(err error, text string) *Failure {
	var ce *cmdError
	if errors.As(err, &ce) {
		return &Failure{Usage: ce.usage, Err: &located{err: ce, text: text, pos: ce.pos}}
	}
	var se *SyntaxError
	if errors.As(err, &se) {
		return syntaxFailure(se, text)
	}
	return &Failure{Err: err}
}

// located is an error with the text it happened in and, when known,
// where.
type located struct {
	err  error
	text string
	pos  *Pos
}

func (l *located) Error() string { return l.err.Error() }
func (l *located) Unwrap() error { return l.err }

func syntaxFailure(err error, text string) *Failure {
	var se *SyntaxError
	if !errors.As(err, &se) {
		return &Failure{Usage: true, Err: err}
	}
	return &Failure{Usage: true, Err: &located{err: &parseError{se}, text: text, pos: &se.Pos}}
}

// parseError is a SyntaxError as the shell reports it.
type parseError struct{ se *SyntaxError }

func (p *parseError) Error() string { return "ParserError: " + p.se.Msg }
func (p *parseError) Unwrap() error { return p.se }

// report writes a failure to Err as PowerShell writes an error record:
// the message, then the line with a marker under the place.
func (s *Shell) report(f *Failure) {
	var l *located
	if !errors.As(f.Err, &l) {
		fmt.Fprintln(s.Err, f.Err.Error())
		return
	}
	fmt.Fprintln(s.Err, l.err.Error())
	if l.pos == nil {
		return
	}
	lines := strings.Split(l.text, "\n")
	if l.pos.Line < 1 || l.pos.Line > len(lines) {
		return
	}
	src := strings.TrimRight(lines[l.pos.Line-1], "\r")
	fmt.Fprintf(s.Err, "At line:%d char:%d\n+ %s\n+ %s~\n", l.pos.Line, l.pos.Col, src, strings.Repeat(" ", max(l.pos.Col-1, 0)))
}

// noteOnce writes a note the first time key is met in this shell.
func (s *Shell) noteOnce(key, format string, args ...any) {
	if s.said == nil {
		s.said = map[string]bool{}
	}
	if s.said[key] {
		return
	}
	s.said[key] = true
	fmt.Fprintf(s.Err, format+"\n", args...)
}

// dir is the working directory.
func (s *Shell) dir() string {
	if s.Dir != "" {
		return s.Dir
	}
	d, err := os.Getwd()
	if err != nil {
		return "."
	}
	return d
}
