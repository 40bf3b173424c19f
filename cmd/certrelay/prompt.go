package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// askTerminal asks a yes/no question on the terminal; without one it
// fails, naming --force, so a script never hangs on a question.
func (a *app) askTerminal(q string) (bool, error) {
	if !term.IsTerminal(int(a.stdin.Fd())) {
		return false, errors.New("this needs an answer and there is no terminal to ask: add --force to answer yes")
	}
	fmt.Fprintf(a.stderr, "%s\n[y/N] ", q)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, err
	}
	ans := strings.ToLower(strings.TrimSpace(line))
	return ans == "y" || ans == "yes", nil
}

// readSecret reads a password from a file, or from standard input when the
// name is "-". One trailing newline is dropped. Secrets never come from the
// command line (SPEC I5).
func (a *app) readSecret(name string) (string, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(a.stdin, 64<<10))
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	return string(data), nil
}

// promptSecret asks for a password on the terminal, without echo.
func (a *app) promptSecret(q string) (string, bool) {
	fd := int(a.stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", false
	}
	fmt.Fprint(a.stderr, q)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", false
	}
	return string(b), true
}
