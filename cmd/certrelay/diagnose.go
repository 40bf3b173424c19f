package main

import (
	"fmt"
	"io"
	"strings"

	"certrelay/internal/admin"
)

// diagnoseFace prints diagnose's report (or its JSON) and makes the
// command exit 1 when it found a problem.
var diagnoseFace = face{output: func(c *call, res *admin.Result) error {
	d := res.Data.(admin.Diagnosis)
	if c.json {
		if err := printJSON(c.a.stdout, d); err != nil {
			return err
		}
	} else {
		printDiagnosis(c.a.stdout, d)
	}
	if !d.Clean {
		return errNotValid
	}
	return nil
}}

func printDiagnosis(w io.Writer, d admin.Diagnosis) {
	if d.Clean {
		fmt.Fprintf(w, "Server %s: no problem found (%d checks).\n", d.Server, len(d.Checks))
		return
	}
	fmt.Fprintf(w, "Server %s: %d problem(s) found.\n", d.Server, len(d.Findings))
	for _, f := range d.Findings {
		var ids []string
		for _, e := range f.Events {
			ids = append(ids, fmt.Sprintf("%d %s", e.Id, e.SymbolicName))
		}
		fmt.Fprintf(w, "\n[%s] %s %s\n  %s\n", f.Severity, f.Check, f.Name, f.Problem)
		if len(ids) > 0 {
			fmt.Fprintf(w, "  Events: %s\n", strings.Join(ids, "; "))
		}
		for _, e := range f.Evidence {
			fmt.Fprintf(w, "  %s: %s\n", e.Name, e.Value)
		}
		for i, x := range f.Fix {
			label := "  Fix:    "
			if i > 0 {
				label = "  then:   "
			}
			fmt.Fprintln(w, label+x.Command)
			if x.Input != "" {
				fmt.Fprintf(w, "          (reads %s on standard input)\n", x.Input)
			}
			fmt.Fprintln(w, "  cmdlet: "+x.Cmdlet)
		}
		if f.Note != "" {
			fmt.Fprintln(w, "  Note:   "+f.Note)
		}
	}
}
