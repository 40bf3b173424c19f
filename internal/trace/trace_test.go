package trace

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSocketStreamsRecords: the socket is 0600; a client gets the records
// of the components it asked for, in order, and nothing else; an unknown
// component, too many clients and no server at all are each a clear
// error.
func TestSocketStreamsRecords(t *testing.T) {
	dir := t.TempDir()
	path := SocketPath(dir)
	if err := Follow(context.Background(), path, nil, func(Record) error { return nil }); !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), "start the server") {
		t.Fatalf("no server: %v", err)
	}
	h := NewHub("hub1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.Serve(ctx, path, -1, -1); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".trace-*")); len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
	if err := h.Serve(ctx, path, -1, -1); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Errorf("a second server on the same socket: %v", err)
	}

	got := make(chan Record, 10)
	fctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Follow(fctx, path, []string{`transport\certificate`}, func(r Record) error { got <- r; return nil })
	}()
	for deadline := time.Now().Add(5 * time.Second); !h.Active(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the client never subscribed")
		}
	}
	if !h.Wants(TransportCertificate) || h.Wants(NetworkingCertificate) {
		t.Error("Wants does not follow the client's components")
	}
	h.Publish(Record{Component: NetworkingCertificate, Summary: "not asked for"})
	h.Publish(Record{Component: TransportCertificate, Tag: "selection", Summary: "first", Fields: map[string]any{"FQDN": "mail.contoso.test"}})
	h.Publish(Record{Component: TransportCertificate, Tag: "direct-trust", Summary: "second"})
	for _, want := range []string{"first", "second"} {
		select {
		case r := <-got:
			if r.Summary != want || r.Server != "hub1" || r.Time.IsZero() {
				t.Errorf("record %+v, want %q", r, want)
			}
			if want == "first" && r.Fields["FQDN"] != "mail.contoso.test" {
				t.Errorf("fields %v", r.Fields)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no record %q", want)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Follow after ctx ended: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); h.Active(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the subscription outlived its client")
		}
	}

	err = Follow(context.Background(), path, []string{"Transport\\Nothing"}, func(Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "unknown component") {
		t.Errorf("unknown component: %v", err)
	}
	var cancels []func()
	for i := 0; i < MaxSubscribers; i++ {
		_, _, c, ok := h.Subscribe(nil)
		if !ok {
			t.Fatalf("subscriber %d refused", i)
		}
		cancels = append(cancels, c)
	}
	err = Follow(context.Background(), path, nil, func(Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "already trace") {
		t.Errorf("one client too many: %v", err)
	}
	for _, c := range cancels {
		c()
	}
}

// TestPublishWithoutSubscribersIsFree: nobody tracing, Publish allocates
// nothing.
func TestPublishWithoutSubscribersIsFree(t *testing.T) {
	h := NewHub("hub1")
	r := Record{Component: TransportCertificate}
	if n := testing.AllocsPerRun(100, func() { h.Publish(r) }); n != 0 {
		t.Errorf("%v allocations per Publish with no subscriber", n)
	}
	var nilHub *Hub
	nilHub.Publish(r) // a server without tracing
}

// BenchmarkPublishNobodyTracing: what a handshake pays for tracing when
// nobody traces.
func BenchmarkPublishNobodyTracing(b *testing.B) {
	h := NewHub("hub1")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if h.Wants(TransportCertificate) {
			b.Fatal("wanted")
		}
	}
}
