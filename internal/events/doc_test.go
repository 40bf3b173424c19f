package events

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/EVENTS.md from the catalog")

// TestEventsDoc: docs/EVENTS.md is the catalog as Markdown renders it,
// so it documents every event and cannot drift (-update rewrites it).
func TestEventsDoc(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "EVENTS.md")
	want := Markdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: write it with go test ./internal/events -run TestEventsDoc -update", err)
	}
	if string(got) != want {
		t.Fatalf("docs/EVENTS.md differs from the catalog: regenerate it with go test ./internal/events -run TestEventsDoc -update")
	}
	for _, d := range Catalog() {
		if !strings.Contains(want, "\n### "+strconv.Itoa(d.ID)+"\n") || !strings.Contains(want, d.Name) {
			t.Errorf("event %d (%s) is not documented", d.ID, d.Name)
		}
	}
}
