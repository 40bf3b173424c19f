package admin

import (
	"fmt"
	"strings"
)

// Texts that people read — errors and their fixes, messages, questions,
// help — are written once for every face. Where a text names an
// operation or a parameter, it marks the reference, and each face renders
// it in its own syntax: the CLI as `certrelay cert new --domain`, the
// cmdlet shell as `New-ExchangeCertificate -DomainName`. The marks:
//
//	{-Param}          a parameter of the operation at hand
//	{Op#Param}        a parameter of another operation
//	{Op}              an operation
//	{Op arg -P v …}   a command line: values (positional) and parameters,
//	                  each parameter but a switch followed by its value;
//	                  a value with spaces is quoted '…' ('' for a quote)
//	{{ and }}         literal braces
//
// Op is an operation's Name (see Operation). Texts are built with msgf,
// which escapes the values it formats, so a value — a subject name, a
// file name — is never read as a mark.

// Syntax renders references for one face. Implementations must accept
// every operation and parameter of the registry.
type Syntax interface {
	// Operation names an operation: "certrelay cert list".
	Operation(op *Operation) string
	// Parameter names a parameter of op: "--domain".
	Parameter(op *Operation, p *Param) string
	// Command writes a command line of op with args.
	Command(op *Operation, args []Arg) string
}

// Arg is one element of a command line in a text: a parameter with its
// value (Value "" for a switch), or a positional value (Param nil).
type Arg struct {
	Param *Param
	Value string
}

// CmdletSyntax renders references as the cmdlet shell writes them; it is
// the syntax of Error.Error and of texts rendered without a face.
type CmdletSyntax struct{}

// Operation implements Syntax.
func (CmdletSyntax) Operation(op *Operation) string { return op.Cmdlet }

// Parameter implements Syntax.
func (CmdletSyntax) Parameter(_ *Operation, p *Param) string { return "-" + p.Name }

// Command implements Syntax.
func (s CmdletSyntax) Command(op *Operation, args []Arg) string {
	parts := []string{op.Cmdlet}
	for _, a := range args {
		if a.Param != nil {
			parts = append(parts, "-"+a.Param.Name)
			if a.Param.Type.Kind == KindBool {
				continue
			}
		}
		parts = append(parts, quotePS(a.Value))
	}
	return strings.Join(parts, " ")
}

// quotePS quotes a value for PowerShell when it needs it.
func quotePS(v string) string {
	if v != "" && !strings.HasPrefix(v, "-") && !strings.ContainsAny(v, " \t'\"$`;|&(){}<>,") {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// Render renders text (with marks) for a face: references resolve against
// op (nil when there is no operation at hand) and the registry.
// References the registry does not know are left as written.
func Render(text string, op *Operation, s Syntax) string {
	if s == nil {
		s = CmdletSyntax{}
	}
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '{' && i+1 < len(text) && text[i+1] == '{':
			b.WriteByte('{')
			i++
		case c == '}' && i+1 < len(text) && text[i+1] == '}':
			b.WriteByte('}')
			i++
		case c == '{':
			end := markEnd(text, i+1)
			if end < 0 {
				b.WriteString(text[i:])
				return b.String()
			}
			b.WriteString(renderMark(text[i+1:end], op, s))
			i = end
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unresolvedMarks returns the marks of text the registry does not know,
// and an error text when a brace is left open (for tests of the
// declarations).
func unresolvedMarks(text string, op *Operation) []string {
	var out []string
	for i := 0; i < len(text); i++ {
		switch {
		case text[i] == '{' && i+1 < len(text) && text[i+1] == '{', text[i] == '}' && i+1 < len(text) && text[i+1] == '}':
			i++
		case text[i] == '{':
			end := markEnd(text, i+1)
			if end < 0 {
				return append(out, "unclosed: "+text[i:])
			}
			if _, _, _, ok := resolveMark(text[i+1:end], op); !ok {
				out = append(out, text[i+1:end])
			}
			i = end
		}
	}
	return out
}

// markEnd finds the brace that closes a mark starting at i, skipping
// quoted values; -1 when there is none.
func markEnd(text string, i int) int {
	quoted := false
	for ; i < len(text); i++ {
		switch {
		case text[i] == '\'' && quoted && i+1 < len(text) && text[i+1] == '\'':
			i++
		case text[i] == '\'':
			quoted = !quoted
		case text[i] == '}' && !quoted:
			return i
		}
	}
	return -1
}

// renderMark renders the inside of one mark.
func renderMark(mark string, at *Operation, s Syntax) string {
	op, p, args, ok := resolveMark(mark, at)
	switch {
	case !ok:
		return mark
	case p != nil:
		return s.Parameter(op, p)
	case args != nil:
		return s.Command(op, args)
	}
	return s.Operation(op)
}

// resolveMark finds what a mark names; ok is false when the registry
// does not know it.
func resolveMark(mark string, at *Operation) (op *Operation, p *Param, args []Arg, ok bool) {
	if strings.HasPrefix(mark, "-") {
		if at == nil {
			return nil, nil, nil, false
		}
		p := at.Param(mark[1:])
		return at, p, nil, p != nil
	}
	if name, param, found := strings.Cut(mark, "#"); found {
		op := Lookup(name)
		if op == nil {
			return nil, nil, nil, false
		}
		p := op.Param(param)
		return op, p, nil, p != nil
	}
	tokens := splitMark(mark)
	if len(tokens) == 0 {
		return nil, nil, nil, false
	}
	op = Lookup(tokens[0].text)
	if op == nil {
		return nil, nil, nil, false
	}
	if len(tokens) == 1 {
		return op, nil, nil, true
	}
	args = []Arg{}
	for i := 1; i < len(tokens); i++ {
		t := tokens[i]
		if t.quoted || !strings.HasPrefix(t.text, "-") {
			args = append(args, Arg{Value: t.text})
			continue
		}
		p := op.Param(t.text[1:])
		if p == nil && op.File && strings.EqualFold(t.text[1:], outputFile.Name) {
			p = outputFile
		}
		if p == nil {
			return nil, nil, nil, false
		}
		a := Arg{Param: p}
		if p.Type.Kind != KindBool && i+1 < len(tokens) {
			i++
			a.Value = tokens[i].text
		}
		args = append(args, a)
	}
	return op, nil, args, true
}

// outputFile is where an operation that hands a file to its caller
// (Operation.File) has it written, as its faces name it: the shell's
// -FileName (Exchange's), the CLI's --out. It is no parameter of the
// operation (the face writes the file), but a command mark may name it,
// so that a fix diagnose prints can be run as it is.
var outputFile = &Param{Name: "FileName", CLI: "out", Type: TypeString}

type token struct {
	text   string
	quoted bool
}

// splitMark splits a command mark into tokens at spaces, reading '…'
// as one quoted value.
func splitMark(s string) []token {
	var out []token
	for i := 0; i < len(s); {
		switch {
		case s[i] == ' ':
			i++
		case s[i] == '\'':
			var b strings.Builder
			i++
			for i < len(s) {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			out = append(out, token{b.String(), true})
		default:
			j := strings.IndexByte(s[i:], ' ')
			if j < 0 {
				j = len(s) - i
			}
			out = append(out, token{s[i : i+j], false})
			i += j
		}
	}
	return out
}

// markup is text that already holds marks: msgf inserts it as it is.
type markup string

// msgf formats a text with marks: format is written by us and may hold
// marks; every argument is escaped, so values are never read as marks,
// except markup (cmd, ref), which is inserted as it is.
func msgf(format string, args ...any) string {
	wrapped := make([]any, len(args))
	for i, a := range args {
		if m, ok := a.(markup); ok {
			wrapped[i] = string(m)
			continue
		}
		wrapped[i] = escaped{a}
	}
	return fmt.Sprintf(format, wrapped...)
}

// escaped formats a value as its verb says, then escapes braces.
type escaped struct{ v any }

func (e escaped) Format(f fmt.State, verb rune) {
	s := fmt.Sprintf(fmt.FormatString(f, verb), e.v)
	_, _ = f.Write([]byte(escapeMarks(s)))
}

// escapeMarks makes s literal text: its braces are not marks.
func escapeMarks(s string) string {
	if !strings.ContainsAny(s, "{}") {
		return s
	}
	return strings.NewReplacer("{", "{{", "}", "}}").Replace(s)
}

// cmd writes a command-line mark: op, then args — values, and parameters
// written "-Name" (a parameter that is not a switch takes the next arg
// as its value). Values are quoted as needed.
func cmd(op string, args ...string) markup {
	var b strings.Builder
	b.WriteString("{" + op)
	for i, a := range args {
		b.WriteByte(' ')
		isParam := strings.HasPrefix(a, "-") && (i == 0 || !strings.HasPrefix(args[i-1], "-") || isSwitch(op, args[i-1]))
		if isParam || (a != "" && !strings.HasPrefix(a, "-") && !strings.ContainsAny(a, " '{}")) {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", "''") + "'")
	}
	b.WriteByte('}')
	return markup(b.String())
}

// isSwitch reports whether "-Name" is a switch of operation op.
func isSwitch(op, param string) bool {
	o := Lookup(op)
	if o == nil {
		return false
	}
	p := o.Param(strings.TrimPrefix(param, "-"))
	return p != nil && p.Type.Kind == KindBool
}

// CLISyntax renders references as the CLI writes them: `certrelay cert
// new --domain`. Texts that travel as data to every face — the fixes
// diagnose prints — are rendered with it for the CLI and with
// CmdletSyntax for the shell.
type CLISyntax struct{}

// Operation implements Syntax.
func (CLISyntax) Operation(op *Operation) string { return "certrelay " + op.CLI }

// Parameter implements Syntax.
func (CLISyntax) Parameter(_ *Operation, p *Param) string {
	if p.Position > 0 {
		return p.CLI
	}
	return "--" + p.CLI
}

// Command implements Syntax.
func (CLISyntax) Command(op *Operation, args []Arg) string {
	parts := []string{"certrelay", op.CLI}
	for _, a := range args {
		if a.Param == nil || a.Param.Position > 0 {
			parts = append(parts, ShellQuote(a.Value))
			continue
		}
		parts = append(parts, "--"+a.Param.CLI)
		if a.Param.Type.Kind != KindBool && a.Value != "" {
			parts = append(parts, ShellQuote(a.Value))
		}
	}
	return strings.Join(parts, " ")
}

// ShellQuote quotes a value for a POSIX shell when it needs it.
func ShellQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n'\"$`\\;|&()<>*?[]#~{}!") {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
