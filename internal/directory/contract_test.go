package directory

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/testpki"
)

// The contract every backend keeps: run against each by TestContract*.
// Objects come back as they were put (lists sorted by key), lookups are
// case-insensitive, missing objects wrap ErrNotFound, Put replaces.

func newEmbedded(t *testing.T) *Embedded {
	t.Helper()
	d, err := db.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(d) })
	e, err := OpenEmbedded(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newLDAP starts a slapd with certrelay's schema and returns a prepared
// LDAP directory on it.
func newLDAP(t *testing.T) (*LDAP, *testpki.Slapd) {
	t.Helper()
	s := testpki.StartSlapdWith(t, testpki.SlapdOptions{Certrelay: true})
	l, err := OpenLDAP(LDAPConfig{URL: s.URL(s.Suffix), BindDN: s.RootDN, Password: s.RootPW})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if err := l.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l, s
}

func TestContractEmbedded(t *testing.T) {
	contract(t, func(t *testing.T) Directory { return newEmbedded(t) })
}

func TestContractLDAP(t *testing.T) {
	contract(t, func(t *testing.T) Directory { l, _ := newLDAP(t); return l })
}

// sample objects with every field set.
func sampleServer(t *testing.T, name string) Server {
	leaf := testpki.SelfSigned(t, testpki.Options{CommonName: name, DNSNames: []string{name, name + ".contoso.test"}})
	return Server{Name: name, Fqdn: name + ".contoso.test", PhysicalHostName: "m-" + name, PhysicalFqdn: "m-" + name + ".dc1.contoso.test",
		Role: RoleHub, NLBNames: []string{"mail.contoso.test", "smtp.contoso.test"},
		InternalTransportCertificateThumbprint: certinfo.Thumbprint(leaf.Cert.Raw), InternalTransportCertificate: leaf.Cert.Raw,
		ServerCredential: []byte{0x30, 0x2a, 0, 1, 2, 3, 0xff}, EdgeSyncAddress: "192.0.2.7:50636", EdgeSyncBootstrap: "ESRA.x p4ss"}
}

func sampleReceive(server, name string) ReceiveConnector {
	c := ReceiveConnector{Name: name, Server: server, Identity: server + `\` + name, Bindings: []string{"0.0.0.0:25", "127.0.0.1:2525"},
		Fqdn: "mail.contoso.test", PermissionGroups: []string{"AnonymousUsers", "ExchangeServers"}, AuthMechanism: []string{"Tls", "ExchangeServer"},
		RequireTLS: true, MaxMessageSize: 10 << 20, MaxInboundConnection: 100, MaxInboundConnectionPerSource: 7,
		ConnectionTimeout: Duration(3 * time.Minute), ConnectionInactivityTimeout: Duration(time.Minute), MessageTimeout: Duration(2 * time.Minute),
		MaxRecipientsPerMessage: 150, TlsCertificateName: "<I>CN=Contoso CA, O=Contoso<S>CN=mail.contoso.test", TlsWildcardOneLabel: true, Enabled: true}
	return c
}

func contract(t *testing.T, open func(t *testing.T) Directory) {
	ctx := context.Background()
	t.Run("servers", func(t *testing.T) {
		d := open(t)
		if _, err := d.Server(ctx, "hub1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing server: %v, want ErrNotFound", err)
		}
		if list, err := d.Servers(ctx); err != nil || len(list) != 0 {
			t.Fatalf("empty directory lists %v, %v", list, err)
		}
		h2, h1 := sampleServer(t, "hub2"), sampleServer(t, "hub1")
		for _, s := range []Server{h2, h1} {
			if err := d.PutServer(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		got, err := d.Server(ctx, "HUB1")
		if err != nil || !reflect.DeepEqual(got, h1) {
			t.Fatalf("Server(HUB1) = %+v, %v; want %+v", got, err, h1)
		}
		list, err := d.Servers(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "hub1" || !reflect.DeepEqual(list[1], h2) {
			t.Fatalf("Servers = %+v, %v", list, err)
		}
		// Put replaces the whole object: fields left out are gone.
		h1.NLBNames, h1.PhysicalFqdn, h1.ServerCredential = nil, "", nil
		if err := d.PutServer(ctx, h1); err != nil {
			t.Fatal(err)
		}
		if got, _ := d.Server(ctx, "hub1"); !reflect.DeepEqual(got, h1) {
			t.Fatalf("after replacing: %+v, want %+v", got, h1)
		}
	})
	t.Run("receive-connectors", func(t *testing.T) {
		d := open(t)
		for _, s := range []string{"hub1", "hub2"} {
			if err := d.PutServer(ctx, Server{Name: s, Fqdn: s + ".contoso.test", Role: RoleHub}); err != nil {
				t.Fatal(err)
			}
		}
		a, b := sampleReceive("hub1", "Default hub1"), sampleReceive("hub1", `Odd, name+with\signs`)
		other := sampleReceive("hub2", "Default hub1") // the same name on another server
		other.Bindings = []string{"10.0.0.2:25"}
		for _, c := range []ReceiveConnector{b, a, other} {
			if err := d.PutReceiveConnector(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		list, err := d.ReceiveConnectors(ctx, "hub1")
		if err != nil || len(list) != 2 || !reflect.DeepEqual(list[0], a) || !reflect.DeepEqual(list[1], b) {
			t.Fatalf("ReceiveConnectors(hub1) = %+v, %v", list, err)
		}
		got, err := d.ReceiveConnector(ctx, "hub2", "default HUB1")
		if err != nil || !reflect.DeepEqual(got, other) {
			t.Fatalf("ReceiveConnector(hub2) = %+v, %v", got, err)
		}
		if err := d.DeleteReceiveConnector(ctx, "hub1", b.Name); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteReceiveConnector(ctx, "hub1", b.Name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleting again: %v", err)
		}
		if _, err := d.ReceiveConnector(ctx, "hub1", b.Name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted connector: %v", err)
		}
	})
	t.Run("send-connectors", func(t *testing.T) {
		d := open(t)
		c := SendConnector{Name: "Internet", AddressSpaces: []AddressSpace{{"*", 10}, {"contoso.test", 1}}, SmartHosts: []string{"192.0.2.1:25"},
			Fqdn: "out.contoso.test", RequireTLS: true, TlsCertificateName: "<I>CN=CA<S>CN=out", SourceTransportServers: []string{"hub1"}, Port: 587, MaxMessageSize: 1 << 20, Enabled: true}
		if err := d.PutSendConnector(ctx, c); err != nil {
			t.Fatal(err)
		}
		got, err := d.SendConnector(ctx, "internet")
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("SendConnector = %+v, %v; want %+v", got, err, c)
		}
		if list, err := d.SendConnectors(ctx); err != nil || len(list) != 1 {
			t.Fatalf("SendConnectors = %v, %v", list, err)
		}
		if err := d.DeleteSendConnector(ctx, "Internet"); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteSendConnector(ctx, "Internet"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleting again: %v", err)
		}
	})
	t.Run("domains-mailboxes", func(t *testing.T) {
		d := open(t)
		doms := []AcceptedDomain{{DomainName: "contoso.test", DomainType: "Authoritative", Default: true}, {DomainName: "fabrikam.test", DomainType: "Authoritative"}}
		for _, x := range []AcceptedDomain{doms[1], doms[0]} {
			if err := d.PutAcceptedDomain(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		if list, err := d.AcceptedDomains(ctx); err != nil || !reflect.DeepEqual(list, doms) {
			t.Fatalf("AcceptedDomains = %+v, %v", list, err)
		}
		m := Mailbox{Address: "alice@contoso.test", PasswordHash: "$2a$10$abcdefghijklmnopqrstuv", Server: "hub2", Maildir: "mail/contoso.test/alice"}
		if err := d.PutMailbox(ctx, m); err != nil {
			t.Fatal(err)
		}
		if got, err := d.Mailbox(ctx, "Alice@CONTOSO.test"); err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("Mailbox = %+v, %v", got, err)
		}
		if err := d.DeleteMailbox(ctx, m.Address); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Mailbox(ctx, m.Address); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted mailbox: %v", err)
		}
		if err := d.DeleteAcceptedDomain(ctx, "fabrikam.test"); err != nil {
			t.Fatal(err)
		}
		if list, _ := d.AcceptedDomains(ctx); len(list) != 1 {
			t.Fatalf("after delete: %v", list)
		}
	})
	t.Run("trusted-roots", func(t *testing.T) {
		d := open(t)
		ca := testpki.NewRoot(t, testpki.Options{CommonName: "Contoso Policy Root"})
		r := TrustedRoot{Thumbprint: certinfo.Thumbprint(ca.Cert.Raw), Source: SourceGroupPolicy, Certificate: ca.Cert.Raw}
		if err := d.PutTrustedRoot(ctx, r); err != nil {
			t.Fatal(err)
		}
		if list, err := d.TrustedRoots(ctx); err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], r) {
			t.Fatalf("TrustedRoots = %+v, %v", list, err)
		}
		if err := d.DeleteTrustedRoot(ctx, r.Thumbprint); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteTrustedRoot(ctx, r.Thumbprint); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleting again: %v", err)
		}
	})
}

func TestContractReplica(t *testing.T) {
	contract(t, func(t *testing.T) Directory {
		l, s := newLDAP(t)
		ctx, cancel := context.WithCancel(context.Background())
		r, err := StartReplica(ctx, l.c.cfg, ReplicaOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); r.Wait(); _ = s })
		return r
	})
}
