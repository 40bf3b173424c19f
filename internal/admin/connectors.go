package admin

import (
	"certrelay/internal/dnsname"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"certrelay/internal/directory"
	"certrelay/internal/selection"
)

// Permission groups and authentication mechanisms of receive connectors,
// with Exchange's names.
var (
	PermissionGroupNames = []string{"AnonymousUsers", "ExchangeUsers", "ExchangeServers", "Partners"}
	AuthMechanismNames   = []string{"Tls", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer"}
)

// DefaultMaxMessageSize is a new connector's limit (Exchange's default).
const DefaultMaxMessageSize = 35 << 20

// DefaultReceiveBinding is where setup's default connector listens:
// loopback and an unprivileged port, so certrelay runs without root.
const DefaultReceiveBinding = "127.0.0.1:2525"

// ReceiveConnectorOptions describe a new connector or a change; nil fields
// keep the current value (on add: the default stated per field).
type ReceiveConnectorOptions struct {
	Bindings            *[]string // required on add
	Fqdn                *string   // default: the server's FQDN
	PermissionGroups    *[]string // default: AnonymousUsers, ExchangeUsers, ExchangeServers
	AuthMechanism       *[]string // default: Tls, BasicAuthRequireTLS (new connectors offer TLS)
	RequireTLS          *bool
	DomainSecureEnabled *bool   // DS1 for all mail on the connector
	MaxMessageSize      *string // "35MB", "10 MB", "1048576"; default 35 MB
	TlsCertificateName  *string // "<I>issuer<S>subject"; "" clears
	TlsWildcardOneLabel *bool
	Enabled             *bool
	ReceiveLimitOptions // SPEC P1; see connlimits.go
}

// AddReceiveConnector creates a receive connector on this server. The
// check for an existing one and the write are one transaction, so two
// processes adding the same name cannot both succeed.
func (a *Admin) AddReceiveConnector(ctx context.Context, name string, o ReceiveConnectorOptions) (directory.ReceiveConnector, error) {
	const op = "add receive connector"
	var c directory.ReceiveConnector
	err := a.atomically(ctx, func(ctx context.Context) error {
		srv, err := a.requireSetup(ctx)
		if err != nil {
			return err
		}
		name = strings.TrimSpace(name)
		if err := validConnectorName(name); err != nil {
			return err
		}
		if _, err := a.Dir.ReceiveConnector(ctx, srv.Name, name); err == nil {
			return failed(Conflict, "a receive connector named %q exists already on %s", name, srv.Name).field("Name", name).fix("change it with {Set-ReceiveConnector}")
		}
		if o.Bindings == nil {
			return invalid("Bindings", "", "no binding").fix("give the addresses to listen on with {-Bindings} IP:PORT[,IP:PORT…]")
		}
		c = directory.ReceiveConnector{
			Name: name, Server: srv.Name, Identity: srv.Name + `\` + name,
			PermissionGroups: []string{"AnonymousUsers", "ExchangeUsers", "ExchangeServers"},
			AuthMechanism:    []string{"Tls", "BasicAuthRequireTLS"},
			MaxMessageSize:   DefaultMaxMessageSize,
			Enabled:          true,
		}
		c.ApplyLimitDefaults()
		if err := a.applyReceive(ctx, &c, o); err != nil {
			return err
		}
		return a.Dir.PutReceiveConnector(ctx, c)
	})
	if err != nil {
		return directory.ReceiveConnector{}, errorf(op, err)
	}
	return c, nil
}

// SetReceiveConnector changes a receive connector; a running server
// applies the change without restart. Reading the connector and writing
// it back are one transaction: a concurrent change is never lost.
func (a *Admin) SetReceiveConnector(ctx context.Context, name string, o ReceiveConnectorOptions) (directory.ReceiveConnector, error) {
	const op = "set receive connector"
	var c directory.ReceiveConnector
	err := a.atomically(ctx, func(ctx context.Context) error {
		var err error
		if c, err = a.GetReceiveConnector(ctx, name); err != nil {
			return err
		}
		if err := a.applyReceive(ctx, &c, o); err != nil {
			return err
		}
		return a.Dir.PutReceiveConnector(ctx, c)
	})
	if err != nil {
		return directory.ReceiveConnector{}, errorf(op, err)
	}
	return c, nil
}

// GetReceiveConnector returns one of this server's receive connectors.
func (a *Admin) GetReceiveConnector(ctx context.Context, name string) (directory.ReceiveConnector, error) {
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return directory.ReceiveConnector{}, err
	}
	c, err := a.Dir.ReceiveConnector(ctx, srv.Name, name)
	if errors.Is(err, directory.ErrNotFound) {
		return c, asError(err).field("Identity", name).fix("list them with {Get-ReceiveConnector}")
	}
	return c, err
}

// ListReceiveConnectors lists this server's receive connectors.
func (a *Admin) ListReceiveConnectors(ctx context.Context) ([]directory.ReceiveConnector, error) {
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return nil, err
	}
	return a.Dir.ReceiveConnectors(ctx, srv.Name)
}

// RemoveReceiveConnector deletes a receive connector.
func (a *Admin) RemoveReceiveConnector(ctx context.Context, name string) error {
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return err
	}
	if err := a.Dir.DeleteReceiveConnector(ctx, srv.Name, name); err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			err = asError(err).field("Identity", name).fix("list them with {Get-ReceiveConnector}")
		}
		return errorf("remove receive connector", err)
	}
	return nil
}

// applyReceive validates o and applies it to c; c is unchanged on error.
func (a *Admin) applyReceive(ctx context.Context, c *directory.ReceiveConnector, o ReceiveConnectorOptions) error {
	n := *c
	if o.Bindings != nil {
		b, err := parseBindings(*o.Bindings)
		if err != nil {
			return err
		}
		n.Bindings = b
	}
	if o.Fqdn != nil {
		f, err := validFqdn(*o.Fqdn, "Fqdn")
		if err != nil {
			return err
		}
		n.Fqdn = f
	}
	if o.PermissionGroups != nil {
		g, err := canonicalList(*o.PermissionGroups, PermissionGroupNames, "permission group", "PermissionGroups")
		if err != nil {
			return err
		}
		n.PermissionGroups = g
	}
	if o.AuthMechanism != nil {
		m, err := canonicalList(*o.AuthMechanism, AuthMechanismNames, "auth mechanism", "AuthMechanism")
		if err != nil {
			return err
		}
		n.AuthMechanism = m
	}
	if o.RequireTLS != nil {
		n.RequireTLS = *o.RequireTLS
	}
	if o.DomainSecureEnabled != nil {
		n.DomainSecureEnabled = *o.DomainSecureEnabled
	}
	if o.MaxMessageSize != nil {
		sz, err := ParseSize(*o.MaxMessageSize)
		if err != nil {
			return asError(err).field("MaxMessageSize", *o.MaxMessageSize)
		}
		n.MaxMessageSize = sz
	}
	if o.TlsCertificateName != nil {
		if *o.TlsCertificateName != "" {
			if _, _, err := selection.ParseTLSCertificateName(*o.TlsCertificateName); err != nil {
				return invalidValue("TlsCertificateName", *o.TlsCertificateName, err)
			}
		}
		n.TlsCertificateName = *o.TlsCertificateName
	}
	if o.TlsWildcardOneLabel != nil {
		n.TlsWildcardOneLabel = *o.TlsWildcardOneLabel
	}
	if o.Enabled != nil {
		n.Enabled = *o.Enabled
	}
	if err := applyLimits(&n, o.ReceiveLimitOptions); err != nil {
		return err
	}
	if n.DomainSecureEnabled && !contains(n.AuthMechanism, "Tls") {
		return invalid("DomainSecureEnabled", "true", "{-DomainSecureEnabled} needs the Tls auth mechanism: partners authenticate with their certificate over STARTTLS").fix("add Tls to {-AuthMechanism}")
	}
	if n.RequireTLS && !contains(n.AuthMechanism, "Tls") {
		return invalid("RequireTLS", "true", "{-RequireTLS} needs the Tls auth mechanism").fix("add Tls to {-AuthMechanism}")
	}
	// Two connectors of one server cannot listen on the same address.
	others, err := a.Dir.ReceiveConnectors(ctx, n.Server)
	if err != nil {
		return err
	}
	for _, other := range others {
		if strings.EqualFold(other.Name, n.Name) {
			continue
		}
		for _, b := range n.Bindings {
			for _, ob := range other.Bindings {
				if bindingsOverlap(b, ob) {
					return failed(Conflict, "binding %s is taken by receive connector %q", b, other.Name).field("Bindings", b).fix("choose another address or port")
				}
			}
		}
	}
	*c = n
	return nil
}

func validConnectorName(name string) error {
	if name == "" || len(name) > 64 {
		return invalid("Name", name, "a connector name is 1 to 64 characters")
	}
	if strings.ContainsAny(name, `\/"`) || strings.IndexFunc(name, func(r rune) bool { return r < 0x20 }) >= 0 {
		return invalid("Name", name, "connector name %q: backslash, slash, quotes and control characters are not allowed", name)
	}
	return nil
}

// validFqdn checks the host name of parameter param ("" clears it).
func validFqdn(f, param string) (string, error) {
	if strings.TrimSpace(f) == "" {
		return "", nil
	}
	if strings.Contains(f, "*") {
		return "", invalid(param, f, "{-%s} %q: a connector FQDN is a host name, not a wildcard", markup(param), f)
	}
	name, err := dnsname.ParseHost(f)
	if err != nil {
		return "", invalidValue(param, f, err)
	}
	return string(name), nil
}

// invalidValue is a value of parameter param that err refuses:
// "{-Param}: err".
func invalidValue(param, value string, err error) *Error {
	return &Error{Kind: Invalid, Field: param, Value: value, Msg: msgf("{-%s}", markup(param)), Err: err}
}

// parseBindings checks "ip:port" addresses.
func parseBindings(list []string) ([]string, error) {
	out, err := parseBindingList(list)
	if err != nil {
		return nil, invalidValue("Bindings", strings.Join(list, ","), err)
	}
	return out, nil
}

func parseBindingList(list []string) ([]string, error) {
	var out []string
	for _, b := range list {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			return nil, fmt.Errorf("binding %q: write it as IP:PORT, such as 127.0.0.1:2525 or [::1]:2525", b)
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("binding %q: %q is not an IP address (bindings take addresses, not names; 0.0.0.0 for all)", b, host)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("binding %q: the port must be 1 to 65535", b)
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	if len(out) == 0 {
		return nil, errors.New("no binding: give at least one IP:PORT")
	}
	return out, nil
}

func bindingsOverlap(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb {
		return false
	}
	aa, _ := netip.ParseAddr(ha)
	ab, _ := netip.ParseAddr(hb)
	return aa == ab || aa.IsUnspecified() || ab.IsUnspecified()
}

// canonicalList maps names case-insensitively to their canonical
// spelling; param is the parameter that gave them.
func canonicalList(in []string, known []string, what, param string) ([]string, error) {
	var out []string
	for _, v := range in {
		for _, p := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			found := ""
			for _, k := range known {
				if strings.EqualFold(k, p) {
					found = k
				}
			}
			if p == "None" || p == "none" {
				continue
			}
			if found == "" {
				return nil, invalid(param, p, "unknown %s %q: use %s", what, p, strings.Join(known, ", "))
			}
			if !contains(out, found) {
				out = append(out, found)
			}
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ParseSize reads a message size: "35MB", "10 MB", "512KB", "1048576" (bytes).
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (2<<30)/mult {
		return 0, invalid("MaxMessageSize", s, "message size %q: write it as a number of bytes, KB, MB or GB, up to 2 GB (such as 35MB)", s)
	}
	return n * mult, nil
}
