package server

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"certrelay/internal/admin"
	"certrelay/internal/testpki"
)

// TestExpiryCheckedDailyOnItsClock (E5, C12): a running server checks
// expiry when a day has passed on its clock — injected here, never slept
// through — with the window of server set --expiry-warning-days, which
// applies at once when it changes; the events are throttled per day.
func TestExpiryCheckedDailyOnItsClock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	ad, err := admin.Open(ctx, admin.Options{DataDir: t.TempDir(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	if _, err := ad.Setup(ctx, admin.SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	bindings := []string{testpki.FreePort(t)}
	if _, err := ad.SetReceiveConnector(ctx, "Default "+mustServer(t, ad), admin.ReceiveConnectorOptions{Bindings: &bindings}); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	var logs testpki.LockedBuffer
	go func() {
		done <- Run(ctx, Options{DataDir: ad.DataDir(), Now: now, CheckInterval: 10 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)), Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	count := func() int { return eventIDs(t, ad.DataDir())[12017] }
	// settle waits long enough for the loop to have ticked many times.
	settle := func() { time.Sleep(200 * time.Millisecond) }
	waitCount := func(want int, what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); count() != want; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d events 12017, want %d\n%s", what, count(), want, logs.String())
			}
		}
	}

	advance(300 * 24 * time.Hour) // 65 days left: outside the default 30
	settle()
	if n := count(); n != 0 {
		t.Fatalf("65 days before expiry with a 30-day window: %d events 12017", n)
	}
	days := 90
	if _, err := ad.ServerSet(ctx, admin.ServerSetOptions{ExpiryWarningDays: &days}); err != nil {
		t.Fatal(err)
	}
	waitCount(1, "the window set to 90 days")
	advance(time.Hour)
	settle()
	if n := count(); n != 1 {
		t.Fatalf("an hour later: %d events 12017 (checked daily, throttled per day)", n)
	}
	advance(24 * time.Hour)
	waitCount(2, "a day later")
	cancel()
	<-done
}
