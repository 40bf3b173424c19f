package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// TestParallelJSONIsByteForByte: a long list printed in parallel is the
// same text encoding/json prints.
func TestParallelJSONIsByteForByte(t *testing.T) {
	type item struct {
		Thumbprint string
		Domains    []string
		Note       string `json:",omitempty"`
		Nested     map[string]int
	}
	list := make([]item, parallelJSON+7)
	for i := range list {
		list[i] = item{Thumbprint: fmt.Sprintf("%040X", i), Domains: []string{"a.example", "<b>&c"}, Nested: map[string]int{"x": i}}
		if i%3 == 0 {
			list[i].Note = "note"
		}
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(list); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := printJSON(&got, list); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("parallel JSON differs from encoding/json's:\n%.300s\nwant:\n%.300s", got.String(), want.String())
	}
}
