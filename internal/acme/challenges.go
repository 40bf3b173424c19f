package acme

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"certrelay/internal/db"

	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
)

// Challenges answered by the running server (certrelay serve) on its own
// listeners, for an order made by another process (the CLI): the order
// stores each challenge in certrelay.db and logs the change; the server,
// which follows the change log, loads them into its Responder — http-01
// on its HTTP listeners (the metrics endpoint, plain HTTP, and the
// console), tls-alpn-01 on the console's HTTPS listener — and the order
// checks that the server answers before it lets the CA validate.

// ScopeChallenge is the change log's scope of stored challenges.
const ScopeChallenge = "acme-challenge"

// challengeLife bounds how long a stored challenge is answered.
const challengeLife = 10 * time.Minute

const challengeSchema = `CREATE TABLE IF NOT EXISTS acme_challenges (
	token      TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	identifier TEXT NOT NULL,
	key_auth   TEXT NOT NULL,
	expires    TEXT NOT NULL
)`

func (a *Accounts) putChallenge(ctx context.Context, c acme.Challenge) error {
	return db.Tx(ctx, a.db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO acme_challenges(token, kind, identifier, key_auth, expires) VALUES(?, ?, ?, ?, ?)`,
			c.Token, c.Type, strings.ToLower(c.Identifier.Value), c.KeyAuthorization, a.now().Add(challengeLife).UTC().Format(time.RFC3339Nano)); err != nil {
			return err
		}
		return db.LogChange(ctx, a.db, ScopeChallenge, c.Token)
	})
}

func (a *Accounts) deleteChallenge(ctx context.Context, token string) error {
	return db.Tx(ctx, a.db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM acme_challenges WHERE token = ? OR expires < ?`, token, a.now().UTC().Format(time.RFC3339Nano)); err != nil {
			return err
		}
		return db.LogChange(ctx, a.db, ScopeChallenge, token)
	})
}

// Responder answers the challenges stored for the running server. Safe
// for concurrent use.
type Responder struct {
	mu   sync.RWMutex
	http map[string]string           // token → key authorization
	alpn map[string]*tls.Certificate // name → tls-alpn-01 certificate
}

// Load replaces what r answers with the challenges stored now (those not
// expired).
func (a *Accounts) Load(ctx context.Context, r *Responder) error {
	rows, err := db.Q(ctx, a.db).QueryContext(ctx, `SELECT token, kind, identifier, key_auth FROM acme_challenges WHERE expires > ?`, a.now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return err
	}
	defer rows.Close()
	h, al := map[string]string{}, map[string]*tls.Certificate{}
	for rows.Next() {
		var c acme.Challenge
		if err := rows.Scan(&c.Token, &c.Type, &c.Identifier.Value, &c.KeyAuthorization); err != nil {
			return err
		}
		switch c.Type {
		case acme.ChallengeTypeHTTP01:
			h[c.Token] = c.KeyAuthorization
		case acme.ChallengeTypeTLSALPN01:
			c.Identifier.Type = "dns"
			cert, err := acmez.TLSALPN01ChallengeCert(c)
			if err != nil {
				return err
			}
			al[c.Identifier.Value] = cert
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	r.http, r.alpn = h, al
	r.mu.Unlock()
	return nil
}

// Handler answers http-01 requests (GET /.well-known/acme-challenge/TOKEN)
// and hands every other request to next.
func (r *Responder) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		token, ok := strings.CutPrefix(req.URL.Path, "/.well-known/acme-challenge/")
		if !ok {
			next.ServeHTTP(w, req)
			return
		}
		r.mu.RLock()
		ka, found := r.http[token]
		r.mu.RUnlock()
		if !found || req.Method != http.MethodGet {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, ka)
	})
}

// TLSConfig is the configuration of a handshake that asks for the ALPN
// protocol acme-tls/1 and names a pending tls-alpn-01 challenge (RFC
// 8737); nil for any other handshake.
func (r *Responder) TLSConfig(hello *tls.ClientHelloInfo) *tls.Config {
	for _, p := range hello.SupportedProtos {
		if p != acmez.ACMETLS1Protocol {
			continue
		}
		r.mu.RLock()
		cert := r.alpn[strings.ToLower(hello.ServerName)]
		r.mu.RUnlock()
		if cert == nil {
			return nil
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}, NextProtos: []string{acmez.ACMETLS1Protocol}}
	}
	return nil
}

// IsChallenge reports whether a completed handshake was a tls-alpn-01
// validation (the connection carries nothing else and is closed).
func IsChallenge(cs tls.ConnectionState) bool {
	return cs.NegotiatedProtocol == acmez.ACMETLS1Protocol
}

// serverSolver stores a challenge for the running server and checks, on
// the server's listeners (check), that it answers before the CA is told
// to validate.
type serverSolver struct {
	a     *Accounts
	check []string // addresses of the server's listeners for this challenge
}

func (s serverSolver) Present(ctx context.Context, c acme.Challenge) error {
	return s.a.putChallenge(ctx, c)
}

func (s serverSolver) CleanUp(ctx context.Context, c acme.Challenge) error {
	return s.a.deleteChallenge(context.WithoutCancel(ctx), c.Token)
}

// Wait returns once the server answers the challenge on one of its
// listeners (within 10 s), so the CA does not validate before the server
// has read it.
func (s serverSolver) Wait(ctx context.Context, c acme.Challenge) error {
	if len(s.check) == 0 {
		return fmt.Errorf("%s on the running server: it has no listener for it", c.Type)
	}
	var last error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, addr := range s.check {
			if last = answers(ctx, addr, c); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("the running server does not answer the %s challenge on %s (is certrelay serve running on this data directory?): %w", c.Type, strings.Join(s.check, ", "), last)
}

// idPeAcmeIdentifier is the tls-alpn-01 certificate's extension (RFC 8737).
var idPeAcmeIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// answers checks that addr answers challenge c as the CA will ask it.
func answers(ctx context.Context, addr string, c acme.Challenge) error {
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	switch c.Type {
	case acme.ChallengeTypeHTTP01:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+c.HTTP01ResourcePath(), nil)
		if err != nil {
			return err
		}
		req.Host = c.Identifier.Value
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK || string(b) != c.KeyAuthorization {
			return fmt.Errorf("got %s", resp.Status)
		}
		return nil
	case acme.ChallengeTypeTLSALPN01:
		d := tls.Dialer{Config: &tls.Config{ServerName: c.Identifier.Value, NextProtos: []string{acmez.ACMETLS1Protocol}, InsecureSkipVerify: true}} // the challenge certificate is self-signed by design
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		cs := conn.(*tls.Conn).ConnectionState()
		sum := sha256.Sum256([]byte(c.KeyAuthorization))
		want, _ := asn1.Marshal(sum[:])
		for _, e := range cs.PeerCertificates[0].Extensions {
			if e.Id.Equal(idPeAcmeIdentifier) && bytes.Equal(e.Value, want) {
				return nil
			}
		}
		return errors.New("the certificate served is not the challenge's")
	}
	return fmt.Errorf("no check for %s", c.Type)
}
