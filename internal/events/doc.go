package events

import (
	"fmt"
	"strings"
)

// Markdown renders the catalog as docs/EVENTS.md: every event with its
// ID, symbolic name, source, category, severity, logging level,
// parameters, throttling, and its message — which says the cause and
// names the command that repairs it. A test keeps the file equal to it.
func Markdown() string {
	var b strings.Builder
	b.WriteString(`# Events

Every event certrelay raises, generated from the catalog
(` + "`internal/events/catalog.go`" + `; regenerate with
` + "`go test ./internal/events -run TestEventsDoc -update`" + `, and a test fails
when this file and the catalog differ).

` + "`certrelay events [--id N] [--since T] [--level L] [--json]`" + ` lists the events a
data directory logged. An event is written when its level is at most its
category's logging level (SPEC D1): ` + "`certrelay loglevel get`" + ` shows them,
` + "`certrelay loglevel set 'MSExchangeTransport\\*' Expert`" + ` (or one category,
` + "`'MSExchangeTransport\\SmtpReceive'`" + `) changes them, and a running server
follows within a second. Events at Lowest are always written; those above it
describe each decision of a session. Throttled events are written at most once
per interval for the same key (a thumbprint, an FQDN, a connector).
` + "`certrelay diagnose`" + ` names, for each problem it finds, the events it causes.

| level | number |
|---|---|
| Lowest | 0 |
| Low | 1 |
| Medium | 3 |
| High | 5 |
| Expert | 7 |

## Summary

| ID | symbolic name | source\category | severity | level |
|---|---|---|---|---|
`)
	for _, d := range Catalog() {
		fmt.Fprintf(&b, "| [%d](#%d) | %s | %s\\%s | %s | %s |\n", d.ID, d.ID, d.Name, d.Source, d.Category, d.Severity, d.Level)
	}
	b.WriteString("\n## Events\n")
	for _, d := range Catalog() {
		fmt.Fprintf(&b, "\n### %d\n\n**%s** — %s\\%s, %s, level %s", d.ID, d.Name, d.Source, d.Category, d.Severity, d.Level)
		if d.Throttle > 0 {
			fmt.Fprintf(&b, ", at most once per %s per key", throttleText(d.Throttle))
		}
		b.WriteString(".\n\n")
		if len(d.Params) > 0 {
			var ps []string
			for i, p := range d.Params {
				ps = append(ps, fmt.Sprintf("%%%d `%s`", i+1, p))
			}
			fmt.Fprintf(&b, "Parameters: %s.\n\n", strings.Join(ps, ", "))
		}
		fmt.Fprintf(&b, "> %s\n", strings.ReplaceAll(d.Text, "\n", " "))
	}
	return b.String()
}

func throttleText(d interface{ Hours() float64 }) string {
	h := d.Hours()
	switch {
	case h >= 24 && int(h)%24 == 0:
		if h == 24 {
			return "day"
		}
		return fmt.Sprintf("%d days", int(h)/24)
	case h >= 1 && h == float64(int(h)):
		if h == 1 {
			return "hour"
		}
		return fmt.Sprintf("%d hours", int(h))
	}
	return fmt.Sprintf("%d minutes", int(h*60))
}
