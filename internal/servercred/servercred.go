// Package servercred is the organisation's server credentials: how two
// hubs authenticate each other when one of them has no internal transport
// certificate to present (SPEC S6: the ephemeral fallback of seed 004,
// where Exchange falls back on Kerberos).
//
// Each server has an Ed25519 key pair made at setup: the private key in
// its data directory (server-credential.key, mode 0600), the public key
// in its server object in the directory (ServerCredential). In an SMTP
// session encrypted with X-AnonymousTLS, each side proves it holds its
// server's key by signing the session's TLS exporter value (RFC 5705,
// RFC 9266 channel binding) with a label saying which side it is; the
// other side checks the signature with the public key the directory holds
// for the server the peer claims to be. The exporter value is unique to
// the TLS session, so a proof cannot be replayed in another session, and
// a man in the middle (two TLS sessions) cannot pass one on. See
// docs/DIRECTORY.md for the threat model.
package servercred

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the private key's file in a data directory.
const FileName = "server-credential.key"

// File returns the private key's path in dataDir.
func File(dataDir string) string { return filepath.Join(dataDir, FileName) }

// ExporterLabel is the TLS exporter label the proofs sign (RFC 5705).
const ExporterLabel = "EXPORTER-certrelay-server-credential"

// ExporterLength is how many bytes of exporter value a proof covers.
const ExporterLength = 32

// Sides of a session, part of what each proof signs, so a client's
// proof is never a server's.
const (
	Client = "client"
	Server = "server"
)

// Key is a server's credential.
type Key struct {
	Private ed25519.PrivateKey
	Public  []byte // PKIX DER, as the directory publishes it
}

// New makes a credential.
func New() (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Key{}, err
	}
	return Key{Private: priv, Public: der}, nil
}

// PEM encodes the private key as PKCS#8 PEM.
func (k Key) PEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Load reads a credential from its file.
func Load(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return Key{}, fmt.Errorf("%s holds no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("%s is not an Ed25519 key", path)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return Key{}, err
	}
	return Key{Private: priv, Public: der}, nil
}

// Exposed says why the key file at path may be read by others than its
// owner ("" when it may not): with it, anyone proves to every hub that
// they are this server. The fix is chmod 600.
func Exposed(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("%s has mode %04o: its group or everyone may read this server's organisation credential and be this server to the other hubs; run chmod 600 %s", path, fi.Mode().Perm(), path)
}

// message is what a proof signs: a fixed prefix, the side, the server's
// name and the session's exporter value.
func message(side, server string, exporter []byte) []byte {
	m := []byte("certrelay server credential v1\x00" + side + "\x00" + server + "\x00")
	return append(m, exporter...)
}

// Prove signs, for server, the session whose exporter value is given.
func (k Key) Prove(side, server string, exporter []byte) []byte {
	return ed25519.Sign(k.Private, message(side, server, exporter))
}

// ErrBadProof: the proof does not verify with the key the directory holds.
var ErrBadProof = errors.New("the proof does not verify with the server's credential in the directory")

// Verify checks a proof against the public key (PKIX DER) the directory
// holds for server.
func Verify(public []byte, side, server string, exporter, proof []byte) error {
	if len(public) == 0 {
		return errors.New("the directory holds no server credential for " + server)
	}
	k, err := x509.ParsePKIXPublicKey(public)
	if err != nil {
		return fmt.Errorf("the server credential the directory holds for %s is not a public key: %w", server, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("the server credential the directory holds for %s is not an Ed25519 key", server)
	}
	if !ed25519.Verify(pub, message(side, server, exporter), proof) {
		return ErrBadProof
	}
	return nil
}
