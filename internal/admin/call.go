package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"certrelay/internal/db"
	"certrelay/internal/store"
)

// Caller is who runs an operation.
type Caller struct {
	// Name says who, for people and audit events ("alice", "root").
	Name string
	Role Role
	// From says where from ("cli", a client's address).
	From string
}

// Request is one call of an operation: the one shape every face uses.
type Request struct {
	// Op is the operation's Name (see Operation).
	Op     string
	Caller Caller
	// Params are the parameters as the face read them (see Operation.Bind).
	Params Params
	// Answer answers the question a previous call of the same operation,
	// with the same parameters and caller, returned (ConfirmationRequired).
	Answer *Answer
	// Deliver hands a file the operation produced (a certificate request,
	// an export) to the face, which stores or sends it and says where it
	// went ("-" for standard output); the operation treats its failure as
	// its own (a request whose file cannot be written is not kept). nil:
	// the file is returned in Result.File.
	Deliver func(ctx context.Context, f File) (where string, err error)
	// Stream receives the records of an operation that Streams, one by
	// one, until the call's context ends; an error from it ends the
	// operation. nil: such an operation is refused (Invalid).
	Stream func(v any) error
	// WhatIf runs the operation to the end and rolls everything back: the
	// Result says what the call would do (its Data as it would be, its
	// Messages, Result.WhatIf set), and nothing changes — no row, no key
	// file, no event, no file delivered (Deliver is not called). Questions
	// are not asked: each is answered yes and reported as a Note. Refused
	// for operations declared NoWhatIf.
	WhatIf bool
}

// Answer answers a ConfirmationRequired.
type Answer struct {
	Token string
	Yes   bool
}

// Result is what an operation returns when it succeeds.
type Result struct {
	// Data is the object or list the operation returns, with the property
	// names of SPEC §2 in JSON (a Certificate, a []ReceiveConnector, …);
	// nil when it returns only messages.
	Data any
	// Messages are what people should read beside the data, in order.
	Messages []Message
	// File is the file the operation produced when the request had no
	// Deliver (or was a WhatIf).
	File *File
	// WhatIf: the call was a Request.WhatIf, and nothing of this result
	// happened.
	WhatIf bool
}

// MessageLevel says how a message matters.
type MessageLevel string

// Message levels.
const (
	// Note: what the operation did beside its result.
	Note MessageLevel = "Note"
	// Warning: what deserves attention although the operation succeeded.
	Warning MessageLevel = "Warning"
	// Hint: the next step, for people (faces that return data to scripts
	// leave it out).
	Hint MessageLevel = "Hint"
)

// Message is one message of a result; Text may hold marks.
type Message struct {
	Level MessageLevel
	Text  string
}

// File is a file an operation produced.
type File struct {
	Data   []byte
	Format string // "PEM", "DER", "PKCS#12", "PKCS#10 PEM", "PKCS#10 DER"
	// Secret: it holds a private key, so only its owner may read it.
	Secret bool
}

// ConfirmationRequired is the answer of an operation that must ask before
// it acts (M1, M5, M8): nothing has changed. A face shows the question —
// a terminal asks, a web page shows a dialog — and calls the operation
// again with the same parameters and an Answer carrying Token; a script
// passes Force instead. The operation checks again, inside its
// transaction, that what it asked about still holds; if not, it asks
// again.
type ConfirmationRequired struct {
	Op     string
	Action string // what asks, for people ("new certificate")
	// Question is the question, for people, Details what it is about
	// (thumbprints, expiry dates), IfNo what answering no does.
	Question string
	Details  []Detail
	IfNo     string
	// Token identifies the question for the answer; "" when the
	// question cannot be answered by a later call (a typed method called
	// without a Confirmer).
	Token string
}

// Detail is one fact a question shows.
type Detail struct {
	Name, Value string
}

func (c *ConfirmationRequired) Error() string {
	s := "confirmation required: " + c.Question
	if c.Action != "" {
		s = c.Action + ": " + s
	}
	return s
}

// Question is what an operation asks before it acts.
type Question struct {
	Text    string
	Details []Detail
	IfNo    string
	// about says what the question is about: an answer holds for a
	// question about the same thing only.
	about string
	// keep is what the operation prepared before asking (a new key and
	// certificate), kept with the question for the call that answers it.
	keep any
}

// asker answers an operation's questions.
type asker interface {
	// ask returns the answer to q, or an error — a *ConfirmationRequired
	// when the answer must come from a later call.
	ask(q Question) (bool, error)
	// resumed returns what the operation kept with the question this call
	// answers (Question.keep), or nil.
	resumed() any
}

// Confirmer asks the administrator a yes/no question, for callers of the
// typed methods. Implementations return an error when nobody can answer.
type Confirmer interface {
	Confirm(question string) (bool, error)
}

// Yes is the Confirmer that answers yes to everything (as Force does).
type Yes struct{}

// Confirm implements Confirmer.
func (Yes) Confirm(string) (bool, error) { return true, nil }

// confirmerAsker asks a Confirmer; without one, questions fail with a
// ConfirmationRequired nobody can answer.
type confirmerAsker struct{ c Confirmer }

func (c confirmerAsker) ask(q Question) (bool, error) {
	if c.c == nil {
		return false, &ConfirmationRequired{Question: q.Text, Details: q.Details, IfNo: q.IfNo}
	}
	return c.c.Confirm(q.Text)
}

func (confirmerAsker) resumed() any { return nil }

// Call runs an operation for a caller: it checks the caller's role and
// the parameters, then runs the operation, which changes everything it
// changes in one transaction or nothing. Failures are *Error (its Kind
// says which sort), questions *ConfirmationRequired; in both cases
// nothing changed.
func (a *Admin) Call(ctx context.Context, r Request) (*Result, error) {
	op := Lookup(r.Op)
	if op == nil {
		return nil, &Error{Kind: Invalid, Usage: true, Msg: msgf("there is no operation %q", r.Op)}
	}
	fail := func(err error) (*Result, error) {
		if cr, ok := err.(*ConfirmationRequired); ok {
			cr.Op = op.Name
			return nil, cr
		}
		e := asError(err)
		e.Op = op.Name
		return nil, e
	}
	in := &In{ctx: ctx, a: a, Caller: r.Caller, op: op, deliverFn: r.Deliver, streamFn: r.Stream}
	if err := in.need(op.Role); err != nil {
		return fail(err)
	}
	params, err := op.Bind(r.Params)
	if err != nil {
		return fail(err)
	}
	in.params = params
	in.force = in.Bool("Force") && op.Confirm != ConfirmNever
	if r.WhatIf {
		return a.whatIf(in, r, fail)
	}
	if r.Answer != nil {
		in.fingerprint = fingerprint(params)
		if p := a.questions.take(r.Answer.Token, a.now()); p != nil && p.op == op.Name && p.caller == r.Caller.Name && p.fingerprint == in.fingerprint {
			in.pending, in.yes = p, r.Answer.Yes
		}
	}
	res, err := op.Run(in)
	if err != nil {
		return fail(err)
	}
	if res == nil {
		res = &Result{}
	}
	if in.file != nil {
		res.File = in.file
	}
	if op.Role > ViewOnly {
		a.audit(ctx, r.Caller, op, params)
	}
	return res, nil
}

// errWhatIf rolls a WhatIf call's transaction back.
var errWhatIf = errors.New("what if: roll back")

// whatIf runs in's operation in one transaction that it rolls back (see
// Request.WhatIf). Everything an operation changes joins the transaction
// its context carries (db.Tx, db.OnRollback for what is outside the
// database), which is what makes this safe; an operation whose changes
// do not (the queue's own database) is declared NoWhatIf and refused.
func (a *Admin) whatIf(in *In, r Request, fail func(error) (*Result, error)) (*Result, error) {
	if in.op.NoWhatIf {
		return fail(usage("", "%s cannot show what it would do without doing it: it has no -WhatIf", markup("{"+in.op.Name+"}")))
	}
	in.whatIf, in.deliverFn, in.force = true, nil, true
	var res *Result
	err := db.Tx(in.ctx, a.db, func(ctx context.Context, _ *sql.Tx) error {
		in.ctx = ctx
		var err error
		if res, err = in.op.Run(in); err != nil {
			return err
		}
		return errWhatIf
	})
	if err != nil && !errors.Is(err, errWhatIf) {
		return fail(err)
	}
	if res == nil {
		res = &Result{}
	}
	res.Messages = append(in.asked, res.Messages...)
	res.File, res.WhatIf = in.file, true
	return res, nil
}

// audit raises 16080 for a change an operation made: who (the caller's
// name and role), from where (the face: "cli", a client's address), what
// (the operation and its parameters, secrets and file contents left out).
// It follows the operation's commit: the operations that wait on the
// network outside their transaction (an import checks revocation) keep
// the write lock free meanwhile.
func (a *Admin) audit(ctx context.Context, c Caller, op *Operation, params Params) {
	var args []string
	for i := range op.Params {
		p := &op.Params[i]
		v, ok := params[p.Name]
		if !ok {
			continue
		}
		var text string
		switch p.Type.Kind {
		case KindSecret:
			text = "(secret)"
		case KindData:
			b, _ := v.([]byte)
			text = fmt.Sprintf("(%d bytes)", len(b))
		case KindBool:
			if b, _ := v.(bool); b {
				args = append(args, "-"+p.Name)
				continue
			}
			text = "$false"
			args = append(args, "-"+p.Name+":"+text)
			continue
		case KindList:
			l, _ := v.([]string)
			parts := make([]string, len(l))
			for i, x := range l {
				parts[i] = quotePS(x)
			}
			text = strings.Join(parts, ",")
		default:
			text = quotePS(fmt.Sprint(v))
		}
		args = append(args, "-"+p.Name, text)
	}
	who, from := or(c.Name, "(unnamed)"), or(c.From, "(unknown)")
	a.raise(context.WithoutCancel(ctx), 16080, "", who, c.Role.String(), from, op.Cmdlet, strings.Join(args, " "))
}

// In is one call of an operation, as its Run function sees it.
type In struct {
	ctx    context.Context
	a      *Admin
	Caller Caller
	op     *Operation
	params Params

	force       bool
	fingerprint string
	pending     *pendingQuestion // the question this call answers
	yes         bool             // the answer to it
	deliverFn   func(context.Context, File) (string, error)
	streamFn    func(any) error
	file        *File
	whatIf      bool      // a Request.WhatIf: questions are answered yes and noted
	asked       []Message // the questions a WhatIf call answered
}

// need refuses a caller whose role is below r.
func (in *In) need(r Role) error {
	if in.Caller.Role >= r {
		return nil
	}
	who := in.Caller.Name
	if who == "" {
		who = "the caller"
	}
	return failed(Forbidden, "%s may not run %s: it needs the %s role, and %s has %s",
		who, markup("{"+in.op.Name+"}"), r.String(), who, in.Caller.Role.String())
}

// Has reports whether the call gives parameter name.
func (in *In) Has(name string) bool { _, ok := in.params[name]; return ok }

// value returns the parameter's value, or its declared default.
func (in *In) value(name string) any {
	if v, ok := in.params[name]; ok {
		return v
	}
	if p := in.op.Param(name); p != nil {
		return p.def
	}
	return nil
}

// String returns a text parameter ("" when absent without default).
func (in *In) String(name string) string { s, _ := in.value(name).(string); return s }

// Strings returns a list parameter.
func (in *In) Strings(name string) []string { s, _ := in.value(name).([]string); return s }

// Bool returns a switch.
func (in *In) Bool(name string) bool { b, _ := in.value(name).(bool); return b }

// Int returns a number parameter.
func (in *In) Int(name string) int { n, _ := in.value(name).(int); return n }

// Data returns file content.
func (in *In) Data(name string) []byte { b, _ := in.value(name).([]byte); return b }

// Services returns a TypeServices or TypeService parameter.
func (in *In) Services(name string) store.Services { s, _ := in.value(name).(store.Services); return s }

// Time returns a TypeTime parameter (zero when absent).
func (in *In) Time(name string) time.Time { t, _ := in.value(name).(time.Time); return t }

// Value returns a parameter of a parsed type (a trust.Source, an
// events.Level), or nil.
func (in *In) Value(name string) any { return in.value(name) }

// StringPtr returns a text parameter, nil when absent: for the options
// where nil keeps the current value.
func (in *In) StringPtr(name string) *string {
	if !in.Has(name) {
		return nil
	}
	s := in.String(name)
	return &s
}

// StringsPtr is StringPtr for a list.
func (in *In) StringsPtr(name string) *[]string {
	if !in.Has(name) {
		return nil
	}
	s := in.Strings(name)
	return &s
}

// BoolPtr is StringPtr for a switch.
func (in *In) BoolPtr(name string) *bool {
	if !in.Has(name) {
		return nil
	}
	b := in.Bool(name)
	return &b
}

// IntPtr is StringPtr for a number.
func (in *In) IntPtr(name string) *int {
	if !in.Has(name) {
		return nil
	}
	n := in.Int(name)
	return &n
}

// deliver hands f to the face and says where it went ("" when it is
// returned in the result).
func (in *In) deliver(f File) (string, error) {
	if in.deliverFn == nil {
		in.file = &f
		return "", nil
	}
	return in.deliverFn(in.ctx, f)
}

// ask implements asker: Force answers yes; a call answering this very
// question gets its answer; otherwise the question is kept, with what
// the operation prepared, for the call that answers it.
func (in *In) ask(q Question) (bool, error) {
	if in.whatIf {
		in.asked = append(in.asked, Message{Note, msgf("It would ask: %s (taken as yes here)", q.Text)})
		return true, nil
	}
	if in.force {
		return true, nil
	}
	if in.pending != nil && in.pending.about == q.about {
		return in.yes, nil
	}
	if in.fingerprint == "" {
		in.fingerprint = fingerprint(in.params)
	}
	token := in.a.questions.put(&pendingQuestion{
		op: in.op.Name, caller: in.Caller.Name, fingerprint: in.fingerprint,
		about: q.about, keep: q.keep, expires: in.a.now().Add(questionLifetime),
	})
	return false, &ConfirmationRequired{Op: in.op.Name, Question: q.Text, Details: q.Details, IfNo: q.IfNo, Token: token}
}

// resumed implements asker.
func (in *In) resumed() any {
	if in.pending == nil {
		return nil
	}
	return in.pending.keep
}

// fingerprint identifies a call's parameters (Force aside), so an answer
// is only taken for the call that was asked.
func fingerprint(p Params) string {
	rest := Params{}
	for k, v := range p {
		if k != "Force" {
			rest[k] = v
		}
	}
	b, _ := json.Marshal(rest) // maps marshal in key order
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Questions waiting for their answer are kept in memory, by the Admin that
// asked them: a face asks and answers within one process (the CLI's
// terminal, the server's web session). They are bounded in number and
// time.
const (
	maxPendingQuestions = 64
	questionLifetime    = 15 * time.Minute
)

type pendingQuestion struct {
	op, caller, fingerprint, about string
	keep                           any
	expires                        time.Time
}

// questions are the questions an Admin asked and nobody answered yet.
// Safe for concurrent use.
type questions struct {
	mu sync.Mutex
	m  map[string]*pendingQuestion
}

func (qs *questions) put(p *pendingQuestion) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if qs.m == nil {
		qs.m = map[string]*pendingQuestion{}
	}
	now := p.expires.Add(-questionLifetime)
	var oldest string
	for t, q := range qs.m {
		if now.After(q.expires) {
			delete(qs.m, t)
		} else if oldest == "" || q.expires.Before(qs.m[oldest].expires) {
			oldest = t
		}
	}
	if len(qs.m) >= maxPendingQuestions {
		delete(qs.m, oldest)
	}
	qs.m[token] = p
	return token
}

// take removes and returns the question with token, if it is still
// waiting.
func (qs *questions) take(token string, now time.Time) *pendingQuestion {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	p := qs.m[token]
	delete(qs.m, token)
	if p == nil || now.After(p.expires) {
		return nil
	}
	return p
}
