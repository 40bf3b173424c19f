package main

import (
	"bufio"
	"bytes"
	"certrelay/internal/admin"
	"certrelay/internal/parallel"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"
)

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Len() >= parallelJSON {
		return printJSONSlice(w, rv)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// parallelJSON is the length from which a list is encoded on every core:
// a listing of 10,000 certificates spends about 90 ms in encoding/json.
const parallelJSON = 256

// printJSONSlice writes what printJSON writes for a slice, byte for byte,
// with its elements encoded in parallel and written as they are ready, a
// chunk at a time: a listing of 10,000 certificates (8 MB of JSON) is
// never held whole, and each element's buffer is reused for the next
// chunk.
func printJSONSlice(w io.Writer, rv reflect.Value) error {
	n := rv.Len()
	certs, _ := rv.Interface().([]admin.Certificate)
	parts := make([][]byte, min(n, jsonChunk))
	errs := make([]error, len(parts))
	bw := bufio.NewWriterSize(w, 1<<16)
	bw.WriteString("[\n  ")
	for start := 0; start < n; start += jsonChunk {
		end := min(n, start+jsonChunk)
		parallel.Each(end-start, func(k int) {
			i := start + k
			if certs != nil {
				parts[k] = appendCertificateJSON(parts[k][:0], &certs[i], "  ")
				return
			}
			b := bytes.NewBuffer(parts[k][:0])
			enc := json.NewEncoder(b)
			enc.SetIndent("  ", "  ")
			enc.SetEscapeHTML(false)
			errs[k] = enc.Encode(rv.Index(i).Interface())
			parts[k] = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
		})
		if err := errors.Join(errs[:end-start]...); err != nil {
			return err
		}
		for k, p := range parts[:end-start] {
			if start+k > 0 {
				bw.WriteString(",\n  ")
			}
			bw.Write(p)
		}
	}
	bw.WriteString("\n]\n")
	return bw.Flush()
}

// jsonChunk is how many elements printJSONSlice encodes before writing
// them.
const jsonChunk = 512

// emit prints v as JSON when asJSON is set, else as a Format-List.
func (a *app) emit(v any, asJSON bool) error {
	if asJSON {
		return printJSON(a.stdout, v)
	}
	printList(a.stdout, v, nil)
	return nil
}

// printLists writes v with printList, or each element of a slice v, a
// blank line between them (PowerShell's Format-List of several objects).
func printLists(w io.Writer, v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		printList(w, v, nil)
		return
	}
	for i := 0; i < rv.Len(); i++ {
		if i > 0 {
			fmt.Fprintln(w)
		}
		printList(w, rv.Index(i).Interface(), nil)
	}
}

// printList writes the exported fields of a struct as "Name : value"
// lines, as PowerShell's Format-List does. only, when not empty, keeps
// those fields (case-insensitive), in the struct's order.
func printList(w io.Writer, v any, only []string) {
	rv := reflect.Indirect(reflect.ValueOf(v))
	rt := rv.Type()
	keep := map[string]bool{}
	for _, o := range only {
		keep[strings.ToLower(o)] = true
	}
	var names []string
	var values []string
	width := 0
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if !f.IsExported() || f.Tag.Get("json") == "-" {
			continue
		}
		if len(keep) > 0 && !keep[strings.ToLower(f.Name)] {
			continue
		}
		names = append(names, f.Name)
		values = append(values, formatValue(rv.Field(i)))
		if len(f.Name) > width {
			width = len(f.Name)
		}
	}
	for i := range names {
		fmt.Fprintf(w, "%-*s : %s\n", width, names[i], values[i])
	}
}

// formatValue renders a field for printList.
func formatValue(v reflect.Value) string {
	if !v.IsValid() {
		return ""
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if t, ok := v.Interface().(time.Time); ok {
		return formatTime(t)
	}
	switch v.Kind() {
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return fmt.Sprintf("(%d bytes)", v.Len())
		}
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = formatValue(v.Index(i))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case reflect.Struct:
		var parts []string
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				parts = append(parts, formatValue(v.Field(i)))
			}
		}
		return strings.Join(parts, " ")
	case reflect.Bool:
		if v.Bool() {
			return "True"
		}
		return "False"
	case reflect.String:
		s := v.String()
		if strings.Contains(s, "\n") { // a PEM request: keep it readable
			return "\n" + strings.TrimRight(s, "\n")
		}
		return s
	}
	return fmt.Sprint(v.Interface())
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// table writes rows under headers, aligned.
func table(w io.Writer, headers []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	under := make([]string, len(headers))
	for i, h := range headers {
		under[i] = strings.Repeat("-", len(h))
	}
	fmt.Fprintln(tw, strings.Join(under, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// readAllLimited reads standard input up to 16 MiB (certificate files are
// small; this stops a mistaken pipe from filling memory).
func readAllLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	return data, nil
}
