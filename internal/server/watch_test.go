package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/store"
	"certrelay/internal/testpki"
)

// childEnv makes the test binary a child that commits a change and is
// killed (see TestMain).
const childEnv = "CERTRELAY_TEST_COMMIT_AND_DIE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		commitAndDie(dir)
	}
	os.Exit(m.Run())
}

// commitAndDie makes a certificate for mail.watch.test, prints its
// thumbprint, and kills itself with SIGKILL: a process that dies right
// after its commit, with nothing after it.
func commitAndDie(dir string) {
	ad, err := admin.Open(context.Background(), admin.Options{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	tp := newCert(ad)
	fmt.Println(tp)
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func newCert(ad *admin.Admin) string {
	smtp := store.SMTP
	res, err := ad.NewCertificate(context.Background(), admin.NewOptions{Domains: []string{"mail.watch.test"}, Services: &smtp, Key: certinfo.KeySpec{Type: "ecdsa"}}, admin.Yes{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return res.Certificate.Thumbprint
}

// TestChangesSeenWithoutPolling protects issue 10's pushed changes: with
// the periodic read of the change log an hour apart, the server still
// serves, at the next handshakes, a certificate made by a process killed
// right after its commit, then one made by a process that stays (its
// write-ahead log is never closed), and passes over the newest once its
// key file is removed by hand.
func TestChangesSeenWithoutPolling(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ad, err := admin.Open(ctx, admin.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	if _, err := ad.Setup(ctx, admin.SetupOptions{Fqdn: "hub.watch.test"}); err != nil {
		t.Fatal(err)
	}
	addr := testpki.FreePort(t)
	bindings, fqdn := []string{addr}, "mail.watch.test"
	if _, err := ad.SetReceiveConnector(ctx, "Default "+mustServer(t, ad), admin.ReceiveConnectorOptions{Bindings: &bindings, Fqdn: &fqdn}); err != nil {
		t.Fatal(err)
	}
	var logs testpki.LockedBuffer
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{DataDir: ad.DataDir(), Now: ad.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Ready: func() { close(ready) }, CheckInterval: time.Hour})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not start")
	}
	served := func(want, what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var got string
		var err error
		for time.Now().Before(deadline) {
			if got, _, err = testpki.STARTTLSProbe(addr); err == nil && got == want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: the server serves %q (%v), want %s\n%s", what, got, err, want, logs.String())
	}

	// A process killed right after its commit.
	time.Sleep(1100 * time.Millisecond) // a later NotBefore: the new certificate wins (S4)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+dir)
	var out, errb bytes.Buffer
	child.Stdout, child.Stderr = &out, &errb
	err = child.Run()
	if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed: %v\n%s", err, errb.String())
	}
	killed := strings.TrimSpace(out.String())
	if len(killed) != 40 {
		t.Fatalf("the child printed %q", out.String())
	}
	served(killed, "a certificate made by a process killed after its commit")

	// A process that stays: another connection pool in this process,
	// kept open, so its write-ahead log is written and never closed.
	other, err := admin.Open(ctx, admin.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	time.Sleep(1100 * time.Millisecond)
	stays := newCert(other)
	served(stays, "a certificate made by a process that keeps the database open")

	// The newest certificate's key file removed by hand: no database
	// change, only the key directory says so.
	e, err := ad.Store.Get(ctx, stays)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(ad.Store.KeysDir(), e.KeyID+".key")); err != nil {
		t.Fatal(err)
	}
	served(killed, "after the newest certificate's key file was removed")
}
