package shell

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"certrelay/internal/admin"
)

// bind binds command line c, and the piped object obj, to one of the
// cmdlet's operations (ops: its parameter sets).
func (s *Shell) bind(ctx context.Context, c *Command, ops []*admin.Operation, obj *Object) (*bound, error) {
	cmdlet := ops[0].Cmdlet
	// Which parameter set: the one whose parameter is named on the line.
	union := map[string]*admin.Param{}
	var unionNames []string
	for _, op := range ops {
		for _, n := range paramNames(op) {
			if _, ok := union[strings.ToLower(n)]; !ok {
				unionNames = append(unionNames, n)
				union[strings.ToLower(n)] = op.Param(n)
			}
		}
	}
	isSwitch := func(name string, p *admin.Param) bool {
		return (p != nil && p.Type.Kind == admin.KindBool) || (p == nil && (name == "WhatIf" || name == "Confirm" || name == "Force"))
	}
	var named []string
	positional := 0
	for i := 0; i < len(c.Elems); i++ {
		el := c.Elems[i]
		if el.Param == "" {
			positional++
			continue
		}
		n, err := resolveParam(cmdlet, unionNames, el.Param, el.Pos)
		if err != nil {
			return nil, err
		}
		p := union[strings.ToLower(n)]
		if !el.Colon && !isSwitch(n, p) && i+1 < len(c.Elems) && c.Elems[i+1].Param == "" {
			i++ // its value
		}
		if !el.Colon && isSwitch(n, p) && i+1 < len(c.Elems) && c.Elems[i+1].Param == "" && c.Elems[i+1].Value.Kind == Bool {
			if !c.Elems[i+1].Value.Bool {
				i++
				continue // -GenerateRequest $false selects nothing
			}
			i++
		}
		if el.Colon && el.Value.Kind == Bool && !el.Value.Bool {
			continue
		}
		named = append(named, n)
	}
	op := admin.LookupCmdlet(cmdlet, named)
	if op == nil {
		op = ops[0]
	}
	if positional > 0 && len(op.Positional()) == 0 {
		for _, o := range ops {
			if p := o.Param(o.Set); o.Set != "" && p != nil && p.Position > 0 {
				op = o
				break
			}
		}
	}
	b := &bound{op: op, params: admin.Params{}}
	names := paramNames(op)
	var values []given
	got := map[string]given{}
	for i := 0; i < len(c.Elems); i++ {
		el := c.Elems[i]
		if el.Param == "" {
			v, err := s.eval(ctx, el.Value)
			if err != nil {
				return nil, err
			}
			values = append(values, given{value: v, lit: literal(el.Value), pos: el.Pos})
			continue
		}
		n, err := resolveParam(cmdlet, names, el.Param, el.Pos)
		if err != nil {
			if other := otherSetOf(ops, op, el.Param); other != "" {
				err.(*cmdError).msg = fmt.Sprintf("Parameter set cannot be resolved: -%s does not go with the parameters of %s (-%s).", el.Param, other, op.Set)
			}
			return nil, err
		}
		if _, dup := got[n]; dup {
			return nil, &cmdError{cmd: cmdlet, usage: true, pos: &el.Pos, msg: fmt.Sprintf("Cannot bind parameter because parameter '%s' is specified more than once. To give several values, separate them with commas: -%s a,b.", n, n)}
		}
		p := op.Param(n)
		g := given{name: n, pos: el.Pos}
		switch {
		case el.Colon:
			v, err := s.eval(ctx, el.Value)
			if err != nil {
				return nil, err
			}
			g.value, g.lit = v, literal(el.Value)
		case isSwitch(n, p):
			g.value, g.set = true, true
			if i+1 < len(c.Elems) && c.Elems[i+1].Param == "" && c.Elems[i+1].Value.Kind == Bool {
				i++
				g.value, g.set = c.Elems[i].Value.Bool, false
			}
		default:
			if i+1 >= len(c.Elems) || c.Elems[i+1].Param != "" {
				return nil, &cmdError{cmd: cmdlet, usage: true, pos: &el.Pos, msg: fmt.Sprintf("Missing an argument for parameter '%s'. Specify a parameter of type '%s' and try again.", n, typeName(p))}
			}
			i++
			v, err := s.eval(ctx, c.Elems[i].Value)
			if err != nil {
				return nil, err
			}
			g.value, g.lit = v, literal(c.Elems[i].Value)
		}
		got[n] = g
	}
	// The shell's own parameters.
	for n, g := range got {
		switch {
		case n == "WhatIf":
			b.whatIf = truthy(g.value)
		case n == "Confirm":
			b.confirm, b.noConfirm = truthy(g.value), !truthy(g.value)
		case op.Param(n) == nil && n == "Force":
			b.force = truthy(g.value)
		case op.Param(n) == nil && (n == "Path" || n == "FileName" || n == "RequestFile"):
			if dp := dataParam(op); dp != nil && !op.File {
				got[dp.Name] = given{name: dp.Name, value: g.value, pos: g.pos}
			} else {
				p, err := s.localPath(cmdlet, text(g.value), g.pos)
				if err != nil {
					return nil, err
				}
				b.out = p
			}
		default:
			continue
		}
		delete(got, n)
	}
	// Positional values, in order, to the positional parameters not named.
	for _, p := range op.Positional() {
		if len(values) == 0 {
			break
		}
		if _, ok := got[p.Name]; ok {
			continue
		}
		v := values[0]
		v.name = p.Name
		got[p.Name] = v
		values = values[1:]
	}
	if len(values) > 0 {
		return nil, &cmdError{cmd: cmdlet, usage: true, pos: &values[0].pos, msg: fmt.Sprintf("A positional parameter cannot be found that accepts argument '%s'. %s", text(values[0].value), usageLine(op))}
	}
	// The piped object gives what the line does not.
	if obj != nil {
		for i := range op.Params {
			p := &op.Params[i]
			if _, ok := got[p.Name]; ok {
				continue
			}
			prop := p.Pipe
			if prop == "" && p.Position > 0 {
				prop = p.Name
			}
			if prop == "" {
				continue
			}
			if v, ok := obj.Get(prop); ok && v != nil {
				got[p.Name] = given{name: p.Name, value: v}
			}
		}
	}
	if b.noConfirm && op.Param("Force") != nil {
		if _, ok := got["Force"]; !ok {
			got["Force"] = given{name: "Force", value: true}
		}
	}
	// Mandatory parameters the line does not give are asked for, as
	// PowerShell asks.
	var missing []*admin.Param
	for i := range op.Params {
		p := &op.Params[i]
		if _, ok := got[p.Name]; !ok && p.Required && p.Type.Kind != admin.KindSecret {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		if err := s.askMissing(op, missing, got); err != nil {
			return nil, &cmdError{cmd: cmdlet, usage: true, pos: &c.Pos, msg: err.Error()}
		}
	}
	for n, g := range got {
		if p := op.Param(n); p.Type.Kind == admin.KindSecret && g.lit {
			pos := g.pos
			return nil, &cmdError{cmd: cmdlet, usage: true, pos: &pos, msg: "Cannot bind parameter '" + p.Name + "': a password written on the command line would stay in the history and the process list (SPEC I5). " + secretHelp}
		}
	}
	for n, g := range got {
		p := op.Param(n)
		v, err := s.convert(cmdlet, p, g)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		b.params[p.Name] = v
	}
	return b, nil
}

// otherSetOf names the parameter set of the cmdlet that has parameter
// name when op does not.
func otherSetOf(ops []*admin.Operation, op *admin.Operation, name string) string {
	for _, o := range ops {
		if o != op && o.Param(name) != nil {
			return o.Cmdlet + " -" + o.Set
		}
	}
	return ""
}

// askMissing asks for the mandatory parameters the line left out.
func (s *Shell) askMissing(op *admin.Operation, missing []*admin.Param, got map[string]given) error {
	var names []string
	for _, p := range missing {
		names = append(names, p.Name)
	}
	if s.Ask == nil {
		return fmt.Errorf("Cannot process command because of one or more missing mandatory parameters: %s. %s", strings.Join(names, " "), usageLine(op))
	}
	fmt.Fprintf(s.Err, "cmdlet %s at command pipeline position 1\nSupply values for the following parameters:\n", op.Cmdlet)
	for _, p := range missing {
		hint := ""
		if len(p.Type.Values) > 0 {
			hint = " (" + strings.Join(p.Type.Values, ", ") + ")"
		}
		line, err := s.Ask.Line(p.Name + hint + ": ")
		if err != nil || strings.TrimSpace(line) == "" {
			return fmt.Errorf("Cannot process command because of one or more missing mandatory parameters: %s.", strings.Join(names, " "))
		}
		got[p.Name] = given{name: p.Name, value: strings.TrimSpace(line)}
	}
	return nil
}

// usageLine is a cmdlet's syntax, for errors.
func usageLine(op *admin.Operation) string { return "Usage: " + syntax(op) }

// typeName is a parameter's type as help shows it.
func typeName(p *admin.Param) string {
	if p == nil {
		return "string"
	}
	return p.Type.Name
}

// literal reports whether a value was written on the line (not computed
// by a subexpression or read from a prompt).
func literal(v *Value) bool {
	switch v.Kind {
	case Word, String:
		return true
	case List:
		for _, it := range v.Items {
			if literal(it) {
				return true
			}
		}
	}
	return false
}

// convert turns a value into what admin.Bind reads for p.
func (s *Shell) convert(cmdlet string, p *admin.Param, g given) (any, error) {
	bad := func(format string, args ...any) error {
		pos := g.pos
		return &cmdError{cmd: cmdlet, usage: true, pos: &pos, msg: fmt.Sprintf("Cannot bind parameter '%s' to the value '%s': ", p.Name, text(g.value)) + fmt.Sprintf(format, args...)}
	}
	v := g.value
	if o, ok := v.(*Object); ok && o.Type == "scalar" {
		v = o.Raw
	}
	switch p.Type.Kind {
	case admin.KindBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			switch strings.ToLower(strings.TrimPrefix(x, "$")) {
			case "true", "1":
				return true, nil
			case "false", "0":
				return false, nil
			}
		}
		return nil, bad("it takes $True or $False")
	case admin.KindList:
		var out []string
		for _, it := range items(v) {
			if it == nil {
				continue
			}
			out = append(out, text(it))
		}
		if out == nil {
			out = []string{}
		}
		return out, nil
	case admin.KindData:
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			path, err := s.localPath(cmdlet, x, g.pos)
			if err != nil {
				return nil, err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, &cmdError{cmd: cmdlet, pos: &g.pos, msg: fmt.Sprintf("Cannot read the file '%s': %v", x, unwrapPathError(err))}
			}
			return data, nil
		}
		return nil, bad("give the file's name (-Path FILE)")
	case admin.KindSecret:
		switch x := v.(type) {
		case secret:
			return string(x), nil
		case string:
			return x, nil
		}
		return nil, bad("a password. %s", secretHelp)
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return x, nil
	case bool:
		return fmt.Sprint(x), nil
	case secret:
		return nil, bad("a password goes only to a -Password parameter")
	case *Object:
		return nil, bad("an object was given where text is expected; pick one of its properties: (… ).Thumbprint")
	}
	if list, ok := asList(v); ok {
		parts := make([]string, 0, len(list))
		for _, it := range list {
			parts = append(parts, text(it))
		}
		return strings.Join(parts, ","), nil
	}
	return text(v), nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// eval evaluates a value written on a line.
func (s *Shell) eval(ctx context.Context, v *Value) (any, error) {
	switch v.Kind {
	case Word, String:
		return v.Text, nil
	case Bool:
		return v.Bool, nil
	case Null:
		return nil, nil
	case List:
		out := make([]any, 0, len(v.Items))
		for _, it := range v.Items {
			x, err := s.eval(ctx, it)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case Var:
		return nil, &cmdError{cmd: "$_", usage: true, pos: &v.Pos, msg: "$_ is the piped object only inside Where-Object's { … }"}
	case Block:
		return nil, &cmdError{cmd: "{ }", usage: true, pos: &v.Pos, msg: "a script block is taken only by Where-Object"}
	}
	out, err := s.pipeline(ctx, v.Sub)
	if err != nil {
		return nil, err
	}
	var vals []any
	for _, o := range out.objs {
		var x any = o
		if o.Type == "scalar" {
			x = o.Raw
		}
		if len(v.Members) > 0 {
			if obj, ok := x.(*Object); ok {
				x = obj.Path(v.Members)
			} else {
				x = member(x, v.Members[0])
			}
		}
		vals = append(vals, x)
	}
	switch len(vals) {
	case 0:
		return nil, nil
	case 1:
		return vals[0], nil
	}
	return vals, nil
}

var windowsPath = regexp.MustCompile(`^[A-Za-z]:([\\/]|$)`)

// localPath reads a file name as written in the seeds: a Windows path
// (C:\CertRequest.req) is a local name relative to the working
// directory, which the shell says once; .\x and x\y use '/'.
func (s *Shell) localPath(cmdlet, p string, pos Pos) (string, error) {
	if strings.HasPrefix(p, `\\`) {
		return "", &cmdError{cmd: cmdlet, usage: true, pos: &pos, msg: fmt.Sprintf("Cannot use the network path '%s': copy the file here and give its local name", p)}
	}
	orig := p
	if windowsPath.MatchString(p) {
		p = strings.TrimLeft(p[2:], `\/`)
		p = strings.ReplaceAll(p, `\`, "/")
		if p == "" {
			p = "."
		}
		abs := filepath.Join(s.dir(), p)
		s.noteOnce("winpath", "note: Windows paths are read as local file names relative to the working directory: %s is %s.", orig, abs)
		return abs, nil
	}
	if !filepath.IsAbs(p) {
		p = strings.ReplaceAll(p, `\`, "/")
		return filepath.Join(s.dir(), p), nil
	}
	return p, nil
}
