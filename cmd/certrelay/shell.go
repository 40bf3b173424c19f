package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"certrelay/internal/admin"
	"certrelay/internal/shell"
)

// exitError ends the CLI with a status after its message was written
// (the shell reports its own errors).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// shellCommand is certrelay shell: the cmdlet shell (internal/shell), a
// second face of the operation registry. With -c it runs the commands
// given, with -f those of a file; otherwise it reads them from the
// terminal (line editing, history, completion) or, without one, from
// standard input. The exit status is 0 when every command succeeded, 2
// when a line was written wrongly, 1 when a command failed.
func (a *app) shellCommand() *cobra.Command {
	var commands, file string
	cmd := &cobra.Command{
		Use:   "shell [-c 'COMMANDS'] [-f FILE]",
		Short: "The cmdlet shell: run the seeds' Exchange Management Shell commands as written (SPEC I4)",
		Long: `The cmdlet shell runs Exchange Management Shell command lines — those the seed
documents show — as written, against the data directory:

  certrelay shell -c 'Get-ExchangeCertificate | fl *'
  certrelay shell -c 'Get-EventLogLevel -Identity msexchangetransport\* | Set-EventLogLevel -Level Expert'
  certrelay shell -f renew.ps1
  certrelay shell            (interactive: Get-Help, Get-Command, Tab completion, history)

Every cmdlet is an operation of the CLI's (certrelay cert …); Get-Command lists
them. A failed command stops the commands after it. Questions are asked on the
terminal; without one, -Confirm:$false (or -Force) answers them, and passwords
are read from files: -Password (Get-Content FILE | ConvertTo-SecureString -AsPlainText -Force).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if commands != "" && file != "" {
				return usagef("give -c or -f, not both")
			}
			script := commands
			if file != "" {
				data, err := os.ReadFile(file)
				if err != nil {
					return usagef("read the script: %v", err)
				}
				script = string(data)
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				sh := &shell.Shell{Admin: ad, Caller: cliCaller(), Out: a.stdout, Err: a.stderr}
				tty := term.IsTerminal(int(a.stdin.Fd()))
				if tty {
					sh.Ask = &terminalAsker{a: a}
				}
				var err error
				switch {
				case cmd.Flags().Changed("command") || file != "":
					err = sh.Run(cmd.Context(), script)
				case tty:
					err = sh.Interactive(cmd.Context(), shell.Session{
						History: filepath.Join(a.dataDir, "shell_history"),
						Prompt:  "[PS] " + serverName(cmd, ad) + "> ",
						Stdin:   a.stdin,
					})
					if err != nil {
						return err
					}
				default:
					r := bufio.NewReader(a.stdin)
					sh.Ask = &shell.ReaderAsker{R: r, W: a.stderr}
					err = sh.RunReader(cmd.Context(), r)
				}
				if err == nil && sh.Exited() && sh.ExitCode != 0 {
					return exitError{sh.ExitCode}
				}
				var f *shell.Failure
				if errors.As(err, &f) {
					if f.Usage {
						return exitError{2}
					}
					return exitError{1}
				}
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&commands, "command", "c", "", "run these commands (separated by ';' or line breaks) and exit")
	cmd.Flags().StringVarP(&file, "file", "f", "", "run the commands of this file and exit")
	return cmd
}

func serverName(cmd *cobra.Command, ad *admin.Admin) string {
	if srv, err := ad.LocalServer(cmd.Context()); err == nil && srv.Name != "" {
		return srv.Name
	}
	return "certrelay"
}

// terminalAsker asks on the terminal, for -c and -f run from one.
type terminalAsker struct{ a *app }

func (t *terminalAsker) Line(prompt string) (string, error) {
	fmt.Fprint(t.a.stderr, prompt)
	line, err := bufio.NewReader(t.a.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (t *terminalAsker) Secret(prompt string) (string, error) {
	pw, ok := t.a.promptSecret(prompt)
	if !ok {
		return "", errors.New("no password was read")
	}
	return pw, nil
}
