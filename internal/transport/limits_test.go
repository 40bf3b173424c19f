package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/smtp"
)

// eventRecorder is an EventSink that keeps what it is given.
type eventRecorder struct {
	mu     sync.Mutex
	events []string // "ID key params…"
}

func (r *eventRecorder) Raise(_ context.Context, id int, key string, params ...string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("%d %s %s", id, key, strings.Join(params, "|")))
	return true, nil
}

func (r *eventRecorder) with(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestConnectorLimitsReachTheEngine: a connector's settings are the
// limits of the sessions on its bindings, grouped by connector.
func TestConnectorLimitsReachTheEngine(t *testing.T) {
	c := directory.ReceiveConnector{Name: "Internet", Bindings: []string{"127.0.0.1:2525"}, Enabled: true,
		MaxInboundConnection: 300, MaxInboundConnectionPerSource: 7, MaxRecipientsPerMessage: 150,
		ConnectionTimeout: directory.Duration(4 * time.Minute), ConnectionInactivityTimeout: directory.Duration(time.Minute),
		MessageTimeout: directory.Duration(3 * time.Minute)}
	r := &Receiver{}
	r.state.Store(NewState(directory.Server{Name: "hub1"}, []directory.ReceiveConnector{c}, nil, nil, nil, time.Now()))
	got := r.limits(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2525})
	want := smtp.Limits{Group: "Internet", MaxConnections: 300, MaxConnectionsPerClient: 7, InactivityTimeout: time.Minute,
		SessionTimeout: 4 * time.Minute, MessageTimeout: 3 * time.Minute, MaxRecipients: 150}
	if got != want {
		t.Errorf("limits = %+v, want %+v", got, want)
	}
	if got := r.limits(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); got != (smtp.Limits{}) {
		t.Errorf("a binding without connector gets %+v, want the engine's defaults", got)
	}
}

// TestLocalRecipientsDeduplicated protects item 16 of issue 9: spellings
// that the engine keeps apart (the local part's case, <postmaster>) but
// that reach one mailbox are one recipient.
func TestLocalRecipientsDeduplicated(t *testing.T) {
	conns := []directory.ReceiveConnector{{Name: "Default", Bindings: []string{"127.0.0.1:2525"}, Enabled: true, PermissionGroups: []string{"AnonymousUsers"}}}
	boxes := []directory.Mailbox{{Address: "alice@contoso.test"}, {Address: "postmaster@contoso.test"}}
	st := NewState(directory.Server{Name: "hub1"}, conns, nil, []directory.AcceptedDomain{{DomainName: "contoso.test"}}, boxes, time.Now())
	r := &Receiver{}
	r.state.Store(st)
	s := &session{r: r, st: st, c: &st.Connectors[0]}
	if err := s.Mail(smtp.State{}, "bob@example.org", smtp.MailOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		to  string
		dup bool
	}{
		{"Alice@contoso.test", false}, {"alice@contoso.test", true}, {"ALICE@CONTOSO.TEST", true},
		{"postmaster", false}, {"Postmaster@contoso.test", true}, {"POSTMASTER", true},
	} {
		err := s.Rcpt(smtp.State{}, c.to, smtp.RcptOptions{})
		if c.dup != errors.Is(err, smtp.ErrDuplicateRecipient) || (!c.dup && err != nil) {
			t.Errorf("Rcpt(%s) = %v, duplicate %v", c.to, err, c.dup)
		}
	}
	if len(s.rcpts) != 2 {
		t.Errorf("recipients %+v, want alice and postmaster once each", s.rcpts)
	}
	s.Reset(smtp.State{})
	if err := s.Rcpt(smtp.State{}, "alice@contoso.test", smtp.RcptOptions{}); err != nil {
		t.Errorf("after Reset, alice is a new recipient: %v", err)
	}
}

// TestBusyBindingRetried protects item 17 of issue 9: a binding that
// cannot be opened raises 16027, is retried with a back-off, and raises
// 16028 once it listens.
func TestBusyBindingRetried(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	ev := &eventRecorder{}
	r := &Receiver{Events: ev, BindRetry: 20 * time.Millisecond, BindRetryMax: 100 * time.Millisecond}
	r.Start()
	defer r.Shutdown(context.Background())
	conns := []directory.ReceiveConnector{{Name: "Busy", Bindings: []string{addr}, Enabled: true}}
	errs := r.Update(context.Background(), NewState(directory.Server{Name: "hub1"}, conns, nil, nil, nil, time.Now()))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `receive connector "Busy" cannot listen on `+addr) {
		t.Fatalf("Update errors %v", errs)
	}
	if got := ev.with("16027 " + addr + " Busy|" + addr + "|bind: address already in use|"); len(got) != 1 {
		t.Errorf("16027 events %q", ev.with("16027"))
	}
	if l := r.Listening(); len(l) != 0 {
		t.Errorf("listening on %v", l)
	}
	time.Sleep(200 * time.Millisecond) // a few retries fail
	busy.Close()
	waitFor(t, "the binding to be retried", func() bool { return len(r.Listening()) == 1 })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial the retried binding: %v", err)
	}
	c.Close()
	got := ev.with("16028 " + addr + " Busy|" + addr + "|")
	if len(got) != 1 {
		t.Fatalf("16028 events %q", ev.with("16028"))
	}
	if attempts := got[0][strings.LastIndexByte(got[0], '|')+1:]; attempts == "0" || attempts == "1" {
		t.Errorf("16028 after %s attempts, want several", attempts)
	}
}

// TestLimitEventsSpaced: a flood of refused clients makes one event per
// connector (and client address, for the per-address limit), not one per
// client.
func TestLimitEventsSpaced(t *testing.T) {
	ev := &eventRecorder{}
	r := &Receiver{Events: ev}
	r.Start()
	defer r.Shutdown(context.Background())
	from := func(ip string) smtp.ConnInfo {
		return smtp.ConnInfo{RemoteAddr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
	}
	for i := 0; i < 100; i++ {
		r.limitReached(smtp.LimitEvent{Limit: smtp.LimitConnectionsPerClient, Group: "Internet", Conn: from("192.0.2.1"), Value: "20"})
		r.limitReached(smtp.LimitEvent{Limit: smtp.LimitConnections, Group: "Internet", Conn: from(fmt.Sprintf("192.0.2.%d", i)), Value: "5000"})
	}
	r.limitReached(smtp.LimitEvent{Limit: smtp.LimitConnectionsPerClient, Group: "Internet", Conn: from("192.0.2.2"), Value: "20"})
	r.limitReached(smtp.LimitEvent{Limit: smtp.LimitSession, Group: "Internet", Conn: from("192.0.2.3"), Value: "10m0s"})
	waitFor(t, "the events", func() bool { return len(ev.with("")) >= 4 })
	time.Sleep(50 * time.Millisecond)
	want := []string{
		"16021 Internet|192.0.2.1 Internet|192.0.2.1|20",
		"16020 Internet Internet|192.0.2.0|5000",
		"16021 Internet|192.0.2.2 Internet|192.0.2.2|20",
		"16023 Internet|ConnectionTimeout Internet|192.0.2.3|ConnectionTimeout|00:10:00|--connection-timeout",
	}
	if got := ev.with(""); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
