package smtp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
)

// AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN
// (draft-murchison-sasl-login) mechanisms. Credentials are never logged,
// and the lines that carry them are not passed to logCommand.

var (
	errAuthCancelled = errors.New("smtp: authentication cancelled")
	errAuthSyntax    = errors.New("smtp: bad authentication data")
)

func (c *conn) cmdAuth(arg []byte) {
	if c.st.AuthMechanism != "" {
		c.fail(503, "5.5.1", "Already authenticated")
		return
	}
	if c.st.Hello == "" || !c.st.Extended {
		c.fail(503, "5.5.1", "Send EHLO first")
		return
	}
	if c.st.InTransaction {
		c.fail(503, "5.5.1", "AUTH not permitted during a mail transaction")
		return
	}
	caps := c.capabilities()
	if len(caps.AuthMechanisms) == 0 {
		c.fail(502, "5.5.1", "AUTH not available")
		return
	}
	if !caps.authOffered(&c.st) {
		c.fail(538, "5.7.11", "Encryption required for requested authentication mechanism")
		return
	}
	mechB, initial := splitVerb(arg)
	if len(mechB) == 0 {
		c.fail(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
		return
	}
	var mech string
	for _, m := range caps.AuthMechanisms {
		if equalFold(mechB, m) {
			mech = m
		}
	}
	if mech == "" {
		c.fail(504, "5.5.4", "Unrecognized authentication type")
		return
	}

	var identity, username, password string
	var err error
	switch mech {
	case "PLAIN":
		identity, username, password, err = c.authPlain(initial)
	case "LOGIN":
		username, password, err = c.authLogin(initial)
	}
	switch {
	case err == errAuthCancelled:
		c.fail(501, "5.7.0", "Authentication cancelled")
		return
	case err == errAuthSyntax:
		c.fail(501, "5.5.2", "Cannot decode authentication data")
		return
	case err == errLineTooLong:
		c.fail(500, "5.5.2", "Line too long")
		return
	case err != nil:
		// The connection failed; the main loop will see it again.
		c.closing = true
		c.closeHard = true
		return
	}

	if err := c.sess.Auth(c.st, mech, identity, username, password); err != nil {
		var re *ReplyError
		// Wrong credentials count towards MaxErrors: brute force costs
		// a connection every few tries.
		if errors.As(err, &re) && re.Permanent() && c.countError() {
			return
		}
		c.replyError(err, 454, "4.7.0", "Temporary authentication failure")
		return
	}
	c.st.AuthMechanism = mech
	c.st.AuthUsername = username
	c.st.AuthIdentity = identity
	c.writeReply(235, "2.7.0", "Authentication successful")
}

// authResponse returns the client's response: the initial response if
// given, else the answer to a 334 challenge. "=" is an empty initial
// response (RFC 4954 4).
func (c *conn) authResponse(initial []byte, challenge string) ([]byte, error) {
	var line []byte
	if initial != nil {
		if string(initial) == "=" {
			return []byte{}, nil
		}
		line = initial
	} else {
		c.writeReply(334, "", challenge)
		c.setReadDeadline()
		var err error
		if line, err = c.readLine(); err != nil {
			return nil, err
		}
	}
	if string(line) == "*" {
		return nil, errAuthCancelled
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
	n, err := base64.StdEncoding.Decode(out, line)
	if err != nil {
		return nil, errAuthSyntax
	}
	return out[:n], nil
}

// authPlain runs PLAIN: one message "authzid NUL authcid NUL passwd".
func (c *conn) authPlain(initial []byte) (identity, username, password string, err error) {
	resp, err := c.authResponse(initial, "")
	if err != nil {
		return "", "", "", err
	}
	parts := bytes.Split(resp, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", "", "", errAuthSyntax
	}
	identity, username, password = string(parts[0]), string(parts[1]), string(parts[2])
	clear(resp) // keep the password out of the buffer we leave behind
	return identity, username, password, nil
}

// authLogin runs LOGIN: user name, then password, each base64 in reply to
// a challenge ("Username:", "Password:"); the user name may come as the
// initial response.
func (c *conn) authLogin(initial []byte) (username, password string, err error) {
	user, err := c.authResponse(initial, "VXNlcm5hbWU6")
	if err != nil {
		return "", "", err
	}
	pass, err := c.authResponse(nil, "UGFzc3dvcmQ6")
	if err != nil {
		return "", "", err
	}
	if len(user) == 0 || strings.ContainsRune(string(user), 0) {
		return "", "", errAuthSyntax
	}
	password = string(pass)
	clear(pass)
	return string(user), password, nil
}
