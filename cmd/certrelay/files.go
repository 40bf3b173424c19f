package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/term"

	"certrelay/internal/safeio"
)

// readInput reads a file, or standard input for "-".
func readInput(a *app, name string) ([]byte, error) {
	if name == "-" {
		return readAllLimited(a.stdin)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

// writeOutput writes a command's file: standard output for "-"; a new
// file, or with force a replacement, written atomically.
func (a *app) writeOutput(path string, data []byte, mode os.FileMode, force bool) error {
	if path == "-" {
		_, err := a.stdout.Write(data)
		return err
	}
	if force {
		return safeio.WriteFile(path, data, mode)
	}
	if err := safeio.WriteNew(path, data, mode); err != nil {
		if errors.Is(err, safeio.ErrExists) {
			return fmt.Errorf("%s exists already (it was created meanwhile): remove it, choose another name, or add --force to replace it", path)
		}
		return err
	}
	return nil
}

func (a *app) stdoutIsTerminal() bool { return term.IsTerminal(int(a.stdout.Fd())) }
