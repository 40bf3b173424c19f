package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
)

// serverAuthHandler's sessions implement ServerAuthenticator: the
// response must be "hub1:" followed by the session's exporter value.
type serverAuthHandler struct{ *fakeHandler }

func (h serverAuthHandler) NewSession(ctx context.Context, c ConnInfo) (Session, error) {
	return &serverAuthSession{&fakeSession{h: h.fakeHandler, ctx: ctx}}, nil
}

type serverAuthSession struct{ *fakeSession }

func (s *serverAuthSession) ServerAuth(st State, mech string, resp []byte) (string, []byte, error) {
	exp, err := st.TLS.ExportKeyingMaterial("EXPORTER-test", nil, 16)
	if err != nil {
		return "", nil, err
	}
	if !bytes.Equal(resp, append([]byte("hub1:"), exp...)) {
		return "", nil, ErrAuthFailed
	}
	return "hub1", append([]byte("hub2:"), exp...), nil
}

func serverAuthCaps(st State) Capabilities {
	c := allCaps(st)
	c.ServerAuth = []string{"TEST"}
	return c
}

// TestServerAuth: X-EXPS is offered only after X-ANONYMOUSTLS, proves
// both sides in one round trip bound to the TLS session, and a wrong
// proof is refused and counted.
func TestServerAuth(t *testing.T) {
	ctx := context.Background()
	p := getPKI(t)
	cfg := &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{p.client}}
	t.Run("ok/after-anonymous-tls", func(t *testing.T) {
		h := serverAuthHandler{&fakeHandler{caps: serverAuthCaps, tlsConfig: p.serverConfig()}}
		c := clientAgainstServer(t, newTestServer(h))
		if c.ServerAuthMechanisms() != nil {
			t.Errorf("X-EXPS offered before TLS: %v", c.Extensions())
		}
		if err := c.AnonymousTLS(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if m := c.ServerAuthMechanisms(); len(m) != 1 || m[0] != "TEST" {
			t.Fatalf("X-EXPS mechanisms after X-ANONYMOUSTLS: %v", m)
		}
		cs, _ := c.TLSConnectionState()
		exp, _ := cs.ExportKeyingMaterial("EXPORTER-test", nil, 16)
		answer, err := c.ServerAuth(ctx, "TEST", append([]byte("hub1:"), exp...))
		if err != nil || !bytes.Equal(answer, append([]byte("hub2:"), exp...)) {
			t.Fatalf("ServerAuth = %q, %v", answer, err)
		}
		if _, err := c.SendMail(ctx, "a@example.test", []string{"b@example.test"}, strings.NewReader("x"), nil); err != nil {
			t.Fatal(err)
		}
		_, d, _ := h.snapshot()
		if len(d) != 1 || d[0].st.AuthMechanism != "X-EXPS TEST" || d[0].st.AuthUsername != "hub1" {
			t.Fatalf("the session's authentication: %+v", d)
		}
	})
	t.Run("fail/wrong-proof", func(t *testing.T) {
		h := serverAuthHandler{&fakeHandler{caps: serverAuthCaps, tlsConfig: p.serverConfig()}}
		c := clientAgainstServer(t, newTestServer(h))
		if err := c.AnonymousTLS(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		_, err := c.ServerAuth(ctx, "TEST", []byte("hub1:a proof from another session"))
		var re *ReplyError
		if !errors.As(err, &re) || re.Code != 535 {
			t.Fatalf("wrong proof: %v, want 535", err)
		}
	})
	t.Run("fail/after-starttls", func(t *testing.T) {
		h := serverAuthHandler{&fakeHandler{caps: serverAuthCaps, tlsConfig: p.serverConfig()}}
		c := clientAgainstServer(t, newTestServer(h))
		if err := c.StartTLS(ctx, &tls.Config{RootCAs: p.roots}); err != nil {
			t.Fatal(err)
		}
		if c.ServerAuthMechanisms() != nil {
			t.Errorf("X-EXPS offered after STARTTLS")
		}
		if _, err := c.ServerAuth(ctx, "TEST", []byte("x")); err == nil {
			t.Errorf("X-EXPS after STARTTLS accepted")
		}
	})
}
