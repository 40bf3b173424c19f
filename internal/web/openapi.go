package web

import (
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"certrelay/internal/admin"
)

// The OpenAPI 3.1 document of the API, generated from the registry: one
// path per operation, its parameters from the declaration, its result's
// schema from the Go type it returns (the property names of SPEC §2), its
// role in x-certrelay-role. Nothing in it is written by hand, so it
// cannot fall behind the operations.

var openAPIDoc = sync.OnceValues(func() ([]byte, error) { return json.MarshalIndent(buildOpenAPI(), "", "  ") })

func (h *Handler) openAPI(w http.ResponseWriter, r *http.Request, c *client) {
	b, err := openAPIDoc()
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, apiError{Kind: "Internal", Message: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(b)
}

type obj = map[string]any

func buildOpenAPI() obj {
	g := &schemaGen{defs: obj{}, names: map[reflect.Type]string{}}
	paths := obj{}
	for _, op := range admin.Operations() {
		paths["/api/v1/"+op.Name] = obj{strings.ToLower(apiMethod(op)): g.operation(op)}
	}
	g.defs["Error"] = obj{"type": "object", "required": []string{"Error"}, "properties": obj{"Error": obj{
		"type": "object", "required": []string{"Kind", "Message"}, "properties": obj{
			"Kind":    obj{"type": "string", "enum": []string{"Invalid", "NotFound", "Conflict", "Forbidden", "Unavailable", "Cancelled", "Internal", "Unauthorized"}},
			"Field":   obj{"type": "string", "description": "the parameter at fault"},
			"Value":   obj{"type": "string", "description": "its value as given (never a secret)"},
			"Usage":   obj{"type": "boolean", "description": "the call itself was wrong (a missing or mistyped parameter)"},
			"Message": obj{"type": "string"},
			"Fix":     obj{"type": "string", "description": "what to do"},
		}}}}
	g.defs["Confirmation"] = obj{"type": "object", "required": []string{"Confirmation"}, "properties": obj{"Confirmation": obj{
		"type": "object", "properties": obj{
			"Operation": obj{"type": "string"}, "Action": obj{"type": "string"}, "Question": obj{"type": "string"},
			"Details": obj{"type": "array", "items": obj{"type": "object", "properties": obj{"Name": obj{"type": "string"}, "Value": obj{"type": "string"}}}},
			"IfNo":    obj{"type": "string"},
			"Token":   obj{"type": "string", "description": `answer with "_answer": {"Token": …, "Yes": true|false} and the same parameters`},
		}}}}
	g.defs["Message"] = obj{"type": "object", "properties": obj{"Level": obj{"type": "string", "enum": []string{"Note", "Warning", "Hint"}}, "Text": obj{"type": "string"}}}
	g.defs["File"] = obj{"type": "object", "properties": obj{"Format": obj{"type": "string"}, "Secret": obj{"type": "boolean"}, "Data": obj{"type": "string", "contentEncoding": "base64"}}}
	return obj{
		"openapi": "3.1.0",
		"info": obj{
			"title":   "certrelay API",
			"version": "1",
			"description": "Every management operation of certrelay (the cmdlets of the seeds), as the CLI runs them. " +
				"Get- operations answer GET with their parameters in the query string; the others answer POST with a JSON object of parameters " +
				"(files as base64). Success: {Data, Messages, File}; Data is what the CLI's --json prints. " +
				"428: the operation asks first (nothing changed) — call again with \"_answer\": {\"Token\", \"Yes\"} or \"Force\": true. " +
				"Errors: 400 Invalid, 401 no account, 403 Forbidden (the role, or a missing CSRF token), 404 NotFound, 409 Conflict or Cancelled, 503 Unavailable.",
		},
		"servers":  []obj{{"url": "/"}},
		"security": []obj{{"token": []string{}}, {"session": []string{}}},
		"paths":    paths,
		"components": obj{
			"schemas": g.defs,
			"securitySchemes": obj{
				"token": obj{"type": "http", "scheme": "bearer", "description": "an API token: certrelay account token NAME"},
				"session": obj{"type": "apiKey", "in": "cookie", "name": sessionCookie,
					"description": "a console login; calls that change something also need the session's CSRF token in the " + csrfHeader + " header"},
			},
		},
	}
}

var tagOf = map[string]string{"cert": "Certificates", "trust": "Trust", "connector": "Connectors", "server": "Server", "setup": "Server",
	"domain": "Organisation", "mailbox": "Organisation", "queue": "Queue", "events": "Events", "loglevel": "Events", "track": "Events",
	"account": "Accounts", "console": "Console"}

func (g *schemaGen) operation(op *admin.Operation) obj {
	render := func(s string) string { return admin.Render(s, op, admin.CmdletSyntax{}) }
	desc := render(op.Description)
	if desc == "" {
		desc = render(op.Summary)
	}
	first, _, _ := strings.Cut(op.CLI, " ")
	tag := tagOf[first]
	if tag == "" {
		tag = "Other"
	}
	o := obj{
		"operationId":         op.Name,
		"summary":             render(op.Summary),
		"description":         desc,
		"tags":                []string{tag},
		"x-certrelay-role":    op.Role.String(),
		"x-certrelay-cmdlet":  op.Cmdlet,
		"x-certrelay-cli":     "certrelay " + op.CLI,
		"x-certrelay-confirm": op.Confirm.String(),
	}
	props, required := obj{}, []string{}
	var query []obj
	for i := range op.Params {
		p := &op.Params[i]
		s := paramSchema(p)
		s["description"] = render(p.Help)
		if p.Default != "" {
			s["default"] = p.Default
		}
		if p.Required {
			required = append(required, p.Name)
		}
		if apiMethod(op) == http.MethodGet {
			q := obj{"name": p.Name, "in": "query", "required": p.Required, "schema": s}
			if p.Type.Kind == admin.KindList {
				q["explode"] = true
			}
			query = append(query, q)
			continue
		}
		props[p.Name] = s
	}
	if query != nil {
		o["parameters"] = query
	}
	if apiMethod(op) == http.MethodPost {
		body := obj{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			body["required"] = required
		}
		if op.Confirm != admin.ConfirmNever {
			props["_answer"] = obj{"type": "object", "description": "the answer to the question a 428 asked",
				"properties": obj{"Token": obj{"type": "string"}, "Yes": obj{"type": "boolean"}}, "required": []string{"Token", "Yes"}}
		}
		o["requestBody"] = obj{"required": len(required) > 0, "content": obj{"application/json": obj{"schema": body}}}
	}
	data := obj{"type": "null"}
	if op.Returns != nil {
		data = g.schema(reflect.TypeOf(op.Returns))
	}
	envelope := obj{"type": "object", "required": []string{"Data", "Messages"}, "properties": obj{
		"Data": data, "Messages": obj{"type": "array", "items": ref("Message")}, "File": ref("File")}}
	errResp := func(d string) obj {
		return obj{"description": d, "content": obj{"application/json": obj{"schema": ref("Error")}}}
	}
	resp := obj{
		"200": obj{"description": "done", "content": obj{"application/json": obj{"schema": envelope}}},
		"400": errResp("a parameter is wrong (Kind Invalid)"),
		"401": errResp("no account: log in, or send an API token"),
		"403": errResp("the account's role may not run it, or the CSRF token is missing"),
		"404": errResp("what a parameter names does not exist"),
		"409": errResp("it contradicts the state it found, or the answer was no"),
		"503": errResp("something it needs is unavailable"),
	}
	if op.Confirm != admin.ConfirmNever {
		resp["428"] = obj{"description": "it asks first; nothing changed", "content": obj{"application/json": obj{"schema": ref("Confirmation")}}}
	}
	o["responses"] = resp
	return o
}

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func paramSchema(p *admin.Param) obj {
	switch p.Type.Kind {
	case admin.KindList:
		return obj{"type": "array", "items": obj{"type": "string"}, "x-certrelay-type": p.Type.Name}
	case admin.KindBool:
		return obj{"type": "boolean"}
	case admin.KindInt:
		return obj{"type": "integer"}
	case admin.KindData:
		return obj{"type": "string", "contentEncoding": "base64", "x-certrelay-type": "file"}
	case admin.KindSecret:
		return obj{"type": "string", "format": "password"}
	}
	s := obj{"type": "string", "x-certrelay-type": p.Type.Name}
	if len(p.Type.Values) > 0 && p.Type.Name != "services" {
		s["enum"] = p.Type.Values
	}
	return s
}

// schemaGen makes JSON schemas of Go types as encoding/json writes them.
type schemaGen struct {
	defs  obj
	names map[reflect.Type]string
}

var (
	timeType      = reflect.TypeOf(time.Time{})
	marshalerType = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
)

func (g *schemaGen) schema(t reflect.Type) obj {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return obj{"type": "string", "format": "date-time"}
	}
	if t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType) {
		b, _ := json.Marshal(reflect.New(t).Interface())
		switch {
		case len(b) > 0 && b[0] == '"':
			return obj{"type": "string"}
		case len(b) > 0 && b[0] == '[':
			return obj{"type": "array"}
		case len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9'):
			return obj{"type": "number"}
		}
		return obj{}
	}
	switch t.Kind() {
	case reflect.String:
		return obj{"type": "string"}
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return obj{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return obj{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return obj{"type": "string", "contentEncoding": "base64"}
		}
		return obj{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return obj{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		return g.structRef(t)
	}
	return obj{}
}

// structRef returns a reference to a named struct's schema (made once),
// or the schema of an unnamed one.
func (g *schemaGen) structRef(t reflect.Type) obj {
	if t.Name() == "" {
		return g.structSchema(t)
	}
	if name, ok := g.names[t]; ok {
		return ref(name)
	}
	name := t.Name()
	if _, taken := g.defs[name]; taken {
		pkg := t.PkgPath()
		name = pkg[strings.LastIndex(pkg, "/")+1:] + "." + name
	}
	g.names[t] = name
	g.defs[name] = obj{} // recursion guard
	g.defs[name] = g.structSchema(t)
	return ref(name)
}

func (g *schemaGen) structSchema(t reflect.Type) obj {
	props, required := obj{}, []string{}
	g.fields(t, props, &required)
	s := obj{"type": "object", "properties": props}
	if len(required) > 0 {
		sort.Strings(required)
		s["required"] = required
	}
	return s
}

func (g *schemaGen) fields(t reflect.Type, props obj, required *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				g.fields(ft, props, required)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Pointer {
			*required = append(*required, name)
		}
	}
}
