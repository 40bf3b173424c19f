package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"certrelay/internal/admin"
	"certrelay/internal/events"
	"certrelay/internal/testpki"
)

// runUntilReady sets the data directory up and runs the server with a
// clock, as certrelay serve does, and stops it once ready.
func runUntilReady(t *testing.T, dir string, now func() time.Time) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ad, err := admin.Open(ctx, admin.Options{DataDir: dir, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	if _, err := ad.Setup(ctx, admin.SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	// Another test may hold the default port: this one is about events.
	bindings := []string{testpki.FreePort(t)}
	if _, err := ad.SetReceiveConnector(ctx, "Default "+mustServer(t, ad), admin.ReceiveConnectorOptions{Bindings: &bindings}); err != nil {
		t.Fatal(err)
	}
	var logs testpki.LockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{DataDir: ad.DataDir(), Now: ad.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Ready: cancel})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not become ready")
	}
}

func mustServer(t *testing.T, ad *admin.Admin) string {
	srv, err := ad.LocalServer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return srv.Name
}

func eventIDs(t *testing.T, dir string) map[int]int {
	t.Helper()
	ad, err := admin.Open(context.Background(), admin.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	evs, err := ad.Events.List(context.Background(), events.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, e := range evs {
		out[e.ID]++
	}
	return out
}

// TestRunSetsUpAndChecksExpiry: the first start runs setup (M9); a start
// within the warning window logs 12017, one after NotAfter logs 12015
// (C12, E5), once per day per certificate.
func TestRunSetsUpAndChecksExpiry(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	runUntilReady(t, dir, func() time.Time { return start })
	ids := eventIDs(t, dir)
	if ids[16001] != 1 || ids[16002] != 1 || ids[12017] != 0 || ids[12015] != 0 {
		t.Fatalf("after first start: %v", ids)
	}
	soon := start.Add(350 * 24 * time.Hour)
	runUntilReady(t, dir, func() time.Time { return soon })
	runUntilReady(t, dir, func() time.Time { return soon.Add(time.Minute) })
	if ids := eventIDs(t, dir); ids[12017] != 1 || ids[16001] != 1 {
		t.Fatalf("within 30 days of expiry: %v", ids)
	}
	late := start.Add(400 * 24 * time.Hour)
	runUntilReady(t, dir, func() time.Time { return late })
	if ids := eventIDs(t, dir); ids[12015] != 1 {
		t.Fatalf("after expiry: %v", ids)
	}
}
