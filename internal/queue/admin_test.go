package queue

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAdminHandleBesideRunningServer does what `certrelay queue
// list|retry|remove` does: a second handle, opened with OpenAdmin, works
// on the directory of a server that runs workers.
func TestAdminHandleBesideRunningServer(t *testing.T) {
	dir := t.TempDir()
	srv := openT(t, dir, Options{})
	var calls atomic.Int32
	srv.Handle(Local, &recorder{fn: func(_ context.Context, r Recipient, attempt int) error {
		calls.Add(1)
		if r.Address == "b@local.test" && attempt == 1 {
			return errors.New("451 4.2.0 mailbox locked")
		}
		return nil
	}})
	runT(t, srv)
	deferred := enqueueT(t, srv, testMsg("a@example.com", "b@local.test"))
	unrouted := enqueueT(t, srv, testMsg("a@example.com", "c@example.org"))

	adm, err := OpenAdmin(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()

	t.Run("ok/list", func(t *testing.T) {
		waitFor(t, "first attempt", func() bool { return recipientState(t, adm, deferred, 0).Attempts == 1 })
		items := listT(t, adm, Filter{})
		if len(items) != 2 || items[0].ID != deferred || items[1].ID != unrouted {
			t.Fatalf("List = %+v", items)
		}
		rs := items[0].Recipients[0]
		if rs.Status != Pending || rs.LastError == "" || !rs.NextAttempt.After(time.Now()) {
			t.Errorf("deferred recipient = %+v", rs)
		}
		if got := listT(t, adm, Filter{Destination: "example.org"}); len(got) != 1 || got[0].ID != unrouted {
			t.Errorf("List by destination = %+v", got)
		}
		if got := listT(t, adm, Filter{Status: Failed}); len(got) != 0 {
			t.Errorf("List failed = %+v", got)
		}
		if got := listT(t, adm, Filter{Limit: 1}); len(got) != 1 || got[0].ID != deferred {
			t.Errorf("List limit 1 = %+v", got)
		}
	})

	t.Run("ok/retry-delivers-promptly", func(t *testing.T) {
		start := time.Now()
		n, err := adm.Retry(ctx, deferred)
		if err != nil || n != 1 {
			t.Fatalf("Retry = %d, %v", n, err)
		}
		waitFor(t, "delivery after Retry", gone(t, adm, deferred))
		el := time.Since(start)
		t.Logf("delivered %v after Retry from the other handle", el)
		if el > 5*time.Second {
			t.Errorf("delivery took %v after Retry", el)
		}
		if c := calls.Load(); c != 2 {
			t.Errorf("deliverer called %d times, want 2", c)
		}
	})

	t.Run("ok/retry-all", func(t *testing.T) {
		if n, err := adm.Retry(ctx, ""); err != nil || n != 1 {
			t.Errorf("Retry all = %d, %v, want 1 (the unrouted one)", n, err)
		}
	})

	t.Run("ok/remove", func(t *testing.T) {
		if err := adm.Remove(ctx, unrouted); err != nil {
			t.Fatal(err)
		}
		if got := listT(t, srv, Filter{}); len(got) != 0 {
			t.Errorf("server still lists %+v", got)
		}
	})

	t.Run("fail/unknown-id", func(t *testing.T) {
		if err := adm.Remove(ctx, "0000000000000000deadbeef"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Remove unknown = %v, want ErrNotFound", err)
		}
		if _, err := adm.Retry(ctx, "0000000000000000deadbeef"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Retry unknown = %v, want ErrNotFound", err)
		}
		if _, err := adm.Get(ctx, "0000000000000000deadbeef"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get unknown = %v, want ErrNotFound", err)
		}
	})

	t.Run("ok/enqueue-from-admin-is-delivered", func(t *testing.T) {
		id := enqueueT(t, adm, testMsg("a@example.com", "d@local.test"))
		start := time.Now()
		waitFor(t, "delivery of a message enqueued by another process", gone(t, adm, id))
		t.Logf("delivered %v after Enqueue from the other handle", time.Since(start))
	})
}

func TestCountSaysWhatTheQueueHolds(t *testing.T) {
	clk := newClock()
	q := openT(t, t.TempDir(), Options{Now: clk.Now})
	if c, err := q.Count(context.Background()); err != nil || c != (Counts{}) {
		t.Fatalf("empty queue: Count = %+v, %v", c, err)
	}
	enqueueT(t, q, testMsg("a@example.com", "b@local.test", "c@example.net"))
	id := enqueueT(t, q, testMsg("a@example.com", "d@example.net"))
	q.Handle(AnyRemote, &recorder{fn: func(context.Context, Recipient, int) error { return errors.New("451 try later") }})
	runT(t, q)
	waitFor(t, "two deferrals", func() bool {
		c, err := q.Count(context.Background())
		return err == nil && c.Deferred == 2
	})
	if c, err := q.Count(context.Background()); err != nil || c.Oldest.IsZero() || c.Oldest.After(clk.Now()) {
		t.Errorf("Oldest = %v, want the first message's arrival (the clock says %v)", c.Oldest, clk.Now())
	}
	if c, err := q.Count(context.Background()); err != nil || withoutOldest(c) != (Counts{Messages: 2, Pending: 3, Deferred: 2, Waiting: 3}) {
		t.Errorf("Count = %+v, %v; want 2 messages, 3 pending recipients, 2 of them deferred, all 3 waiting (the local one has no route)", c, err)
	}
	if err := q.Remove(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if c, err := q.Count(context.Background()); err != nil || withoutOldest(c) != (Counts{Messages: 1, Pending: 2, Deferred: 1, Waiting: 2}) {
		t.Errorf("after Remove: Count = %+v, %v", c, err)
	}
}

func withoutOldest(c Counts) Counts { c.Oldest = time.Time{}; return c }

// TestListPages walks the queue a page at a time, as `queue list
// --result-size N --after ID` does: the pages, each with all its
// messages' recipients, add up to the whole list, in order, with none
// twice; filters hold across pages.
func TestListPages(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	var ids []string
	for i := range 7 {
		rcpts := []string{"a@local.test", "b@example.org"}
		if i%2 == 1 {
			rcpts = []string{"c@example.net"}
		}
		ids = append(ids, enqueueT(t, q, testMsg("s@example.com", rcpts...)))
	}
	all := listT(t, q, Filter{})
	if len(all) != len(ids) {
		t.Fatalf("List = %d messages, want %d", len(all), len(ids))
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"ok/pages-of-3", Filter{Limit: 3}, ids},
		{"ok/pages-of-1", Filter{Limit: 1}, ids},
		{"ok/destination", Filter{Limit: 2, Destination: "example.net"}, []string{ids[1], ids[3], ids[5]}},
		{"ok/no-limit", Filter{}, ids},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			f := tc.f
			for pages := 0; ; pages++ {
				page := listT(t, q, f)
				if f.Limit > 0 && len(page) > f.Limit {
					t.Fatalf("page of %d messages, limit %d", len(page), f.Limit)
				}
				for _, it := range page {
					got = append(got, it.ID)
					wantRcpts := 2
					if it.Recipients[0].Address == "c@example.net" {
						wantRcpts = 1
					}
					if len(it.Recipients) != wantRcpts {
						t.Errorf("%s: %d recipients, want %d", it.ID, len(it.Recipients), wantRcpts)
					}
				}
				if len(page) == 0 || f.Limit == 0 || len(page) < f.Limit {
					break
				}
				f.After = page[len(page)-1].ID
				if pages > len(ids) {
					t.Fatal("the pages do not end")
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("pages gave %q, want %q", got, tc.want)
			}
		})
	}
	if got := listT(t, q, Filter{After: ids[len(ids)-1], Limit: 5}); len(got) != 0 {
		t.Errorf("after the last message: %d messages", len(got))
	}
}
