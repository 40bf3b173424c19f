package admin

import (
	"fmt"
	"sort"
	"strings"
)

// The operation registry: every management operation of certrelay — the
// cmdlets — declared once, with its names for each face, its parameters,
// the role it needs and whether it asks before acting. The CLI builds its
// commands from these declarations, and the cmdlet shell and the HTTPS API
// (issues 15 and 16) are meant to do the same; every face runs an
// operation through Admin.Call. The declarations are in the ops_*.go
// files; docs/DEVELOPMENT.md shows how to add one.

// Operation is one management operation.
type Operation struct {
	// Name identifies the operation everywhere (marks, the API): its
	// Cmdlet, or Cmdlet/Set when the cmdlet has several parameter sets.
	Name string
	// Cmdlet is the operation's name in the cmdlet shell: Exchange's where
	// Exchange has the cmdlet, certrelay's own (Verb-CertrelayNoun) where
	// it has none.
	Cmdlet string
	// Set, when several operations share a cmdlet, names the parameter
	// whose presence selects this one (Get-ExchangeCertificate with
	// -Thumbprint shows one certificate; New-ExchangeCertificate with
	// -GenerateRequest makes a request). "" for the cmdlet's default.
	Set string
	// CLI is the command path of the CLI ("cert new").
	CLI string
	// Summary is one line of help; Description more, or "" (marks allowed
	// in both).
	Summary, Description string
	// Role is the least role that may run the operation. An operation may
	// ask for more depending on its parameters (In.need).
	Role Role
	// Confirm says whether the operation asks before it acts; those that
	// do declare a Force parameter that answers yes.
	Confirm ConfirmLevel
	Params  []Param
	// Returns is a zero value of the data the operation returns
	// (Result.Data), nil when it returns only messages.
	Returns any
	// File: the operation hands a file to the caller (Request.Deliver).
	File bool
	// Streams: the operation hands records to the caller as they come
	// (Request.Stream) until its context ends; faces that cannot stream
	// (the HTTPS API) are refused it.
	Streams bool
	// NoWhatIf: the operation's changes do not all join the data
	// directory's transaction (the queue has its own database), so
	// Request.WhatIf cannot preview them and is refused.
	NoWhatIf bool
	// Run does the operation. It reads its parameters from in, already
	// checked against Params; questions go through in (see Question).
	Run func(in *In) (*Result, error)
}

// Param declares one parameter of an operation.
type Param struct {
	// Name is the parameter's name in the cmdlet shell and the API
	// (Exchange's where Exchange has it; the property name of the object
	// it sets where there is one).
	Name string
	// CLI is the CLI's flag ("domain" for --domain) or, for a positional
	// parameter, its placeholder ("THUMBPRINT").
	CLI  string
	Type Type
	// Help is one line (marks allowed).
	Help string
	// Default is what the operation takes when the parameter is absent,
	// as text ("" when nothing, or when it depends on the call).
	Default string
	// Required parameters must be given: faces refuse a call without one
	// (a usage error). An empty text or list counts as absent.
	Required bool
	// Position is the parameter's place among the positional ones (1, 2,
	// …); 0 for a named parameter.
	Position int
	// Excludes names parameters that may not be given with this one.
	Excludes []string
	// Hidden parameters are accepted but not shown in help (kept so that
	// their refusal can explain itself).
	Hidden bool
	// Prompt, for a secret, is what a face may ask for it when the
	// operation needs it and it was not given ("" when a face must not
	// ask).
	Prompt string
	// Pipe names the property of an object piped into the operation that
	// gives this parameter, as PowerShell's ValueFromPipelineByPropertyName
	// (Get-ExchangeCertificate T | New-ExchangeCertificate: Instance from
	// Thumbprint); "" when a piped object's property of the parameter's own
	// name, if any, gives it — the cmdlet shell takes that only for a
	// positional parameter (the one that names the object: Thumbprint,
	// Identity), so a piped object's other properties are not copied into
	// settings the line does not name.
	Pipe string

	def any // Default, parsed
}

// Role is what a caller may do (SPEC I3).
type Role int

// The roles, each allowed everything the ones before it may do.
const (
	// ViewOnly may read everything (Get-*).
	ViewOnly Role = 1 + iota
	// ServerAdmin may also change this server: its certificates, trust,
	// receive connectors, settings, queue.
	ServerAdmin
	// OrgAdmin may also change the organisation's directory: send
	// connectors, accepted domains, mailboxes, organisation-wide roots.
	OrgAdmin
)

var roleNames = map[Role]string{ViewOnly: "view-only", ServerAdmin: "server-admin", OrgAdmin: "org-admin"}

func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole reads a role's name (view-only, server-admin, org-admin).
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if strings.EqualFold(n, strings.TrimSpace(s)) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q: use view-only, server-admin or org-admin", s)
}

// ConfirmLevel says whether an operation asks before it acts.
type ConfirmLevel int

// Confirmation levels.
const (
	// ConfirmNever: the operation never asks.
	ConfirmNever ConfirmLevel = iota
	// ConfirmSometimes: it asks when its effect reaches further than the
	// call says (M1, M5: replacing the internal transport certificate).
	ConfirmSometimes
	// ConfirmAlways: it asks every time (M8: removing a certificate).
	ConfirmAlways
)

func (c ConfirmLevel) String() string {
	return [...]string{"Never", "Sometimes", "Always"}[c]
}

// registry holds every operation, by name. It is built in init: the
// operations' texts refer back to it.
var registry map[string]*Operation

func init() {
	registry = buildRegistry(
		certOperations(),
		trustOperations(),
		serverOperations(),
		connectorOperations(),
		organisationOperations(),
		logOperations(),
		consoleOperations(),
		accessOperations(),
		diagnoseOperations(),
		traceOperations(),
		acmeOperations(),
		secureOperations(),
		reportOperations(),
		edgeOperations(),
	)
}

// buildRegistry indexes the operations and parses their defaults. A
// declaration that contradicts itself is a programming error: it panics,
// so no build with one passes its tests.
func buildRegistry(groups ...[]*Operation) map[string]*Operation {
	m := map[string]*Operation{}
	cli := map[string]string{}
	for _, ops := range groups {
		for _, op := range ops {
			if _, dup := m[op.Name]; dup {
				panic("admin: operation declared twice: " + op.Name)
			}
			if other, dup := cli[op.CLI]; dup {
				panic("admin: " + op.Name + " and " + other + " share the CLI path " + op.CLI)
			}
			for i := range op.Params {
				p := &op.Params[i]
				if p.Default == "" {
					continue
				}
				v, err := p.Type.bind(p.Default)
				if err != nil {
					panic(fmt.Sprintf("admin: %s -%s: default %q: %v", op.Name, p.Name, p.Default, err))
				}
				p.def = v
			}
			m[op.Name] = op
			cli[op.CLI] = op.Name
		}
	}
	return m
}

// Lookup returns the operation named name (its Name, case-insensitive),
// or nil.
func Lookup(name string) *Operation {
	if op, ok := registry[name]; ok {
		return op
	}
	for n, op := range registry {
		if strings.EqualFold(n, name) {
			return op
		}
	}
	return nil
}

// LookupCmdlet returns the operation a cmdlet shell line names: the
// operation of cmdlet (case-insensitive) whose parameter set is among the
// parameters given, else the cmdlet's default operation; nil when there
// is no such cmdlet.
func LookupCmdlet(cmdlet string, given []string) *Operation {
	var def *Operation
	for _, op := range registry {
		if !strings.EqualFold(op.Cmdlet, cmdlet) {
			continue
		}
		if op.Set == "" {
			def = op
			continue
		}
		for _, g := range given {
			if strings.EqualFold(strings.TrimPrefix(g, "-"), op.Set) {
				return op
			}
		}
	}
	return def
}

// Operations returns every operation, ordered by name.
func Operations() []*Operation {
	out := make([]*Operation, 0, len(registry))
	for _, op := range registry {
		out = append(out, op)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Param returns op's parameter named name (case-insensitive), or nil.
func (op *Operation) Param(name string) *Param {
	for i := range op.Params {
		if strings.EqualFold(op.Params[i].Name, name) {
			return &op.Params[i]
		}
	}
	return nil
}

// Positional returns op's positional parameters, in order.
func (op *Operation) Positional() []*Param {
	var out []*Param
	for i := range op.Params {
		if op.Params[i].Position > 0 {
			out = append(out, &op.Params[i])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Position < out[j].Position })
	return out
}

// Params are the parameters of one call, by name: as a face read them
// (text, lists of text, booleans, numbers, file contents) before
// Operation.Bind, and as the operation reads them after.
type Params map[string]any

// Bind checks raw parameters against op's declaration and returns them
// in the types the operation reads: unknown parameters, values of the
// wrong type, missing required parameters and parameters given together
// that exclude each other are refused with a usage error (an *Error
// with Usage set, naming the parameter). Absent parameters stay absent:
// the operation applies their defaults. Faces may call Bind before Call
// to report usage errors early; Call binds again.
func (op *Operation) Bind(raw Params) (Params, error) {
	out := Params{}
	for name, v := range raw {
		p := op.Param(name)
		if p == nil {
			return nil, usage(name, "%s has no parameter %s", markup("{"+op.Name+"}"), name)
		}
		if p.Required && p.Type.Kind != KindData && isEmpty(v) {
			continue // reported as missing below
		}
		bound, err := p.Type.bind(v)
		if err != nil {
			e := usage(p.Name, "{-%s}: %v", markup(p.Name), err)
			if p.Position > 0 { // its place says which it is
				e = usage(p.Name, "%v", err)
			}
			if p.Type.Kind != KindSecret && p.Type.Kind != KindData {
				e.Value = fmt.Sprint(v)
			}
			return nil, e
		}
		if p.Required && p.Type.Kind != KindData && isEmpty(bound) {
			continue
		}
		out[p.Name] = bound
	}
	for i := range op.Params {
		p := &op.Params[i]
		if _, ok := out[p.Name]; !ok && p.Required {
			return nil, usage(p.Name, "give {-%s}: %s", markup(p.Name), markup(p.Help))
		}
		if _, ok := out[p.Name]; !ok {
			continue
		}
		for _, x := range p.Excludes {
			if _, both := out[x]; both {
				return nil, usage(p.Name, "{-%s} and {-%s} do not go together", markup(p.Name), markup(x))
			}
		}
	}
	return out, nil
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.TrimSpace(v) == ""
	case []string:
		return len(v) == 0
	case []byte:
		return len(v) == 0
	}
	return false
}
