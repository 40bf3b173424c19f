package smtp

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// X-EXPS: how the servers of one organisation authenticate each other
// after X-ANONYMOUSTLS when a certificate alone cannot (Exchange's verb,
// which carries Kerberos there; certrelay's mechanism is its own,
// see internal/servercred). The exchange is one round trip, initial
// response and answer both base64:
//
//	C: X-EXPS MECHANISM RESPONSE
//	S: 235 2.7.0 ANSWER
//
// so each side proves itself to the other. It is offered only in a session
// that started TLS with X-ANONYMOUSTLS, by Sessions that implement
// ServerAuthenticator and list mechanisms in Capabilities.ServerAuth.

// ServerAuthenticator is implemented by a Session that authenticates
// organisation servers with X-EXPS.
type ServerAuthenticator interface {
	// ServerAuth checks the client's response for mech. On success it
	// returns the identity authenticated (st.AuthUsername from then on)
	// and the answer to send with 235; an error is sent as a reply
	// (default 535 5.7.8) and counts as a failed authentication.
	ServerAuth(st State, mech string, response []byte) (identity string, answer []byte, err error)
}

// ServerAuthMechanism is the AuthMechanism a session authenticated by
// X-EXPS reports: "X-EXPS " and the mechanism.
const ServerAuthMechanism = "X-EXPS "

func (c *conn) cmdServerAuth(arg []byte) {
	caps := c.capabilities()
	sa, ok := c.sess.(ServerAuthenticator)
	if !ok || len(caps.ServerAuth) == 0 || !c.st.AnonymousTLS {
		c.fail(502, "5.5.1", "X-EXPS not available")
		return
	}
	if c.st.AuthMechanism != "" {
		c.fail(503, "5.5.1", "Already authenticated")
		return
	}
	if c.st.Hello == "" || !c.st.Extended || c.st.InTransaction {
		c.fail(503, "5.5.1", "Send EHLO first, and X-EXPS before MAIL")
		return
	}
	mechB, resp := splitVerb(arg)
	mech := ""
	for _, m := range caps.ServerAuth {
		if equalFold(mechB, m) {
			mech = m
		}
	}
	if mech == "" {
		c.fail(504, "5.5.4", "Unrecognized authentication type")
		return
	}
	data, err := base64.StdEncoding.DecodeString(string(resp))
	if err != nil || len(resp) == 0 {
		c.fail(501, "5.5.2", "Cannot decode authentication data")
		return
	}
	identity, answer, err := sa.ServerAuth(c.st, mech, data)
	if err != nil {
		var re *ReplyError
		if (!errors.As(err, &re) || re.Permanent()) && c.countError() {
			return
		}
		c.replyError(err, 535, "5.7.8", "Authentication credentials invalid")
		return
	}
	c.st.AuthMechanism = ServerAuthMechanism + mech
	c.st.AuthUsername = identity
	c.capsValid = false
	c.writeReply(235, "2.7.0", base64.StdEncoding.EncodeToString(answer))
}

// ServerAuthMechanisms returns the X-EXPS mechanisms the server offers
// (after X-ANONYMOUSTLS), nil when none.
func (c *Client) ServerAuthMechanisms() []string {
	v, ok := c.ext["X-EXPS"]
	if !ok {
		return nil
	}
	return strings.Fields(v)
}

// ServerAuth runs X-EXPS mech with response and returns the server's
// answer. It needs TLS started with AnonymousTLS.
func (c *Client) ServerAuth(ctx context.Context, mech string, response []byte) ([]byte, error) {
	if c.tlsState == nil || !c.anonTLS {
		return nil, errors.New("smtp: X-EXPS needs X-ANONYMOUSTLS first")
	}
	var answer []byte
	err := c.exchange(ctx, "X-EXPS", c.commandTimeout(), func() error {
		r, err := c.cmd(235, "X-EXPS "+mech+" "+base64.StdEncoding.EncodeToString(response))
		if err != nil {
			return err
		}
		if len(r.lines) == 0 {
			return errors.New("X-EXPS: no answer")
		}
		if answer, err = base64.StdEncoding.DecodeString(strings.TrimSpace(r.lines[0])); err != nil {
			return fmt.Errorf("X-EXPS: the answer is not base64: %w", err)
		}
		return nil
	})
	return answer, err
}
