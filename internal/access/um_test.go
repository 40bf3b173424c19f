package access

import (
	"context"
	"sync"
	"testing"
	"time"

	"certrelay/internal/certprop"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/serving"
)

// sink records events.
type sink struct {
	mu  sync.Mutex
	got map[int][][]string
}

func (s *sink) Raise(_ context.Context, id int, _ string, params ...string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = map[int][][]string{}
	}
	s.got[id] = append(s.got[id], params)
	return true, nil
}

func (s *sink) wait(t *testing.T, id int) [][]string {
	t.Helper()
	for i := 0; i < 200; i++ {
		s.mu.Lock()
		got := s.got[id]
		s.mu.Unlock()
		if len(got) > 0 {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no event %d", id)
	return nil
}

// TestUMExpiryEvents (S10): a month before the UM certificate in use
// expires, and each day, 16066; each day for a UM certificate that has
// expired (no longer used), 16067.
func TestUMExpiryEvents(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	um := func(th string, notAfter time.Time, st certprop.Status) selection.Candidate {
		return selection.Candidate{Thumbprint: th, Subject: "CN=hub.contoso.test", Issuer: "CN=hub.contoso.test", Domains: []string{"hub.contoso.test"},
			NotBefore: now.AddDate(-1, 0, 0), NotAfter: notAfter, IsSelfSigned: true, Services: certprop.UM, Status: st, HasKey: true, KeyReadable: true}
	}
	layer := serving.New(serving.Options{Now: func() time.Time { return now }})
	layer.Publish([]selection.Candidate{
		um("SOON", now.Add(10*24*time.Hour), certprop.Valid),
		um("GONE", now.Add(-24*time.Hour), certprop.DateInvalid),
	}, now)
	ev := &sink{}
	s := New(Options{Layer: layer, Events: ev, Now: func() time.Time { return now }, Server: func() directory.Server { return directory.Server{Name: "hub", Fqdn: "hub.contoso.test"} }})
	defer s.Close()
	s.um.cur.Store(&protoConfig{um: UMSettings{Enabled: true, UMStartupMode: "TLS"}, req: selection.Request{FQDN: "hub.contoso.test", Service: certprop.UM}})
	s.CheckExpiry(context.Background())
	if got := ev.wait(t, EventUMExpiresSoon); got[0][0] != "SOON" || got[0][1] != "10" {
		t.Errorf("16066: %q", got)
	}
	if got := ev.wait(t, EventUMExpired); got[0][0] != "GONE" {
		t.Errorf("16067: %q", got)
	}
	// The certificate in use is announced with issuer, serial and thumbprint.
	s.CheckCertificates(context.Background())
	if got := ev.wait(t, EventUMCertificate); got[0][0] != "CN=hub.contoso.test" || got[0][2] != "SOON" {
		t.Errorf("16065: %q", got)
	}
}
