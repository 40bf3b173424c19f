package directory

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"testing"

	"certrelay/internal/db"
)

// newJoined returns hub1's view of an organisation on a fresh slapd.
func newJoined(t *testing.T) (*Joined, *LDAP, func()) {
	t.Helper()
	org, s := newLDAP(t)
	local := newEmbedded(t)
	j := &Joined{Local: local, Org: org, DB: local.db, Self: func(context.Context) (string, error) { return "hub1", nil }}
	return j, org, s.Stop
}

func inTx(ctx context.Context, d *sql.DB, fn func(ctx context.Context) error) error {
	return db.Tx(ctx, d, func(ctx context.Context, _ *sql.Tx) error { return fn(ctx) })
}

// TestJoinedOwnership: this server's objects are kept locally and
// published when the local transaction commits; other servers' cannot be
// written; a directory write that fails rolls back the local steps, and
// local steps that fail write nothing to the directory.
func TestJoinedOwnership(t *testing.T) {
	ctx := context.Background()
	j, org, stop := newJoined(t)
	me := sampleServer(t, "hub1")
	err := inTx(ctx, j.DB, func(ctx context.Context) error {
		if err := j.PutServer(ctx, me); err != nil {
			return err
		}
		if _, err := org.Server(ctx, "hub1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("published before the commit: %v", err)
		}
		return j.PutReceiveConnector(ctx, sampleReceive("hub1", "Default hub1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := org.Server(ctx, "hub1"); err != nil || !reflect.DeepEqual(got, me) {
		t.Fatalf("published %+v, %v", got, err)
	}
	if list, _ := org.ReceiveConnectors(ctx, "hub1"); len(list) != 1 {
		t.Fatalf("published connectors %v", list)
	}
	if err := j.PutServer(ctx, sampleServer(t, "hub2")); !errors.Is(err, ErrNotOwn) {
		t.Errorf("writing another server's object: %v", err)
	}
	if err := j.PutReceiveConnector(ctx, sampleReceive("hub2", "x")); !errors.Is(err, ErrNotOwn) {
		t.Errorf("writing another server's connector: %v", err)
	}

	// Local steps fail after a directory write was asked for: nothing in
	// the directory.
	boom := errors.New("a later step fails")
	err = inTx(ctx, j.DB, func(ctx context.Context) error {
		if err := j.PutAcceptedDomain(ctx, AcceptedDomain{DomainName: "contoso.test"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if list, _ := org.AcceptedDomains(ctx); len(list) != 0 {
		t.Errorf("a rolled-back transaction wrote %v", list)
	}

	// The directory is down: the transaction fails, local steps too.
	stop()
	changed := me
	changed.Fqdn = "other.contoso.test"
	err = inTx(ctx, j.DB, func(ctx context.Context) error { return j.PutServer(ctx, changed) })
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with the directory down: %v", err)
	}
	if got, _ := j.Local.Server(ctx, "hub1"); got.Fqdn != me.Fqdn {
		t.Errorf("the local copy changed although the directory write failed: %v", got.Fqdn)
	}
	if got, _ := j.Server(ctx, "hub1"); got.Fqdn != me.Fqdn {
		t.Errorf("reads of this server's object: %v", got.Fqdn)
	}
}

// TestJoinedReconcile: what was changed by hand in the directory (this
// server's object damaged, a connector removed, one added) is put back
// as the data directory holds it, and only that.
func TestJoinedReconcile(t *testing.T) {
	ctx := context.Background()
	j, org, _ := newJoined(t)
	me := sampleServer(t, "hub1")
	if err := inTx(ctx, j.DB, func(ctx context.Context) error {
		if err := j.PutServer(ctx, me); err != nil {
			return err
		}
		return j.PutReceiveConnector(ctx, sampleReceive("hub1", "Default hub1"))
	}); err != nil {
		t.Fatal(err)
	}
	if wrote, err := j.Reconcile(ctx); err != nil || len(wrote) != 0 {
		t.Fatalf("Reconcile with nothing to do: %v, %v", wrote, err)
	}
	damaged := me
	damaged.InternalTransportCertificate = []byte("nonsense")
	if err := org.PutServer(ctx, damaged); err != nil {
		t.Fatal(err)
	}
	if err := org.DeleteReceiveConnector(ctx, "hub1", "Default hub1"); err != nil {
		t.Fatal(err)
	}
	if err := org.PutReceiveConnector(ctx, sampleReceive("hub1", "Added by hand")); err != nil {
		t.Fatal(err)
	}
	wrote, err := j.Reconcile(ctx)
	if err != nil || len(wrote) != 3 {
		t.Fatalf("Reconcile = %v, %v; want the server and two connectors", wrote, err)
	}
	if got, err := org.Server(ctx, "hub1"); err != nil || !reflect.DeepEqual(got, me) {
		t.Errorf("server object after Reconcile: %+v, %v", got, err)
	}
	list, _ := org.ReceiveConnectors(ctx, "hub1")
	if len(list) != 1 || list[0].Name != "Default hub1" {
		t.Errorf("connectors after Reconcile: %+v", list)
	}
}
