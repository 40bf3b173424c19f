// Package probe connects to a TLS listener as a client would — SMTP
// STARTTLS (RFC 3207), POP3 STLS (RFC 2595), IMAP4 STARTTLS (RFC 3501
// §6.2.1) or TLS from the first byte (RFC 8314, HTTPS) — with a server
// name (SNI), and reports the certificate it was served. certrelay's
// self-probe (SPEC L2) compares that with what selection intends.
//
// Written here rather than with net/smtp or an IMAP client: the probe
// needs only the few lines before the handshake, with a deadline on each,
// and the certificate whatever it is (the probe judges it; it does not
// trust it).
package probe

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Modes: how TLS starts.
const (
	SMTP = "smtp" // EHLO, STARTTLS
	POP3 = "pop3" // STLS
	IMAP = "imap" // STARTTLS
	TLS  = "tls"  // TLS from the first byte
)

// Target is one listener and name to probe.
type Target struct {
	Addr       string // host:port; an unspecified host (0.0.0.0, ::, "") is probed on loopback
	Mode       string
	ServerName string // SNI, and the name a client would ask for
}

// Result is what one probe saw.
type Result struct {
	Thumbprint string        // of the certificate served, "" when none was
	Took       time.Duration // connect to handshake done
	Err        error
}

// Timeout bounds one probe.
const Timeout = 10 * time.Second

// Run probes t. The certificate served is reported, never verified.
func Run(ctx context.Context, t Target) Result {
	start := time.Now()
	r := Result{}
	r.Thumbprint, r.Err = run(ctx, t)
	r.Took = time.Since(start)
	return r
}

// Dialable turns a listener's address into one a client on this machine
// can connect to.
func Dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// local reports whether addr's host is an address of this machine: a
// self-probe never sends traffic anywhere else (a binding on an address
// the machine does not have cannot be listening here anyway).
func local(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func run(ctx context.Context, t Target) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	if !local(Dialable(t.Addr)) {
		return "", fmt.Errorf("%s is not an address of this machine: not probed", t.Addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", Dialable(t.Addr))
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	r := bufio.NewReader(c)
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		if len(s) > 512 {
			s = s[:512]
		}
		return strings.TrimRight(s, "\r\n"), err
	}
	// reply reads an SMTP reply (multi-line) and checks its code.
	reply := func(code string) error {
		for {
			s, err := line()
			if err != nil {
				return err
			}
			if !strings.HasPrefix(s, code) {
				return fmt.Errorf("the server answered %q, not %s", s, code)
			}
			if len(s) < 4 || s[3] != '-' {
				return nil
			}
		}
	}
	send := func(s string) error { _, err := c.Write([]byte(s + "\r\n")); return err }
	switch t.Mode {
	case SMTP:
		if err := reply("220"); err != nil {
			return "", fmt.Errorf("greeting: %w", err)
		}
		if err := send("EHLO certrelay-probe.invalid"); err != nil {
			return "", err
		}
		if err := reply("250"); err != nil {
			return "", fmt.Errorf("EHLO: %w", err)
		}
		if err := send("STARTTLS"); err != nil {
			return "", err
		}
		if err := reply("220"); err != nil {
			return "", fmt.Errorf("STARTTLS: %w", err)
		}
	case POP3:
		if s, err := line(); err != nil || !strings.HasPrefix(s, "+OK") {
			return "", fmt.Errorf("greeting %q: %v", s, err)
		}
		if err := send("STLS"); err != nil {
			return "", err
		}
		if s, err := line(); err != nil || !strings.HasPrefix(s, "+OK") {
			return "", fmt.Errorf("STLS answered %q: %v", s, err)
		}
	case IMAP:
		if s, err := line(); err != nil || !strings.HasPrefix(s, "* OK") {
			return "", fmt.Errorf("greeting %q: %v", s, err)
		}
		if err := send("p1 STARTTLS"); err != nil {
			return "", err
		}
		for {
			s, err := line()
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(s, "p1 ") {
				if !strings.HasPrefix(s, "p1 OK") {
					return "", fmt.Errorf("STARTTLS answered %q", s)
				}
				break
			}
		}
	case TLS:
	default:
		return "", fmt.Errorf("unknown probe mode %q", t.Mode)
	}
	if r.Buffered() > 0 {
		return "", errors.New("the server sent data before the handshake")
	}
	// The probe looks at what is served; it decides nothing on trust.
	tc := tls.Client(c, &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) // #nosec: the certificate is compared, not trusted
	if err := tc.HandshakeContext(ctx); err != nil {
		return "", fmt.Errorf("TLS handshake: %w", err)
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", errors.New("no certificate served")
	}
	sum := sha1.Sum(certs[0].Raw)
	if t.Mode == SMTP {
		_, _ = tc.Write([]byte("QUIT\r\n"))
	}
	return strings.ToUpper(hex.EncodeToString(sum[:])), nil
}
