package testpki

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"
)

// STARTTLSProbe runs one SMTP session against addr — EHLO, STARTTLS, the
// handshake (any certificate accepted), EHLO, QUIT — and returns the
// thumbprint of the certificate the server presented and the moment
// STARTTLS was sent (zero when the session failed before it).
func STARTTLSProbe(addr string) (thumb string, started time.Time, err error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", started, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	expect := func(code string) error {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(line, code) {
				return fmt.Errorf("got %q, want %s", strings.TrimSpace(line), code)
			}
			if len(line) > 3 && line[3] == ' ' {
				return nil
			}
		}
	}
	if err := expect("220"); err != nil {
		return "", started, err
	}
	fmt.Fprintf(c, "EHLO probe.example\r\n")
	if err := expect("250"); err != nil {
		return "", started, err
	}
	started = time.Now()
	fmt.Fprintf(c, "STARTTLS\r\n")
	if err := expect("220"); err != nil {
		return "", started, err
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		return "", started, err
	}
	r = bufio.NewReader(tc)
	fmt.Fprintf(tc, "EHLO probe.example\r\n")
	if err := expect("250"); err != nil {
		return "", started, err
	}
	fmt.Fprintf(tc, "QUIT\r\n")
	if err := expect("221"); err != nil {
		return "", started, err
	}
	sum := sha1.Sum(tc.ConnectionState().PeerCertificates[0].Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:])), started, nil
}
