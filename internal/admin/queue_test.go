package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"certrelay/internal/queue"
)

// TestGetMessagePages: Get-Message (`queue list`) returns a page of
// ResultSize messages, oldest first, and a note naming the -After value
// of the next page when more are queued; the pages add up to the queue;
// a negative size is refused naming the parameter.
func TestGetMessagePages(t *testing.T) {
	a := newAdmin(t)
	q, err := queue.OpenAdmin(a.QueueDir())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 5 {
		id, err := q.Enqueue(context.Background(), &queue.Message{Sender: "s@example.com", Body: []byte("x\r\n"),
			Recipients: []queue.Recipient{{Address: fmt.Sprintf("r%d@example.org", i), Destination: "example.org"}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	q.Close()

	page := func(p Params) ([]string, string) {
		t.Helper()
		res, err := call(t, a, viewer, "Get-Message", p)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range res.Data.([]queue.Item) {
			got = append(got, it.ID)
		}
		var notes []string
		for _, m := range res.Messages {
			notes = append(notes, m.Text)
		}
		return got, strings.Join(notes, "\n")
	}
	t.Run("ok/default-size-holds-all", func(t *testing.T) {
		got, note := page(nil)
		if strings.Join(got, ",") != strings.Join(ids, ",") || note != "" {
			t.Errorf("Get-Message = %q, note %q", got, note)
		}
	})
	t.Run("ok/pages", func(t *testing.T) {
		var all []string
		after := ""
		for range len(ids) {
			p := Params{"ResultSize": 2}
			if after != "" {
				p["After"] = after
			}
			got, note := page(p)
			all = append(all, got...)
			if len(all) == len(ids) {
				if note != "" {
					t.Errorf("last page has a note: %q", note)
				}
				break
			}
			if len(got) != 2 || !strings.Contains(note, "-After "+got[1]) || !strings.Contains(note, "-ResultSize 2") {
				t.Fatalf("page %q, note %q: want 2 messages and a note naming -After %s", got, note, got[len(got)-1])
			}
			after = got[1]
		}
		if strings.Join(all, ",") != strings.Join(ids, ",") {
			t.Errorf("pages gave %q, want %q", all, ids)
		}
	})
	t.Run("ok/zero-is-all", func(t *testing.T) {
		if got, note := page(Params{"ResultSize": 0}); len(got) != len(ids) || note != "" {
			t.Errorf("ResultSize 0 = %q, note %q", got, note)
		}
	})
	// Exchange's idiom for all of them, as the shell and the CLI pass it.
	t.Run("ok/unlimited-is-all", func(t *testing.T) {
		for _, v := range []string{"Unlimited", "unlimited"} {
			if got, note := page(Params{"ResultSize": v}); len(got) != len(ids) || note != "" {
				t.Errorf("ResultSize %s = %q, note %q", v, got, note)
			}
		}
	})
	t.Run("fail/not-a-number", func(t *testing.T) {
		_, err := call(t, a, viewer, "Get-Message", Params{"ResultSize": "lots"})
		if err == nil || !strings.Contains(err.Error(), "Unlimited") {
			t.Errorf("ResultSize lots: %v, want an error naming Unlimited", err)
		}
	})
	t.Run("fail/negative-size", func(t *testing.T) {
		_, err := call(t, a, viewer, "Get-Message", Params{"ResultSize": -1})
		var e *Error
		if !errors.As(err, &e) || e.Kind != Invalid || e.Field != "ResultSize" || !strings.Contains(err.Error(), "-ResultSize -1") {
			t.Errorf("ResultSize -1: %v", err)
		}
	})
}
