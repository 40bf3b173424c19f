package web

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"certrelay/internal/admin"
)

// The REST API: every operation of the registry at /api/v1/NAME, NAME
// being the operation's Name (Get-ExchangeCertificate,
// Get-ExchangeCertificate/Thumbprint, Enable-ExchangeCertificate, …).
//
//   - Get- operations answer GET, with their parameters in the query
//     string (?DomainName=mail.contoso.com; a list repeats or uses
//     commas). Every other operation answers POST, with its parameters as
//     a JSON object ({"Thumbprint": "…", "Services": "SMTP"}); file
//     contents (TypeData) are base64 strings; secrets are strings in the
//     body, never in a URL.
//   - 200: {"Data": …, "Messages": [{"Level", "Text"}], "File": {…}} —
//     Data is what the CLI's --json prints for the same call.
//   - 428 Precondition Required: the operation asks before it acts (M1,
//     M5, M8) and nothing changed: {"Confirmation": {"Question", "Details",
//     "IfNo", "Token", …}}. Call again with the same parameters and
//     "_answer": {"Token": "…", "Yes": true}, or with "Force": true.
//   - Errors: {"Error": {"Kind", "Field", "Value", "Message", "Fix"}} with
//     the status of the kind: Invalid 400, Unauthorized 401, Forbidden
//     403, NotFound 404, Conflict and Cancelled 409, Unavailable 503,
//     Internal 500.

// apiEnvelope is a successful answer.
type apiEnvelope struct {
	Data     any          `json:"Data"`
	Messages []apiMessage `json:"Messages"`
	File     *apiFile     `json:"File,omitempty"`
}

type apiMessage struct {
	Level string
	Text  string
}

type apiFile struct {
	Format string
	Secret bool
	Data   string // base64
}

// apiError is a failure.
type apiError struct {
	Kind    string
	Field   string `json:",omitempty"`
	Value   string `json:",omitempty"`
	Usage   bool   `json:",omitempty"`
	Message string
	Fix     string `json:",omitempty"`
}

type apiConfirmation struct {
	Operation string
	Action    string `json:",omitempty"`
	Question  string
	Details   []admin.Detail
	IfNo      string `json:",omitempty"`
	Token     string
}

// kindStatus maps the registry's error kinds to HTTP statuses.
var kindStatus = map[admin.Kind]int{
	admin.Invalid:     http.StatusBadRequest,
	admin.NotFound:    http.StatusNotFound,
	admin.Conflict:    http.StatusConflict,
	admin.Forbidden:   http.StatusForbidden,
	admin.Unavailable: http.StatusServiceUnavailable,
	admin.Cancelled:   http.StatusConflict,
	admin.Internal:    http.StatusInternalServerError,
}

// apiMethod is the HTTP method an operation answers.
func apiMethod(op *admin.Operation) string {
	if strings.HasPrefix(op.Cmdlet, "Get-") {
		return http.MethodGet
	}
	return http.MethodPost
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // escapes <, > and & (the default): safe should a browser sniff it
}

func writeAPIError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, map[string]apiError{"Error": e})
}

func (h *Handler) callAPI(w http.ResponseWriter, r *http.Request, c *client) {
	name := strings.TrimPrefix(r.URL.Path, "/api/v1/")
	op := admin.Lookup(name)
	if op == nil {
		writeAPIError(w, http.StatusNotFound, apiError{Kind: "NotFound", Message: fmt.Sprintf("there is no operation %q: see /api/openapi.json", name)})
		return
	}
	if m := apiMethod(op); r.Method != m {
		w.Header().Set("Allow", m)
		writeAPIError(w, http.StatusMethodNotAllowed, apiError{Kind: "Invalid", Usage: true, Message: op.Name + " answers " + m})
		return
	}
	req := admin.Request{Op: op.Name, Caller: c.caller()}
	var err error
	if r.Method == http.MethodGet {
		req.Params, err = queryParams(op, r)
	} else {
		req.Params, req.Answer, err = bodyParams(op, r)
	}
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, apiError{Kind: "Invalid", Usage: true, Message: err.Error()})
		return
	}
	res, err := h.a.Call(r.Context(), req)
	if err != nil {
		h.writeCallError(w, op, c, err)
		return
	}
	env := apiEnvelope{Data: res.Data, Messages: []apiMessage{}}
	for _, m := range res.Messages {
		env.Messages = append(env.Messages, apiMessage{string(m.Level), admin.Render(m.Text, op, admin.CmdletSyntax{})})
	}
	if f := res.File; f != nil {
		env.File = &apiFile{Format: f.Format, Secret: f.Secret, Data: base64.StdEncoding.EncodeToString(f.Data)}
	}
	writeJSON(w, http.StatusOK, env)
}

// writeCallError answers a failed call: a question (428) or an error with
// its kind's status.
func (h *Handler) writeCallError(w http.ResponseWriter, op *admin.Operation, c *client, err error) {
	var cr *admin.ConfirmationRequired
	if errors.As(err, &cr) {
		writeJSON(w, http.StatusPreconditionRequired, map[string]apiConfirmation{"Confirmation": {
			Operation: cr.Op, Action: cr.Action, Question: cr.Question, Details: orNone(cr.Details), IfNo: cr.IfNo, Token: cr.Token}})
		return
	}
	var e *admin.Error
	if !errors.As(err, &e) {
		e = &admin.Error{Kind: admin.KindOf(err), Err: err}
	}
	status := kindStatus[e.Kind]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if e.Kind == admin.Forbidden {
		h.log.Warn("API call refused", "account", c.account.Name, "role", c.role.String(), "from", c.from, "operation", op.Name)
	}
	fix := ""
	if e.Fix != "" {
		fix = admin.Render(e.Fix, op, admin.CmdletSyntax{})
	}
	msg := e.Render(admin.CmdletSyntax{})
	if fix != "" {
		msg = strings.TrimSuffix(msg, ": "+fix)
	}
	writeAPIError(w, status, apiError{Kind: string(e.Kind), Field: e.Field, Value: e.Value, Usage: e.Usage, Message: msg, Fix: fix})
}

func orNone(d []admin.Detail) []admin.Detail {
	if d == nil {
		return []admin.Detail{}
	}
	return d
}

// queryParams reads a GET call's parameters from the query string.
func queryParams(op *admin.Operation, r *http.Request) (admin.Params, error) {
	p := admin.Params{}
	for name, vals := range r.URL.Query() {
		def := op.Param(name)
		if def == nil {
			return nil, fmt.Errorf("%s has no parameter %s", op.Name, name)
		}
		switch def.Type.Kind {
		case admin.KindList:
			p[def.Name] = vals
		case admin.KindSecret, admin.KindData:
			return nil, fmt.Errorf("%s is not taken in a URL", def.Name)
		default:
			p[def.Name] = vals[len(vals)-1]
		}
	}
	return p, nil
}

// bodyParams reads a POST call's parameters from its JSON object (an
// empty body is no parameter), and the answer to a question.
func bodyParams(op *admin.Operation, r *http.Request) (admin.Params, *admin.Answer, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return nil, nil, fmt.Errorf("read the body: %w", err)
	}
	p := admin.Params{}
	if len(bytes.TrimSpace(buf.Bytes())) == 0 {
		return p, nil, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, nil, fmt.Errorf("send the parameters as application/json, not %s", ct)
	}
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("the body is not a JSON object of parameters: %w", err)
	}
	var answer *admin.Answer
	for name, v := range raw {
		if name == "_answer" {
			b, _ := json.Marshal(v)
			answer = &admin.Answer{}
			if err := json.Unmarshal(b, answer); err != nil || answer.Token == "" {
				return nil, nil, errors.New(`"_answer" is {"Token": "…", "Yes": true|false}`)
			}
			continue
		}
		def := op.Param(name)
		if def == nil {
			return nil, nil, fmt.Errorf("%s has no parameter %s", op.Name, name)
		}
		if def.Type.Kind == admin.KindData {
			s, ok := v.(string)
			if !ok {
				return nil, nil, fmt.Errorf("%s is a file: give its content as a base64 string", def.Name)
			}
			data, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, nil, fmt.Errorf("%s is a file: give its content as a base64 string (%v)", def.Name, err)
			}
			p[def.Name] = data
			continue
		}
		if n, ok := v.(json.Number); ok && def.Type.Kind != admin.KindInt {
			v = n.String()
		}
		p[def.Name] = v
	}
	return p, answer, nil
}
