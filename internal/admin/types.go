package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"certrelay/internal/events"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// ValueKind is how a face reads a parameter's value.
type ValueKind int

// Value kinds.
const (
	// KindText is one text value (which the type may parse further).
	KindText ValueKind = iota
	// KindList is a list of text values; faces accept repeats and commas.
	KindList
	// KindBool is a switch.
	KindBool
	// KindInt is a whole number.
	KindInt
	// KindData is the content of a file: the CLI reads the file it names,
	// the API takes the bytes.
	KindData
	// KindSecret is a password: never on a command line (SPEC I5); the CLI
	// reads the file it names (- for standard input) or prompts.
	KindSecret
)

// Type is a parameter's type: how its value is read and checked.
type Type struct {
	// Name is the type's name in help and the API document.
	Name string
	Kind ValueKind
	// Values lists the values allowed, when there are few (for help and
	// completion); nil when free.
	Values []string
	// keepEmpty: a list keeps its empty items, so the operation can refuse
	// them by name (an empty domain name) instead of reading "none".
	keepEmpty bool
	// Unlimited: a number that also takes the word Unlimited, read as 0
	// (Exchange's -ResultSize Unlimited).
	Unlimited bool
	// parse reads a text value; nil keeps the text.
	parse func(string) (any, error)
}

// The types of parameters.
var (
	TypeString = Type{Name: "string", Kind: KindText}
	TypeList   = Type{Name: "string[]", Kind: KindList}
	// TypeNames is a list of DNS names; empty items are kept for the
	// operation to refuse.
	TypeNames = Type{Name: "name[]", Kind: KindList, keepEmpty: true}
	TypeBool  = Type{Name: "bool", Kind: KindBool}
	TypeInt   = Type{Name: "int", Kind: KindInt}
	// TypeResultSize is how many results a listing returns: a number, or
	// Unlimited (or 0) for all of them.
	TypeResultSize = Type{Name: "int|Unlimited", Kind: KindInt, Unlimited: true}
	TypeData       = Type{Name: "file", Kind: KindData}
	TypeSecret     = Type{Name: "secret", Kind: KindSecret}
	// TypeServices is a set of services (SMTP, POP, IMAP, UM, IIS), as
	// store.Services.
	TypeServices = Type{Name: "services", Kind: KindText, Values: serviceNames, parse: func(s string) (any, error) { return store.ParseServices(s) }}
	// TypeService is exactly one service, as store.Services.
	TypeService = Type{Name: "service", Kind: KindText, Values: serviceNames, parse: parseOneService}
	// TypeDirection is "in" (receive) or "out" (send).
	TypeDirection = enumType("direction", "in", "out")
	// TypeRootSource is where a trusted root comes from (T2), as
	// trust.Source.
	TypeRootSource = Type{Name: "source", Kind: KindText, Values: []string{"registry", "grouppolicy", "enterprise"}, parse: func(s string) (any, error) { return trust.ParseSource(s) }}
	// TypeSeverity is an event's severity, as events.Severity.
	TypeSeverity = Type{Name: "severity", Kind: KindText, Values: []string{"Error", "Warning", "Information"}, parse: parseSeverity}
	// TypeEventLevel is a logging level of D1, as events.Level.
	TypeEventLevel = Type{Name: "level", Kind: KindText, Values: []string{"Lowest", "Low", "Medium", "High", "Expert"}, parse: func(s string) (any, error) { return events.ParseLevel(s) }}
	// TypeTime is a moment: an RFC 3339 time, a date, or a duration
	// before now (2h), as time.Time.
	TypeTime = Type{Name: "time", Kind: KindText, parse: parseSince}
)

var serviceNames = []string{"SMTP", "POP", "IMAP", "UM", "IIS"}

func enumType(name string, values ...string) Type {
	return Type{Name: name, Kind: KindText, Values: values, parse: func(s string) (any, error) {
		for _, v := range values {
			if strings.EqualFold(v, strings.TrimSpace(s)) {
				return v, nil
			}
		}
		return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(values, ", "))
	}}
}

func parseOneService(s string) (any, error) {
	svc, err := store.ParseServices(s)
	if err != nil {
		return nil, err
	}
	switch svc {
	case store.SMTP, store.POP, store.IMAP, store.IIS, store.UM:
		return svc, nil
	}
	return nil, errors.New("takes one service: SMTP, POP, IMAP, IIS or UM")
}

func parseSeverity(s string) (any, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "error":
		return events.Error, nil
	case "warning":
		return events.Warning, nil
	case "information", "info":
		return events.Information, nil
	}
	return nil, fmt.Errorf("unknown level %q: use Error, Warning or Information", s)
}

// parseSince reads a time: RFC 3339, a date, or a duration before now.
func parseSince(s string) (any, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return nil, fmt.Errorf("%q: give an RFC 3339 time (2026-11-22T08:00:00Z), a date, or a duration (2h)", s)
}

// bind reads a value a face gives (text, a list, a boolean, a number, file
// content) as the type's Go value.
func (t Type) bind(v any) (any, error) {
	switch t.Kind {
	case KindList:
		var items []string
		switch v := v.(type) {
		case string:
			items = []string{v}
		case []string:
			items = v
		case []any:
			for _, x := range v {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("expected a list of text, got %T", x)
				}
				items = append(items, s)
			}
		default:
			return nil, fmt.Errorf("expected a list of text, got %T", v)
		}
		out := []string{}
		for _, item := range items {
			for _, part := range strings.Split(item, ",") {
				if part = strings.TrimSpace(part); part != "" || t.keepEmpty {
					out = append(out, part)
				}
			}
		}
		return out, nil
	case KindBool:
		switch v := v.(type) {
		case bool:
			return v, nil
		case string:
			b, err := strconv.ParseBool(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(v)), "$"))
			if err != nil {
				return nil, fmt.Errorf("%q is not true or false", v)
			}
			return b, nil
		}
		return nil, fmt.Errorf("expected true or false, got %T", v)
	case KindInt:
		switch v := v.(type) {
		case int:
			return v, nil
		case int64:
			return int(v), nil
		case float64:
			if v != float64(int(v)) {
				return nil, fmt.Errorf("%v is not a whole number", v)
			}
			return int(v), nil
		case json.Number:
			n, err := strconv.Atoi(string(v))
			if err != nil {
				return nil, fmt.Errorf("%q is not a whole number", v)
			}
			return n, nil
		case string:
			if t.Unlimited && strings.EqualFold(strings.TrimSpace(v), "Unlimited") {
				return 0, nil
			}
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil && t.Unlimited {
				return nil, fmt.Errorf("%q is neither a whole number nor Unlimited", v)
			}
			if err != nil {
				return nil, fmt.Errorf("%q is not a whole number", v)
			}
			return n, nil
		}
		return nil, fmt.Errorf("expected a whole number, got %T", v)
	case KindData:
		switch v := v.(type) {
		case []byte:
			return v, nil
		case string:
			return []byte(v), nil
		}
		return nil, fmt.Errorf("expected file content, got %T", v)
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("expected text, got %T", v)
	}
	if t.parse == nil {
		return s, nil
	}
	return t.parse(s)
}
