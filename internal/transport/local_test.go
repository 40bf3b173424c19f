package transport

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"certrelay/internal/maildir"
	"certrelay/internal/queue"
)

var received = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mkey(id string, idx int) maildir.Key {
	return maildir.Key{MsgID: id, Idx: idx, Received: received}
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestLocalDeliverer(t *testing.T) {
	root := t.TempDir()
	boxes := map[string]string{"bob@example.com": "example.com/bob", "carol@example.com": "example.com/carol"}
	lookup := func(a string) (string, bool) { p, ok := boxes[a]; return p, ok }
	body := []byte("Subject: x\r\n\r\nhello\r\n")
	d := queue.Delivery{MsgID: "00aa11bb", ReceivedAt: received, Sender: "a@example.net", Destination: queue.Local, Body: body, Attempt: 1,
		Recipients: []queue.Recipient{{Idx: 0, Address: "bob@example.com"}, {Idx: 1, Address: "nobody@example.com"}, {Idx: 2, Address: "carol@example.com"}}}

	t.Run("ok/plain", func(t *testing.T) {
		outs := (&LocalDeliverer{Root: root, Lookup: lookup}).Deliver(context.Background(), d)
		if len(outs) != 3 || outs[0].Err != nil || outs[2].Err != nil {
			t.Fatalf("outcomes = %+v", outs)
		}
		if !queue.IsPermanent(outs[1].Err) || !strings.Contains(outs[1].Err.Error(), "5.1.1 mailbox unavailable") {
			t.Errorf("unknown recipient: %v, want a permanent 5.1.1", outs[1].Err)
		}
		b, _ := os.ReadFile(filepath.Join(root, "example.com/bob/new", maildir.Name(mkey("00aa11bb", 0))))
		if want := "Return-Path: <a@example.net>\r\n" + string(body); string(b) != want {
			t.Errorf("bob's mailbox holds %q, want %q", b, want)
		}
	})

	t.Run("ok/redelivery-after-crash-is-skipped", func(t *testing.T) {
		dir := filepath.Join(root, "example.com/carol")
		name := maildir.Name(mkey("00aa11bb", 2))
		if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+":2,S")); err != nil {
			t.Fatal(err)
		}
		again := d
		again.MaybeDelivered = true
		again.Recipients = d.Recipients[2:]
		if outs := (&LocalDeliverer{Root: root, Lookup: lookup}).Deliver(context.Background(), again); outs[0].Err != nil {
			t.Fatal(outs[0].Err)
		}
		if n := files(t, filepath.Join(dir, "new")); len(n) != 0 {
			t.Errorf("redelivery wrote %v", n)
		}
	})

	t.Run("ok/delivered-to", func(t *testing.T) {
		root := t.TempDir()
		dd := d
		dd.Recipients = d.Recipients[:1]
		outs := (&LocalDeliverer{Root: root, Lookup: lookup, DeliveredTo: true}).Deliver(context.Background(), dd)
		if outs[0].Err != nil {
			t.Fatal(outs[0].Err)
		}
		b, _ := os.ReadFile(filepath.Join(root, "example.com/bob/new", maildir.Name(mkey("00aa11bb", 0))))
		if want := "Return-Path: <a@example.net>\r\nDelivered-To: bob@example.com\r\n" + string(body); string(b) != want {
			t.Errorf("file = %q, want %q", b, want)
		}
	})

	t.Run("fail/cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		outs := (&LocalDeliverer{Root: t.TempDir(), Lookup: lookup}).Deliver(ctx, d)
		for _, o := range outs {
			if !errors.Is(o.Err, context.Canceled) || queue.IsPermanent(o.Err) {
				t.Errorf("outcome %+v", o)
			}
		}
	})
}

// TestLocalDeliveryWithQueue runs the queue and the Maildir deliverer together.
func TestLocalDeliveryWithQueue(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "mail")
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Handle(queue.Local, &LocalDeliverer{Root: root, Lookup: func(a string) (string, bool) {
		local, domain, _ := strings.Cut(a, "@")
		return filepath.Join(domain, local), local != "nobody"
	}})
	var bounced sync.WaitGroup
	bounced.Add(1)
	q.SetBouncer(queue.BouncerFunc(func(_ context.Context, m *queue.Message, failed []queue.RecipientState) error {
		if len(failed) != 1 || failed[0].Address != "nobody@example.com" {
			t.Errorf("bounce for %+v", failed)
		}
		bounced.Done()
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)
	body := []byte("Subject: together\r\n\r\nhi\r\n")
	id, err := q.Enqueue(ctx, &queue.Message{Sender: "a@example.net", Body: body, Recipients: []queue.Recipient{
		{Address: "bob@example.com", Destination: queue.Local}, {Address: "nobody@example.com", Destination: queue.Local}}})
	if err != nil {
		t.Fatal(err)
	}
	bounced.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		items, err := q.List(ctx, queue.Filter{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message still queued: %+v", items)
		}
		time.Sleep(5 * time.Millisecond)
	}
	names := files(t, filepath.Join(root, "example.com/bob/new"))
	if len(names) != 1 || !strings.Contains(names[0], "."+id+"_0.") {
		t.Fatalf("bob's new/ = %v", names)
	}
}
