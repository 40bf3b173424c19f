package transport

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// recordingSink records every event raised, unthrottled.
type recordingSink struct {
	mu     sync.Mutex
	events []raised
}

type raised struct {
	id     int
	key    string
	params []string
}

func (s *recordingSink) Raise(_ context.Context, id int, key string, params ...string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, raised{id, key, params})
	return true, nil
}

func (s *recordingSink) of(id int) []raised {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []raised
	for _, e := range s.events {
		if e.id == id {
			out = append(out, e)
		}
	}
	return out
}

var tnow = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// testKey is the private key of every candidate's certificate.
var testKey = func() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

var testCert = func() *x509.Certificate {
	der, err := certinfo.NewSelfSigned(certinfo.SelfSignedOptions{Domains: []string{"mail.contoso.com"}, Key: testKey, Now: tnow}, rand.Reader)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}()

// candidate describes a certificate for mail.contoso.com as the store's
// facts would; its key is testKey.
func candidate(name string, ageDays int, st trust.Status) selection.Candidate {
	return selection.Candidate{
		Thumbprint: strings.Repeat(name, 40/len(name)+1)[:40], Subject: "CN=mail.contoso.com", Issuer: "CN=Contoso CA",
		Domains:   []string{"mail.contoso.com"},
		NotBefore: tnow.Add(-time.Duration(ageDays) * 24 * time.Hour), NotAfter: tnow.Add(300 * 24 * time.Hour),
		Services: store.SMTP, Status: st, HasKey: true, KeyReadable: true, Cert: testCert, KeyID: "test-key",
	}
}

// receiverWith returns a receiver whose one TLS connector, "Internet" on
// 127.0.0.1:25 with FQDN mail.contoso.com, selects among cands.
func receiverWith(clock *time.Time, sink *recordingSink, cands ...selection.Candidate) (*Receiver, *State) {
	now := func() time.Time { return *clock }
	layer := serving.New(serving.Options{Now: now, LoadKey: func(string) (crypto.Signer, error) { return testKey, nil }})
	layer.Publish(cands, *clock)
	r := &Receiver{Events: sink, Now: now, Serving: layer}
	r.Start()
	conns := []directory.ReceiveConnector{{Name: "Internet", Bindings: []string{"127.0.0.1:25"}, Enabled: true, Fqdn: "mail.contoso.com", AuthMechanism: []string{"Tls"}}}
	st := NewState(directory.Server{Name: "hub1", Fqdn: "hub1.contoso.com"}, conns, nil, nil, nil, *clock)
	r.state.Store(st)
	return r, st
}

func handshake(t *testing.T, r *Receiver) *tls.Config {
	t.Helper()
	sess, err := r.NewSession(context.Background(), smtp.ConnInfo{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := sess.TLSConfig(smtp.State{}, false)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestLastResortRaisedWhenUsed: a session that uses one of S4's last
// resorts raises its event (C9: "always with an event") — 16030 for a
// certificate whose revocation could not be established, 12016 for an
// expired one — at most once a minute per key from one process; a
// certificate that passes every check raises nothing.
func TestLastResortRaisedWhenUsed(t *testing.T) {
	expired := candidate("E", 30, trust.DateInvalid)
	expired.NotAfter = tnow.Add(-time.Hour)
	cases := []struct {
		name   string
		cands  []selection.Candidate
		id     int
		params []string
	}{
		{"event/revocation-unknown-16030", []selection.Candidate{candidate("R", 3, trust.RevocationCheckFailure)}, 16030,
			[]string{"mail.contoso.com", candidate("R", 0, "").Thumbprint, "RevocationCheckFailure", "Internet"}},
		{"event/expired-12016", []selection.Candidate{expired}, 12016,
			[]string{"mail.contoso.com", expired.Thumbprint, expired.NotAfter.Format(time.RFC3339)}},
		{"none/trusted", []selection.Candidate{candidate("T", 3, trust.Valid), candidate("R", 1, trust.RevocationCheckFailure)}, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := tnow
			sink := &recordingSink{}
			r, _ := receiverWith(&clock, sink, c.cands...)
			if cfg := handshake(t, r); cfg == nil {
				t.Fatal("no TLS configuration: the certificate is not used")
			}
			handshake(t, r)
			if c.id == 0 {
				r.limitReached(smtp.LimitEvent{Limit: smtp.LimitRecipients, Group: "Internet", Value: "200"}) // a marker: events are raised in order
				waitFor(t, "the marker event", func() bool { return len(sink.of(16024)) == 1 })
				if len(sink.events) != 1 {
					t.Fatalf("events for a certificate that passes every check: %+v", sink.events)
				}
				return
			}
			waitFor(t, "the event", func() bool { return len(sink.of(c.id)) > 0 })
			got := sink.of(c.id)
			if len(got) != 1 || strings.Join(got[0].params, "|") != strings.Join(c.params, "|") {
				t.Fatalf("event %d raised %+v, want once with %v", c.id, got, c.params)
			}
			clock = clock.Add(2 * eventSpacing)
			handshake(t, r)
			waitFor(t, "the event again", func() bool { return len(sink.of(c.id)) == 2 })
		})
	}
}

// TestNoUsableKey12014: when certificates hold the connector's FQDN but
// none has a usable private key, 12014 says so, not "no certificate".
func TestNoUsableKey12014(t *testing.T) {
	clock := tnow
	sink := &recordingSink{}
	gone := candidate("G", 3, trust.Valid)
	gone.HasKey = false
	gone.KeyError = "its private key file /data/keys/g.key is missing, so no service can use it: restore it"
	r, _ := receiverWith(&clock, sink, gone)
	r.CheckCertificates(context.Background())
	got := sink.of(12014)
	if len(got) != 1 || len(got[0].params) != 4 {
		t.Fatalf("12014: %+v", got)
	}
	if reason := got[0].params[3]; !strings.Contains(reason, "none has a usable private key") || !strings.Contains(reason, "/data/keys/g.key is missing") {
		t.Errorf("12014's reason: %q", reason)
	}
}
