package admin

import (
	"certrelay/internal/dnsname"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"certrelay/internal/directory"
	"certrelay/internal/selection"
)

// SendConnectorOptions describe a new send connector or a change; nil
// fields keep the current value (on add: the default stated per field).
type SendConnectorOptions struct {
	AddressSpaces *[]string // "smtp:partner.test;10", "partner.test", "*"; required on add
	SmartHosts    *[]string // host:port or host (port from Port); none: MX lookup
	Fqdn          *string   // EHLO name and certificate selection; default: the server's FQDN
	RequireTLS    *bool     // default false: opportunistic TLS
	// DomainSecureEnabled applies domain security (DS1) to every domain
	// the connector routes; default false.
	DomainSecureEnabled *bool
	TlsCertificateName  *string   // "<I>issuer<S>subject" (S4a)
	SourceServers       *[]string // servers that may use it; default: this server
	Port                *int      // default 25
	MaxMessageSize      *string   // default 35 MB
	Enabled             *bool
}

// AddSendConnector creates a send connector (organisation-wide), in one
// transaction with the check that the name is free.
func (a *Admin) AddSendConnector(ctx context.Context, name string, o SendConnectorOptions) (directory.SendConnector, error) {
	const op = "add send connector"
	var c directory.SendConnector
	err := a.atomically(ctx, func(ctx context.Context) error {
		srv, err := a.requireSetup(ctx)
		if err != nil {
			return err
		}
		name = strings.TrimSpace(name)
		if err := validConnectorName(name); err != nil {
			return err
		}
		if _, err := a.Dir.SendConnector(ctx, name); err == nil {
			return failed(Conflict, "a send connector named %q exists already", name).field("Name", name).fix("change it with {Set-SendConnector}")
		}
		if o.AddressSpaces == nil {
			return invalid("AddressSpaces", "", "no address space").fix("give the domains it routes with {-AddressSpaces} 'smtp:DOMAIN;COST' (repeat; * for every domain)")
		}
		c = directory.SendConnector{Name: name, Port: 25, MaxMessageSize: DefaultMaxMessageSize, Enabled: true, SourceTransportServers: []string{srv.Name}}
		if err := applySend(&c, o); err != nil {
			return err
		}
		return a.Dir.PutSendConnector(ctx, c)
	})
	if err != nil {
		return directory.SendConnector{}, errorf(op, err)
	}
	return c, nil
}

// SetSendConnector changes a send connector; reading it and writing it
// back are one transaction, so a concurrent change is never lost.
func (a *Admin) SetSendConnector(ctx context.Context, name string, o SendConnectorOptions) (directory.SendConnector, error) {
	const op = "set send connector"
	var c directory.SendConnector
	err := a.atomically(ctx, func(ctx context.Context) error {
		var err error
		if c, err = a.GetSendConnector(ctx, name); err != nil {
			return err
		}
		if err := applySend(&c, o); err != nil {
			return err
		}
		return a.Dir.PutSendConnector(ctx, c)
	})
	if err != nil {
		return directory.SendConnector{}, errorf(op, err)
	}
	return c, nil
}

// GetSendConnector returns a send connector.
func (a *Admin) GetSendConnector(ctx context.Context, name string) (directory.SendConnector, error) {
	c, err := a.Dir.SendConnector(ctx, name)
	if errors.Is(err, directory.ErrNotFound) {
		return c, asError(err).field("Identity", name).fix("list them with {Get-SendConnector}")
	}
	return c, err
}

// ListSendConnectors lists the send connectors.
func (a *Admin) ListSendConnectors(ctx context.Context) ([]directory.SendConnector, error) {
	return a.Dir.SendConnectors(ctx)
}

// RemoveSendConnector deletes a send connector.
func (a *Admin) RemoveSendConnector(ctx context.Context, name string) error {
	if err := a.Dir.DeleteSendConnector(ctx, name); err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			err = asError(err).field("Identity", name).fix("list them with {Get-SendConnector}")
		}
		return errorf("remove send connector", err)
	}
	return nil
}

func applySend(c *directory.SendConnector, o SendConnectorOptions) error {
	n := *c
	if o.AddressSpaces != nil {
		var spaces []directory.AddressSpace
		for _, s := range *o.AddressSpaces {
			as, err := ParseAddressSpace(s)
			if err != nil {
				return err
			}
			spaces = append(spaces, as)
		}
		if len(spaces) == 0 {
			return invalid("AddressSpaces", "", "a send connector needs at least one address space")
		}
		n.AddressSpaces = spaces
	}
	if o.Port != nil {
		if *o.Port < 1 || *o.Port > 65535 {
			return invalid("Port", fmt.Sprint(*o.Port), "{-Port} %d: the port must be 1 to 65535", *o.Port)
		}
		n.Port = *o.Port
	}
	if o.SmartHosts != nil {
		var hosts []string
		for _, h := range *o.SmartHosts {
			h = strings.TrimSpace(h)
			if h == "" {
				continue
			}
			host, port, err := net.SplitHostPort(h)
			if err != nil {
				host, port = strings.Trim(h, "[]"), ""
			}
			if net.ParseIP(host) == nil {
				if _, err := dnsname.ParseHost(host); err != nil {
					return invalid("SmartHosts", h, "smart host %q: give a host name or an IP address, with an optional :port (%v)", h, err)
				}
			}
			if port != "" {
				if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
					return invalid("SmartHosts", h, "smart host %q: the port must be 1 to 65535", h)
				}
				hosts = append(hosts, net.JoinHostPort(host, port))
			} else {
				hosts = append(hosts, host)
			}
		}
		n.SmartHosts = hosts
	}
	if o.Fqdn != nil {
		f, err := validFqdn(*o.Fqdn, "Fqdn")
		if err != nil {
			return err
		}
		n.Fqdn = f
	}
	if o.RequireTLS != nil {
		n.RequireTLS = *o.RequireTLS
	}
	if o.DomainSecureEnabled != nil {
		n.DomainSecureEnabled = *o.DomainSecureEnabled
	}
	if o.TlsCertificateName != nil {
		if *o.TlsCertificateName != "" {
			if _, _, err := selection.ParseTLSCertificateName(*o.TlsCertificateName); err != nil {
				return invalidValue("TlsCertificateName", *o.TlsCertificateName, err)
			}
		}
		n.TlsCertificateName = *o.TlsCertificateName
	}
	if o.SourceServers != nil {
		n.SourceTransportServers = nil
		for _, s := range *o.SourceServers {
			if s = strings.TrimSpace(s); s != "" {
				n.SourceTransportServers = append(n.SourceTransportServers, strings.ToLower(s))
			}
		}
	}
	if o.MaxMessageSize != nil {
		sz, err := ParseSize(*o.MaxMessageSize)
		if err != nil {
			return err
		}
		n.MaxMessageSize = sz
	}
	if o.Enabled != nil {
		n.Enabled = *o.Enabled
	}
	*c = n
	return nil
}

// ParseAddressSpace reads "smtp:partner.test;10", "partner.test;5",
// "*.partner.test" or "*" (cost 1 when not given).
func ParseAddressSpace(s string) (directory.AddressSpace, error) {
	t := strings.TrimSpace(s)
	if typ, rest, ok := strings.Cut(t, ":"); ok {
		if !strings.EqualFold(typ, "smtp") {
			return directory.AddressSpace{}, invalid("AddressSpaces", s, "address space %q: only smtp address spaces exist here", s)
		}
		t = rest
	}
	domain, costText, hasCost := strings.Cut(t, ";")
	domain = strings.ToLower(strings.TrimSpace(domain))
	cost := 1
	if hasCost {
		c, err := strconv.Atoi(strings.TrimSpace(costText))
		if err != nil || c < 1 || c > 100 {
			return directory.AddressSpace{}, invalid("AddressSpaces", s, "address space %q: the cost must be 1 to 100", s)
		}
		cost = c
	}
	if domain != "*" {
		name, err := dnsname.Parse(domain)
		if err != nil {
			return directory.AddressSpace{}, invalid("AddressSpaces", s, "address space %q: %v", s, err)
		}
		domain = string(name)
	}
	return directory.AddressSpace{Domain: domain, Cost: cost}, nil
}
