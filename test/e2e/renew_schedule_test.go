package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// TestOrgInternalRenewedBySchedule (C12, issue 18): hub2's internal
// transport certificate expires in 10 days — inside the 30 days before
// expiry when certrelay renews it. A running serve (checking every
// second instead of every hour) renews it by itself, without a command:
// the new certificate becomes the internal one, is published in the
// directory, and hub1 sends to hub2 by direct trust with it; mail sent
// all along arrives, and no session fails.
func TestOrgInternalRenewedBySchedule(t *testing.T) {
	o := newOrg(t)
	h1, h2 := o.join("hub1"), o.join("hub2")
	h1.e.ok("domain", "add", "contoso.test")
	h2.e.write("bob.pw", []byte("bob-secret-1\n"))
	h2.e.ok("mailbox", "add", "bob@contoso.test", "--password-file", "bob.pw")

	// A self-signed certificate for hub2's names, 10 days from expiry,
	// made its internal transport certificate.
	now := time.Now()
	short := h2.e.importLeaf("short", testpki.SelfSigned(t, testpki.Options{CommonName: "hub2", DNSNames: []string{"hub2", "hub2.org.test"},
		NotBefore: now.Add(-355 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)}))
	h2.e.ok("cert", "enable", short, "--services", "SMTP", "--force")
	if h2.internal() != short {
		t.Fatalf("hub2's internal certificate is %s, want the short-lived %s", h2.internal(), short)
	}

	h1.start()
	h2.p = h2.e.serve("--renew-check", "1s")
	waitPort(t, h2.addr)
	send := func(i int) {
		t.Helper()
		if out, code := swaks(t, "--server", h1.addr, "--from", "carol@example.org", "--to", "bob@contoso.test", "--header", fmt.Sprintf("Subject: scheduled %d", i)); code != 0 {
			t.Fatalf("swaks %d: %d\n%s", i, code, out)
		}
	}
	// Mail all along, while the scheduler renews.
	renewed, sent := "", 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		sent++
		send(sent)
		if th := h2.internal(); th != short {
			renewed = th
			break
		}
	}
	if renewed == "" {
		t.Fatalf("hub2's internal certificate was not renewed by the schedule\n%s", h2.p.Logs())
	}
	if evs := h2.events(16103); len(evs) == 0 {
		t.Errorf("no CertificateRenewed (16103) on hub2")
	}
	h1.waitServerThumb("hub2", renewed, 15*time.Second)
	sent++
	send(sent)
	msgs := h2.waitMail("contoso.test", "bob", sent, 60*time.Second)
	var last []string
	for _, m := range msgs {
		if strings.Contains(m, fmt.Sprintf("Subject: scheduled %d\r", sent)) || strings.Contains(m, fmt.Sprintf("Subject: scheduled %d\n", sent)) {
			last = orgComment.FindStringSubmatch(m)
		}
	}
	if last == nil || last[4] != "hub2" || last[5] != renewed {
		t.Errorf("the last message's hop: %v, want hub2 presenting %s", last, renewed)
	}
	for _, r := range h1.track() {
		if r.PeerServer == "hub2" && r.Result != "delivered" {
			t.Errorf("a hop to hub2 did not deliver: %+v", r)
		}
	}
	noTrustFailures(t, h1, h2)
}
