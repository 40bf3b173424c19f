package serving

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/certprop"
	"certrelay/internal/selection"
	"certrelay/internal/testpki"
)

// keyring is a key loader over keys made in the test, counting loads.
type keyring struct {
	mu    sync.Mutex
	keys  map[string]crypto.Signer
	fail  map[string]error
	loads atomic.Int32
}

func (k *keyring) load(id string) (crypto.Signer, error) {
	k.loads.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.fail[id]; err != nil {
		return nil, err
	}
	if key, ok := k.keys[id]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("no key %s", id)
}

// candidateFor makes a certificate for name, ageDays old, with its key in
// the keyring, as the store's facts would describe it.
func (k *keyring) candidateFor(t testing.TB, name string, ageDays int) selection.Candidate {
	t.Helper()
	key := testpki.ECKey(t)
	nb := time.Now().Add(-time.Duration(ageDays)*24*time.Hour - time.Hour)
	l := testpki.SelfSigned(t, testpki.Options{CommonName: name, DNSNames: []string{name}, Key: key, NotBefore: nb, NotAfter: nb.Add(365 * 24 * time.Hour)})
	id := certinfo.KeyID(l.Cert.RawSubjectPublicKeyInfo)
	k.mu.Lock()
	if k.keys == nil {
		k.keys, k.fail = map[string]crypto.Signer{}, map[string]error{}
	}
	k.keys[id] = key
	k.mu.Unlock()
	return selection.Candidate{
		Thumbprint: certinfo.Thumbprint(l.Cert.Raw), Subject: l.Cert.Subject.String(), Issuer: l.Cert.Issuer.String(),
		Domains: []string{name}, NotBefore: l.Cert.NotBefore, NotAfter: l.Cert.NotAfter, IsSelfSigned: true,
		Services: certprop.SMTP, Status: certprop.Valid, Cert: l.Cert, HasKey: true, KeyReadable: true, KeyID: id,
	}
}

var mailReq = selection.Request{FQDN: "mail.contoso.test", Service: certprop.SMTP}

// served runs a handshake as a client against cfg and returns the
// thumbprint of the certificate the server presented.
func served(t *testing.T, cfg *tls.Config, session tls.ClientSessionCache) (string, bool) {
	t.Helper()
	if cfg == nil {
		t.Fatal("no server configuration")
	}
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	done := make(chan error, 1)
	go func() {
		srv := tls.Server(s, cfg)
		err := srv.Handshake()
		if err == nil {
			_, err = srv.Write([]byte("x")) // lets TLS 1.3 deliver the session ticket
		}
		done <- err
	}()
	cl := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "mail.contoso.test", ClientSessionCache: session})
	if err := cl.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	buf := make([]byte, 1)
	if _, err := cl.Read(buf); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	st := cl.ConnectionState()
	return certinfo.Thumbprint(st.PeerCertificates[0].Raw), st.DidResume
}

// TestPublishSwapsAndKeysLoadLazily: Config serves the winner of the
// published snapshot and the next handshake after Publish gets the new
// winner; a key is read when its certificate is first served, once, and
// never for a certificate that is not served.
func TestPublishSwapsAndKeysLoadLazily(t *testing.T) {
	kr := &keyring{}
	if cfg, d := New(Options{LoadKey: kr.load}).Config(mailReq); cfg != nil || d.Winner != nil {
		t.Fatal("a certificate served before anything was published")
	}
	l := New(Options{LoadKey: kr.load})
	old := kr.candidateFor(t, "mail.contoso.test", 10)
	other := kr.candidateFor(t, "other.contoso.test", 1)
	l.Publish([]selection.Candidate{old, other}, time.Now())
	if n := kr.loads.Load(); n != 0 {
		t.Errorf("%d keys read at Publish, before any handshake asked", n)
	}
	cfg, d := l.Config(mailReq)
	if got, _ := served(t, cfg, nil); got != old.Thumbprint || d.Winner.Thumbprint != old.Thumbprint {
		t.Fatalf("served %s (decision %s), want %s", got, d.Winner.Thumbprint, old.Thumbprint)
	}
	again, _ := l.Config(mailReq)
	if again != cfg || kr.loads.Load() != 1 {
		t.Errorf("second handshake: same configuration %v, %d key loads (want 1)", again == cfg, kr.loads.Load())
	}
	if allocs := testing.AllocsPerRun(100, func() { l.Config(mailReq) }); allocs != 0 {
		t.Errorf("%v allocations per Config after the first", allocs)
	}

	newer := kr.candidateFor(t, "mail.contoso.test", 1)
	l.Publish([]selection.Candidate{old, other, newer}, time.Now())
	// Publish answered the request the old snapshot was asked, and
	// loaded the new winner's key: the next handshake costs nothing more.
	if n := kr.loads.Load(); n != 2 {
		t.Errorf("%d key loads after the swap, want 2 (the new winner's, at Publish)", n)
	}
	if got, _ := served(t, l.must(t, mailReq), nil); got != newer.Thumbprint {
		t.Fatalf("after Publish served %s, want the newer %s", got, newer.Thumbprint)
	}
	if kr.loads.Load() != 2 {
		t.Errorf("the key of %s (never a winner) was read", other.Thumbprint)
	}
}

func (l *Layer) must(t *testing.T, req selection.Request) *tls.Config {
	t.Helper()
	cfg, d := l.Config(req)
	if cfg == nil {
		t.Fatalf("no configuration for %s: %s", req.FQDN, d.Why)
	}
	return cfg
}

// TestKeyFaultPassesOver: a winner whose key cannot be loaded is reported
// once and passed over — the next certificate is served, and the
// decision says why — until its key file changes (ForgetKeys).
func TestKeyFaultPassesOver(t *testing.T) {
	kr := &keyring{}
	var faults []string
	var mu sync.Mutex
	l := New(Options{LoadKey: kr.load, KeyFault: func(tp, id string, err error) {
		mu.Lock()
		faults = append(faults, tp+" "+err.Error())
		mu.Unlock()
	}})
	older := kr.candidateFor(t, "mail.contoso.test", 30)
	broken := kr.candidateFor(t, "mail.contoso.test", 1)
	kr.fail[broken.KeyID] = errors.New("not a PEM private key")
	l.Publish([]selection.Candidate{older, broken}, time.Now())
	for i := 0; i < 3; i++ {
		cfg, d := l.Config(mailReq)
		if got, _ := served(t, cfg, nil); got != older.Thumbprint || d.Winner.Thumbprint != older.Thumbprint {
			t.Fatalf("handshake %d: served %s, want %s", i, got, older.Thumbprint)
		}
	}
	d := l.Select(mailReq)
	found := false
	for _, c := range d.Considered {
		if c.Thumbprint == broken.Thumbprint {
			found = c.Verdict == selection.Rejected && strings.Contains(c.Reason, "not a PEM private key") && strings.Contains(c.Reason, "cert new --from "+broken.Thumbprint)
		}
	}
	if !found {
		t.Errorf("the decision does not explain the broken key: %+v", d.Considered)
	}
	mu.Lock()
	if len(faults) != 1 || !strings.HasPrefix(faults[0], broken.Thumbprint+" not a PEM") {
		t.Errorf("faults reported %q, want one for %s", faults, broken.Thumbprint)
	}
	mu.Unlock()

	delete(kr.fail, broken.KeyID)
	l.ForgetKeys([]string{broken.KeyID})
	l.Publish([]selection.Candidate{older, broken}, time.Now())
	if got, _ := served(t, l.must(t, mailReq), nil); got != broken.Thumbprint {
		t.Errorf("after the key file was repaired: served %s, want %s", got, broken.Thumbprint)
	}
}

// TestKeyCacheBounded: keys stay in memory up to MaxKeys.
func TestKeyCacheBounded(t *testing.T) {
	kr := &keyring{}
	l := New(Options{LoadKey: kr.load, MaxKeys: 4})
	var cands []selection.Candidate
	for i := 0; i < 12; i++ {
		cands = append(cands, kr.candidateFor(t, fmt.Sprintf("h%d.contoso.test", i), 1))
	}
	l.Publish(cands, time.Now())
	for i := range cands {
		l.must(t, selection.Request{FQDN: fmt.Sprintf("h%d.contoso.test", i), Service: certprop.SMTP})
	}
	if n := l.keys.Len(); n > 4 {
		t.Errorf("%d keys held, bound 4", n)
	}
}

// TestSessionTicketsShared: a session from one certificate's
// configuration resumes after the certificate changed.
func TestSessionTicketsShared(t *testing.T) {
	kr := &keyring{}
	l := New(Options{LoadKey: kr.load})
	a := kr.candidateFor(t, "mail.contoso.test", 10)
	l.Publish([]selection.Candidate{a}, time.Now())
	cache := tls.NewLRUClientSessionCache(4)
	if _, resumed := served(t, l.must(t, mailReq), cache); resumed {
		t.Fatal("the first handshake resumed")
	}
	b := kr.candidateFor(t, "mail.contoso.test", 1)
	l.Publish([]selection.Candidate{a, b}, time.Now())
	if _, resumed := served(t, l.must(t, mailReq), cache); !resumed {
		t.Error("the session did not resume across the certificate change")
	}
}

// TestAnyProtocol: a protocol that is not SMTP plugs into the layer in a
// few lines — one binding with TLS from the first byte, one that upgrades
// after a STARTTLS-style exchange — and both serve the selected
// certificate; a later Set changes what a binding serves without a new
// socket, and closes what leaves the configuration.
func TestAnyProtocol(t *testing.T) {
	kr := &keyring{}
	l := New(Options{LoadKey: kr.load})
	c := kr.candidateFor(t, "mail.contoso.test", 1)
	other := kr.candidateFor(t, "pop.contoso.test", 1)
	l.Publish([]selection.Candidate{c, other}, time.Now())
	echo := func(conn net.Conn) {
		defer conn.Close()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		fmt.Fprintf(conn, "echo %s", line)
	}
	starttls := func(conn net.Conn) {
		defer conn.Close()
		r := bufio.NewReader(conn)
		if line, _ := r.ReadString('\n'); line != "STLS\r\n" {
			fmt.Fprintf(conn, "-ERR\r\n")
			return
		}
		fmt.Fprintf(conn, "+OK go ahead\r\n")
		tc, _, err := l.StartTLS(context.Background(), conn, mailReq)
		if err != nil {
			return
		}
		echo(tc)
	}
	sni := func(h *tls.ClientHelloInfo) selection.Request {
		return selection.Request{FQDN: h.ServerName, Service: certprop.SMTP}
	}
	ls := l.Listeners(ListenOptions{Kind: "test listener"})
	defer ls.Close()
	implicit, upgrade := testpki.FreePort(t), testpki.FreePort(t)
	errs := ls.Set(context.Background(), []Binding{
		{Addr: implicit, Owner: "implicit", Handle: echo, TLS: sni},
		{Addr: upgrade, Owner: "upgrade", Handle: starttls},
	})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	check := func(conn *tls.Conn, want string) {
		t.Helper()
		fmt.Fprintf(conn, "hello\n")
		reply, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || reply != "echo hello\n" {
			t.Errorf("reply %q, %v", reply, err)
		}
		if got := certinfo.Thumbprint(conn.ConnectionState().PeerCertificates[0].Raw); got != want {
			t.Errorf("served %s, want %s", got, want)
		}
	}
	client := &tls.Config{InsecureSkipVerify: true, ServerName: "mail.contoso.test"}
	conn, err := tls.Dial("tcp", implicit, client)
	if err != nil {
		t.Fatal(err)
	}
	check(conn, c.Thumbprint)
	conn.Close()

	plain, err := net.Dial("tcp", upgrade)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(plain, "STLS\r\n")
	r := bufio.NewReader(plain)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "+OK") {
		t.Fatalf("STLS answered %q", line)
	}
	tc := tls.Client(plain, client)
	check(tc, c.Thumbprint)
	tc.Close()

	// A name no certificate holds fails the handshake of implicit TLS.
	if conn, err := tls.Dial("tcp", implicit, &tls.Config{InsecureSkipVerify: true, ServerName: "nobody.contoso.test"}); err == nil {
		conn.Close()
		t.Error("a handshake for a name no certificate holds succeeded")
	}

	// The implicit binding now selects for a fixed name, whatever the
	// client asks: the same socket serves the other certificate.
	before := ls.listeners[implicit].ln
	pop := func(*tls.ClientHelloInfo) selection.Request {
		return selection.Request{FQDN: "pop.contoso.test", Service: certprop.SMTP}
	}
	ls.Set(context.Background(), []Binding{{Addr: implicit, Owner: "implicit", Handle: echo, TLS: pop}})
	if ls.listeners[implicit].ln != before {
		t.Error("a change of what the binding serves opened a new socket")
	}
	if conn, err = tls.Dial("tcp", implicit, client); err != nil {
		t.Fatal(err)
	}
	check(conn, other.Thumbprint)
	conn.Close()
	if got := ls.Listening(); len(got) != 1 || got[0] != implicit {
		t.Errorf("listening on %v, want only %s", got, implicit)
	}
	if conn, err := net.DialTimeout("tcp", upgrade, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts after it left the configuration", upgrade)
	}
	if errs := ls.Set(context.Background(), []Binding{{Addr: upgrade, Owner: "nothing"}}); len(errs) != 1 {
		t.Errorf("a binding with neither Serve nor Handle: %v", errs)
	}
}

// eventRecorder keeps the events raised.
type eventRecorder struct {
	mu     sync.Mutex
	events []string
}

func (r *eventRecorder) Raise(_ context.Context, id int, key string, params ...string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("%d %s", id, strings.Join(params, "|")))
	return true, nil
}

func (r *eventRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// TestBusyBindingRetried: a busy address raises the protocol's failure
// event, is retried with back-off, and raises its restored event when it
// opens.
func TestBusyBindingRetried(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	ev := &eventRecorder{}
	l := New(Options{Events: ev})
	ls := l.Listeners(ListenOptions{Kind: "POP3 listener", FailedEvent: 16041, RestoredEvent: 16042, Retry: 20 * time.Millisecond, RetryMax: 80 * time.Millisecond})
	defer ls.Close()
	errs := ls.Set(context.Background(), []Binding{{Addr: addr, Owner: "POP3", Handle: func(c net.Conn) { c.Close() }}})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `POP3 listener "POP3" cannot listen on `+addr) {
		t.Fatalf("Set errors %v", errs)
	}
	time.Sleep(150 * time.Millisecond)
	busy.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(ls.Listening()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(ls.Listening()) != 1 {
		t.Fatal("the freed address was not retried")
	}
	evs := ev.all()
	if len(evs) < 3 || !strings.HasPrefix(evs[0], "16041 POP3|"+addr+"|bind: address already in use|20ms") || !strings.HasPrefix(evs[len(evs)-1], "16042 POP3|"+addr+"|") {
		t.Errorf("events %q", evs)
	}
}

// BenchmarkConfig is a handshake's cost of finding its configuration
// with 10,000 certificates published: a memoized selection and a cached
// configuration (the goal: selection ≤ 200 ns, 0 allocations).
func BenchmarkConfig(b *testing.B) {
	kr := &keyring{}
	winner := kr.candidateFor(b, "mail.contoso.test", 1)
	base := winner.Cert
	cands := make([]selection.Candidate, 10000)
	for i := range cands {
		c := winner
		c.Thumbprint = fmt.Sprintf("%040X", i)
		c.Domains = []string{fmt.Sprintf("host%d.contoso.test", i), "mail.contoso.test"}
		c.NotBefore = base.NotBefore.Add(-time.Duration(i+1) * time.Minute)
		cands[i] = c
	}
	cands[0] = winner
	l := New(Options{LoadKey: kr.load})
	l.Publish(cands, time.Now())
	if cfg, d := l.Config(mailReq); cfg == nil {
		b.Fatal(d.Why)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.Config(mailReq)
	}
}

// TestPublishWarmsEveryRequest: a new snapshot answers every request the
// old one was asked before it is published — 300 connectors' names here,
// more than the 64 a snapshot once warmed — so no handshake after a
// change walks the store, and the winners' configurations are ready.
func TestPublishWarmsEveryRequest(t *testing.T) {
	kr := &keyring{}
	l := New(Options{LoadKey: kr.load})
	var cands []selection.Candidate
	var reqs []selection.Request
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("host%03d.contoso.test", i)
		cands = append(cands, kr.candidateFor(t, name, 2))
		reqs = append(reqs, selection.Request{FQDN: name, Service: certprop.SMTP})
	}
	l.Publish(cands, time.Now())
	for _, r := range reqs {
		if cfg, d := l.Config(r); cfg == nil {
			t.Fatalf("%s: no certificate: %s", r.FQDN, d.Why)
		}
	}
	l.Publish(append([]selection.Candidate(nil), cands...), time.Now())
	if got := len(l.Index().Requests(selection.MaxMemo)); got != len(reqs) {
		t.Fatalf("the new snapshot was published knowing %d requests, want %d", got, len(reqs))
	}
	loads := kr.loads.Load()
	for _, r := range reqs {
		if cfg, _ := l.Config(r); cfg == nil {
			t.Fatalf("%s: no certificate after the swap", r.FQDN)
		}
	}
	if kr.loads.Load() != loads {
		t.Errorf("handshakes after the swap loaded %d keys: the snapshot was not warmed", kr.loads.Load()-loads)
	}
}
