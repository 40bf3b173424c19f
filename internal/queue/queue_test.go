package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is an injected clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openT(t *testing.T, dir string, opts Options) *Queue {
	t.Helper()
	q, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func testMsg(sender string, rcpts ...string) *Message {
	m := &Message{Sender: sender, Body: []byte("Subject: test\r\n\r\nhello\r\n"),
		Meta: Meta{Helo: "client.example", ClientAddr: "192.0.2.7:2525", TLS: "TLS1.3", Connector: "Default", EnvelopeID: "env-1", Ret: "HDRS"}}
	for _, r := range rcpts {
		dest := Local
		if at := strings.LastIndexByte(r, '@'); at >= 0 && r[at+1:] != "local.test" {
			dest = r[at+1:]
		}
		m.Recipients = append(m.Recipients, Recipient{Address: r, Destination: dest})
	}
	return m
}

func enqueueT(t *testing.T, q *Queue, m *Message) string {
	t.Helper()
	id, err := q.Enqueue(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func listT(t *testing.T, q *Queue, f Filter) []Item {
	t.Helper()
	items, err := q.List(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func TestEnqueueIsDurable(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := testMsg("alice@example.com", "bob@local.test", "carol@example.net")
	m.Recipients[1].Notify, m.Recipients[1].ORCPT = "FAILURE,DELAY", "rfc822;carol@example.net"
	m.Body = bytes.Repeat([]byte("0123456789abcdef\r\n"), 500)
	id := enqueueT(t, q, m)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q2 := openT(t, dir, Options{})
	items := listT(t, q2, Filter{})
	if len(items) != 1 || items[0].ID != id {
		t.Fatalf("List = %+v, want one item %s", items, id)
	}
	it := items[0]
	if it.Sender != m.Sender || it.Size != len(m.Body) || it.Meta != m.Meta {
		t.Errorf("item = %+v", it)
	}
	for i, r := range it.Recipients {
		want := m.Recipients[i]
		want.Idx = i
		if r.Recipient != want || r.Status != Pending || r.Attempts != 0 {
			t.Errorf("recipient %d = %+v, want %+v pending", i, r, want)
		}
	}
	got, err := q2.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Body, m.Body) || got.Sender != m.Sender || len(got.Recipients) != 2 ||
		got.Recipients[1].Address != "carol@example.net" || got.Recipients[1].Destination != "example.net" {
		t.Errorf("Get = %+v", got)
	}
}

// TestGroupCommitBatches: messages that arrive while the writer commits
// share its next transaction. Another connection holds the write lock
// until all of them wait (without it the test depended on the machine's
// timing: on a busy machine each commit could end before the next
// Enqueue arrived, 64 messages in 64 commits).
func TestGroupCommitBatches(t *testing.T) {
	dir := t.TempDir()
	q := openT(t, dir, Options{})
	const n = 64
	c0 := q.Stats().Commits
	other, err := openDB(filepath.Join(dir, FileName), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock, err := other.Begin() // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(bumpGenSQL); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			m := testMsg("s@example.com", fmt.Sprintf("r%d@example.net", i))
			if _, err := q.Enqueue(context.Background(), m); err != nil {
				errs <- err
			}
		})
	}
	// The writer took what had arrived and waits for the lock; the others
	// wait for the writer. (One still on its way when the lock goes only
	// makes one more commit.)
	for end := time.Now().Add(10 * time.Second); len(q.reqs) < n/2 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	commits := q.Stats().Commits - c0
	if commits >= n {
		t.Errorf("%d messages took %d commits, want fewer commits than messages", n, commits)
	}
	t.Logf("%d messages in %d commits", n, commits)
	if got := len(listT(t, q, Filter{})); got != n {
		t.Errorf("listed %d messages, want %d", got, n)
	}
}

func TestEnqueueValidation(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	for name, m := range map[string]*Message{
		"fail/no-recipients":  {Sender: "a@example.com", Body: []byte("x")},
		"fail/no-destination": {Sender: "a@example.com", Recipients: []Recipient{{Address: "b@example.com"}}},
		"fail/no-address":     {Sender: "a@example.com", Recipients: []Recipient{{Destination: Local}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := q.Enqueue(context.Background(), m); err == nil || errors.Is(err, ErrStorage) {
				t.Errorf("Enqueue = %v, want a validation error", err)
			}
		})
	}
	q.Close()
	if _, err := q.Enqueue(context.Background(), testMsg("a@x.example", "b@local.test")); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
}

func TestEnqueueCancelledContext(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		if _, err := q.Enqueue(ctx, testMsg("a@example.com", "b@local.test")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Enqueue with a cancelled context = %v, want context.Canceled", err)
		}
	}
	// Whatever was committed anyway is whole (a duplicate at worst).
	for _, it := range listT(t, q, Filter{}) {
		if len(it.Recipients) != 1 {
			t.Errorf("item %+v", it)
		}
	}
}

// TestStorageErrorThenRecovery fills the database with max_page_count (the
// same SQLITE_FULL a full disk gives), then lifts the limit.
func TestStorageErrorThenRecovery(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	ctx := context.Background()
	enqueueT(t, q, testMsg("a@example.com", "b@local.test"))
	var pages int
	if err := q.wconn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := q.wconn.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	big := testMsg("a@example.com", "b@local.test")
	big.Body = bytes.Repeat([]byte("x"), 64<<10)
	_, err := q.Enqueue(ctx, big)
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("Enqueue on a full database = %v, want ErrStorage", err)
	}
	t.Logf("full: %v", err)
	if _, err := q.wconn.ExecContext(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	id := enqueueT(t, q, big)
	if got := listT(t, q, Filter{}); len(got) != 2 || got[1].ID != id {
		t.Errorf("after space returned: %+v", got)
	}
}

func TestStorageErrorClosedDatabase(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	q.wconn.Close() // the writer's connection is gone: every write fails
	if _, err := q.Enqueue(context.Background(), testMsg("a@example.com", "b@local.test")); !errors.Is(err, ErrStorage) {
		t.Fatalf("Enqueue = %v, want ErrStorage", err)
	}
}

func TestSecondServerFailsOnLock(t *testing.T) {
	dir := t.TempDir()
	q := openT(t, dir, Options{})
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("second Open = %v, want ErrLocked naming the lock file", err)
	}
	t.Logf("second Open: %v", err)
	adm, err := OpenAdmin(dir)
	if err != nil {
		t.Fatalf("OpenAdmin beside a server: %v", err)
	}
	if err := adm.Run(context.Background()); err == nil {
		t.Error("Run on an administration handle succeeded")
	}
	adm.Close()
	q.Close()
	q2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after the first server closed: %v", err)
	}
	q2.Close()
}

func TestIDsSortAndDiffer(t *testing.T) {
	q := openT(t, t.TempDir(), Options{})
	now := time.Now()
	prev := ""
	for range 1000 {
		id := q.newID(now)
		if len(id) != 24 || id <= prev {
			t.Fatalf("id %q after %q", id, prev)
		}
		prev = id
	}
}
