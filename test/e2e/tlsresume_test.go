package e2e

import (
	"strings"
	"testing"
	"time"

	"certrelay/internal/testpki"
)

// TestPostfixResumesTLS: Postfix's smtp client, with its TLS session
// cache, resumes its TLS 1.3 session with certrelay on its next
// connection: the TLS 1.3 session ticket certrelay sends at the end of
// the handshake reaches a real client and is used (issue 19 tried, and
// dropped, holding the ticket back to ride with the next reply; this test
// failed when the held ticket was lost).
func TestPostfixResumesTLS(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test").start()
	pf := testpki.StartPostfix(t, testpki.PostfixOptions{Main: []string{
		"relay_domains = contoso.test",
		"transport_maps = inline:{ contoso.test=smtp:[" + strings.Replace(m.addr, ":", "]:", 1) + " }",
		"smtp_tls_security_level = encrypt",
		"smtp_tls_loglevel = 2",
		"smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache",
		// A new connection for each message, so the second one
		// makes a second handshake.
		"smtp_connection_cache_on_demand = no",
	}})
	for i, subject := range []string{"first", "second"} {
		out, code := swaks(t, "--server", pf.Addr, "--from", "dave@example.org", "--to", "alice@contoso.test", "--header", "Subject: "+subject)
		if code != 0 {
			t.Fatalf("swaks to postfix: %s", out)
		}
		m.waitDelivered(i + 1)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(pf.Log(), "status=sent") < i+1 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	log := pf.Log()
	if !strings.Contains(log, "TLS connection established to") {
		t.Fatalf("postfix's first connection did not use TLS:\n%s", log)
	}
	// Logged (smtp_tls_loglevel 2) when OpenSSL reports the session
	// reused (SSL_session_reused) after the handshake.
	if !strings.Contains(log, "Reusing old session") {
		t.Errorf("postfix did not resume its TLS session on the second connection:\n%s", log)
	}
}
