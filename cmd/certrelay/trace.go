package main

import (
	"encoding/json"
	"fmt"

	"certrelay/internal/trace"
)

// stream prints one record of an operation that streams (certrelay
// trace): a JSON object per line with --json, else a line for people.
func (c *call) stream(v any) error {
	if c.json {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.a.stdout, "%s\n", b)
		return err
	}
	if r, ok := v.(trace.Record); ok {
		_, err := fmt.Fprintf(c.a.stdout, "%s %s [%s] %s: %s\n", r.Time.Format("15:04:05.000"), r.Server, r.Component, r.Tag, r.Summary)
		return err
	}
	_, err := fmt.Fprintf(c.a.stdout, "%v\n", v)
	return err
}
