package admin

import (
	"context"
	"errors"
	"strings"

	"certrelay/internal/accounts"
	"certrelay/internal/certinfo"
	"certrelay/internal/certview"
	"certrelay/internal/db"
	"certrelay/internal/directory"
	"certrelay/internal/dnsname"
	"certrelay/internal/queue"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// Kind says what sort of failure an Error is; faces map it to their own
// terms (the HTTPS API to a status code).
type Kind string

// The kinds of failure.
const (
	// Invalid: a parameter's value is wrong (the Field names it).
	Invalid Kind = "Invalid"
	// NotFound: what a parameter names does not exist.
	NotFound Kind = "NotFound"
	// Conflict: the operation contradicts the state it found (a name
	// taken, the certificate in use).
	Conflict Kind = "Conflict"
	// Forbidden: the caller's role may not run the operation.
	Forbidden Kind = "Forbidden"
	// Unavailable: something the operation needs is not there now (the
	// data directory is read-only or not set up, a lock is held).
	Unavailable Kind = "Unavailable"
	// Cancelled: the caller answered no to a question that guards the
	// whole operation.
	Cancelled Kind = "Cancelled"
	// Internal: anything else (a disk error, a bug).
	Internal Kind = "Internal"
)

// Error is every error an operation returns through Call (and most of
// the typed methods): nothing changed, and it says why. Its texts carry
// marks (see text.go), so each face names parameters and operations in
// its own syntax; Error() renders them as the cmdlet shell writes them.
type Error struct {
	Kind Kind
	// Op is the operation called ("" outside Call): marks of its
	// parameters ({-Param}) resolve against it.
	Op string
	// Action is what failed, for people ("enable certificate"); "" when
	// the message says it.
	Action string
	// Field is the parameter at fault and Value its value as given ("" when
	// the fault is no single parameter's; Value is never a secret).
	Field, Value string
	// Usage: the call itself was made wrongly — a parameter missing, of the
	// wrong type, or one that does not go with another — rather than a
	// value the operation refused. Faces report it as a usage error (the
	// CLI's exit status 2).
	Usage bool
	// Msg says what is wrong (marks allowed), Fix what to do ("" when the
	// message says it or there is nothing to do).
	Msg, Fix string
	// Err is the cause, when there is one.
	Err error
}

func (e *Error) Error() string { return e.Render(CmdletSyntax{}) }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Render writes the error for a face: "action: message: cause: fix".
func (e *Error) Render(s Syntax) string {
	op := Lookup(e.Op)
	var parts []string
	if e.Action != "" {
		parts = append(parts, e.Action)
	}
	if e.Msg != "" {
		parts = append(parts, Render(e.Msg, op, s))
	}
	if e.Err != nil {
		if inner, ok := e.Err.(*Error); ok {
			parts = append(parts, inner.Render(s))
		} else {
			parts = append(parts, e.Err.Error())
		}
	}
	if e.Fix != "" {
		parts = append(parts, Render(e.Fix, op, s))
	}
	return strings.Join(parts, ": ")
}

// invalid is a refused value of parameter field.
func invalid(field, value, format string, args ...any) *Error {
	return &Error{Kind: Invalid, Field: field, Value: value, Msg: msgf(format, args...)}
}

// usage is a call made wrongly (see Error.Usage).
func usage(field, format string, args ...any) *Error {
	return &Error{Kind: Invalid, Usage: true, Field: field, Msg: msgf(format, args...)}
}

// failed is an error of kind k with a message (marks allowed).
func failed(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: msgf(format, args...)}
}

// fix adds a fix (marks allowed) and returns e.
func (e *Error) fix(format string, args ...any) *Error {
	e.Fix = msgf(format, args...)
	return e
}

// field names the parameter at fault and returns e.
func (e *Error) field(name, value string) *Error {
	e.Field, e.Value = name, value
	return e
}

// errorf makes err an *Error of the operation action: an *Error gets the
// action (if it has none), a question keeps its form, and any other error
// becomes the cause of an Error whose kind and fix say what it is.
func errorf(action string, err error) error {
	if err == nil {
		return nil
	}
	switch e := err.(type) {
	case *Error:
		if e.Action == "" {
			e.Action = action
		}
		return e
	case *ConfirmationRequired:
		if e.Action == "" {
			e.Action = action
		}
		return e
	}
	e := asError(err)
	e.Action = action
	return e
}

// asError classifies an error of the packages below admin: its kind,
// and for the errors every operation may meet, the field and the fix.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e == err {
		return e
	}
	out := &Error{Kind: Internal, Err: err}
	var rep *directory.ReplicatedError
	switch {
	case errors.As(err, &rep):
		out.Kind = Conflict
		out.Fix = replicatedFix(rep.Kind)
	case errors.As(err, &e):
		out.Kind, out.Field, out.Value = e.Kind, e.Field, e.Value
	case errors.Is(err, store.ErrNotFound):
		out.Kind, out.Field = NotFound, "Thumbprint"
		out.Fix = msgf("list them with {Get-ExchangeCertificate}")
	case errors.Is(err, certview.ErrNotSetUp):
		out.Kind = Unavailable
		out.Fix = msgf("run {Install-CertrelayServer} (starting the server runs it too)")
	case errors.Is(err, store.ErrExists), errors.Is(err, accounts.ErrExists):
		out.Kind = Conflict
	case errors.Is(err, accounts.ErrNotFound):
		out.Kind, out.Field = NotFound, "Identity"
	case errors.Is(err, accounts.ErrInvalidName):
		out.Kind, out.Field = Invalid, "Name"
	case errors.Is(err, accounts.ErrWeakPassword):
		out.Kind, out.Field = Invalid, "Password"
	case errors.Is(err, store.ErrNoKey):
		out.Kind = Conflict
	case errors.Is(err, directory.ErrNotFound), errors.Is(err, trust.ErrNotFound), errors.Is(err, queue.ErrNotFound):
		out.Kind = NotFound
	case errors.Is(err, directory.ErrUnavailable):
		out.Kind = Unavailable
		out.Fix = msgf("nothing was changed; check that the organisation's directory runs and that this server reaches it ({Get-ExchangeServer} names it), then try again")
	case errors.Is(err, directory.ErrNotOwn):
		out.Kind = Conflict
		out.Fix = msgf("run the command on that server")
	case errors.Is(err, db.ErrReadOnly), errors.Is(err, queue.ErrLocked),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		out.Kind = Unavailable
	case errors.Is(err, certinfo.ErrNotCertificate), errors.Is(err, certinfo.ErrNeedPassword),
		errors.Is(err, certinfo.ErrWrongPassword), errors.Is(err, certinfo.ErrSubject), errors.Is(err, dnsname.ErrInvalid):
		out.Kind = Invalid
	}
	return out
}

// KindOf returns the kind of err: an *Error's, or what asError makes of
// another error.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	return asError(err).Kind
}

// ErrCancelled is returned when the administrator answers no to a question
// that guards the whole operation.
var ErrCancelled = errors.New("cancelled: nothing was changed")

// cancelled is the Error of a no to such a question.
func cancelled() *Error { return &Error{Kind: Cancelled, Err: ErrCancelled} }

// replicatedFix names, for an object EdgeSync replicates to an edge,
// the command that changes it on a hub.
func replicatedFix(kind string) string {
	var where markup
	switch kind {
	case directory.KindAcceptedDomain:
		where = "{New-AcceptedDomain} or {Remove-AcceptedDomain}"
	case directory.KindMailbox:
		where = "{New-Mailbox} or {Remove-Mailbox}"
	case directory.KindSendConnector:
		where = "{Set-SendConnector}, {New-SendConnector} or {Remove-SendConnector}"
	case directory.KindTrustedRoot:
		where = "{Add-CertrelayTrustedCertificate} or {Remove-CertrelayTrustedCertificate}"
	default:
		return msgf("change it on the server it belongs to; EdgeSync brings the change to this edge")
	}
	return msgf("run %s on a hub of the organisation; EdgeSync brings the change to this edge at once ({Start-EdgeSynchronization} on the hub forces a round)", where)
}
