package directory

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"certrelay/internal/db"
)

// recorder collects what a replica reports.
type recorder struct {
	mu       sync.Mutex
	keys     []string
	states   []bool
	problems []Problem
	notify   chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 100)} }

func (rc *recorder) options(d *ReplicaOptions) {
	d.OnChange = func(keys []string) {
		rc.mu.Lock()
		rc.keys = append(rc.keys, keys...)
		rc.mu.Unlock()
		rc.notify <- struct{}{}
	}
	d.OnState = func(up bool, err error) {
		rc.mu.Lock()
		rc.states = append(rc.states, up)
		rc.mu.Unlock()
		rc.notify <- struct{}{}
	}
	d.OnProblems = func(ps []Problem) {
		rc.mu.Lock()
		rc.problems = ps
		rc.mu.Unlock()
	}
}

// waitFor waits until cond holds (checked after each report), for at
// most limit.
func (rc *recorder) waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(limit)
	for {
		rc.mu.Lock()
		ok := cond()
		rc.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-rc.notify:
		case <-deadline:
			t.Fatalf("%s: not within %v (keys %v, states %v)", what, limit, rc.keys, rc.states)
		}
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestReplicaFollowsChanges: a change another process makes in the
// directory reaches the replica, named by kind and key, and a deletion
// too; a server object edited into nonsense is reported and left out,
// and the rest of the copy stays usable.
func TestReplicaFollowsChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writer, s := newLDAP(t)
	rc := newRecorder()
	o := ReplicaOptions{}
	rc.options(&o)
	r, err := StartReplica(ctx, writer.c.cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	h2 := sampleServer(t, "hub2")
	if err := writer.PutServer(ctx, h2); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, time.Second, "a new server object", func() bool { return contains(rc.keys, "server/hub2") })
	if got, err := r.Server(ctx, "hub2"); err != nil || got.InternalTransportCertificateThumbprint != h2.InternalTransportCertificateThumbprint {
		t.Fatalf("copy holds %+v, %v", got, err)
	}
	if err := writer.PutMailbox(ctx, Mailbox{Address: "bob@contoso.test", Server: "hub2", Maildir: "mail/contoso.test/bob"}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, time.Second, "a new mailbox", func() bool { return contains(rc.keys, "mailbox/bob@contoso.test") })

	// Nonsense written by hand: a certificate blob that is none.
	conn := s.DialRoot(t)
	defer conn.Close()
	mod := serverCodec.changes(serverCodec.dn(writer.base, &h2), &Server{Name: "hub2", Role: "hub", InternalTransportCertificateThumbprint: "AB", InternalTransportCertificate: []byte("not a certificate")})
	if err := conn.Modify(mod); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, time.Second, "the damaged object reported", func() bool { return len(rc.problems) == 1 })
	if !strings.Contains(rc.problems[0].Error(), "not a certificate") || !strings.Contains(rc.problems[0].DN, "cn=hub2") {
		t.Errorf("problem reported as %v", rc.problems[0])
	}
	if _, err := r.Server(ctx, "hub2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a damaged server object is still in the copy: %v", err)
	}
	if _, err := r.Mailbox(ctx, "bob@contoso.test"); err != nil {
		t.Errorf("the rest of the copy: %v", err)
	}
	if err := writer.DeleteMailbox(ctx, "bob@contoso.test"); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, time.Second, "a deletion", func() bool { return len(rc.keys) > 0 && rc.keys[len(rc.keys)-1] == "mailbox/bob@contoso.test" })
	if _, err := r.Mailbox(ctx, "bob@contoso.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted mailbox still in the copy: %v", err)
	}
}

// TestReplicaOutage: with slapd stopped, the replica reports the loss,
// keeps answering from its copy, and writes fail with ErrUnavailable;
// when slapd is back it reconnects by itself, says so, and what changed
// meanwhile (here: a deletion) reaches it. A replica started while the
// directory is down starts on the copy on disk.
func TestReplicaOutage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writer, s := newLDAP(t)
	d, err := db.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(d)
	for _, m := range []string{"a@contoso.test", "b@contoso.test"} {
		if err := writer.PutMailbox(ctx, Mailbox{Address: m, Server: "hub1"}); err != nil {
			t.Fatal(err)
		}
	}
	rc := newRecorder()
	o := ReplicaOptions{DB: d, RetryMax: 200 * time.Millisecond, CopyDelay: 10 * time.Millisecond}
	rc.options(&o)
	rctx, stop := context.WithCancel(ctx)
	r, err := StartReplica(rctx, writer.c.cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * CopyInterval) // the copy reaches the disk

	s.Stop()
	rc.waitFor(t, 5*time.Second, "the loss reported", func() bool { return len(rc.states) == 1 && !rc.states[0] })
	if list, _ := r.Mailboxes(ctx); len(list) != 2 {
		t.Errorf("during the outage the copy holds %v", list)
	}
	if err := r.PutMailbox(ctx, Mailbox{Address: "c@contoso.test", Server: "hub1"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a write during the outage: %v, want ErrUnavailable", err)
	}
	if _, err := r.Mailbox(ctx, "c@contoso.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed write changed the copy: %v", err)
	}
	s.Restart(t)
	if err := writer.DeleteMailbox(ctx, "b@contoso.test"); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, 5*time.Second, "the return reported", func() bool { return len(rc.states) == 2 && rc.states[1] })
	rc.waitFor(t, time.Second, "the change made meanwhile", func() bool { return contains(rc.keys, "mailbox/b@contoso.test") })
	time.Sleep(2 * CopyInterval)
	stop()
	r.Wait()

	// A second start while slapd is down: the copy on disk.
	s.Stop()
	o2 := ReplicaOptions{DB: d, Wait: 500 * time.Millisecond}
	rc2 := newRecorder()
	rc2.options(&o2)
	r2, err := StartReplica(ctx, writer.c.cfg, o2)
	if err != nil {
		t.Fatalf("start on the copy: %v", err)
	}
	if list, _ := r2.Mailboxes(ctx); len(list) != 1 || list[0].Address != "a@contoso.test" {
		t.Errorf("the copy on disk holds %v", list)
	}
	if up, synced := r2.Up(); up || synced.IsZero() {
		t.Errorf("Up() = %v, %v; want down with the copy's time", up, synced)
	}
	// Without a copy, starting fails and says why.
	d2, _ := db.Open(t.TempDir())
	defer db.Close(d2)
	if _, err := StartReplica(ctx, writer.c.cfg, ReplicaOptions{DB: d2, Wait: 300 * time.Millisecond}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("start without directory or copy: %v", err)
	}
}
