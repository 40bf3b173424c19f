package shell

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"certrelay/internal/admin"
	"certrelay/internal/safeio"
	"certrelay/internal/trace"
)

// Running a registry cmdlet: the line's parameters and values are bound
// to the operation's parameters as PowerShell binds them — named ones by
// name or unambiguous prefix, the rest by position, the piped object's
// properties last — then the operation is called through admin.Call.

// common are the parameters every cmdlet that changes something takes,
// beside its own (PowerShell's ShouldProcess).
var common = []string{"WhatIf", "Confirm"}

// bound is one command line bound to an operation.
type bound struct {
	op     *admin.Operation
	params admin.Params
	whatIf bool
	// confirm: -Confirm or -Confirm:$true (ask before running);
	// noConfirm: -Confirm:$false (answer the operation's questions yes).
	confirm, noConfirm bool
	// out is the file an operation that hands over a file writes
	// (-Path, -FileName, -RequestFile); force replaces it.
	out   string
	force bool
}

// changes reports whether op changes something (it takes -WhatIf and
// -Confirm): every cmdlet but Get- and Test-.
func changes(op *admin.Operation) bool {
	return !strings.HasPrefix(op.Cmdlet, "Get-") && !strings.HasPrefix(op.Cmdlet, "Test-")
}

// dataParam returns op's file-content parameter, if it has one.
func dataParam(op *admin.Operation) *admin.Param {
	for i := range op.Params {
		if op.Params[i].Type.Kind == admin.KindData {
			return &op.Params[i]
		}
	}
	return nil
}

// paramNames are the names a command line of op may use: the
// operation's, the common ones, and the shell's file parameters.
func paramNames(op *admin.Operation) []string {
	var names []string
	for _, p := range op.Params {
		names = append(names, p.Name)
	}
	if changes(op) {
		names = append(names, common...)
	}
	if op.File || dataParam(op) != nil {
		if op.Param("Path") == nil {
			names = append(names, "Path")
		}
	}
	if op.File {
		for _, n := range []string{"FileName", "RequestFile", "Force"} {
			if op.Param(n) == nil {
				names = append(names, n)
			}
		}
	}
	return names
}

// resolveParam finds the parameter a line names: exactly, or by an
// unambiguous prefix, as PowerShell does.
func resolveParam(cmdlet string, names []string, given string, pos Pos) (string, error) {
	var matches []string
	for _, n := range names {
		if strings.EqualFold(n, given) {
			return n, nil
		}
		if len(given) > 0 && strings.HasPrefix(strings.ToLower(n), strings.ToLower(given)) {
			matches = append(matches, n)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", &cmdError{cmd: cmdlet, usage: true, pos: &pos, msg: fmt.Sprintf("A parameter cannot be found that matches parameter name '%s'. Its parameters: -%s (Get-Help %s -Full).",
			given, strings.Join(names, ", -"), cmdlet)}
	}
	return "", &cmdError{cmd: cmdlet, usage: true, pos: &pos, msg: fmt.Sprintf("Parameter cannot be processed because the parameter name '%s' is ambiguous. Possible matches include: -%s.",
		given, strings.Join(matches, " -"))}
}

// given is one parameter as written on the line.
type given struct {
	name  string
	value any // evaluated: string, []any, bool, nil, secret, []byte, *Object
	lit   bool
	pos   Pos
	set   bool // a switch or Boolean given without a value
}

// runCmdlet runs a cmdlet of the registry once, or once per piped
// object.
func (s *Shell) runCmdlet(ctx context.Context, c *Command, ops []*admin.Operation, in stream, first bool) (stream, error) {
	inputs := []*Object{nil}
	if !first {
		inputs = in.objs
	}
	var out stream
	all := new(toAll) // "Yes to All" / "No to All" for the rest of the pipeline
	for _, obj := range inputs {
		res, err := s.runOnce(ctx, c, ops, obj, all)
		if err != nil {
			return stream{}, err
		}
		if res == nil {
			continue
		}
		objs, list := objectsOf(res.Data)
		out.objs = append(out.objs, objs...)
		out.list = out.list || list
	}
	return out, nil
}

// runOnce binds the line (and a piped object) and calls the operation.
func (s *Shell) runOnce(ctx context.Context, c *Command, ops []*admin.Operation, obj *Object, all *toAll) (*admin.Result, error) {
	b, err := s.bind(ctx, c, ops, obj)
	if err != nil {
		return nil, err
	}
	op := b.op
	fail := func(err error) error { return s.opError(c, op, err) }
	if *all == noToAll {
		return nil, nil
	}
	if b.confirm && !b.whatIf && *all != yesToAll {
		yes, err := s.confirm(op.Cmdlet, fmt.Sprintf("Performing the operation %q on target %q.", op.Cmdlet, target(op, b.params)), all)
		if err != nil {
			return nil, &cmdError{cmd: op.Cmdlet, msg: err.Error(), pos: &c.Pos}
		}
		if !yes {
			fmt.Fprintf(s.Err, "%s: not run (answered no); nothing was changed.\n", op.Cmdlet)
			return nil, nil
		}
	}
	req := admin.Request{Op: op.Name, Caller: s.Caller, Params: b.params, WhatIf: b.whatIf}
	if op.Streams { // Watch-CertrelayTrace: each record as it comes, until interrupted
		req.Stream = func(v any) error {
			if r, ok := v.(trace.Record); ok {
				_, err := fmt.Fprintf(s.Out, "%s %s [%s] %s: %s\n", r.Time.Format("15:04:05.000"), r.Server, r.Component, r.Tag, r.Summary)
				return err
			}
			_, err := fmt.Fprintln(s.Out, v)
			return err
		}
	}
	if op.File && b.out != "" && !b.whatIf {
		path := b.out
		if err := s.Admin.CheckOutputPath(path, b.force); err != nil {
			if errors.Is(err, admin.ErrOutputExists) {
				return nil, &cmdError{cmd: op.Cmdlet, msg: fmt.Sprintf("%v: remove it, choose another name, or add -Force to replace it", errors.Unwrap(err)), err: err}
			}
			return nil, fail(err)
		}
		req.Deliver = func(_ context.Context, f admin.File) (string, error) {
			mode := os.FileMode(0o644)
			if f.Secret {
				mode = 0o600
			}
			if b.force {
				return path, safeio.WriteFile(path, f.Data, mode)
			}
			return path, safeio.WriteNew(path, f.Data, mode)
		}
	}
	res, no, err := s.callAsking(ctx, c, op, req, all)
	if err != nil && no && admin.KindOf(err) == admin.Cancelled {
		fmt.Fprintf(s.Err, "%s: not done (answered no); nothing was changed.\n", op.Cmdlet)
		return nil, nil
	}
	if err != nil {
		return nil, fail(err)
	}
	if res == nil {
		return nil, nil
	}
	if res.WhatIf {
		fmt.Fprintf(s.Err, "What if: %s on target %q — nothing was changed. It would return:\n", op.Cmdlet, target(op, b.params))
		if res.File != nil && b.out != "" {
			fmt.Fprintf(s.Err, "What if: it would write %s (%s, %d bytes).\n", b.out, res.File.Format, len(res.File.Data))
		}
	}
	for _, m := range res.Messages {
		text := admin.Render(m.Text, op, admin.CmdletSyntax{})
		switch m.Level {
		case admin.Warning:
			fmt.Fprintln(s.Err, "WARNING: "+text)
		default:
			fmt.Fprintln(s.Err, text)
		}
	}
	if op.File && b.out != "" && !res.WhatIf {
		fmt.Fprintf(s.Err, "Wrote %s.\n", b.out)
	}
	if op.Name == "Export-ExchangeCertificate" && b.out == "" && res.File != nil {
		// No file named: the certificate is the output, as text.
		fmt.Fprint(s.Out, string(res.File.Data))
		return nil, nil
	}
	return res, nil
}

// target names what an operation acts on, for -Confirm and -WhatIf.
func target(op *admin.Operation, p admin.Params) string {
	for _, n := range []string{"Thumbprint", "Identity", "Name", "Instance", "DomainName"} {
		if v, ok := p[n]; ok {
			return text(v)
		}
	}
	return "this server"
}

// callAsking calls the operation; a question is asked as PowerShell
// asks for confirmation, a missing password as Get-Credential would.
func (s *Shell) callAsking(ctx context.Context, c *Command, op *admin.Operation, req admin.Request, all *toAll) (res *admin.Result, answeredNo bool, err error) {
	for {
		res, err = s.Admin.Call(ctx, req)
		var cr *admin.ConfirmationRequired
		if errors.As(err, &cr) {
			q := admin.Render(cr.Question, op, admin.CmdletSyntax{})
			for _, d := range cr.Details {
				if !strings.Contains(q, d.Value) {
					q += fmt.Sprintf("\n  %s: %s", d.Name, d.Value)
				}
			}
			if cr.IfNo != "" {
				q += "\nIf you answer no: " + admin.Render(cr.IfNo, op, admin.CmdletSyntax{})
			}
			yes := *all == yesToAll
			if *all == ask {
				if yes, err = s.confirm(op.Cmdlet, q, all); err != nil {
					return nil, false, &cmdError{cmd: op.Cmdlet, msg: err.Error(), pos: &c.Pos, kind: admin.Cancelled}
				}
			}
			answeredNo = answeredNo || !yes
			req.Answer = &admin.Answer{Token: cr.Token, Yes: yes}
			continue
		}
		var e *admin.Error
		if errors.As(err, &e) {
			if p := op.Param(e.Field); p != nil && p.Type.Kind == admin.KindSecret && p.Prompt != "" && req.Params[p.Name] == nil && s.Ask != nil {
				pw, aerr := s.Ask.Secret(p.Prompt + ": ")
				if aerr == nil {
					req.Params[p.Name] = pw
					continue
				}
			}
		}
		return res, answeredNo, err
	}
}

// toAll is an answer for the rest of a pipeline.
type toAll int

const (
	ask toAll = iota
	yesToAll
	noToAll
)

// confirm asks PowerShell's confirmation question; "A" and "L" answer
// the rest of the pipeline too.
func (s *Shell) confirm(cmdlet, question string, all *toAll) (bool, error) {
	if s.Ask == nil {
		return false, fmt.Errorf("this needs a confirmation and there is no terminal to ask: add -Confirm:$false (or -Force) to answer yes. The question was: %s", strings.ReplaceAll(question, "\n", " "))
	}
	prompt := "Confirm\nAre you sure you want to perform this action?\n" + question + "\n[Y] Yes  [A] Yes to All  [N] No  [L] No to All  [?] Help (default is \"Y\"): "
	for {
		line, err := s.Ask.Line(prompt)
		if err != nil {
			return false, fmt.Errorf("no answer (%v): nothing was changed", err)
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "", "y", "yes":
			return true, nil
		case "a":
			*all = yesToAll
			return true, nil
		case "l":
			*all = noToAll
			return false, nil
		case "n", "no":
			return false, nil
		case "?":
			prompt = "Y - Continue with only the next step of the operation.\nA - Continue with all the steps of the operation.\nN - Skip this operation and proceed with the next operation.\nL - Skip this operation and all subsequent operations.\n[Y] Yes  [A] Yes to All  [N] No  [L] No to All  [?] Help (default is \"Y\"): "
		default:
			prompt = "[Y] Yes  [A] Yes to All  [N] No  [L] No to All  [?] Help (default is \"Y\"): "
		}
	}
}

// opError writes an operation's error as PowerShell's error record:
// "Cmdlet : Cannot bind parameter 'P' …" for a parameter the call got
// wrong, "Cmdlet : message" for a refusal.
func (s *Shell) opError(c *Command, op *admin.Operation, err error) error {
	var e *admin.Error
	if !errors.As(err, &e) {
		var ce *cmdError
		if errors.As(err, &ce) {
			return err
		}
		return &cmdError{cmd: op.Cmdlet, msg: err.Error(), err: err}
	}
	msg := e.Render(admin.CmdletSyntax{})
	pos := &c.Pos
	if e.Field != "" && (e.Usage || e.Kind == admin.Invalid) {
		head := fmt.Sprintf("Cannot bind parameter '%s'", e.Field)
		if e.Value != "" {
			head += fmt.Sprintf(" to the value '%s'", e.Value)
		}
		msg = head + ". " + msg
		for _, el := range c.Elems {
			if el.Param != "" && strings.EqualFold(el.Param, e.Field) {
				p := el.Pos
				pos = &p
			}
		}
	}
	return &cmdError{cmd: op.Cmdlet, msg: msg, pos: pos, usage: e.Usage, kind: e.Kind, err: err}
}

// secretHelp says how a password may be given.
const secretHelp = "Give it as -Password (Get-Credential).Password or (Read-Host -AsSecureString) to be asked, or as (Get-Content FILE | ConvertTo-SecureString -AsPlainText -Force) to read it from a file."
