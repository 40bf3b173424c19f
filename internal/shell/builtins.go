package shell

import (
	"context"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"certrelay/internal/admin"
)

// The shell's own commands: what PowerShell itself provides around the
// cmdlets (Where-Object, the Format- cmdlets, ConvertTo-Json, Get-Help,
// Get-Command, Get-Credential …), and the two outside commands the seeds
// run: restart-service msexchangetransport and certutil -verify.

// builtin is one of the shell's own commands.
type builtin struct {
	name    string
	summary string
	syntax  string
	run     func(s *Shell, ctx context.Context, c *call) (stream, error)
}

// call is one run of a builtin.
type call struct {
	cmd         *Command
	name        string
	in          stream
	first, last bool
}

var builtins = map[string]*builtin{}

func init() {
	for _, b := range []*builtin{
		{name: "Format-List", summary: "Show each object's properties, one per line: * for all of them, or the names given", syntax: "Format-List [[-Property] NAME[,NAME…] | *]", run: formatList},
		{name: "Format-Table", summary: "Show objects as a table of the properties given (default: the object's usual columns)", syntax: "Format-Table [[-Property] NAME[,NAME…] | *] [-AutoSize] [-Wrap]", run: formatTable},
		{name: "Where-Object", summary: "Keep the piped objects for which the condition holds: { $_.Services -match 'SMTP' }, or Where-Object Services -match SMTP", syntax: "Where-Object { CONDITION } | Where-Object PROPERTY -OPERATOR VALUE", run: whereObject},
		{name: "Select-Object", summary: "Keep some properties, the first or last N objects, or one property's values", syntax: "Select-Object [[-Property] NAME[,NAME…]] [-First N] [-Last N] [-ExpandProperty NAME]", run: selectObject},
		{name: "ConvertTo-Json", summary: "Write the piped objects as JSON — the same JSON the CLI's --json writes", syntax: "ConvertTo-Json [-Compress] [-AsArray] [-Depth N]", run: convertToJSON},
		{name: "Get-Help", summary: "Show a cmdlet's help: its syntax, parameters and what it does", syntax: "Get-Help [[-Name] CMDLET] [-Full | -Detailed | -Examples | -Parameter NAME]", run: getHelp},
		{name: "Get-Command", summary: "List the cmdlets: certrelay's (from its operation registry) and the shell's own", syntax: "Get-Command [[-Name] PATTERN] [-Verb VERB] [-Noun NOUN]", run: getCommand},
		{name: "Restart-Service", summary: "certrelay needs no restart: a running server applies every change from the next connection on; says so and does nothing", syntax: "Restart-Service MSExchangeTransport", run: restartService},
		{name: "certutil", summary: "certutil -verify [-urlfetch] FILE: verify a certificate file's chain and revocation, fetching every CRL and OCSP answer afresh (Test-CertrelayCertificate)", syntax: "certutil -verify [-urlfetch] FILE", run: certutil},
		{name: "Get-Credential", summary: "Ask for a password (without showing it), for -Password (Get-Credential).Password", syntax: "Get-Credential [[-UserName] NAME]", run: getCredential},
		{name: "Read-Host", summary: "Ask for a line; with -AsSecureString, for a password without showing it", syntax: "Read-Host [[-Prompt] TEXT] [-AsSecureString]", run: readHost},
		{name: "ConvertTo-SecureString", summary: "Turn a password read from a file into a secure string: Get-Content FILE | ConvertTo-SecureString -AsPlainText -Force", syntax: "Get-Content FILE | ConvertTo-SecureString -AsPlainText -Force", run: convertToSecureString},
		{name: "Get-Content", summary: "Read a file's lines (or its bytes with -Encoding Byte)", syntax: "Get-Content [-Path] FILE [-Encoding Byte] [-ReadCount 0]", run: getContent},
		{name: "Write-Output", summary: "Write the values given", syntax: "Write-Output VALUE…", run: writeOutput},
		{name: "Out-Null", summary: "Discard the piped objects", syntax: "… | Out-Null", run: func(*Shell, context.Context, *call) (stream, error) { return stream{}, nil }},
		{name: "Clear-Host", summary: "Clear the screen", syntax: "Clear-Host", run: func(s *Shell, _ context.Context, _ *call) (stream, error) {
			fmt.Fprint(s.Out, "\x1b[H\x1b[2J")
			return stream{}, nil
		}},
		{name: "exit", summary: "Leave the shell (with an exit status: exit 3)", syntax: "exit [STATUS]", run: func(s *Shell, ctx context.Context, c *call) (stream, error) {
			a, err := s.args(ctx, c, nil, nil)
			if err != nil {
				return stream{}, err
			}
			if len(a.pos) > 0 {
				n, err := strconv.Atoi(text(a.pos[0]))
				if err != nil || n < 0 || n > 255 {
					return stream{}, &cmdError{cmd: "exit", usage: true, pos: &c.cmd.Pos, msg: fmt.Sprintf("the exit status %q is not a number from 0 to 255", text(a.pos[0]))}
				}
				s.ExitCode = n
			}
			s.exited = true
			return stream{}, nil
		}},
	} {
		builtins[strings.ToLower(b.name)] = b
	}
}

// bargs are a builtin's arguments: named (by canonical name) and
// positional values.
type bargs struct {
	named map[string]any
	pos   []any
	vals  []*Value // the positional values as written
}

// args binds a builtin's line: switches take no value, valued parameters
// the next value; names may be abbreviated.
func (s *Shell) args(ctx context.Context, c *call, switches, valued []string) (*bargs, error) {
	names := append(append([]string{}, switches...), valued...)
	a := &bargs{named: map[string]any{}}
	els := c.cmd.Elems
	for i := 0; i < len(els); i++ {
		el := els[i]
		if el.Param == "" {
			v, err := s.eval(ctx, el.Value)
			if err != nil {
				return nil, err
			}
			a.pos = append(a.pos, v)
			a.vals = append(a.vals, el.Value)
			continue
		}
		n, err := resolveParam(c.name, names, el.Param, el.Pos)
		if err != nil {
			return nil, err
		}
		isSwitch := false
		for _, sw := range switches {
			isSwitch = isSwitch || sw == n
		}
		switch {
		case el.Colon:
			v, err := s.eval(ctx, el.Value)
			if err != nil {
				return nil, err
			}
			a.named[n] = v
		case isSwitch:
			a.named[n] = true
		default:
			if i+1 >= len(els) || els[i+1].Param != "" {
				return nil, &cmdError{cmd: c.name, usage: true, pos: &el.Pos, msg: fmt.Sprintf("Missing an argument for parameter '%s'.", n)}
			}
			i++
			v, err := s.eval(ctx, els[i].Value)
			if err != nil {
				return nil, err
			}
			a.named[n] = v
		}
	}
	return a, nil
}

// names reads property names: positional values or -Property.
func (a *bargs) names() []string {
	var out []string
	vals := a.pos
	if p, ok := a.named["Property"]; ok {
		vals = append([]any{p}, vals...)
	}
	for _, v := range vals {
		for _, it := range items(v) {
			out = append(out, text(it))
		}
	}
	return out
}

func formatList(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, nil, []string{"Property"})
	if err != nil {
		return stream{}, err
	}
	names := a.names()
	for i, o := range c.in.objs {
		if i > 0 {
			fmt.Fprintln(s.Out)
		}
		s.printList(o, pick(o, names, false))
	}
	return stream{}, nil
}

func formatTable(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, []string{"AutoSize", "Wrap", "HideTableHeaders"}, []string{"Property"})
	if err != nil {
		return stream{}, err
	}
	names := a.names()
	if len(c.in.objs) == 0 {
		return stream{}, nil
	}
	var cols []string
	if len(names) == 0 {
		cols = tableColumns(c.in.objs[0])
	} else {
		cols = pick(c.in.objs[0], names, true)
	}
	s.printTable(c.in.objs, cols, a.named["HideTableHeaders"] == true)
	return stream{}, nil
}

// pick returns the properties of o that names select (* and wildcards
// allowed), in the order asked; none asked: the object's list view.
func pick(o *Object, names []string, table bool) []string {
	if len(names) == 0 {
		return listProps(o)
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		for _, p := range o.Props {
			ok := strings.EqualFold(p.Name, n)
			if strings.ContainsAny(n, "*?[") {
				ok, _ = path.Match(strings.ToLower(n), strings.ToLower(p.Name))
			}
			if ok && !seen[p.Name] {
				seen[p.Name] = true
				out = append(out, p.Name)
			}
		}
		if !strings.ContainsAny(n, "*?[") && table && !seen[strings.ToLower(n)] {
			found := false
			for _, p := range o.Props {
				found = found || strings.EqualFold(p.Name, n)
			}
			if !found { // PowerShell shows a column for an unknown property, empty
				out = append(out, n)
				seen[strings.ToLower(n)] = true
			}
		}
	}
	return out
}

func whereObject(s *Shell, ctx context.Context, c *call) (stream, error) {
	expr, err := whereExpr(c)
	if err != nil {
		return stream{}, err
	}
	out := stream{list: c.in.list}
	for _, o := range c.in.objs {
		if expr.Eval(o) {
			out.objs = append(out.objs, o)
		}
	}
	return out, nil
}

// whereExpr reads Where-Object's condition: a script block (positional
// or -FilterScript), or PROPERTY -OPERATOR VALUE.
func whereExpr(c *call) (*Expr, error) {
	els := c.cmd.Elems
	bad := func(pos Pos, msg string) error {
		return &cmdError{cmd: c.name, usage: true, pos: &pos, msg: msg}
	}
	if len(els) == 0 {
		return nil, bad(c.cmd.Pos, "give a condition: Where-Object { $_.Services -match 'SMTP' }")
	}
	if len(els) == 2 && els[0].Param != "" && strings.HasPrefix("filterscript", strings.ToLower(els[0].Param)) && els[1].Param == "" && els[1].Value.Kind == Block {
		return els[1].Value.block, nil
	}
	if len(els) == 1 && els[0].Param == "" && els[0].Value.Kind == Block {
		return els[0].Value.block, nil
	}
	if len(els) == 1 && els[0].Param != "" && els[0].Colon && els[0].Value.Kind == Block {
		return els[0].Value.block, nil
	}
	// Where-Object Services -match SMTP (PowerShell 3's simpler form).
	var prop, op string
	var val *Value
	var opPos Pos
	for i := 0; i < len(els); i++ {
		el := els[i]
		switch {
		case el.Param == "" && prop == "" && el.Value.Kind == Word:
			prop = el.Value.Text
		case el.Param != "" && strings.EqualFold(el.Param, "Property") && !el.Colon && i+1 < len(els):
			i++
			prop = els[i].Value.Text
		case el.Param != "" && op == "":
			name := strings.ToLower(el.Param)
			base := strings.TrimPrefix(strings.TrimPrefix(name, "c"), "i")
			if !comparisons[name] && !comparisons[base] {
				return nil, bad(el.Pos, fmt.Sprintf("A parameter cannot be found that matches parameter name '%s': write a condition such as Where-Object Services -match SMTP, or { $_.Services -match 'SMTP' }", el.Param))
			}
			op, opPos = name, el.Pos
			if el.Colon {
				val = el.Value
			}
		case el.Param == "" && op != "" && val == nil:
			val = el.Value
		default:
			return nil, bad(el.Pos, "write a condition such as Where-Object Services -match SMTP, or { $_.Services -match 'SMTP' }")
		}
	}
	if prop == "" || op == "" {
		return nil, bad(c.cmd.Pos, "write a condition such as Where-Object Services -match SMTP, or { $_.Services -match 'SMTP' }")
	}
	src := "$_." + prop + " -" + op
	if val != nil {
		src += " '" + strings.ReplaceAll(val.Text, "'", "''") + "'"
		if val.Kind == Bool {
			src = "$_." + prop + " -" + op + " " + val.Text
		}
	} else {
		return nil, bad(opPos, fmt.Sprintf("Missing a value after -%s.", op))
	}
	return parseExpr(src, opPos)
}

func selectObject(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, nil, []string{"Property", "First", "Last", "ExpandProperty", "Skip"})
	if err != nil {
		return stream{}, err
	}
	objs := c.in.objs
	num := func(n string) (int, error) {
		v, ok := a.named[n]
		if !ok {
			return -1, nil
		}
		i, err := strconv.Atoi(text(v))
		if err != nil || i < 0 {
			return 0, &cmdError{cmd: c.name, usage: true, pos: &c.cmd.Pos, msg: fmt.Sprintf("Cannot bind parameter '%s' to the value '%s': give a whole number", n, text(v))}
		}
		return i, nil
	}
	if n, err := num("Skip"); err != nil {
		return stream{}, err
	} else if n >= 0 {
		objs = objs[min(n, len(objs)):]
	}
	if n, err := num("First"); err != nil {
		return stream{}, err
	} else if n >= 0 {
		objs = objs[:min(n, len(objs))]
	}
	if n, err := num("Last"); err != nil {
		return stream{}, err
	} else if n >= 0 {
		objs = objs[len(objs)-min(n, len(objs)):]
	}
	out := stream{list: c.in.list}
	if e, ok := a.named["ExpandProperty"]; ok {
		for _, o := range objs {
			v, ok := o.Get(text(e))
			if !ok {
				return stream{}, &cmdError{cmd: c.name, pos: &c.cmd.Pos, msg: fmt.Sprintf("Property \"%s\" cannot be found.", text(e))}
			}
			for _, it := range items(v) {
				out.objs = append(out.objs, scalarOrObject(it))
			}
		}
		return out, nil
	}
	names := a.names()
	if len(names) == 0 {
		out.objs = objs
		return out, nil
	}
	for _, o := range objs {
		n := &Object{Type: "Selected." + o.Type}
		for _, p := range pick(o, names, true) {
			v, _ := o.Get(p)
			n.Props = append(n.Props, Prop{p, v})
		}
		out.objs = append(out.objs, n)
	}
	return out, nil
}

// scalar makes a plain value an object of the pipeline.
func scalar(v any) *Object { return &Object{Raw: v, Type: "scalar"} }

func scalarOrObject(v any) *Object {
	if o, ok := v.(*Object); ok {
		return o
	}
	return scalar(v)
}

func convertToJSON(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, []string{"Compress", "AsArray"}, []string{"Depth"})
	if err != nil {
		return stream{}, err
	}
	vals := make([]any, len(c.in.objs))
	for i, o := range c.in.objs {
		vals[i] = o
		if o.Raw != nil {
			vals[i] = o.Raw
		}
	}
	var v any
	switch {
	case len(vals) == 0 && !c.in.list && a.named["AsArray"] == nil:
		return stream{}, nil
	case len(vals) == 1 && !c.in.list && a.named["AsArray"] == nil:
		v = vals[0]
	default:
		v = vals
	}
	out, err := jsonOf(v)
	if err != nil {
		return stream{}, &cmdError{cmd: c.name, msg: err.Error()}
	}
	if a.named["Compress"] == true {
		b, err := marshal(v)
		if err != nil {
			return stream{}, &cmdError{cmd: c.name, msg: err.Error()}
		}
		out = string(b) + "\n"
	}
	fmt.Fprint(s.Out, out)
	return stream{}, nil
}

// restartServices are the services whose restart the seeds ask for after
// a certificate change: certrelay needs none of them.
var restartServices = map[string]string{
	"msexchangetransport": "Microsoft Exchange Transport", "msexchangefrontendtransport": "Microsoft Exchange Frontend Transport",
	"msexchangepop3": "Microsoft Exchange POP3", "msexchangeimap4": "Microsoft Exchange IMAP4", "msexchangeum": "Microsoft Exchange Unified Messaging",
	"msexchangeedgesync": "Microsoft Exchange EdgeSync", "w3svc": "World Wide Web Publishing Service (IIS)",
}

func restartService(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, []string{"Force"}, []string{"Name"})
	if err != nil {
		return stream{}, err
	}
	names := a.pos
	if n, ok := a.named["Name"]; ok {
		names = append(names, n)
	}
	if len(names) == 0 {
		return stream{}, &cmdError{cmd: c.name, usage: true, pos: &c.cmd.Pos, msg: "give the service's name: Restart-Service MSExchangeTransport"}
	}
	for _, n := range names {
		for _, it := range items(n) {
			what, ok := restartServices[strings.ToLower(text(it))]
			if !ok {
				return stream{}, &cmdError{cmd: c.name, pos: &c.cmd.Pos, msg: fmt.Sprintf("Cannot find any service with service name '%s'. certrelay has no services to restart (it needs no restart).", text(it))}
			}
			fmt.Fprintf(s.Out, "No restart needed: certrelay has no %s service to restart. A running server applies certificate, connector and setting changes from the next connection on, without a restart. Nothing was done.\n", what)
		}
	}
	return stream{}, nil
}

// certutil runs certutil -verify [-urlfetch] FILE as the operation
// Test-CertrelayCertificate.
func certutil(s *Shell, ctx context.Context, c *call) (stream, error) {
	verify, file := false, ""
	for _, el := range c.cmd.Elems {
		switch {
		case el.Param != "" && strings.EqualFold(el.Param, "verify"):
			verify = true
		case el.Param != "" && strings.EqualFold(el.Param, "urlfetch"):
			// certrelay's verification always fetches afresh.
		case el.Param == "" && file == "":
			v, err := s.eval(ctx, el.Value)
			if err != nil {
				return stream{}, err
			}
			file = text(v)
		default:
			pos := el.Pos
			return stream{}, &cmdError{cmd: "certutil", usage: true, pos: &pos, msg: "only certutil -verify [-urlfetch] FILE is available here (certutil's other verbs manage Windows stores)"}
		}
	}
	if !verify || file == "" {
		return stream{}, &cmdError{cmd: "certutil", usage: true, pos: &c.cmd.Pos, msg: "write certutil -verify [-urlfetch] FILE"}
	}
	p, err := s.localPath("certutil", file, c.cmd.Pos)
	if err != nil {
		return stream{}, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return stream{}, &cmdError{cmd: "certutil", pos: &c.cmd.Pos, msg: fmt.Sprintf("Cannot read the file '%s': %v", file, unwrapPathError(err))}
	}
	op := admin.Lookup("Test-CertrelayCertificate")
	res, err := s.Admin.Call(ctx, admin.Request{Op: op.Name, Caller: s.Caller, Params: admin.Params{"FileData": data}})
	if err != nil {
		return stream{}, s.opError(c.cmd, op, err)
	}
	v := res.Data.(admin.VerifyResult)
	s.printVerify(v)
	if string(v.Status) != "Valid" {
		return stream{}, &cmdError{cmd: "certutil", msg: fmt.Sprintf("CertUtil: -verify command FAILED: the certificate's status is %s", v.Status)}
	}
	fmt.Fprintln(s.Out, "CertUtil: -verify command completed successfully.")
	return stream{}, nil
}

func getCredential(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, nil, []string{"UserName", "Message", "Credential"})
	if err != nil {
		return stream{}, err
	}
	user := ""
	if u, ok := a.named["UserName"]; ok {
		user = text(u)
	} else if len(a.pos) > 0 {
		user = text(a.pos[0])
	}
	if s.Ask == nil {
		return stream{}, &cmdError{cmd: c.name, pos: &c.cmd.Pos, msg: "there is no terminal to ask the password on. In a script, read it from a file: (Get-Content FILE | ConvertTo-SecureString -AsPlainText -Force)"}
	}
	pw, err := s.Ask.Secret("Password (not shown): ")
	if err != nil {
		return stream{}, &cmdError{cmd: c.name, msg: "no password was given: " + err.Error(), kind: admin.Cancelled}
	}
	return stream{objs: []*Object{{Type: "PSCredential", Props: []Prop{{"UserName", user}, {"Password", secret(pw)}}}}}, nil
}

func readHost(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, []string{"AsSecureString"}, []string{"Prompt"})
	if err != nil {
		return stream{}, err
	}
	prompt := ""
	if p, ok := a.named["Prompt"]; ok {
		prompt = text(p)
	} else if len(a.pos) > 0 {
		prompt = text(a.pos[0])
	}
	if prompt != "" {
		prompt += ": "
	}
	if s.Ask == nil {
		return stream{}, &cmdError{cmd: c.name, pos: &c.cmd.Pos, msg: "there is no terminal to ask on. In a script, read the value from a file (Get-Content FILE)"}
	}
	if a.named["AsSecureString"] == true {
		pw, err := s.Ask.Secret(prompt)
		if err != nil {
			return stream{}, &cmdError{cmd: c.name, msg: err.Error(), kind: admin.Cancelled}
		}
		return stream{objs: []*Object{scalar(secret(pw))}}, nil
	}
	line, err := s.Ask.Line(prompt)
	if err != nil {
		return stream{}, &cmdError{cmd: c.name, msg: err.Error(), kind: admin.Cancelled}
	}
	return stream{objs: []*Object{scalar(line)}}, nil
}

func convertToSecureString(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, []string{"AsPlainText", "Force"}, []string{"String", "Key", "SecureKey"})
	if err != nil {
		return stream{}, err
	}
	written := false
	for _, v := range a.vals {
		written = written || literal(v)
	}
	for _, el := range c.cmd.Elems {
		if el.Param != "" && strings.HasPrefix("string", strings.ToLower(el.Param)) && (el.Colon && literal(el.Value)) {
			written = true
		}
	}
	if _, ok := a.named["String"]; ok && !written {
		for i, el := range c.cmd.Elems {
			if el.Param != "" && strings.HasPrefix("string", strings.ToLower(el.Param)) && !el.Colon && i+1 < len(c.cmd.Elems) && literal(c.cmd.Elems[i+1].Value) {
				written = true
			}
		}
	}
	if written {
		return stream{}, &cmdError{cmd: c.name, usage: true, pos: &c.cmd.Pos, msg: "Cannot bind parameter 'String': a password written on the command line would stay in the history and the process list (SPEC I5). " + secretHelp}
	}
	var src []any
	if v, ok := a.named["String"]; ok {
		src = append(src, v)
	}
	src = append(src, a.pos...)
	for _, o := range c.in.objs {
		if o.Type == "scalar" {
			src = append(src, o.Raw)
		}
	}
	if len(src) == 0 {
		return stream{}, &cmdError{cmd: c.name, usage: true, pos: &c.cmd.Pos, msg: "give the password from a file: Get-Content FILE | ConvertTo-SecureString -AsPlainText -Force"}
	}
	var out stream
	for _, v := range src {
		if sv, ok := v.(secret); ok {
			out.objs = append(out.objs, scalar(sv))
			continue
		}
		if a.named["AsPlainText"] != true {
			return stream{}, &cmdError{cmd: c.name, usage: true, pos: &c.cmd.Pos, msg: "the text is not an encrypted string: add -AsPlainText -Force to take it as the password"}
		}
		out.objs = append(out.objs, scalar(secret(text(v))))
	}
	return out, nil
}

func getContent(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, nil, []string{"Path", "Encoding", "ReadCount", "Raw"})
	if err != nil {
		return stream{}, err
	}
	var file any
	if p, ok := a.named["Path"]; ok {
		file = p
	} else if len(a.pos) > 0 {
		file = a.pos[0]
	}
	if file == nil {
		return stream{}, &cmdError{cmd: c.name, usage: true, pos: &c.cmd.Pos, msg: "give the file: Get-Content FILE"}
	}
	p, err := s.localPath(c.name, text(file), c.cmd.Pos)
	if err != nil {
		return stream{}, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return stream{}, &cmdError{cmd: c.name, pos: &c.cmd.Pos, msg: fmt.Sprintf("Cannot find path '%s': %v", text(file), unwrapPathError(err))}
	}
	if e, ok := a.named["Encoding"]; ok && strings.EqualFold(text(e), "Byte") {
		return stream{objs: []*Object{scalar(data)}}, nil
	}
	var out stream
	for _, line := range strings.Split(strings.TrimRight(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n"), "\n") {
		out.objs = append(out.objs, scalar(line))
	}
	return out, nil
}

func writeOutput(s *Shell, ctx context.Context, c *call) (stream, error) {
	a, err := s.args(ctx, c, nil, []string{"InputObject"})
	if err != nil {
		return stream{}, err
	}
	var out stream
	for _, v := range a.pos {
		for _, it := range items(v) {
			out.objs = append(out.objs, scalarOrObject(it))
		}
	}
	return out, nil
}
