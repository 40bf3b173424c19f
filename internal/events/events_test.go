package events

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"certrelay/internal/db"
)

func openLog(t *testing.T, now *time.Time) *Log {
	t.Helper()
	d, err := db.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	l, err := Open(context.Background(), d, func() time.Time { return *now }, nil, "hub1")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCatalogHasSpecEvents(t *testing.T) {
	want := map[int]string{
		12012: "InternalTransportCertificateMissingInAD",
		12013: "CannotLoadInternalTransportCertificateFromStore",
		12014: "CannotLoadSTARTTLSCertificateFromStore",
		12015: "InternalTransportCertificateExpired",
		12016: "STARTTLSCertificateExpired",
		12017: "InternalTransportCertificateExpiresSoon",
		12018: "STARTTLSCertificateExpiresSoon",
		12019: "RemoteInternalTransportCertificateExpired",
		12023: "CannotLoadInternalTransportCertificateFallbackServerFQDN",
		12024: "CannotLoadInternalTransportCertificateFallbackEphemeralCertificate",
		1036:  "SmtpReceiveDirectTrustFailed",
		2018:  "SmtpSendDirectTrustFailed",
	}
	for id, name := range want {
		d, ok := Lookup(id)
		if !ok || d.Name != name || d.Source != SourceTransport {
			t.Errorf("event %d: %+v, want %s from %s", id, d, name, SourceTransport)
		}
	}
	for _, d := range Catalog() {
		if !strings.Contains(d.Text, "certrelay ") && d.Source == SourceTransport {
			t.Errorf("event %d does not name the command that repairs it", d.ID)
		}
		if strings.Count(d.Text, "%") < len(d.Params) {
			t.Errorf("event %d has %d parameters but fewer placeholders", d.ID, len(d.Params))
		}
	}
}

func TestRaiseMessageAndThrottle(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	l := openLog(t, &now)
	ok, err := l.Raise(ctx, 12014, "mail.contoso.com", "mail.contoso.com", "Default HUB1", "mail.contoso.com")
	if err != nil || !ok {
		t.Fatalf("first 12014: %v %v", ok, err)
	}
	if ok, _ := l.Raise(ctx, 12014, "mail.contoso.com", "mail.contoso.com", "Default HUB1", "mail.contoso.com"); ok {
		t.Error("a repeat within the throttle interval was written")
	}
	if ok, _ := l.Raise(ctx, 12014, "other.contoso.com", "other.contoso.com", "Other", "other.contoso.com"); !ok {
		t.Error("another key was throttled")
	}
	now = now.Add(2 * time.Hour)
	if ok, _ := l.Raise(ctx, 12014, "mail.contoso.com", "mail.contoso.com", "Default HUB1", "mail.contoso.com"); !ok {
		t.Error("not written again after the interval")
	}
	evs, err := l.List(ctx, Filter{ID: 12014})
	if err != nil || len(evs) != 3 {
		t.Fatalf("List: %d events, %v", len(evs), err)
	}
	e := evs[0]
	if e.Name != "CannotLoadSTARTTLSCertificateFromStore" || e.Server != "hub1" || e.Severity != Error ||
		!strings.Contains(e.Message, "connector Default HUB1") || !strings.Contains(e.Message, "certrelay cert new --domain mail.contoso.com") {
		t.Errorf("event: %+v", e)
	}
	if evs, _ := l.List(ctx, Filter{Since: now.Add(-time.Minute)}); len(evs) != 1 {
		t.Errorf("Since: %d events", len(evs))
	}
	if evs, _ := l.List(ctx, Filter{Limit: 2}); len(evs) != 2 || evs[1].Seq <= evs[0].Seq {
		t.Errorf("Limit: %+v", evs)
	}
	if _, err := l.Raise(ctx, 99999, ""); err == nil {
		t.Error("an unknown ID was accepted")
	}
}

func TestCategoryLevels(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	l := openLog(t, &now)
	if lv, _ := l.CategoryLevel(ctx, `MSExchangeTransport\TransportService`); lv != Lowest {
		t.Errorf("default level %v", lv)
	}
	changed, err := l.SetCategoryLevel(ctx, `msexchangetransport\*`, Expert)
	if err != nil || len(changed) < 3 {
		t.Fatalf("SetCategoryLevel: %v %v", changed, err)
	}
	if lv, _ := l.CategoryLevel(ctx, `MSExchangeTransport\SmtpReceive`); lv != Expert {
		t.Errorf("level after set: %v", lv)
	}
	if lv, _ := l.CategoryLevel(ctx, `certrelay\Setup`); lv != Lowest {
		t.Errorf("another source changed: %v", lv)
	}
	if _, err := l.SetCategoryLevel(ctx, `nothing\here`, High); err == nil {
		t.Error("a pattern matching nothing was accepted")
	}
	if _, err := ParseLevel("expert"); err != nil {
		t.Error(err)
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("unknown level accepted")
	}
}

// withDefinition adds d to the catalog for the rest of the test. Every
// event certrelay raises is Lowest (SPEC D1: certificate events are
// always written), so D1's level check needs events of other levels to be
// seen at work.
func withDefinition(t *testing.T, d Definition) {
	t.Helper()
	if _, dup := byID[d.ID]; dup {
		t.Fatalf("event %d is already in the catalog", d.ID)
	}
	byID[d.ID] = d
	t.Cleanup(func() { delete(byID, d.ID) })
}

// TestLevelDecidesWhatIsWritten: SPEC D1 — an event is written when its
// own level is at most its category's level, and only its own category's
// level counts.
func TestLevelDecidesWhatIsWritten(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	l := openLog(t, &now)
	withDefinition(t, Definition{ID: 99003, Name: "TestMediumEvent", Source: SourceTransport, Category: SmtpReceive, Severity: Information, Level: Medium, Text: "medium %1", Params: []string{"n"}})
	withDefinition(t, Definition{ID: 99007, Name: "TestExpertEvent", Source: SourceTransport, Category: SmtpReceive, Severity: Information, Level: Expert, Text: "expert %1", Params: []string{"n"}})
	steps := []struct {
		name     string
		category string // set to level first, when not ""
		level    Level
		id       int
		written  bool
	}{
		{"lowest-event-at-default-level", "", 0, 1036, true},
		{"medium-event-at-default-level", "", 0, 99003, false},
		{"medium-event-at-low", `MSExchangeTransport\SmtpReceive`, Low, 99003, false},
		{"medium-event-when-another-category-is-expert", `MSExchangeTransport\SmtpSend`, Expert, 99003, false},
		{"medium-event-at-medium", `MSExchangeTransport\SmtpReceive`, Medium, 99003, true},
		{"expert-event-at-medium", "", 0, 99007, false},
		{"expert-event-at-expert", `MSExchangeTransport\SmtpReceive`, Expert, 99007, true},
		{"medium-event-at-expert", "", 0, 99003, true},
		{"expert-event-back-at-lowest", `MSExchangeTransport\SmtpReceive`, Lowest, 99007, false},
	}
	for i, s := range steps {
		if s.category != "" {
			if _, err := l.SetCategoryLevel(ctx, s.category, s.level); err != nil {
				t.Fatal(err)
			}
		}
		before, _ := l.List(ctx, Filter{ID: s.id})
		ok, err := l.Raise(ctx, s.id, fmt.Sprint(i), fmt.Sprint(i))
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		after, _ := l.List(ctx, Filter{ID: s.id})
		if ok != s.written || (len(after) > len(before)) != s.written {
			t.Errorf("%s: Raise reported %v and the log grew from %d to %d events; want written=%v", s.name, ok, len(before), len(after), s.written)
		}
	}
}

// TestLastResortAndKeyEvents: 16030 (a last resort in use, C9) is a
// certificate event — Lowest, so always written — throttled per key,
// naming the command that shows what failed; 12014 carries the reason
// selection gives (a key problem, for instance) as %4.
func TestLastResortAndKeyEvents(t *testing.T) {
	d, ok := Lookup(16030)
	if !ok || d.Level != Lowest || d.Throttle == 0 || d.Severity != Warning || !strings.Contains(d.Text, "certrelay cert verify %2") {
		t.Errorf("16030: %+v", d)
	}
	msg := d.Message("mail.contoso.com", "AB12", "RevocationCheckFailure", "Internet")
	for _, want := range []string{"mail.contoso.com", "AB12", "RevocationCheckFailure", "Internet"} {
		if !strings.Contains(msg, want) {
			t.Errorf("16030's message lacks %q: %s", want, msg)
		}
	}
	d, _ = Lookup(12014)
	if msg := d.Message("mail.contoso.com", "Internet", "mail.contoso.com", "its private key file k is missing"); len(d.Params) != 4 || !strings.Contains(msg, "its private key file k is missing") || strings.Contains(msg, "%") {
		t.Errorf("12014: %d params, message %s", len(d.Params), msg)
	}
}

// TestLevelsSeenByAnotherProcess: two logs on one data directory (the
// server and the CLI): a level set by one is honoured by the other within
// LevelRefresh — the decision events above Lowest appear and stop — and
// Lowest events are written whatever the level.
func TestLevelsSeenByAnotherProcess(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	dir := t.TempDir()
	open := func() *Log {
		d, err := db.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		l, err := Open(ctx, d, func() time.Time { return now }, nil, "hub1")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	server, cli := open(), open()
	for _, id := range []int{16070, 16071, 16072} {
		if d, _ := Lookup(id); d.Level <= Lowest || d.Source != SourceTransport {
			t.Errorf("event %d is at %s from %s: the level would not matter", id, d.Level, d.Source)
		}
		if written, err := server.Raise(ctx, id, "", "a", "b", "c", "d", "e"); err != nil || written || server.Enabled(ctx, id) {
			t.Errorf("event %d written at Lowest: %v %v", id, written, err)
		}
	}
	if _, err := cli.SetCategoryLevel(ctx, `MSExchangeTransport\*`, Expert); err != nil {
		t.Fatal(err)
	}
	waitWritten := func(id int, want bool) {
		t.Helper()
		deadline := time.Now().Add(LevelRefresh + 500*time.Millisecond) // "within 1 s"
		for {
			written, err := server.Raise(ctx, id, "", "a", "b", "c", "d", "e")
			if err != nil {
				t.Fatal(err)
			}
			if written == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("event %d: written %v a second after the level changed", id, written)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitWritten(16072, true)
	waitWritten(16070, true)
	if _, err := cli.SetCategoryLevel(ctx, `MSExchangeTransport\*`, Lowest); err != nil {
		t.Fatal(err)
	}
	waitWritten(16071, false)
	if written, _ := server.Raise(ctx, 12014, "x", "f", "c", "f", "r"); !written {
		t.Error("a Lowest event was not written at level Lowest")
	}
}

// BenchmarkDecisionEventAtLowest is what each STARTTLS pays for the
// decision events when the level is Lowest (the default): Enabled from
// the cached levels.
func BenchmarkDecisionEventAtLowest(b *testing.B) {
	now := time.Now()
	d, err := db.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	l, err := Open(context.Background(), d, func() time.Time { return now }, nil, "hub1")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if l.Enabled(ctx, 16071) {
			b.Fatal("enabled at Lowest")
		}
	}
}
