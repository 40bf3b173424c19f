package shell

import (
	"fmt"
	"math"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The conditions of Where-Object: { $_.Services -match 'SMTP' } and the
// like — comparisons of the piped object's properties with values,
// joined by -and, -or and -not, as PowerShell evaluates them: case-
// insensitive unless the operator says c (-ceq), and a list on the left
// keeps the items that match (so { $_.Services -eq 'SMTP' } holds for a
// certificate enabled for SMTP among others).

// Expr is a parsed condition.
type Expr struct {
	op   string // "or", "and", "not", "cmp", "val"
	l, r *Expr
	cmp  string // the comparison (eq, match, …)
	cs   bool   // case-sensitive (-ceq, -cmatch, …)
	val  operand
}

type operand struct {
	isVar   bool     // $_ (with members)
	members []string // the property path
	lit     any      // a literal: string, float64, bool, nil
	re      *regexp.Regexp
}

var comparisons = map[string]bool{
	"eq": true, "ne": true, "gt": true, "ge": true, "lt": true, "le": true,
	"like": true, "notlike": true, "match": true, "notmatch": true,
	"contains": true, "notcontains": true, "in": true, "notin": true,
}

type exprToken struct {
	kind string // "var", "lit", "op", "(", ")", "!"
	text string
	val  operand
	pos  Pos
}

// parseExpr parses the body of a script block; at is where it starts.
func parseExpr(src string, at Pos) (*Expr, error) {
	toks, err := lexExpr(src, at)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, &SyntaxError{Msg: "the script block is empty: write a condition such as { $_.Services -match 'SMTP' }", Pos: at}
	}
	ep := &exprParser{toks: toks, end: at}
	e, err := ep.or()
	if err != nil {
		return nil, err
	}
	if ep.i < len(toks) {
		t := toks[ep.i]
		return nil, &SyntaxError{Msg: fmt.Sprintf("unexpected %q in the condition: join conditions with -and or -or", t.text), Pos: t.pos}
	}
	return e, nil
}

func lexExpr(src string, at Pos) ([]exprToken, error) {
	var out []exprToken
	p := &parser{src: src, line: at.Line, col: at.Col}
	for {
		p.skipSpaceAndNewlines()
		if p.eof() {
			return out, nil
		}
		pos := p.pos()
		pos.Off += at.Off
		r := p.peek()
		switch {
		case r == '(' || r == ')':
			p.next()
			out = append(out, exprToken{kind: string(r), text: string(r), pos: pos})
		case r == '!':
			p.next()
			out = append(out, exprToken{kind: "!", text: "!", pos: pos})
		case isSingleQuote(r):
			s, err := p.singleQuoted()
			if err != nil {
				return nil, err
			}
			out = append(out, exprToken{kind: "lit", text: s, val: operand{lit: s}, pos: pos})
		case isDoubleQuote(r):
			s, err := p.doubleQuoted()
			if err != nil {
				return nil, err
			}
			out = append(out, exprToken{kind: "lit", text: s, val: operand{lit: s}, pos: pos})
		case r == '$':
			v, err := p.variable()
			if err != nil {
				return nil, err
			}
			switch v.Kind {
			case Bool:
				out = append(out, exprToken{kind: "lit", text: v.Text, val: operand{lit: v.Bool}, pos: pos})
			case Null:
				out = append(out, exprToken{kind: "lit", text: v.Text, val: operand{lit: nil}, pos: pos})
			default:
				out = append(out, exprToken{kind: "var", text: "$_." + strings.Join(v.Members, "."), val: operand{isVar: true, members: v.Members}, pos: pos})
			}
		case isDash(r) && unicode.IsLetter(p.peekAt(1)):
			p.next()
			var b strings.Builder
			for !p.eof() && unicode.IsLetter(p.peek()) {
				b.WriteRune(p.next())
			}
			out = append(out, exprToken{kind: "op", text: strings.ToLower(b.String()), pos: pos})
		default:
			var b strings.Builder
			for !p.eof() {
				r := p.peek()
				if unicode.IsSpace(r) || r == '(' || r == ')' || r == '!' {
					break
				}
				b.WriteRune(p.next())
			}
			w := b.String()
			if n, err := strconv.ParseFloat(w, 64); err == nil {
				out = append(out, exprToken{kind: "lit", text: w, val: operand{lit: n}, pos: pos})
				continue
			}
			out = append(out, exprToken{kind: "lit", text: w, val: operand{lit: w}, pos: pos})
		}
	}
}

type exprParser struct {
	toks []exprToken
	i    int
	end  Pos
}

func (ep *exprParser) peek() *exprToken {
	if ep.i >= len(ep.toks) {
		return nil
	}
	return &ep.toks[ep.i]
}

func (ep *exprParser) or() (*Expr, error) {
	l, err := ep.and()
	if err != nil {
		return nil, err
	}
	for t := ep.peek(); t != nil && t.kind == "op" && (t.text == "or" || t.text == "xor"); t = ep.peek() {
		if t.text == "xor" {
			return nil, &SyntaxError{Msg: "-xor is not supported: use -and, -or and -not", Pos: t.pos}
		}
		ep.i++
		r, err := ep.and()
		if err != nil {
			return nil, err
		}
		l = &Expr{op: "or", l: l, r: r}
	}
	return l, nil
}

func (ep *exprParser) and() (*Expr, error) {
	l, err := ep.unary()
	if err != nil {
		return nil, err
	}
	for t := ep.peek(); t != nil && t.kind == "op" && t.text == "and"; t = ep.peek() {
		ep.i++
		r, err := ep.unary()
		if err != nil {
			return nil, err
		}
		l = &Expr{op: "and", l: l, r: r}
	}
	return l, nil
}

func (ep *exprParser) unary() (*Expr, error) {
	t := ep.peek()
	if t == nil {
		return nil, &SyntaxError{Msg: "the condition ends too early: a value is missing", Pos: ep.end}
	}
	if t.kind == "!" || (t.kind == "op" && t.text == "not") {
		ep.i++
		e, err := ep.unary()
		if err != nil {
			return nil, err
		}
		return &Expr{op: "not", l: e}, nil
	}
	l, err := ep.primary()
	if err != nil {
		return nil, err
	}
	t = ep.peek()
	if t == nil || t.kind != "op" || t.text == "and" || t.text == "or" || t.text == "xor" {
		return l, nil
	}
	name := t.text
	cs := ""
	if len(name) > 1 && (name[0] == 'c' || name[0] == 'i') && comparisons[name[1:]] {
		if name[0] == 'c' {
			cs = "c"
		}
		name = name[1:]
	}
	if !comparisons[name] {
		return nil, &SyntaxError{Msg: fmt.Sprintf("unknown operator -%s: use -eq, -ne, -gt, -ge, -lt, -le, -like, -notlike, -match, -notmatch, -contains, -notcontains, -in or -notin", t.text), Pos: t.pos}
	}
	ep.i++
	r, err := ep.primary()
	if err != nil {
		return nil, err
	}
	if (name == "match" || name == "notmatch") && !r.val.isVar && r.op == "val" {
		pat := fmt.Sprint(r.val.lit)
		if cs == "" {
			pat = "(?i)" + pat
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, &SyntaxError{Msg: fmt.Sprintf("the pattern %q is not a valid regular expression: %v", fmt.Sprint(r.val.lit), err), Pos: t.pos}
		}
		r.val.re = re
	}
	return &Expr{op: "cmp", cmp: name, cs: cs == "c", l: l, r: r}, nil
}

func (ep *exprParser) primary() (*Expr, error) {
	t := ep.peek()
	if t == nil {
		return nil, &SyntaxError{Msg: "the condition ends too early: a value is missing", Pos: ep.end}
	}
	switch t.kind {
	case "(":
		ep.i++
		e, err := ep.or()
		if err != nil {
			return nil, err
		}
		if c := ep.peek(); c == nil || c.kind != ")" {
			return nil, &SyntaxError{Msg: "missing closing ')' in the condition", Pos: t.pos}
		}
		ep.i++
		return e, nil
	case "var", "lit":
		ep.i++
		return &Expr{op: "val", val: t.val}, nil
	}
	return nil, &SyntaxError{Msg: fmt.Sprintf("unexpected %q: a value was expected", t.text), Pos: t.pos}
}

// Eval evaluates the condition for obj and says whether it holds.
func (e *Expr) Eval(obj *Object) bool { return truthy(e.eval(obj)) }

func (e *Expr) eval(obj *Object) any {
	switch e.op {
	case "or":
		return truthy(e.l.eval(obj)) || truthy(e.r.eval(obj))
	case "and":
		return truthy(e.l.eval(obj)) && truthy(e.r.eval(obj))
	case "not":
		return !truthy(e.l.eval(obj))
	case "val":
		if e.val.isVar {
			return obj.Path(e.val.members)
		}
		return e.val.lit
	}
	l, r := e.l.eval(obj), e.r.eval(obj)
	cs, op := e.cs, e.cmp
	if op == "contains" || op == "notcontains" {
		found := false
		for _, item := range items(l) {
			found = found || equal(item, r, cs)
		}
		return found == (op == "contains")
	}
	if op == "in" || op == "notin" {
		found := false
		for _, item := range items(r) {
			found = found || equal(l, item, cs)
		}
		return found == (op == "in")
	}
	var re *regexp.Regexp
	if e.r.op == "val" {
		re = e.r.val.re
	}
	test := func(x any) bool { return compare(op, x, r, cs, re) }
	if list, ok := asList(l); ok {
		var kept []any
		for _, item := range list {
			if test(item) {
				kept = append(kept, item)
			}
		}
		return kept
	}
	return test(l)
}

// compare applies a scalar comparison.
func compare(op string, l, r any, cs bool, re *regexp.Regexp) bool {
	switch op {
	case "eq":
		return equal(l, r, cs)
	case "ne":
		return !equal(l, r, cs)
	case "like", "notlike":
		ls, rs := text(l), text(r)
		if !cs {
			ls, rs = strings.ToLower(ls), strings.ToLower(rs)
		}
		ok, _ := path.Match(strings.ReplaceAll(rs, "/", "\x00"), strings.ReplaceAll(ls, "/", "\x00"))
		return ok == (op == "like")
	case "match", "notmatch":
		if re == nil {
			pat := text(r)
			if !cs {
				pat = "(?i)" + pat
			}
			var err error
			if re, err = regexp.Compile(pat); err != nil {
				return false
			}
		}
		return re.MatchString(text(l)) == (op == "match")
	}
	c, ok := order(l, r, cs)
	if !ok {
		return false
	}
	switch op {
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	}
	return false
}

// equal compares as PowerShell does with the left value's type: numbers
// as numbers, booleans as booleans, anything else as text.
func equal(l, r any, cs bool) bool {
	if l == nil || r == nil {
		return l == nil && r == nil
	}
	if lb, ok := l.(bool); ok {
		return lb == truthy(r)
	}
	if ln, ok := number(l); ok {
		if rn, ok := number(r); ok {
			return ln == rn
		}
	}
	if cs {
		return text(l) == text(r)
	}
	return strings.EqualFold(text(l), text(r))
}

// order compares l and r: numbers, then times, then text.
func order(l, r any, cs bool) (int, bool) {
	if ln, ok := number(l); ok {
		rn, ok := number(r)
		if !ok {
			return 0, false
		}
		switch {
		case ln < rn:
			return -1, true
		case ln > rn:
			return 1, true
		}
		return 0, true
	}
	if lt, ok := l.(time.Time); ok {
		rt, ok := parseTime(text(r))
		if !ok {
			return 0, false
		}
		return lt.Compare(rt), true
	}
	ls, rs := text(l), text(r)
	if !cs {
		ls, rs = strings.ToLower(ls), strings.ToLower(rs)
	}
	return strings.Compare(ls, rs), true
}

func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05Z", "2006-01-02T15:04:05", "2006-01-02", "1/2/2006 3:04:05 PM", "1/2/2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		return f, err == nil && !math.IsNaN(f)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		return rv.Float(), true
	}
	return 0, false
}

// truthy is PowerShell's idea of true: not $null, $false, "", 0 or an
// empty list.
func truthy(v any) bool {
	if v == nil {
		return false
	}
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x != ""
	}
	if n, ok := number(v); ok {
		return n != 0
	}
	if list, ok := asList(v); ok {
		return len(list) > 0
	}
	return true
}

// asList returns v's items when v is a list (not bytes or text).
func asList(v any) ([]any, bool) {
	if l, ok := v.([]any); ok {
		return l, true
	}
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Slice || rv.Type().Elem().Kind() == reflect.Uint8 {
		return nil, false
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, true
}

// items is v as a list: its items, or v alone.
func items(v any) []any {
	if l, ok := asList(v); ok {
		return l
	}
	return []any{v}
}
