package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"reflect"
	"strings"
	"time"

	"certrelay/internal/admin"
)

//go:embed templates
var templateFS embed.FS

// pages are the console's templates: each page file (templates/*.html but
// layout.html) defines "content", rendered inside layout.html. html/template
// escapes every value by its context — text, attributes, URLs, the JSON of
// the timeline — so a subject holding <script> or quotes is shown as
// text everywhere.
type pages struct {
	t map[string]*template.Template
}

func loadPages() (*pages, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{t: map[string]*template.Template{}}
	for _, n := range names {
		if strings.HasSuffix(n, "/layout.html") {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, err
		}
		p.t[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	return p, nil
}

// pageData is what every page template gets.
type pageData struct {
	Title string
	Nav   string // the menu entry to highlight
	User  *client
	// Error is the page's error, Messages what an operation said.
	Error    string
	Messages []pageMessage
	Data     any
	Now      time.Time
	// Diagnose: an operation with CLI path "diagnose" exists (issue 13),
	// so the menu offers it.
	Diagnose bool
}

type pageMessage struct {
	Level, Text string
}

// CSRF is the token forms carry.
func (d pageData) CSRF() string {
	if d.User == nil {
		return ""
	}
	return d.User.csrf
}

// Name is the logged-in account's.
func (d pageData) Name() string {
	if d.User == nil {
		return ""
	}
	return d.User.account.Name
}

// Role is the logged-in account's.
func (d pageData) Role() string {
	if d.User == nil {
		return ""
	}
	return d.User.role.String()
}

// May reports whether the account may run operation op (its declared
// role): the page offers only what the role allows; the registry decides
// anyway.
func (d pageData) May(op string) bool {
	o := admin.Lookup(op)
	return d.User != nil && o != nil && d.User.may(o.Role)
}

func (p *pages) render(w http.ResponseWriter, name string, d pageData) {
	t := p.t[name]
	var b bytes.Buffer
	if t == nil {
		http.Error(w, "no page "+name, http.StatusInternalServerError)
		return
	}
	if d.Now.IsZero() {
		d.Now = time.Now()
	}
	if err := t.ExecuteTemplate(&b, "layout.html", d); err != nil {
		http.Error(w, "the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

// webSyntax renders the registry's marks for people at the console: as
// the CLI's commands, which the events and the README use too.
type webSyntax struct{}

func (webSyntax) Operation(op *admin.Operation) string { return "certrelay " + op.CLI }

func (webSyntax) Parameter(_ *admin.Operation, p *admin.Param) string {
	if p.Position > 0 {
		return p.CLI
	}
	return "--" + p.CLI
}

func (webSyntax) Command(op *admin.Operation, args []admin.Arg) string {
	parts := []string{"certrelay", op.CLI}
	for _, a := range args {
		if a.Param == nil || a.Param.Position > 0 {
			parts = append(parts, shellQuote(a.Value))
			continue
		}
		parts = append(parts, "--"+a.Param.CLI)
		if a.Param.Type.Kind != admin.KindBool && a.Value != "" {
			parts = append(parts, shellQuote(a.Value))
		}
	}
	return strings.Join(parts, " ")
}

func shellQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n'\"$`\\;|&()<>*?[]#~{}!") {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// Prop is one property of an object, for people.
type Prop struct {
	Name, Value string
}

var funcs = template.FuncMap{
	"date": func(v any) string {
		switch t := v.(type) {
		case time.Time:
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if t == nil {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		}
		return fmt.Sprint(v)
	},
	"left": func(v any, now time.Time) string {
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x
		case *time.Time:
			if x == nil {
				return ""
			}
			t = *x
		}
		d := int(t.Sub(now).Hours() / 24)
		switch {
		case t.Before(now):
			return fmt.Sprintf("expired %d days ago", -d)
		case d == 0:
			return "expires today"
		}
		return fmt.Sprintf("%d days left", d)
	},
	"soon": func(v any, now time.Time) string {
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x
		case *time.Time:
			if x == nil {
				return ""
			}
			t = *x
		}
		switch {
		case t.Before(now):
			return "expired"
		case t.Before(now.Add(admin.ExpiryWindow)):
			return "soon"
		}
		return "ok"
	},
	"join":   func(l []string) string { return strings.Join(l, ", ") },
	"list":   func(s ...string) []string { return s },
	"text":   func(s string) string { return admin.Render(s, nil, webSyntax{}) },
	"props":  props,
	"show":   show,
	"lower":  strings.ToLower,
	"has":    func(l []string, s string) bool { return contains(l, s) },
	"status": statusClass,
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// statusClass is a CSS class for a Status, a selection verdict, what a
// listener does with its certificate, or how soon a certificate expires.
func statusClass(s string) string {
	switch {
	case s == "":
		return ""
	case s == "Valid" || s == "chosen" || s == "served" || s == "offered" || s == "ok" || s == "X-AnonymousTLS" || s == "client certificate offered":
		return "good"
	case s == "PendingRequest" || s == "Unknown" || s == "RevocationCheckFailure" || s == "passed over" || s == "not reached" || s == "soon",
		strings.Contains(s, "expired certificate"), strings.Contains(s, "last resort"), strings.HasPrefix(s, "connector disabled"),
		strings.HasPrefix(s, "console off"), strings.HasPrefix(s, "no client certificate"):
		return "warn"
	}
	return "bad"
}

// props lists the exported fields of a struct (as encoding/json names
// them), for a property table.
func props(v any) []Prop {
	rv := reflect.Indirect(reflect.ValueOf(v))
	if !rv.IsValid() || rv.Kind() != reflect.Struct {
		return []Prop{{"Value", show(v)}}
	}
	var out []Prop
	var walk func(rv reflect.Value)
	walk = func(rv reflect.Value) {
		rt := rv.Type()
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(rv.Field(i))
				continue
			}
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if name == "" {
				name = f.Name
			}
			out = append(out, Prop{name, show(rv.Field(i).Interface())})
		}
	}
	walk(rv)
	return out
}

// show writes a value for people.
func show(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case time.Time:
		if x.IsZero() {
			return ""
		}
		return x.UTC().Format("2006-01-02 15:04:05 UTC")
	case *time.Time:
		if x == nil {
			return ""
		}
		return x.UTC().Format("2006-01-02 15:04:05 UTC")
	case []string:
		return strings.Join(x, ", ")
	case []byte:
		return fmt.Sprintf("(%d bytes)", len(x))
	case fmt.Stringer:
		return x.String()
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return ""
		}
		return show(rv.Elem().Interface())
	case reflect.Slice:
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = show(rv.Index(i).Interface())
		}
		return strings.Join(parts, "; ")
	case reflect.Struct:
		var parts []string
		for _, p := range props(v) {
			if p.Value != "" {
				parts = append(parts, p.Name+": "+p.Value)
			}
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprint(v)
}
