package directory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestEdgeLease: exactly one hub holds an edge's lease at a time, on the
// embedded directory and on LDAP (compare-and-swap): among hubs racing
// for it one wins; the holder renews it; another takes it only once it
// has expired (a hub that died); the others learn who holds it.
func TestEdgeLease(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) Directory{
		"embedded": func(t *testing.T) Directory { return newEmbedded(t) },
		"ldap":     func(t *testing.T) Directory { l, _ := newLDAP(t); return l },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			d := open(t)
			edge := sampleServer(t, "edge1")
			edge.Role, edge.EdgeSyncAddress = RoleEdge, "127.0.0.1:50636"
			if err := d.PutServer(ctx, edge); err != nil {
				t.Fatal(err)
			}
			l := d.(Leaser)
			now := time.Unix(1_800_000_000, 0)
			const ttl = 30 * time.Second
			var mu sync.Mutex
			var winners []string
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					hub := fmt.Sprintf("hub%d", i)
					lease, err := l.TakeEdgeLease(ctx, "edge1", hub, now, ttl)
					if err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("%s: %v", hub, err)
					}
					if lease.Held {
						mu.Lock()
						winners = append(winners, hub)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if len(winners) != 1 {
				t.Fatalf("holders after the race: %v, want exactly one", winners)
			}
			holder := winners[0]
			other := "hub-other"
			if lease, err := l.TakeEdgeLease(ctx, "edge1", other, now.Add(ttl/2), ttl); err != nil || lease.Held || lease.Holder != holder || !lease.Until.Equal(now.Add(ttl)) {
				t.Fatalf("another hub while the lease runs: %+v %v", lease, err)
			}
			if lease, err := l.TakeEdgeLease(ctx, "edge1", holder, now.Add(ttl/2), ttl); err != nil || !lease.Held {
				t.Fatalf("the holder renewing: %+v %v", lease, err)
			}
			if lease, err := l.TakeEdgeLease(ctx, "edge1", other, now.Add(ttl), ttl); err != nil || lease.Held {
				t.Fatalf("another hub before the renewed lease ends: %+v %v", lease, err)
			}
			if lease, err := l.TakeEdgeLease(ctx, "edge1", other, now.Add(ttl/2+ttl), ttl); err != nil || !lease.Held {
				t.Fatalf("another hub once the holder died: %+v %v", lease, err)
			}
			if _, err := l.TakeEdgeLease(ctx, "edge9", other, now, ttl); name == "ldap" && !errors.Is(err, ErrNotFound) {
				t.Errorf("the lease of an edge that does not exist: %v", err)
			}
			// A Put of the edge's object leaves the lease alone.
			if err := d.PutServer(ctx, edge); err != nil {
				t.Fatal(err)
			}
			if lease, _ := l.TakeEdgeLease(ctx, "edge1", holder, now.Add(ttl/2+ttl), ttl); lease.Held {
				t.Errorf("the lease was lost by a Put of the edge's object")
			}
			got, err := d.Server(ctx, "edge1")
			if err != nil || !got.Subscribed() || got.EdgeSyncAddress != edge.EdgeSyncAddress {
				t.Errorf("the edge's object: %+v %v", got, err)
			}
		})
	}
}

// TestReplicaIgnoresLeaseRenewals: a renewal of an edge's EdgeSync lease
// changes the edge's entry in LDAP, but nothing the copy keeps: running
// servers are told nothing (they would rebuild their direct-trust view
// every few seconds), while a real change of the edge is told.
func TestReplicaIgnoresLeaseRenewals(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writer, _ := newLDAP(t)
	edge := sampleServer(t, "edge1")
	edge.Role, edge.EdgeSyncAddress = RoleEdge, "127.0.0.1:50636"
	if err := writer.PutServer(ctx, edge); err != nil {
		t.Fatal(err)
	}
	rc := newRecorder()
	o := ReplicaOptions{}
	rc.options(&o)
	r, err := StartReplica(ctx, writer.c.cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := r.Server(ctx, "edge1"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica never held edge1")
		}
	}
	time.Sleep(200 * time.Millisecond)
	rc.mu.Lock()
	rc.keys = nil
	rc.mu.Unlock()
	now := time.Now()
	for i := range 3 {
		if l, err := writer.TakeEdgeLease(ctx, "edge1", "hub1", now.Add(time.Duration(i)*time.Second), time.Minute); err != nil || !l.Held {
			t.Fatalf("lease: %+v %v", l, err)
		}
	}
	edge.Fqdn = "edge1.fabrikam.test"
	if err := writer.PutServer(ctx, edge); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, 5*time.Second, "the edge's change", func() bool { return contains(rc.keys, "server/edge1") })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, k := range rc.keys {
		if k == "server/edge1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the replica told of edge1 %d times (keys %v), want once: the lease renewals are not changes", n, rc.keys)
	}
}
