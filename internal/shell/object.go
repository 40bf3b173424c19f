package shell

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Object is what flows through a pipeline: one item of an operation's
// result with its properties in order, by the names its JSON has (the
// property names of SPEC §2), and the Go value it came from — which
// ConvertTo-Json writes, so the shell's JSON is the CLI's byte for byte.
type Object struct {
	Props []Prop
	// Raw is the value the properties come from; nil for an object the
	// shell made (Select-Object).
	Raw any
	// Type names the kind of object for the default views ("Certificate").
	Type string
}

// Prop is one property.
type Prop struct {
	Name  string
	Value any
}

// secret is a password read from a prompt or a file: it is never shown.
type secret string

func (secret) String() string { return "System.Security.SecureString" }

// Get returns the property named name (case-insensitive) and whether the
// object has it.
func (o *Object) Get(name string) (any, bool) {
	for _, p := range o.Props {
		if strings.EqualFold(p.Name, name) {
			return p.Value, true
		}
	}
	return nil, false
}

// Path follows a property path ($_.A.B); nil when a step is missing.
// A step on a list maps over its items, as PowerShell does.
func (o *Object) Path(members []string) any {
	var v any = o
	for _, m := range members {
		v = member(v, m)
	}
	if obj, ok := v.(*Object); ok && len(members) == 0 {
		return obj
	}
	return v
}

func member(v any, name string) any {
	switch x := v.(type) {
	case nil:
		return nil
	case *Object:
		got, _ := x.Get(name)
		return got
	}
	if list, ok := asList(v); ok {
		var out []any
		for _, item := range list {
			if m := member(item, name); m != nil {
				out = append(out, m)
			}
		}
		if len(out) == 1 {
			return out[0]
		}
		return out
	}
	if strings.EqualFold(name, "Length") || strings.EqualFold(name, "Count") {
		if s, ok := v.(string); ok {
			return len(s)
		}
		return 1
	}
	return nil
}

// objectsOf turns an operation's result data into pipeline objects: each
// item of a list, or the one value; list says it was a list (so
// ConvertTo-Json writes a list even of one or none, as the CLI does).
func objectsOf(data any) (objs []*Object, list bool) {
	if data == nil {
		return nil, false
	}
	rv := reflect.ValueOf(data)
	if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() != reflect.Uint8 {
		for i := 0; i < rv.Len(); i++ {
			objs = append(objs, newObject(rv.Index(i).Interface()))
		}
		return objs, true
	}
	return []*Object{newObject(data)}, false
}

// newObject describes a Go value (a struct) as an object.
func newObject(v any) *Object {
	rv := reflect.Indirect(reflect.ValueOf(v))
	o := &Object{Raw: v}
	if !rv.IsValid() {
		return o
	}
	if rv.Kind() != reflect.Struct {
		o.Props = []Prop{{"Value", v}}
		o.Type = rv.Type().Name()
		return o
	}
	o.Type = rv.Type().Name()
	o.Props = structProps(rv)
	return o
}

// structProps lists the exported fields of a struct by their JSON names,
// in order, embedded structs' fields in place, as encoding/json sees them.
func structProps(rv reflect.Value) []Prop {
	var out []Prop
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		fv := rv.Field(i)
		if f.Anonymous && name == "" {
			inner := reflect.Indirect(fv)
			if inner.IsValid() && inner.Kind() == reflect.Struct {
				out = append(out, structProps(inner)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, Prop{name, plain(fv)})
	}
	return out
}

// plain turns a field's value into what the shell compares and shows:
// text, numbers, booleans, times, lists, nested objects.
func plain(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	if v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		return plain(v.Elem())
	}
	if t, ok := v.Interface().(time.Time); ok {
		return t
	}
	if s, ok := v.Interface().(fmt.Stringer); ok && v.Kind() != reflect.Struct && v.Kind() != reflect.Slice {
		if v.Kind() == reflect.String {
			return v.String()
		}
		return s.String()
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	case reflect.Float32, reflect.Float64:
		return v.Float()
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Bytes()
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = plain(v.Index(i))
		}
		return out
	case reflect.Map:
		o := &Object{Raw: v.Interface()}
		keys := v.MapKeys()
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = fmt.Sprint(k.Interface())
		}
		sortStrings(names)
		for _, n := range names {
			o.Props = append(o.Props, Prop{n, plain(v.MapIndex(reflect.ValueOf(n).Convert(v.Type().Key())))})
		}
		return o
	case reflect.Struct:
		return &Object{Props: structProps(v), Raw: v.Interface(), Type: v.Type().Name()}
	}
	return v.Interface()
}

// text is a value as PowerShell shows it in a table cell or a list line:
// lists as {a, b}, booleans as True/False, times in UTC.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		if x {
			return "True"
		}
		return "False"
	case time.Time:
		if x.IsZero() {
			return ""
		}
		return x.UTC().Format("2006-01-02 15:04:05Z")
	case secret:
		return x.String()
	case []byte:
		return fmt.Sprintf("(%d bytes)", len(x))
	case *Object:
		var parts []string
		for _, p := range x.Props {
			parts = append(parts, p.Name+"="+text(p.Value))
		}
		return "@{" + strings.Join(parts, "; ") + "}"
	case float64:
		return fmt.Sprint(x)
	}
	if list, ok := asList(v); ok {
		parts := make([]string, len(list))
		for i, item := range list {
			parts[i] = text(item)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}

// jsonOf writes v as the CLI's --json does: indented by two spaces, HTML
// characters as they are.
func jsonOf(v any) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return b.String(), nil
}

// MarshalJSON writes an object the shell made with its properties in
// order; one from an operation as its Go value.
func (o *Object) MarshalJSON() ([]byte, error) {
	if o.Raw != nil {
		return marshal(o.Raw)
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range o.Props {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := marshal(p.Name)
		v, err := marshal(jsonValue(p.Value))
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// marshal is json.Marshal without HTML escaping ('<I>issuer<S>subject'
// stays as written, as the CLI writes it).
func marshal(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(b.String(), "\n")), nil
}

func jsonValue(v any) any {
	if s, ok := v.(secret); ok {
		return s.String()
	}
	return v
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
