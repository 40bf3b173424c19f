package transport

import (
	"crypto/rand"
	"crypto/tls"
	"sync"
)

// aeadSuites are the TLS 1.2 cipher suites certrelay offers and accepts:
// ECDHE with an AEAD only (no CBC, whose padding oracles testssl flags as
// LUCKY13). TLS 1.3's suites are all AEAD and not configurable.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// tlsConfigs hands out one server tls.Config per certificate, so every
// handshake with a certificate shares it (no per-handshake set-up), and
// all of them share the receiver's session ticket keys, so a client can
// resume a session after a certificate change or on another connector.
// Safe for concurrent use.
type tlsConfigs struct {
	once sync.Once
	keys [][32]byte
	m    sync.Map // *tls.Certificate → *tls.Config
}

func (tc *tlsConfigs) get(cert *tls.Certificate) *tls.Config {
	if c, ok := tc.m.Load(cert); ok {
		return c.(*tls.Config)
	}
	tc.once.Do(func() {
		var k [32]byte
		_, _ = rand.Read(k[:])
		tc.keys = [][32]byte{k}
	})
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: aeadSuites,
		// Ask for the client's certificate without requiring or checking
		// it: peers' certificates are recorded, and direct trust and
		// domain security check them where they apply.
		ClientAuth: tls.RequestClientCert,
	}
	cfg.SetSessionTicketKeys(tc.keys)
	actual, _ := tc.m.LoadOrStore(cert, cfg)
	return actual.(*tls.Config)
}

// forget drops the configurations of certificates no snapshot uses any
// more.
func (tc *tlsConfigs) forget(keep func(*tls.Certificate) bool) {
	tc.m.Range(func(k, _ any) bool {
		if !keep(k.(*tls.Certificate)) {
			tc.m.Delete(k)
		}
		return true
	})
}
