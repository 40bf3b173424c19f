package shell

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"certrelay/internal/admin"
)

// Get-Help and Get-Command, made from the registry's declarations: a
// cmdlet's syntax, parameters, summary and description are the
// operation's own.

// syntax writes a cmdlet's syntax line for an operation.
func syntax(op *admin.Operation) string {
	parts := []string{op.Cmdlet}
	for _, p := range op.Positional() {
		arg := fmt.Sprintf("[-%s] <%s>", p.Name, p.Type.Name)
		if p.Type.Kind == admin.KindData {
			arg = fmt.Sprintf("[-%s] <%s> | -Path FILE", p.Name, p.Type.Name)
		}
		if !p.Required {
			arg = "[" + arg + "]"
		}
		parts = append(parts, arg)
	}
	for i := range op.Params {
		p := &op.Params[i]
		if p.Position > 0 || p.Hidden {
			continue
		}
		var arg string
		switch p.Type.Kind {
		case admin.KindBool:
			arg = "-" + p.Name
		case admin.KindData:
			arg = fmt.Sprintf("-%s <%s> | -Path FILE", p.Name, p.Type.Name)
		case admin.KindSecret:
			arg = fmt.Sprintf("-%s (Get-Credential).Password", p.Name)
		default:
			arg = fmt.Sprintf("-%s <%s>", p.Name, p.Type.Name)
		}
		if op.Set == p.Name {
			parts = append(parts, arg)
			continue
		}
		if !p.Required {
			arg = "[" + arg + "]"
		}
		parts = append(parts, arg)
	}
	if op.File {
		parts = append(parts, "[-Path FILE] [-Force]")
	}
	if changes(op) {
		parts = append(parts, "[-WhatIf] [-Confirm]")
	}
	return strings.Join(parts, " ")
}

func getHelp(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, []string{"Full", "Detailed", "Examples"}, []string{"Name", "Parameter"})
	if err != nil {
		return stream{}, err
	}
	name := ""
	if n, ok := a.named["Name"]; ok {
		name = text(n)
	} else if len(a.pos) > 0 {
		name = text(a.pos[0])
	}
	w := s.Out
	if name == "" {
		fmt.Fprint(w, generalHelp)
		return stream{}, nil
	}
	full := a.named["Full"] == true || a.named["Detailed"] == true
	target := canonical(name)
	if b, ok := builtins[strings.ToLower(target)]; ok {
		fmt.Fprintf(w, "\nNAME\n    %s\n\nSYNOPSIS\n    %s\n\nSYNTAX\n    %s\n\n", b.name, b.summary, b.syntax)
		return stream{}, nil
	}
	ops := cmdletOps(target)
	if len(ops) == 0 {
		if why, ok := planned[strings.ToLower(target)]; ok {
			fmt.Fprintf(w, "\nNAME\n    %s\n\n    Not available yet: %s\n\n", target, why)
			return stream{}, nil
		}
		msg := fmt.Sprintf("Get-Help could not find %s.", name)
		if sug := suggest(name); sug != "" {
			msg += " Did you mean " + sug + "?"
		}
		return stream{}, &cmdError{cmd: "Get-Help", pos: &c.cmd.Pos, msg: msg + " Get-Command lists the cmdlets."}
	}
	if pn, ok := a.named["Parameter"]; ok {
		found := false
		for _, op := range ops {
			for i := range op.Params {
				p := &op.Params[i]
				if ok, _ := path.Match(strings.ToLower(text(pn)), strings.ToLower(p.Name)); !ok || p.Hidden || found && op.Set != "" {
					continue
				}
				found = true
				writeParam(w, op, p)
			}
		}
		if !found {
			return stream{}, &cmdError{cmd: "Get-Help", pos: &c.cmd.Pos, msg: fmt.Sprintf("No parameter matches the name %s.", text(pn))}
		}
		return stream{}, nil
	}
	fmt.Fprintf(w, "\nNAME\n    %s\n\nSYNOPSIS\n    %s\n\nSYNTAX\n", ops[0].Cmdlet, admin.Render(ops[0].Summary, ops[0], admin.CmdletSyntax{}))
	for _, op := range ops {
		fmt.Fprintf(w, "    %s\n\n", syntax(op))
	}
	fmt.Fprintln(w, "DESCRIPTION")
	for _, op := range ops {
		d := admin.Render(op.Summary, op, admin.CmdletSyntax{})
		if op.Description != "" {
			d = admin.Render(op.Description, op, admin.CmdletSyntax{})
		}
		if op.Set != "" {
			fmt.Fprintf(w, "    With -%s:\n", op.Set)
		}
		for _, line := range strings.Split(strings.TrimSpace(d), "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
		fmt.Fprintln(w)
	}
	if full {
		fmt.Fprintln(w, "PARAMETERS")
		seen := map[string]bool{}
		for _, op := range ops {
			for i := range op.Params {
				p := &op.Params[i]
				if p.Hidden || seen[p.Name] {
					continue
				}
				seen[p.Name] = true
				writeParam(w, op, p)
			}
		}
		if changes(ops[0]) {
			fmt.Fprint(w, "    -WhatIf\n        Run it to the end and undo everything: say what it would do, change nothing.\n\n")
			fmt.Fprint(w, "    -Confirm [<bool>]\n        -Confirm asks before running; -Confirm:$false answers its questions yes (as -Force).\n\n")
		}
	} else {
		fmt.Fprintf(w, "REMARKS\n    For the parameters, type: Get-Help %s -Full\n\n", ops[0].Cmdlet)
	}
	if ops[0].Role > admin.ViewOnly {
		fmt.Fprintf(w, "    Needs the %s role.\n\n", ops[0].Role)
	}
	return stream{}, nil
}

func writeParam(w interface{ Write([]byte) (int, error) }, op *admin.Operation, p *admin.Param) {
	head := fmt.Sprintf("    -%s <%s>", p.Name, p.Type.Name)
	if p.Type.Kind == admin.KindBool {
		head = "    -" + p.Name + " [<SwitchParameter>]"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintf(w, "        %s\n", admin.Render(p.Help, op, admin.CmdletSyntax{}))
	var facts []string
	if p.Required {
		facts = append(facts, "Required")
	}
	if p.Position > 0 {
		facts = append(facts, fmt.Sprintf("Position %d", p.Position))
	}
	if p.Default != "" {
		facts = append(facts, "Default "+p.Default)
	}
	if len(p.Type.Values) > 0 {
		facts = append(facts, "Values "+strings.Join(p.Type.Values, ", "))
	}
	if p.Pipe != "" {
		facts = append(facts, "From the pipeline: the piped object's "+p.Pipe)
	} else if p.Position > 0 {
		facts = append(facts, "From the pipeline: the piped object's "+p.Name)
	}
	if len(p.Excludes) > 0 {
		facts = append(facts, "Not with -"+strings.Join(p.Excludes, ", -"))
	}
	if len(facts) > 0 {
		fmt.Fprintf(w, "        (%s)\n", strings.Join(facts, "; "))
	}
	fmt.Fprintln(w)
}

const generalHelp = `
certrelay's cmdlet shell runs Exchange Management Shell command lines as the
seed documents write them, against this server's data directory:

    Get-ExchangeCertificate | fl *
    Enable-ExchangeCertificate -Thumbprint <thumbprint> -Services:SMTP
    Get-ExchangeCertificate <thumbprint> | New-ExchangeCertificate -Services SMTP,POP,IMAP
    Import-ExchangeCertificate -Path C:\CertificateFile.cer | Enable-ExchangeCertificate -Services:"POP"
    Get-EventLogLevel -Identity msexchangetransport\* | Set-EventLogLevel -Level Expert
    Get-ExchangeCertificate | Where-Object { $_.Services -match 'SMTP' } | ft

Get-Command lists the cmdlets, Get-Help CMDLET shows one (-Full for its
parameters). Tab completes cmdlet and parameter names; Up and Down walk the
history; Ctrl-C abandons the line or the running command; exit leaves.

Windows paths (C:\CertRequest.req) are local file names in the working
directory. Passwords are asked for, never written on the line:
-Password (Get-Credential).Password. -WhatIf shows what a command would do
without doing it; -Confirm:$false answers its questions yes.

`

// commandInfo is one line of Get-Command.
type commandInfo struct {
	CommandType string
	Name        string
	Synopsis    string
}

func getCommand(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, nil, []string{"Name", "Verb", "Noun"})
	if err != nil {
		return stream{}, err
	}
	pattern := "*"
	if n, ok := a.named["Name"]; ok {
		pattern = text(n)
	} else if len(a.pos) > 0 {
		pattern = text(a.pos[0])
	}
	verb, noun := "*", "*"
	if v, ok := a.named["Verb"]; ok {
		verb = text(v)
	}
	if v, ok := a.named["Noun"]; ok {
		noun = text(v)
	}
	match := func(name string) bool {
		v, n, _ := strings.Cut(name, "-")
		m1, _ := path.Match(strings.ToLower(pattern), strings.ToLower(name))
		m2, _ := path.Match(strings.ToLower(verb), strings.ToLower(v))
		m3, _ := path.Match(strings.ToLower(noun), strings.ToLower(n))
		return m1 && m2 && m3
	}
	var rows []commandInfo
	seen := map[string]bool{}
	for _, op := range admin.Operations() {
		if seen[op.Cmdlet] || !match(op.Cmdlet) {
			continue
		}
		seen[op.Cmdlet] = true
		base := cmdletOps(op.Cmdlet)[0]
		rows = append(rows, commandInfo{"Cmdlet", op.Cmdlet, admin.Render(base.Summary, base, admin.CmdletSyntax{})})
	}
	for _, b := range builtins {
		if match(b.name) {
			rows = append(rows, commandInfo{"Function", b.name, b.summary})
		}
	}
	for al, target := range aliases {
		if match(al) {
			rows = append(rows, commandInfo{"Alias", al + " -> " + target, ""})
		}
	}
	if len(rows) == 0 {
		return stream{}, &cmdError{cmd: "Get-Command", pos: &c.cmd.Pos, msg: fmt.Sprintf("The term '%s' is not recognized as the name of a cmdlet.", pattern)}
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].CommandType != rows[j].CommandType {
			return rows[i].CommandType > rows[j].CommandType
		}
		return rows[i].Name < rows[j].Name
	})
	var out stream
	for _, r := range rows {
		out.objs = append(out.objs, newObject(r))
	}
	return out, nil
}
