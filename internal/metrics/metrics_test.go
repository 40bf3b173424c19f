package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeSource struct{ queueErr error }

func (fakeSource) Certificates(context.Context) []Certificate {
	return []Certificate{{Thumbprint: "AB", Subject: `CN=a "quoted" name`, Services: "SMTP", NotAfter: now.Add(90 * time.Second)}}
}
func (fakeSource) Connectors(context.Context) []Connector {
	return []Connector{{Name: "Default", Offered: true}, {Name: "Plain", Offered: false}}
}
func (f fakeSource) Queue(context.Context) (int, time.Time, error) {
	return 3, now.Add(-time.Minute), f.queueErr
}
func (fakeSource) Events(context.Context) ([]Event, error) {
	return []Event{{ID: 1036, Name: "SmtpReceiveDirectTrustFailed", Count: 2}, {ID: 2019, Count: 1}, {ID: 16005, Name: "CertificateServicesEnabled", Count: 4}}, nil
}

var now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// TestMetrics: the gauges read the source at each scrape (expiry in
// seconds, label values escaped), direct-trust failures add up the
// events of each direction, counters count, and a part that cannot be
// read is reported instead of failing the scrape.
func TestMetrics(t *testing.T) {
	m := New(fakeSource{}, func() time.Time { return now })
	m.Handshake("https", "console", nil)
	m.Handshake("https", "console", errors.New("bad"))
	m.Handshake("https", "console", errors.New("bad"))
	m.Rebuilt(3 * time.Millisecond)
	out := scrape(t, m)
	for _, want := range []string{
		`certrelay_certificate_expiry_seconds{internal="false",services="SMTP",subject="CN=a \"quoted\" name",thumbprint="AB"} 90`,
		`certrelay_starttls_offered{connector="Default"} 1`,
		`certrelay_starttls_offered{connector="Plain"} 0`,
		`certrelay_queue_messages 3`,
		`certrelay_queue_oldest_message_age_seconds 60`,
		`certrelay_direct_trust_failures_total{direction="receive"} 2`,
		`certrelay_direct_trust_failures_total{direction="send"} 1`,
		`certrelay_events_total{id="16005",name="CertificateServicesEnabled"} 4`,
		`certrelay_tls_handshakes_total{listener="console",protocol="https",result="failed"} 2`,
		`certrelay_tls_handshakes_total{listener="console",protocol="https",result="ok"} 1`,
		`certrelay_selection_rebuild_seconds_count 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in\n%s", want, out)
		}
	}
	out = scrape(t, New(fakeSource{queueErr: errors.New("locked")}, func() time.Time { return now }))
	if !strings.Contains(out, `certrelay_scrape_errors_total{part="queue"} 1`) || strings.Contains(out, "certrelay_queue_messages") {
		t.Errorf("a queue that cannot be read:\n%s", out)
	}
}

// BenchmarkHandshake is what counting one handshake costs a session
// (issue 19: it showed in profiles of STARTTLS sessions).
func BenchmarkHandshake(b *testing.B) {
	m := New(fakeSource{}, func() time.Time { return now })
	b.ReportAllocs()
	for b.Loop() {
		m.Handshake("smtp", "Default HUB1", nil)
	}
}
