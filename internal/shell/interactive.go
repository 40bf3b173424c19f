package shell

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/chzyer/readline"
)

// The interactive shell: line editing, history kept in the data
// directory (never a line with a password on it), completion of cmdlet
// and parameter names, and Ctrl-C, which abandons the line being typed or
// the command running, and leaves the shell usable.

// Session is an interactive run on a terminal.
type Session struct {
	// History is the file that keeps the lines typed ("": none).
	History string
	// Prompt is the prompt ("[PS] hub1> ").
	Prompt string
	// Stdin is the terminal (os.Stdin when nil).
	Stdin io.ReadCloser
}

// Interactive reads lines from the terminal and runs them until exit or
// end of input. It returns an error only when the terminal cannot be
// used; failed commands are reported and the shell goes on.
func (s *Shell) Interactive(ctx context.Context, se Session) error {
	if se.History != "" {
		// Made 0600 before the line editor opens it: it holds what was typed.
		if f, err := os.OpenFile(se.History, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err == nil {
			f.Close()
		} else {
			fmt.Fprintf(s.Err, "note: no history is kept: %v\n", err)
			se.History = ""
		}
	}
	rl, err := readline.NewEx(&readline.Config{
		Prompt:                 se.Prompt,
		HistoryFile:            se.History,
		HistoryLimit:           2000,
		DisableAutoSaveHistory: true,
		HistorySearchFold:      true,
		AutoComplete:           &completer{s: s, ctx: ctx},
		InterruptPrompt:        "^C",
		EOFPrompt:              "exit",
		Stdin:                  se.Stdin,
		Stdout:                 s.Out,
		Stderr:                 s.Err,
	})
	if err != nil {
		return err
	}
	defer rl.Close()
	saved := s.Ask
	s.Ask = &lineAsker{rl: rl, prompt: se.Prompt, err: s.Err}
	defer func() { s.Ask = saved }()

	// Ctrl-C while a command runs cancels that command only.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)
	base := context.WithoutCancel(ctx)

	fmt.Fprintln(s.Err, "certrelay cmdlet shell. Get-Help for help, Get-Command for the cmdlets, exit to leave.")
	var pending strings.Builder
	for !s.exited {
		if pending.Len() > 0 {
			rl.SetPrompt(">> ")
		} else {
			rl.SetPrompt(se.Prompt)
		}
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			pending.Reset()
			continue
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if pending.Len() > 0 {
			pending.WriteByte('\n')
		}
		pending.WriteString(line)
		text := pending.String()
		if strings.TrimSpace(text) == "" {
			pending.Reset()
			continue
		}
		script, perr := Parse(text)
		var se *SyntaxError
		if errors.As(perr, &se) && se.Incomplete {
			continue // a string, block or pipe goes on: read the next line
		}
		pending.Reset()
		if perr == nil && !hasSecret(script) {
			_ = rl.SaveHistory(text)
		}
		select { // a Ctrl-C typed while no command ran is not for this one
		case <-sigs:
		default:
		}
		cctx, cancel := context.WithCancel(base)
		done := make(chan struct{})
		go func() {
			select {
			case <-sigs:
				fmt.Fprintln(s.Err, "^C (stopping the command)")
				cancel()
			case <-done:
			}
		}()
		_ = s.Run(cctx, text)
		close(done)
		cancel()
	}
	return nil
}

// hasSecret reports whether a line writes a password: such a line is not
// kept in the history (it is refused anyway).
func hasSecret(sc *Script) bool {
	var walk func(pl *Pipeline) bool
	walk = func(pl *Pipeline) bool {
		for _, c := range pl.Commands {
			name := strings.ToLower(canonical(c.Name))
			for i, el := range c.Elems {
				if el.Param != "" && (strings.HasPrefix("password", strings.ToLower(el.Param)) && len(el.Param) >= 2 || name == "convertto-securestring") {
					v := el.Value
					if !el.Colon && i+1 < len(c.Elems) && c.Elems[i+1].Param == "" {
						v = c.Elems[i+1].Value
					}
					if v != nil && literal(v) {
						return true
					}
				}
				if el.Param == "" && name == "convertto-securestring" && literal(el.Value) {
					return true
				}
				if v := el.Value; v != nil && v.Kind == Sub && walk(v.Sub) {
					return true
				}
			}
		}
		return false
	}
	for _, st := range sc.Statements {
		if walk(st) {
			return true
		}
	}
	return false
}

// lineAsker asks on the line editor.
type lineAsker struct {
	rl     *readline.Instance
	prompt string
	err    io.Writer
}

func (a *lineAsker) Line(prompt string) (string, error) {
	head, last := splitPrompt(prompt)
	if head != "" {
		fmt.Fprintln(a.err, head)
	}
	a.rl.SetPrompt(last)
	defer a.rl.SetPrompt(a.prompt)
	line, err := a.rl.Readline()
	if errors.Is(err, readline.ErrInterrupt) {
		return "", errors.New("interrupted")
	}
	return line, err
}

func (a *lineAsker) Secret(prompt string) (string, error) {
	head, last := splitPrompt(prompt)
	if head != "" {
		fmt.Fprintln(a.err, head)
	}
	b, err := a.rl.ReadPassword(last)
	if errors.Is(err, readline.ErrInterrupt) {
		return "", errors.New("interrupted")
	}
	return string(b), err
}

// splitPrompt splits a question into the lines before its last and the
// last, which is the prompt.
func splitPrompt(p string) (string, string) {
	i := strings.LastIndexByte(p, '\n')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// ReaderAsker asks by writing the question to w and reading the answer
// from the next line of r: for commands read from a pipe, whose answers
// follow them (as PowerShell reads a redirected standard input).
type ReaderAsker struct {
	R *bufio.Reader
	W io.Writer
}

// Line implements Asker.
func (a *ReaderAsker) Line(prompt string) (string, error) {
	fmt.Fprint(a.W, prompt)
	line, err := a.R.ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(a.W)
		return "", fmt.Errorf("no answer: the input ended")
	}
	fmt.Fprintln(a.W)
	return strings.TrimRight(line, "\r\n"), nil
}

// Secret implements Asker.
func (a *ReaderAsker) Secret(prompt string) (string, error) { return a.Line(prompt) }

// RunReader runs commands read from r, a line (or a statement that goes
// on over several lines) at a time; questions are answered by the lines
// that follow. It stops at the first failure and returns it.
func (s *Shell) RunReader(ctx context.Context, r *bufio.Reader) error {
	var pending strings.Builder
	for !s.exited {
		line, err := r.ReadString('\n')
		if line == "" && err != nil {
			if pending.Len() > 0 {
				return s.Run(ctx, pending.String())
			}
			return nil
		}
		pending.WriteString(line)
		text := pending.String()
		if _, perr := Parse(text); perr != nil {
			var se *SyntaxError
			if errors.As(perr, &se) && se.Incomplete && err == nil {
				continue
			}
		}
		pending.Reset()
		if strings.TrimSpace(text) == "" {
			continue
		}
		if err := s.Run(ctx, text); err != nil {
			return err
		}
	}
	return nil
}
