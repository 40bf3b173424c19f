package edgesync

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/directory"
	"certrelay/internal/settings"
	"certrelay/internal/testpki"
)

// edgeSide is an Endpoint on a temporary data directory, listening on
// loopback.
type edgeSide struct {
	ep   *Endpoint
	addr string
}

func newEdgeSide(t *testing.T, maxConns int) *edgeSide {
	t.Helper()
	ctx := context.Background()
	d, err := db.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(d) })
	st, err := settings.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.OpenEmbedded(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Set(ctx, settings.ServerName, "edge1"); err != nil {
		t.Fatal(err)
	}
	if err := dir.PutServer(ctx, directory.Server{Name: "edge1", Fqdn: "edge1.contoso.test", Role: directory.RoleEdge}); err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("boot-pw"), bcrypt.MinCost)
	if err := st.Set(ctx, settings.EdgeBootstrap, fmt.Sprintf("ESRA.edge1 %s %d", hash, time.Now().Add(time.Hour).Unix())); err != nil {
		t.Fatal(err)
	}
	leaf := testpki.SelfSigned(t, testpki.Options{CommonName: "edge1", DNSNames: []string{"edge1", "edge1.contoso.test"}, Key: testpki.ECKey(t)})
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}}, ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS12}
	e := &edgeSide{ep: &Endpoint{DB: d, Dir: dir, Settings: st, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		TLS: func() (*tls.Config, error) { return cfg, nil }, WaitFor: 200 * time.Millisecond, MaxConnections: maxConns}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go e.ep.Handle(ctx, c)
		}
	}()
	e.addr = ln.Addr().String()
	return e
}

// hubConn is a hub's raw connection to the endpoint, presenting cert.
type hubConn struct {
	t *testing.T
	c *tls.Conn
}

func dialEdge(t *testing.T, addr string, cert tls.Certificate) *hubConn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &hubConn{t: t, c: c}
}

func (h *hubConn) do(req Request) Response {
	h.t.Helper()
	if err := writeMsg(h.c, req); err != nil {
		h.t.Fatal(err)
	}
	var r Response
	if err := readMsg(h.c, &r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

func recipients(n int, prefix string) []Recipient {
	out := make([]Recipient, n)
	for i := range out {
		out[i] = Recipient{Address: fmt.Sprintf("%s%04d@contoso.test", prefix, i), Server: "hub1"}
	}
	return out
}

func (e *edgeSide) boxes(t *testing.T) []directory.Mailbox {
	t.Helper()
	m, err := e.ep.Dir.Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEndpointRounds: the first round authenticates with the bootstrap
// account, later ones by direct trust against the replicated hub; a
// round is all or nothing — a hub whose connection dies in the middle of
// a push leaves the edge as it was; a delta from another base is
// answered NeedWhole and changes nothing; a hub whose certificate the
// edge does not hold is refused.
func TestEndpointRounds(t *testing.T) {
	e := newEdgeSide(t, 0)
	hubLeaf := testpki.SelfSigned(t, testpki.Options{CommonName: "hub1", DNSNames: []string{"hub1", "hub1.contoso.test"}, Key: testpki.ECKey(t)})
	hubCert := tls.Certificate{Certificate: [][]byte{hubLeaf.Cert.Raw}, PrivateKey: hubLeaf.Key}
	hub := directory.Server{Name: "hub1", Fqdn: "hub1.contoso.test", Role: directory.RoleHub,
		InternalTransportCertificateThumbprint: certinfo.Thumbprint(hubLeaf.Cert.Raw), InternalTransportCertificate: hubLeaf.Cert.Raw}

	// Before authentication nothing large is read: the length alone is
	// refused, before any of the message.
	h := dialEdge(t, e.addr, hubCert)
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], MaxHello+1)
	if _, err := h.c.Write(size[:]); err != nil {
		t.Fatal(err)
	}
	var big Response
	if err := readMsg(h.c, &big); err != nil || !strings.Contains(big.Error, "more than EdgeSync allows here") {
		t.Fatalf("a large first message: %+v %v", big, err)
	}
	h = dialEdge(t, e.addr, hubCert)
	if r := h.do(Request{Op: OpHello, Hub: "hub1"}); !strings.Contains(r.Error, "bootstrap") {
		t.Fatalf("hello without the bootstrap account: %+v", r)
	}
	h = dialEdge(t, e.addr, hubCert)
	if r := h.do(Request{Op: OpHello, Hub: "hub1", Bootstrap: &Bootstrap{"ESRA.edge1", "wrong"}}); !strings.Contains(r.Error, "bootstrap account or password") {
		t.Fatalf("hello with a wrong password: %+v", r)
	}
	h = dialEdge(t, e.addr, hubCert)
	if r := h.do(Request{Op: OpHello, Hub: "hub1", Bootstrap: &Bootstrap{"ESRA.edge1", "boot-pw"}}); r.Error != "" || r.Server.Name != "edge1" {
		t.Fatalf("hello with the bootstrap account: %+v", r)
	}
	if r := h.do(Request{Op: OpPush, Kind: KindConfiguration, Hub: "hub1", Config: &Config{Servers: []directory.Server{hub}, AcceptedDomains: []directory.AcceptedDomain{{DomainName: "contoso.test", DomainType: "Authoritative"}}}}); r.Error != "" || r.Changed != 2 {
		t.Fatalf("configuration round: %+v", r)
	}
	if r := h.do(Request{Op: OpPush, Kind: KindRecipients, Hub: "hub1", Recipients: recipients(500, "a"), Round: "r1"}); r.Error != "" || r.Held != 500 {
		t.Fatalf("recipients round: %+v", r)
	}

	// A hub that dies in the middle of a push: half a message, then the
	// connection closes.
	h = dialEdge(t, e.addr, hubCert)
	if r := h.do(Request{Op: OpHello, Hub: "hub1"}); r.Error != "" {
		t.Fatalf("hello by direct trust: %+v", r)
	}
	b, _ := json.Marshal(Request{Op: OpPush, Kind: KindRecipients, Hub: "hub1", Recipients: recipients(800, "b"), Round: "r2"})
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	_, _ = h.c.Write(n[:])
	_, _ = h.c.Write(b[:len(b)/2])
	h.c.Close()
	time.Sleep(100 * time.Millisecond)
	if got := e.boxes(t); len(got) != 500 || !strings.HasPrefix(got[0].Address, "a") {
		t.Fatalf("after a hub died mid-round the edge holds %d recipients (first %v), want the 500 it had", len(got), got[0])
	}

	// A delta from a base the edge never applied.
	h = dialEdge(t, e.addr, hubCert)
	h.do(Request{Op: OpHello, Hub: "hub1"})
	if r := h.do(Request{Op: OpPush, Kind: KindRecipients, Hub: "hub1", Base: "r0", Removed: []string{"a0000@contoso.test"}, Round: "r3"}); !r.NeedWhole {
		t.Fatalf("a delta from another base: %+v", r)
	}
	if r := h.do(Request{Op: OpPush, Kind: KindRecipients, Hub: "hub1", Base: "r1", Removed: []string{"a0000@contoso.test"}, Recipients: recipients(1, "c"), Round: "r4"}); r.Error != "" || r.Held != 500 || r.Changed != 2 {
		t.Fatalf("a delta from the edge's round: %+v", r)
	}

	// Another hub's certificate, no credential: refused.
	other := testpki.SelfSigned(t, testpki.Options{CommonName: "hub1", Key: testpki.ECKey(t)})
	h = dialEdge(t, e.addr, tls.Certificate{Certificate: [][]byte{other.Cert.Raw}, PrivateKey: other.Key})
	if r := h.do(Request{Op: OpHello, Hub: "hub1"}); !strings.Contains(r.Error, "direct trust") {
		t.Fatalf("a hub with a certificate the edge does not hold: %+v", r)
	}
	// The replicated objects are the edge's: a write outside EdgeSync is
	// refused by the guard (certview wires it for commands).
	g := &directory.EdgeGuard{Embedded: e.ep.Dir, Self: func(context.Context) (string, error) { return "edge1", nil },
		Subscribed: func(ctx context.Context) (bool, error) {
			v, err := e.ep.Settings.Get(ctx, settings.EdgeSubscribed)
			return v != "", err
		}}
	err := g.PutAcceptedDomain(context.Background(), directory.AcceptedDomain{DomainName: "fabrikam.test"})
	var rep *directory.ReplicatedError
	if !errorsAs(err, &rep) || rep.Kind != directory.KindAcceptedDomain {
		t.Errorf("a command's write of a replicated object: %v", err)
	}
	if err := g.PutReceiveConnector(context.Background(), directory.ReceiveConnector{Name: "Default edge1", Server: "edge1"}); err != nil {
		t.Errorf("the edge's own connector: %v", err)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// TestEndpointConnectionLimit: beyond MaxConnections at once, a
// connection is closed before its handshake.
func TestEndpointConnectionLimit(t *testing.T) {
	e := newEdgeSide(t, 2)
	leaf := testpki.SelfSigned(t, testpki.Options{CommonName: "x", Key: testpki.ECKey(t)})
	cert := tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}
	dialEdge(t, e.addr, cert)
	dialEdge(t, e.addr, cert)
	time.Sleep(50 * time.Millisecond)
	c, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a third connection was served (%v)", err)
	}
}
