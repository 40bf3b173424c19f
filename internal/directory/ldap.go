package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAPConfig says how to reach an organisation's LDAP directory.
type LDAPConfig struct {
	// URL is ldap://HOST[:PORT]/BASE-DN or ldaps://HOST[:PORT]/BASE-DN:
	// the server and the entry under which certrelay's tree lives.
	URL      string
	BindDN   string
	Password string
	// CA holds PEM certificates the directory's TLS certificate must
	// chain to. With ldap://, a CA means StartTLS (RFC 4513); with
	// ldaps:// it replaces the system's roots.
	CA []byte
	// Timeout bounds the connection and each request; default
	// DefaultLDAPTimeout.
	Timeout time.Duration
}

// DefaultLDAPTimeout bounds each connection attempt and request to the
// directory: long enough for a loaded server, short enough that a command
// whose directory is down says so quickly.
const DefaultLDAPTimeout = 5 * time.Second

// LDAPURL is a parsed directory URL.
type LDAPURL struct {
	Scheme string // "ldap" or "ldaps"
	Host   string // host:port
	Base   string // the base DN, normalised
}

func (u LDAPURL) String() string { return u.Scheme + "://" + u.Host + "/" + u.Base }

// Cleartext reports whether a directory at u, with the CA given (none:
// no StartTLS), is reached without TLS over a network: the bind password
// crosses it in clear, and anyone on the path can change what the
// directory answers — the servers' certificates direct trust believes.
// Only the loopback is safe so.
func (u LDAPURL) Cleartext(ca []byte) bool {
	if u.Scheme != "ldap" || len(ca) > 0 {
		return false
	}
	host, _, _ := net.SplitHostPort(u.Host)
	if ip := net.ParseIP(host); ip != nil {
		return !ip.IsLoopback()
	}
	return !strings.EqualFold(host, "localhost")
}

// ParseLDAPURL reads ldap://HOST[:PORT]/BASE-DN (or ldaps://). The port
// defaults to 389 (636 for ldaps); the base DN is required.
func ParseLDAPURL(s string) (LDAPURL, error) {
	const form = "write it as ldap://HOST:PORT/BASE-DN, such as ldap://ldap.contoso.com:389/dc=contoso,dc=com (ldaps:// for TLS from the first byte)"
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return LDAPURL{}, fmt.Errorf("%q is not a directory URL: %s", s, form)
	}
	host := u.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		port := "389"
		if u.Scheme == "ldaps" {
			port = "636"
		}
		host = net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	base := strings.TrimPrefix(u.Path, "/")
	if base == "" {
		return LDAPURL{}, fmt.Errorf("%q names no base DN: %s", s, form)
	}
	dn, err := ldap.ParseDN(base)
	if err != nil || len(dn.RDNs) == 0 {
		return LDAPURL{}, fmt.Errorf("%q: the base DN %q is not a DN: %s", s, base, form)
	}
	return LDAPURL{Scheme: u.Scheme, Host: host, Base: dn.String()}, nil
}

// Errors of connecting to a directory (see CheckLDAP), each wrapped with
// what the server said.
var (
	// ErrBind: the directory refused the bind DN or its password.
	ErrBind = errors.New("the directory refused the bind DN or its password")
	// ErrTLS: the TLS handshake with the directory failed (its
	// certificate is not trusted, or it does not speak TLS).
	ErrTLS = errors.New("TLS with the directory failed")
	// ErrNoBase: the base DN does not exist.
	ErrNoBase = errors.New("the base DN does not exist in the directory")
	// ErrNoSchema: certrelay's schema is not loaded.
	ErrNoSchema = errors.New("the directory lacks certrelay's schema")
	// ErrNoSync: the directory does not offer LDAP Sync (RFC 4533).
	ErrNoSync = errors.New("the directory does not offer LDAP Sync (RFC 4533)")
)

// ldapConn is one connection to the directory, bound, shared by every
// request (LDAP multiplexes them); it is dialled again after a failure.
type ldapConn struct {
	cfg LDAPConfig
	url LDAPURL

	mu   sync.Mutex
	conn *ldap.Conn
}

func newLDAPConn(cfg LDAPConfig) (*ldapConn, error) {
	u, err := ParseLDAPURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultLDAPTimeout
	}
	return &ldapConn{cfg: cfg, url: u}, nil
}

// tlsConfig is the TLS configuration for the directory: the CA given, or
// the system's roots; TLS 1.2 at least.
func (c *ldapConn) tlsConfig() (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(c.url.Host)
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if len(c.cfg.CA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.cfg.CA) {
			return nil, errors.New("the directory's CA file holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// dial connects and binds: a new connection, never the shared one.
func (c *ldapConn) dial() (*ldap.Conn, error) {
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: c.cfg.Timeout}
	conn, err := ldap.DialURL(c.url.Scheme+"://"+c.url.Host, ldap.DialWithDialer(d), ldap.DialWithTLSConfig(tc))
	if err != nil {
		var terr *tls.CertificateVerificationError
		if errors.As(err, &terr) || strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:") {
			return nil, fmt.Errorf("%w at %s: %v", ErrTLS, c.url.Host, unwrapLDAP(err))
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, c.url.Host, unwrapLDAP(err))
	}
	conn.SetTimeout(c.cfg.Timeout)
	if c.url.Scheme == "ldap" && len(c.cfg.CA) > 0 {
		if err := conn.StartTLS(tc); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%w: StartTLS with %s: %v", ErrTLS, c.url.Host, unwrapLDAP(err))
		}
	}
	if err := conn.Bind(c.cfg.BindDN, c.cfg.Password); err != nil {
		conn.Close()
		if ldap.IsErrorAnyOf(err, ldap.LDAPResultInvalidCredentials, ldap.LDAPResultInappropriateAuthentication, ldap.ErrorEmptyPassword, ldap.LDAPResultInvalidDNSyntax) {
			return nil, fmt.Errorf("%w (%s)", ErrBind, c.cfg.BindDN)
		}
		if ldap.IsErrorAnyOf(err, ldap.LDAPResultConfidentialityRequired, ldap.LDAPResultStrongAuthRequired) {
			return nil, fmt.Errorf("%w: the directory requires TLS before a bind", ErrTLS)
		}
		return nil, classify(err, "bind")
	}
	return conn, nil
}

// get returns the shared connection, dialling it if needed.
func (c *ldapConn) get() (*ldap.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && !c.conn.IsClosing() {
		return c.conn, nil
	}
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return conn, nil
}

// drop forgets conn after a network failure, so the next request dials.
func (c *ldapConn) drop(conn *ldap.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == conn {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *ldapConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do runs fn on the shared connection; after a network failure it dials
// once more and runs fn again (a connection the server closed while idle
// is not an outage). ctx bounds the whole.
func (c *ldapConn) do(ctx context.Context, fn func(*ldap.Conn) error) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		var conn *ldap.Conn
		if conn, err = c.get(); err != nil {
			return err
		}
		if err = fn(conn); err == nil || !isNetwork(err) {
			return err
		}
		c.drop(conn)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, c.url.Host, unwrapLDAP(err))
}

// isNetwork reports whether err means the connection is gone.
func isNetwork(err error) bool {
	return ldap.IsErrorAnyOf(err, ldap.ErrorNetwork, ldap.LDAPResultUnavailable, ldap.LDAPResultBusy, ldap.LDAPResultServerDown) ||
		errors.Is(err, net.ErrClosed)
}

// classify wraps an LDAP error for callers: ErrUnavailable when the
// directory cannot be reached, ErrNotFound for a missing entry.
func classify(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrNotFound):
		return err
	case isNetwork(err):
		return fmt.Errorf("%s: %w: %v", what, ErrUnavailable, unwrapLDAP(err))
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights):
		return fmt.Errorf("%s: the bind DN may not do this in the directory (insufficient access rights): %v", what, unwrapLDAP(err))
	}
	return fmt.Errorf("%s: %v", what, unwrapLDAP(err))
}

// unwrapLDAP returns the text of an LDAP error without go-ldap's prefix.
func unwrapLDAP(err error) string {
	var le *ldap.Error
	if errors.As(err, &le) && le.Err != nil {
		if le.ResultCode < 200 {
			return fmt.Sprintf("%s (LDAP result %d, %s)", le.Err, le.ResultCode, ldap.LDAPResultCodeMap[le.ResultCode])
		}
		return le.Err.Error()
	}
	return err.Error()
}
