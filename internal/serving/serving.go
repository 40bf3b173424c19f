package serving

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/memo"
	"certrelay/internal/selection"
)

// CipherSuites are the TLS 1.2 cipher suites certrelay offers and
// accepts, as server and client: ECDHE with an AEAD only (no CBC, whose
// padding oracles testssl flags as LUCKY13). TLS 1.3's suites are all
// AEAD and not configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// EventSink receives the events the layer raises (a listener's binding
// failed or came back); key throttles. events.Log implements it.
type EventSink interface {
	Raise(ctx context.Context, id int, key string, params ...string) (bool, error)
}

// Options configure a Layer. Zero values take the defaults stated.
type Options struct {
	// LoadKey reads a private key by the key ID candidates carry
	// (store.Store.PrivateKeyByID). Required to serve TLS.
	LoadKey func(keyID string) (crypto.Signer, error)
	// KeyFault, when set, is told that the key of a certificate selection
	// chose cannot be loaded; the certificate is then passed over as if
	// its key were missing. It may be called during a handshake, so it
	// must not block (queue the event, record the fact elsewhere).
	KeyFault func(thumbprint, keyID string, err error)
	// Events receives the listeners' events; nil: none.
	Events EventSink
	Log    *slog.Logger     // default: discard
	Now    func() time.Time // default time.Now
	// MaxKeys bounds the private keys kept in memory; default 256.
	MaxKeys int
}

// Layer is one server's TLS serving layer. Safe for concurrent use.
type Layer struct {
	o Options

	index  atomic.Pointer[selection.Index] // the published snapshot
	pubMu  sync.Mutex                      // serialises publishing
	keys   memo.Table[string, crypto.Signer]
	served sync.Map // thumbprint → *servedCert
	nserve atomic.Int32

	faultMu sync.Mutex
	faults  map[string]error // key ID → why it cannot be loaded

	ticketKeys [][32]byte
	internal   internalCache // the internal transport certificates' configurations (internal.go)
}

// New returns a layer with an empty snapshot: no certificate is served
// until Publish.
func New(o Options) *Layer {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 256
	}
	l := &Layer{o: o, faults: map[string]error{}}
	l.keys.Max = o.MaxKeys / 2
	var k [32]byte
	_, _ = rand.Read(k[:])
	l.ticketKeys = [][32]byte{k}
	l.index.Store(selection.NewIndex(nil, o.Now()))
	return l
}

// maxWarm is the least number of served configurations the layer keeps
// across snapshots before it drops those no request chose.
const maxWarm = 64

// Publish makes cands (as judged at now) the snapshot every later
// handshake selects from. Before it is published, the new snapshot
// answers every request the previous one was asked (every listener's, up
// to selection.MaxMemo; each walks only the certificates that hold its
// name), loading the winners' keys, so the first handshake after a change
// costs what any other does; a winner whose key cannot be loaded is
// passed over there and then. The layer keeps cands: the caller must not
// change the slice afterwards.
func (l *Layer) Publish(cands []selection.Candidate, now time.Time) {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	_, winners := l.install(cands, now, l.index.Load().Requests(selection.MaxMemo))
	if n := int(l.nserve.Load()); n > 4*max(maxWarm, len(winners)) {
		// Drop the configurations of certificates no request chose.
		l.served.Range(func(k, _ any) bool {
			if !winners[k.(string)] {
				l.served.Delete(k)
				n--
			}
			return true
		})
		l.nserve.Store(int32(n))
	}
}

// install builds an index over cands with the known key faults applied,
// answers reqs with it — a key that fails to load becomes a fault and the
// index is built again — and publishes it. It returns the index and the
// thumbprints of the winners. The caller holds pubMu.
func (l *Layer) install(cands []selection.Candidate, now time.Time, reqs []selection.Request) (*selection.Index, map[string]bool) {
	for attempt := 0; ; attempt++ {
		ix := selection.NewIndex(l.applyFaults(cands), now)
		failed := false
		winners := map[string]bool{}
		for _, d := range ix.Warm(reqs) {
			if d.Winner == nil {
				continue
			}
			winners[d.Winner.Thumbprint] = true
			if _, err := l.serve(d.Winner); err != nil {
				failed = true
				break
			}
		}
		if !failed || attempt >= 16 {
			l.index.Store(ix)
			return ix, winners
		}
	}
}

// Index returns the published snapshot.
func (l *Layer) Index() *selection.Index { return l.index.Load() }

// Select returns the published snapshot's decision for req: memoized, no
// allocation after the first time.
func (l *Layer) Select(req selection.Request) *selection.Decision { return l.index.Load().Select(req) }

// Config returns the server configuration for a session that needs req
// (its service and name, SPEC S1), with the certificate selection chooses
// in the published snapshot, and the decision. The configuration is nil
// when no certificate can serve req (d.Why says why). Configurations are
// shared by every handshake with the same certificate: do not change
// them.
func (l *Layer) Config(req selection.Request) (*tls.Config, *selection.Decision) {
	s, d := l.get(req, 0)
	if s == nil {
		return nil, d
	}
	return s.cfg, d
}

// ClientCertificate returns the certificate, with its key, that an
// outbound session presents for req (a send connector's FQDN or explicit
// name), and the decision; nil when there is none.
func (l *Layer) ClientCertificate(req selection.Request) (*tls.Certificate, *selection.Decision) {
	s, d := l.get(req, 0)
	if s == nil {
		return nil, d
	}
	return s.cert, d
}

func (l *Layer) get(req selection.Request, depth int) (*servedCert, *selection.Decision) {
	ix := l.index.Load()
	d := ix.Select(req)
	w := d.Winner
	if w == nil {
		return nil, d
	}
	if v, ok := l.served.Load(w.Thumbprint); ok && v.(*servedCert).matches(w) {
		return v.(*servedCert), d
	}
	s, err := l.serve(w)
	if err == nil {
		return s, d
	}
	if depth >= 8 {
		return nil, d
	}
	// The winner's key cannot be loaded: publish a snapshot that knows
	// it (unless another goroutine did), and ask again.
	l.pubMu.Lock()
	if l.index.Load() == ix {
		l.install(ix.Candidates(), ix.Built(), append(ix.Requests(selection.MaxMemo), req))
	}
	l.pubMu.Unlock()
	return l.get(req, depth+1)
}

// ForgetKeys drops what the layer knows of these keys — loaded keys,
// configurations built on them, load failures — because their files
// changed. Publish a snapshot afterwards.
func (l *Layer) ForgetKeys(keyIDs []string) {
	drop := map[string]bool{}
	l.faultMu.Lock()
	for _, id := range keyIDs {
		drop[id] = true
		delete(l.faults, id)
		l.keys.Delete(id)
	}
	l.faultMu.Unlock()
	l.served.Range(func(k, v any) bool {
		if drop[v.(*servedCert).keyID] {
			l.served.Delete(k)
		}
		return true
	})
}

// servedCert is a certificate ready for handshakes: its chain and key,
// and the configuration every handshake with it shares.
type servedCert struct {
	keyID string
	leaf  *x509.Certificate
	chain []*x509.Certificate
	cert  *tls.Certificate
	cfg   *tls.Config
}

// matches reports whether s was built from what w holds now (a trust
// change may have found another chain).
func (s *servedCert) matches(w *selection.Candidate) bool {
	if s.keyID != w.KeyID || s.leaf != w.Cert || len(s.chain) != len(w.Chain) {
		return false
	}
	for i := range s.chain {
		if s.chain[i] != w.Chain[i] {
			return false
		}
	}
	return true
}

// serve loads w's key and builds its configuration; a key that cannot be
// loaded becomes a fault, reported once.
func (l *Layer) serve(w *selection.Candidate) (*servedCert, error) {
	if v, ok := l.served.Load(w.Thumbprint); ok && v.(*servedCert).matches(w) {
		return v.(*servedCert), nil
	}
	key, err := l.key(w)
	if err != nil {
		l.fault(w, err)
		return nil, err
	}
	tc := &tls.Certificate{Certificate: [][]byte{w.Cert.Raw}, PrivateKey: key, Leaf: w.Cert}
	for _, c := range w.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*tc},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
		// Ask for the client's certificate without requiring or checking
		// it: peers' certificates are recorded, and direct trust and
		// domain security check them where they apply.
		ClientAuth: tls.RequestClientCert,
	}
	cfg.SetSessionTicketKeys(l.ticketKeys)
	s := &servedCert{keyID: w.KeyID, leaf: w.Cert, chain: w.Chain, cert: tc, cfg: cfg}
	l.served.Store(w.Thumbprint, s)
	l.nserve.Add(1)
	return s, nil
}

// key returns w's private key, from the cache or its file.
func (l *Layer) key(w *selection.Candidate) (crypto.Signer, error) {
	if w.Cert == nil || w.KeyID == "" {
		return nil, errors.New("the store holds no private key for it")
	}
	if k, ok := l.keys.Get(w.KeyID); ok {
		return k, nil
	}
	if l.o.LoadKey == nil {
		return nil, errors.New("no key loader configured")
	}
	k, err := l.o.LoadKey(w.KeyID)
	if err != nil {
		return nil, err
	}
	if !certinfo.KeyMatches(k, w.Cert.PublicKey) {
		return nil, errors.New("the key in the file does not belong to the certificate")
	}
	l.keys.Put(w.KeyID, k)
	return k, nil
}

func (l *Layer) fault(w *selection.Candidate, err error) {
	l.faultMu.Lock()
	_, known := l.faults[w.KeyID]
	l.faults[w.KeyID] = err
	l.faultMu.Unlock()
	if known {
		return
	}
	l.o.Log.Error("a selected certificate's private key cannot be loaded; it is passed over", "thumbprint", w.Thumbprint, "key", w.KeyID, "err", err)
	if l.o.KeyFault != nil {
		l.o.KeyFault(w.Thumbprint, w.KeyID, err)
	}
}

// applyFaults returns cands with the keys that failed to load marked
// unusable (a copy, when any is).
func (l *Layer) applyFaults(cands []selection.Candidate) []selection.Candidate {
	l.faultMu.Lock()
	defer l.faultMu.Unlock()
	if len(l.faults) == 0 {
		return cands
	}
	var out []selection.Candidate
	for i := range cands {
		err, ok := l.faults[cands[i].KeyID]
		if !ok || cands[i].KeyID == "" || cands[i].KeyError != "" {
			continue
		}
		if out == nil {
			out = append([]selection.Candidate(nil), cands...)
		}
		out[i].KeyError = KeyFaultText(cands[i].Thumbprint, err)
	}
	if out == nil {
		return cands
	}
	return out
}

// KeyFaultText is how a key that cannot be loaded is explained (a
// selection KeyError clause, with the fix).
func KeyFaultText(thumbprint string, err error) string {
	return fmt.Sprintf("its private key cannot be loaded (%v): restore the key file from a backup, or replace the certificate (certrelay cert new --from %s for a self-signed one; otherwise import it again with its key)", err, thumbprint)
}
