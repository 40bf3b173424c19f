package shell

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The PowerShell subset of SPEC I4, as the seeds write it: statements
// separated by ';' or line ends, pipelines of commands separated by '|',
// each command a name and its arguments — parameters (-Name, -Name:value,
// with the en dash, em dash or horizontal bar the documents sometimes
// print for '-'), bare words, 'single' and "double" quoted strings (with
// the typographic quotes the documents print, '' and "" and backtick
// escapes), $True, $False, $null, $_ and its properties, comma lists,
// ( … ) subexpressions with .Property after them, { … } script blocks
// (Where-Object), # and <# … #> comments, and backtick line continuation.

// Script is a parsed text: its statements in order.
type Script struct {
	Statements []*Pipeline
}

// Pipeline is one statement: commands connected by '|'.
type Pipeline struct {
	Commands []*Command
	// Text is the statement as written (trimmed), Line its first line.
	Text string
	Line int
}

// Command is one command of a pipeline: its name and its elements, in
// order — parameters and values. Which value goes to which parameter is
// decided when the command is bound (a switch takes no value).
type Command struct {
	Name  string
	Pos   Pos
	Elems []*Elem
}

// Elem is a parameter (Param set) or a value.
type Elem struct {
	// Param is the parameter's name without its dash; "" for a value.
	Param string
	// Colon: written -Name:value; Value is then the parameter's value.
	Colon bool
	Value *Value
	Pos   Pos
}

// Pos is where something starts: line and column (1-based, in
// characters), and the byte offset in the text.
type Pos struct {
	Line, Col, Off int
}

// ValueKind says what a value is.
type ValueKind int

// The kinds of values.
const (
	// Word is a bare word (a cmdlet's argument written without quotes).
	Word ValueKind = iota
	// String is a quoted string.
	String
	// Bool is $True or $False.
	Bool
	// Null is $null.
	Null
	// List is a comma list.
	List
	// Var is a variable ($_, $PSItem) with its property path.
	Var
	// Sub is a ( … ) subexpression with its property path.
	Sub
	// Block is a { … } script block.
	Block
)

// Value is a value as written.
type Value struct {
	Kind  ValueKind
	Text  string // Word, String: the text (escapes resolved); Var: the name; Block: the source
	Bool  bool
	Items []*Value // List
	Sub   *Pipeline
	// Members is the property path after a variable or subexpression
	// ($_.Services, (Get-Credential).Password).
	Members []string
	Pos     Pos
	// block is a Block's body, parsed.
	block *Expr
}

// SyntaxError is a parse error, with where it happened.
type SyntaxError struct {
	Msg string
	Pos Pos
	// Incomplete: the text ends inside a string, block, subexpression or
	// after a line continuation; more lines may complete it.
	Incomplete bool
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("At line:%d char:%d: %s", e.Pos.Line, e.Pos.Col, e.Msg)
}

// Dashes the documents print for the hyphen of a parameter: PowerShell
// reads them as '-'.
func isDash(r rune) bool { return r == '-' || r == '–' || r == '—' || r == '―' }

// Quotes: PowerShell reads the typographic single and double quotes as
// ' and ".
func isSingleQuote(r rune) bool {
	return r == '\'' || r == '‘' || r == '’' || r == '‚' || r == '‛'
}
func isDoubleQuote(r rune) bool { return r == '"' || r == '“' || r == '”' || r == '„' }

// Parse parses a script text.
func Parse(text string) (*Script, error) {
	p := &parser{src: text, line: 1, col: 1}
	s := &Script{}
	for {
		p.skipSpaceAndNewlines()
		if p.eof() {
			return s, nil
		}
		if r := p.peek(); r == ';' {
			p.next()
			continue
		}
		pl, err := p.pipeline(0)
		if err != nil {
			return nil, err
		}
		s.Statements = append(s.Statements, pl)
	}
}

type parser struct {
	src       string
	off       int
	line, col int
}

func (p *parser) eof() bool { return p.off >= len(p.src) }

func (p *parser) peek() rune {
	if p.eof() {
		return 0
	}
	r, _ := utf8.DecodeRuneInString(p.src[p.off:])
	return r
}

func (p *parser) peekAt(n int) rune {
	off := p.off
	for i := 0; i < n && off < len(p.src); i++ {
		_, size := utf8.DecodeRuneInString(p.src[off:])
		off += size
	}
	if off >= len(p.src) {
		return 0
	}
	r, _ := utf8.DecodeRuneInString(p.src[off:])
	return r
}

func (p *parser) next() rune {
	r, size := utf8.DecodeRuneInString(p.src[p.off:])
	p.off += size
	if r == '\n' {
		p.line++
		p.col = 1
	} else {
		p.col++
	}
	return r
}

func (p *parser) pos() Pos { return Pos{p.line, p.col, p.off} }

func (p *parser) errorf(at Pos, format string, args ...any) *SyntaxError {
	return &SyntaxError{Msg: fmt.Sprintf(format, args...), Pos: at}
}

func (p *parser) incomplete(at Pos, format string, args ...any) *SyntaxError {
	e := p.errorf(at, format, args...)
	e.Incomplete = true
	return e
}

// skipSpace skips blanks, comments and line continuations (a backtick
// before the line end), not line ends.
func (p *parser) skipSpace() error {
	for !p.eof() {
		r := p.peek()
		switch {
		case r == '\n':
			return nil
		case unicode.IsSpace(r) || r == '\ufeff':
			p.next()
		case r == '`' && (p.peekAt(1) == '\n' || p.peekAt(1) == '\r' && p.peekAt(2) == '\n'):
			p.next()
			if p.peek() == '\r' {
				p.next()
			}
			p.next()
		case r == '`' && p.peekAt(1) == 0:
			return p.incomplete(p.pos(), "the line ends with a line continuation (`): the command goes on on the next line")
		case r == '<' && p.peekAt(1) == '#':
			start := p.pos()
			end := strings.Index(p.src[p.off+2:], "#>")
			if end < 0 {
				return p.incomplete(start, "the comment <# has no closing #>")
			}
			for p.off < start.Off+2+end+2 {
				p.next()
			}
		case r == '#':
			for !p.eof() && p.peek() != '\n' {
				p.next()
			}
		default:
			return nil
		}
	}
	return nil
}

func (p *parser) skipSpaceAndNewlines() {
	for {
		_ = p.skipSpace()
		if p.peek() == '\n' {
			p.next()
			continue
		}
		return
	}
}

// pipeline parses commands separated by '|' up to ';', a line end, the
// end of text, or close (')' or '}') when inside one.
func (p *parser) pipeline(close rune) (*Pipeline, error) {
	start := p.pos()
	pl := &Pipeline{Line: start.Line}
	for {
		if err := p.skipSpace(); err != nil {
			return nil, err
		}
		cmd, err := p.command(close)
		if err != nil {
			return nil, err
		}
		pl.Commands = append(pl.Commands, cmd)
		if err := p.skipSpace(); err != nil {
			return nil, err
		}
		if p.peek() != '|' {
			break
		}
		bar := p.pos()
		p.next()
		if p.peek() == '|' {
			return nil, p.errorf(bar, "'||' is not supported: run the second command on its own line")
		}
		// A pipe may end a line: the pipeline goes on on the next.
		if err := p.skipSpace(); err != nil {
			return nil, err
		}
		if p.peek() == '\n' {
			p.skipSpaceAndNewlines()
		}
		if p.eof() {
			return nil, p.incomplete(bar, "an empty pipe element is not allowed: a command must follow '|'")
		}
		if r := p.peek(); r == ';' || r == '|' || (close != 0 && r == close) {
			return nil, p.errorf(p.pos(), "an empty pipe element is not allowed: a command must follow '|'")
		}
	}
	pl.Text = strings.TrimSpace(p.src[start.Off:p.off])
	return pl, nil
}

// command parses a command name and its elements.
func (p *parser) command(close rune) (*Command, error) {
	at := p.pos()
	if p.eof() || p.peek() == '\n' {
		return nil, p.errorf(at, "a command was expected")
	}
	r := p.peek()
	switch {
	case r == '(' || r == '$' || isSingleQuote(r) || isDoubleQuote(r) || r == '@':
		return nil, p.errorf(at, "a command name was expected here: this shell runs commands (a value alone is not a command)")
	case r == '&':
		return nil, p.errorf(at, "the call operator & is not supported: write the command's name")
	case r == '{' || r == '}' || r == ')' || r == ',' || r == '|' || r == ';':
		return nil, p.errorf(at, "unexpected %q: a command name was expected", r)
	}
	name := p.word()
	cmd := &Command{Name: name, Pos: at}
	for {
		if err := p.skipSpace(); err != nil {
			return nil, err
		}
		if p.eof() {
			return cmd, nil
		}
		r := p.peek()
		if r == '\n' || r == ';' || r == '|' || (close != 0 && r == close) {
			return cmd, nil
		}
		if r == ')' || r == '}' {
			return nil, p.errorf(p.pos(), "unexpected %q: nothing opened it", r)
		}
		if r == '>' || (r == '2' && p.peekAt(1) == '>') {
			return nil, p.errorf(p.pos(), "redirection is not supported: use -Path where the cmdlet writes a file, or Out-File is not available")
		}
		if r == '&' && p.peekAt(1) == '&' {
			return nil, p.errorf(p.pos(), "'&&' is not supported: separate the commands with ';' (a failed command stops the script)")
		}
		if isDash(r) && isParamStart(p.peekAt(1)) {
			el, err := p.param()
			if err != nil {
				return nil, err
			}
			cmd.Elems = append(cmd.Elems, el)
			continue
		}
		v, err := p.listValue(close)
		if err != nil {
			return nil, err
		}
		cmd.Elems = append(cmd.Elems, &Elem{Value: v, Pos: v.Pos})
	}
}

func isParamStart(r rune) bool { return unicode.IsLetter(r) || r == '_' || r == '?' }

// param parses -Name or -Name:value.
func (p *parser) param() (*Elem, error) {
	at := p.pos()
	p.next() // the dash
	var b strings.Builder
	for !p.eof() {
		r := p.peek()
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '?' {
			b.WriteRune(p.next())
			continue
		}
		break
	}
	el := &Elem{Param: b.String(), Pos: at}
	if p.peek() != ':' {
		if r := p.peek(); !p.eof() && !endsWord(r) && r != '\n' {
			return nil, p.errorf(at, "the parameter name -%s%c… holds %q: write -Name value or -Name:value", el.Param, r, r)
		}
		return el, nil
	}
	p.next()
	el.Colon = true
	// -Name: value (a blank after the colon) is allowed, as in PowerShell.
	if err := p.skipSpace(); err != nil {
		return nil, err
	}
	if p.eof() || p.peek() == '\n' || p.peek() == ';' || p.peek() == '|' {
		return nil, p.errorf(at, "the parameter -%s: has no value after its colon", el.Param)
	}
	v, err := p.listValue(0)
	if err != nil {
		return nil, err
	}
	el.Value = v
	return el, nil
}

// listValue parses a value and, when commas follow, the list it starts.
func (p *parser) listValue(close rune) (*Value, error) {
	first, err := p.value(close)
	if err != nil {
		return nil, err
	}
	if err := p.skipSpace(); err != nil {
		return nil, err
	}
	if p.peek() != ',' {
		return first, nil
	}
	list := &Value{Kind: List, Items: []*Value{first}, Pos: first.Pos}
	for p.peek() == ',' {
		comma := p.pos()
		p.next()
		if err := p.skipSpace(); err != nil {
			return nil, err
		}
		// A comma may end a line: the list goes on.
		if p.peek() == '\n' {
			p.skipSpaceAndNewlines()
		}
		if p.eof() {
			return nil, p.incomplete(comma, "missing expression after ',': a list item must follow the comma")
		}
		if r := p.peek(); r == ';' || r == '|' || r == ',' || (close != 0 && r == close) || (isDash(r) && isParamStart(p.peekAt(1))) {
			return nil, p.errorf(comma, "missing expression after ',': a list item must follow the comma")
		}
		v, err := p.value(close)
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, v)
		if err := p.skipSpace(); err != nil {
			return nil, err
		}
	}
	return list, nil
}

// value parses one value: a quoted string, a variable, a subexpression,
// a script block or a bare word.
func (p *parser) value(close rune) (*Value, error) {
	at := p.pos()
	r := p.peek()
	switch {
	case isSingleQuote(r):
		s, err := p.singleQuoted()
		if err != nil {
			return nil, err
		}
		return p.concat(&Value{Kind: String, Text: s, Pos: at})
	case isDoubleQuote(r):
		s, err := p.doubleQuoted()
		if err != nil {
			return nil, err
		}
		return p.concat(&Value{Kind: String, Text: s, Pos: at})
	case r == '$':
		return p.variable()
	case r == '(' || (r == '@' && p.peekAt(1) == '('):
		if r == '@' {
			p.next()
		}
		p.next()
		p.skipSpaceAndNewlines()
		if p.peek() == ')' {
			p.next()
			return &Value{Kind: List, Pos: at}, nil
		}
		pl, err := p.pipeline(')')
		if err != nil {
			return nil, err
		}
		p.skipSpaceAndNewlines()
		if p.eof() {
			return nil, p.incomplete(at, "missing closing ')' in the subexpression that starts here")
		}
		if p.peek() != ')' {
			return nil, p.errorf(p.pos(), "missing closing ')': one command per subexpression")
		}
		p.next()
		v := &Value{Kind: Sub, Sub: pl, Pos: at}
		v.Members = p.members()
		return v, nil
	case r == '{':
		return p.block()
	case r == '[':
		return nil, p.errorf(at, "type casts and .NET calls ([Byte[]], [System.IO.File]::…) are not supported: use -Path FILE")
	}
	w := p.word()
	if w == "" {
		return nil, p.errorf(at, "unexpected %q", r)
	}
	return &Value{Kind: Word, Text: w, Pos: at}, nil
}

// concat joins a quoted string with what is written right after it
// ("a"b is ab), as PowerShell reads a bare argument.
func (p *parser) concat(v *Value) (*Value, error) {
	for !p.eof() && !endsWord(p.peek()) {
		r := p.peek()
		switch {
		case isSingleQuote(r):
			s, err := p.singleQuoted()
			if err != nil {
				return nil, err
			}
			v.Text += s
		case isDoubleQuote(r):
			s, err := p.doubleQuoted()
			if err != nil {
				return nil, err
			}
			v.Text += s
		default:
			v.Text += p.word()
		}
	}
	return v, nil
}

// endsWord reports whether r ends a bare word.
func endsWord(r rune) bool {
	return unicode.IsSpace(r) || r == '|' || r == ';' || r == ',' || r == '(' || r == ')' || r == '{' || r == '}' || r == 0
}

// word reads a bare word: up to a blank or an operator; backticks escape
// the next character; quotes inside are joined in.
func (p *parser) word() string {
	var b strings.Builder
	for !p.eof() {
		r := p.peek()
		switch {
		case endsWord(r):
			return b.String()
		case r == '`' && p.peekAt(1) != 0 && p.peekAt(1) != '\n':
			p.next()
			b.WriteRune(escape(p.next()))
		case r == '`':
			return b.String()
		case isSingleQuote(r) && b.Len() > 0:
			s, err := p.singleQuoted()
			if err != nil {
				b.WriteString(p.src[p.off:])
				p.skipTo(len(p.src))
				return b.String()
			}
			b.WriteString(s)
		case isDoubleQuote(r) && b.Len() > 0:
			s, err := p.doubleQuoted()
			if err != nil {
				b.WriteString(p.src[p.off:])
				p.skipTo(len(p.src))
				return b.String()
			}
			b.WriteString(s)
		default:
			b.WriteRune(p.next())
		}
	}
	return b.String()
}

func (p *parser) skipTo(off int) {
	for p.off < off {
		p.next()
	}
}

// escape resolves a backtick escape: `n, `t, `0, `a, `b, `f, `r, `v;
// any other character stands for itself.
func escape(r rune) rune {
	switch r {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	case '0':
		return 0
	case 'a':
		return '\a'
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'r':
		return '\r'
	case 'v':
		return '\v'
	}
	return r
}

// singleQuoted reads '…': nothing is escaped but the quote, doubled.
func (p *parser) singleQuoted() (string, error) {
	at := p.pos()
	p.next()
	var b strings.Builder
	for !p.eof() {
		r := p.next()
		if isSingleQuote(r) {
			if isSingleQuote(p.peek()) {
				b.WriteRune(p.next())
				continue
			}
			return b.String(), nil
		}
		b.WriteRune(r)
	}
	return "", p.incomplete(at, "the string starting here is missing its closing quote (')")
}

// doubleQuoted reads "…": backtick escapes and "" for a quote. Variables
// are not expanded: a $ stands for itself.
func (p *parser) doubleQuoted() (string, error) {
	at := p.pos()
	p.next()
	var b strings.Builder
	for !p.eof() {
		r := p.next()
		switch {
		case r == '`':
			if p.eof() {
				return "", p.incomplete(at, "the string starting here is missing its closing quote (\")")
			}
			b.WriteRune(escape(p.next()))
		case isDoubleQuote(r):
			if isDoubleQuote(p.peek()) {
				b.WriteRune(p.next())
				continue
			}
			return b.String(), nil
		default:
			b.WriteRune(r)
		}
	}
	return "", p.incomplete(at, "the string starting here is missing its closing quote (\")")
}

// variable reads $True, $False, $null, $_ or $PSItem with a property
// path; other variables are refused.
func (p *parser) variable() (*Value, error) {
	at := p.pos()
	p.next()
	var b strings.Builder
	for !p.eof() {
		r := p.peek()
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == ':' {
			if r == ':' && !strings.EqualFold(b.String(), "env") {
				break
			}
			b.WriteRune(p.next())
			continue
		}
		break
	}
	name := b.String()
	switch strings.ToLower(name) {
	case "true":
		return &Value{Kind: Bool, Bool: true, Text: "$" + name, Pos: at}, nil
	case "false":
		return &Value{Kind: Bool, Bool: false, Text: "$" + name, Pos: at}, nil
	case "null":
		return &Value{Kind: Null, Text: "$" + name, Pos: at}, nil
	case "_", "psitem":
		v := &Value{Kind: Var, Text: "_", Pos: at}
		v.Members = p.members()
		return v, nil
	case "":
		return nil, p.errorf(at, "'$' without a variable name: write '$' inside quotes for a dollar sign")
	}
	return nil, p.errorf(at, "the variable $%s is not set: this shell has $True, $False, $null and $_ only (no variables of its own)", name)
}

// members reads .Name.Name… after a variable or subexpression.
func (p *parser) members() []string {
	var out []string
	for p.peek() == '.' && (unicode.IsLetter(p.peekAt(1)) || p.peekAt(1) == '_') {
		p.next()
		var b strings.Builder
		for !p.eof() {
			r := p.peek()
			if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' {
				b.WriteRune(p.next())
				continue
			}
			break
		}
		out = append(out, b.String())
	}
	return out
}

// block reads a { … } script block: its source, parsed as a condition.
func (p *parser) block() (*Value, error) {
	at := p.pos()
	p.next()
	start := p.off
	depth := 1
	for !p.eof() {
		r := p.peek()
		switch {
		case isSingleQuote(r):
			if _, err := p.singleQuoted(); err != nil {
				return nil, err
			}
			continue
		case isDoubleQuote(r):
			if _, err := p.doubleQuoted(); err != nil {
				return nil, err
			}
			continue
		case r == '{':
			depth++
		case r == '}':
			depth--
			if depth == 0 {
				src := p.src[start:p.off]
				p.next()
				expr, err := parseExpr(src, Pos{at.Line, at.Col + 1, at.Off + 1})
				if err != nil {
					return nil, err
				}
				return &Value{Kind: Block, Text: strings.TrimSpace(src), Pos: at, block: expr}, nil
			}
		}
		p.next()
	}
	return nil, p.incomplete(at, "missing closing '}' in the script block that starts here")
}
