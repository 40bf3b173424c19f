package server

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"certrelay/internal/admin"
	"certrelay/internal/certinfo"
	"certrelay/internal/store"
	"certrelay/internal/testpki"
)

// TestConsoleListener: the console listens on its bindings with the
// certificate selected for its host name and IIS (S8); before any
// certificate is enabled for IIS handshakes fail and 16084 says why;
// enabling one, then another, is served from the next handshake on,
// without a restart (S7); turning the console off closes the binding;
// /metrics listens on its own binding in plain HTTP, with the expiry of
// the certificate just enabled and the handshakes counted.
func TestConsoleListener(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	// The first IIS certificate is made an hour earlier, so the second is
	// the newer (S4) whatever the second they are made in.
	var back time.Duration = time.Hour
	clock := func() time.Time { return time.Now().Add(-back) }
	ad, err := admin.Open(ctx, admin.Options{DataDir: dir, Now: clock, Hostname: func() (string, error) { return "hub1", nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	if _, err := ad.Setup(ctx, admin.SetupOptions{Fqdn: "hub1.contoso.test"}); err != nil {
		t.Fatal(err)
	}
	smtp := []string{testpki.FreePort(t)}
	if _, err := ad.SetReceiveConnector(ctx, "Default hub1", admin.ReceiveConnectorOptions{Bindings: &smtp}); err != nil {
		t.Fatal(err)
	}
	addr, metricsAddr := testpki.FreePort(t), testpki.FreePort(t)
	bind, mbind := []string{addr}, []string{metricsAddr}
	if _, _, err := ad.ConsoleSet(ctx, admin.ConsoleSetOptions{Bindings: &bind, MetricsBindings: &mbind}); err != nil {
		t.Fatal(err)
	}
	var logs testpki.LockedBuffer
	ready := make(chan struct{})
	done := make(chan error, 1)
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "console "+r.TLS.ServerName) })
	go func() {
		done <- Run(ctx, Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Console: hello, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("not ready")
	}

	served := func() (string, error) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "hub1.contoso.test"})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return certinfo.Thumbprint(conn.ConnectionState().PeerCertificates[0].Raw), nil
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if ok() {
				return
			}
		}
		t.Fatalf("%s\n%s", what, logs.String())
	}
	if th, err := served(); err == nil {
		t.Fatalf("no certificate is enabled for IIS, yet the console served %s", th)
	}
	eventually("16084 was not raised", func() bool { return eventIDs(t, dir)[16084] > 0 })

	first, err := ad.NewCertificate(ctx, admin.NewOptions{Domains: []string{"hub1.contoso.test"}, Services: ptr(store.IIS)}, admin.Yes{})
	if err != nil {
		t.Fatal(err)
	}
	eventually("the first IIS certificate is not served", func() bool { th, err := served(); return err == nil && th == first.Certificate.Thumbprint })
	back = 0
	second, err := ad.NewCertificate(ctx, admin.NewOptions{Domains: []string{"hub1.contoso.test"}, Services: ptr(store.IIS)}, admin.Yes{})
	if err != nil {
		t.Fatal(err)
	}
	eventually("the newer IIS certificate is not served", func() bool { th, err := served(); return err == nil && th == second.Certificate.Thumbprint })

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "hub1.contoso.test"}}}
	res, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "console hub1.contoso.test" {
		t.Errorf("the console answered %q", b)
	}

	res, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	m := string(b)
	for _, want := range []string{
		`certrelay_certificate_expiry_seconds{internal="false",services="IIS",subject="CN=hub1.contoso.test",thumbprint="` + second.Certificate.Thumbprint + `"}`,
		`certrelay_tls_handshakes_total{listener="console",protocol="https",result="ok"}`,
		`certrelay_tls_handshakes_total{listener="console",protocol="https",result="failed"}`,
		`certrelay_starttls_offered{connector="Default hub1"} 1`,
		`certrelay_queue_messages 0`,
		`certrelay_events_total{id="16084",name="ConsoleCertificateMissing"}`,
		`certrelay_selection_rebuild_seconds_count`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", m)
	}

	off := []string{""}
	if _, _, err := ad.ConsoleSet(ctx, admin.ConsoleSetOptions{Bindings: &off}); err != nil {
		t.Fatal(err)
	}
	eventually("the console still listens after it was turned off", func() bool { _, err := served(); return err != nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }
