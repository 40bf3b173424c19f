package bench

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// BenchmarkTLSHandshake is the floor a STARTTLS session cannot beat: full
// crypto/tls handshakes (no resumption), client and server in this one
// process over loopback TCP, with the server configured as certrelay's
// receive connector configures it (TLS 1.2 minimum, client certificate
// requested, Go's defaults otherwise) and the client as smtpload (no
// verification, no session cache, Go's default key exchange groups).
// Keys are the kinds certrelay's `cert new` makes: RSA-2048 and ECDSA
// P-256 (the cost depends on the kind, not on the key). It reports
// handshakes/s; GOMAXPROCS bounds the cores shared by both sides, as the
// load generator and the server share them in `make bench`.
func BenchmarkTLSHandshake(b *testing.B) {
	rsaKey := func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }
	ecKey := func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
	for _, k := range []struct {
		name   string
		key    func() (crypto.Signer, error)
		curves []tls.CurveID
	}{
		{"rsa2048", rsaKey, nil},
		{"ecdsa-p256", ecKey, nil},
		// Go's default groups start with the post-quantum hybrid
		// X25519MLKEM768, which OpenSSL 3.0 (Postfix here) does not
		// offer: these show what it costs.
		{"rsa2048-x25519", rsaKey, []tls.CurveID{tls.X25519}},
		{"ecdsa-p256-x25519", ecKey, []tls.CurveID{tls.X25519}},
	} {
		b.Run(k.name, func(b *testing.B) {
			key, err := k.key()
			if err != nil {
				b.Fatal(err)
			}
			benchHandshakes(b, selfSigned(b, key), k.curves)
		})
	}
}

func selfSigned(b *testing.B, key crypto.Signer) tls.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.bench.test"}, DNSNames: []string{"mail.bench.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func benchHandshakes(b *testing.B, cert tls.Certificate, curves []tls.CurveID) {
	// As internal/transport's receive connector builds it for each
	// handshake.
	serverConf := func() *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	}
	clientConf := &tls.Config{InsecureSkipVerify: true, CurvePreferences: curves}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, serverConf())
				if tc.Handshake() != nil {
					return
				}
				// Wait for the client's close so the server's share of the
				// work (the session tickets it sends) is done.
				var one [1]byte
				tc.Read(one[:])
			}()
		}
	}()
	addr := l.Addr().String()
	b.SetParallelism(16) // enough clients to keep both cores busy
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			tc := tls.Client(c, clientConf)
			if err := tc.Handshake(); err != nil {
				b.Error(err)
				c.Close()
				return
			}
			tc.Close()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
}
