package admin

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/settings"
	"certrelay/internal/store"
	"certrelay/internal/testpki"
	"certrelay/internal/trust"

	"github.com/miekg/dns"
)

// tlsaRecords are the TLSA records startTLSA serves, by owner name; the
// test changes them while the server's goroutines read them.
type tlsaRecords struct {
	mu sync.Mutex
	m  map[string]string
}

func (r *tlsaRecords) set(name, data string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[name] = data
}

func (r *tlsaRecords) get(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, ok := r.m[name]
	return data, ok
}

// startTLSA serves TLSA records on 127.0.0.1 (a real DNS server, miekg/dns)
// and returns its address.
func startTLSA(t *testing.T, records *tlsaRecords) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if rd, ok := records.get(strings.ToLower(q.Name)); ok && q.Qtype == dns.TypeTLSA {
			rr, err := dns.NewRR(q.Name + " 300 IN TLSA " + rd)
			if err == nil {
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func pfxOf(t *testing.T, l *testpki.Leaf) []byte {
	t.Helper()
	pfx, err := certinfo.EncodePKCS12(l.Key, l.Cert, nil, "pw", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pfx
}

// TestPreflightTLSA: a TLSA record (3 1 1) published for the receive
// connector matches the certificate served today; staging a successor
// whose key it does not match is refused, naming the record, and changes
// nothing; once the record names the new key, staging goes through.
func TestPreflightTLSA(t *testing.T) {
	clock := time.Now()
	a := newAdminAt(t, &clock)
	ca := testpki.NewRoot(t, testpki.Options{CommonName: "TLSA CA"})
	if _, err := a.TrustAdd(ctx, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), trust.RootRegistry, false); err != nil {
		t.Fatal(err)
	}
	conns, _ := a.ListReceiveConnectors(ctx)
	binding := "127.0.0.1:2525"
	if _, err := a.SetReceiveConnector(ctx, conns[0].Name, ReceiveConnectorOptions{Bindings: &[]string{binding}}); err != nil {
		t.Fatal(err)
	}
	old := ca.Issue(t, testpki.Options{CommonName: "hub1.contoso.com", DNSNames: []string{"hub1.contoso.com"}, NotBefore: clock.Add(-2 * time.Hour)})
	oldT := importLeaf(t, a, old)
	if _, err := a.EnableCertificate(ctx, oldT, store.SMTP, Yes{}); err != nil {
		t.Fatal(err)
	}
	records := &tlsaRecords{m: map[string]string{"_2525._tcp.hub1.contoso.com.": fmt.Sprintf("3 1 1 %X", tlsaData(old.Cert, 1, 1))}}
	if err := a.atomically(ctx, func(ctx2 context.Context) error {
		return a.Settings.Set(ctx2, settings.DNSResolver, startTLSA(t, records))
	}); err != nil {
		t.Fatal(err)
	}
	nw := ca.Issue(t, testpki.Options{CommonName: "hub1.contoso.com", DNSNames: []string{"hub1.contoso.com"}, Key: testpki.ECKey(t)})
	pw := "pw"
	pfx := pfxOf(t, nw)
	_, err := a.StageCertificate(ctx, StageOptions{Data: pfx, Password: &pw})
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "_2525._tcp.hub1.contoso.com") || !strings.Contains(err.Error(), "TLSA") {
		t.Fatalf("want the TLSA refusal, got %v", err)
	}
	if _, err := a.Store.Get(ctx, certinfo.Thumbprint(nw.Cert.Raw)); err == nil {
		t.Fatal("a refused certificate was stored")
	}
	records.set("_2525._tcp.hub1.contoso.com.", fmt.Sprintf("3 1 1 %X", tlsaData(nw.Cert, 1, 1)))
	p, err := a.StageCertificate(ctx, StageOptions{Data: pfx, Password: &pw})
	if err != nil || len(p.Changes) == 0 || p.Changes[0].From != oldT {
		t.Fatalf("stage with the new record published: %+v %v", p, err)
	}
}
