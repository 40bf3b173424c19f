package admin

import (
	"certrelay/internal/dnsname"
	"context"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"certrelay/internal/directory"
)

// AddAcceptedDomain makes the organisation receive mail for domain.
func (a *Admin) AddAcceptedDomain(ctx context.Context, domain string) (directory.AcceptedDomain, error) {
	const op = "add accepted domain"
	name, err := dnsname.ParseHost(domain)
	if err != nil {
		return directory.AcceptedDomain{}, errorf(op, asError(err).field("DomainName", domain))
	}
	d := string(name)
	var ad directory.AcceptedDomain
	err = a.atomically(ctx, func(ctx context.Context) error {
		list, err := a.Dir.AcceptedDomains(ctx)
		if err != nil {
			return err
		}
		for _, x := range list {
			if x.DomainName == d {
				return failed(Conflict, "%s is an accepted domain already", d).field("DomainName", domain)
			}
		}
		ad = directory.AcceptedDomain{DomainName: d, DomainType: "Authoritative", Default: len(list) == 0}
		return a.Dir.PutAcceptedDomain(ctx, ad)
	})
	if err != nil {
		return directory.AcceptedDomain{}, errorf(op, err)
	}
	return ad, nil
}

// ListAcceptedDomains lists the accepted domains.
func (a *Admin) ListAcceptedDomains(ctx context.Context) ([]directory.AcceptedDomain, error) {
	return a.Dir.AcceptedDomains(ctx)
}

// RemoveAcceptedDomain stops accepting mail for domain. Refused while
// mailboxes of the domain exist.
func (a *Admin) RemoveAcceptedDomain(ctx context.Context, domain string) error {
	const op = "remove accepted domain"
	d := strings.ToLower(strings.TrimSpace(domain))
	if n, err := dnsname.ParseHost(domain); err == nil {
		d = string(n)
	}
	// The mailbox check and the removal are one transaction: no mailbox
	// can be added to the domain in between.
	err := a.atomically(ctx, func(ctx context.Context) error {
		boxes, err := a.Dir.Mailboxes(ctx)
		if err != nil {
			return err
		}
		var held []string
		for _, m := range boxes {
			if strings.HasSuffix(m.Address, "@"+d) {
				held = append(held, m.Address)
			}
		}
		if len(held) > 0 {
			return failed(Conflict, "%s still has mailboxes (%s)", d, strings.Join(held, ", ")).field("DomainName", domain).fix("remove them first with {Remove-Mailbox}")
		}
		return a.Dir.DeleteAcceptedDomain(ctx, d)
	})
	if err != nil {
		return errorf(op, err)
	}
	return nil
}

// SplitAddress checks user@domain and returns it lower-cased.
func SplitAddress(addr string) (local, domain string, err error) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(local, " \t\"<>()[]\\,;:@/") || strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return "", "", invalid("Address", addr, "%q is not a mailbox address: write it as user@domain", addr)
	}
	name, err := dnsname.ParseHost(domain)
	if err != nil {
		return "", "", &Error{Kind: Invalid, Field: "Address", Value: addr, Msg: msgf("address %q", addr), Err: err}
	}
	return local, string(name), nil
}

// AddMailbox creates a mailbox in an accepted domain, with a password for
// AUTH (stored as a bcrypt hash; the password itself is never stored).
func (a *Admin) AddMailbox(ctx context.Context, address, password string) (directory.Mailbox, error) {
	const op = "add mailbox"
	srv, err := a.requireSetup(ctx)
	if err != nil {
		return directory.Mailbox{}, errorf(op, err)
	}
	local, domain, err := SplitAddress(address)
	if err != nil {
		return directory.Mailbox{}, errorf(op, err)
	}
	addr := local + "@" + domain
	if len(password) < 8 {
		return directory.Mailbox{}, errorf(op, invalid("Password", "", "the password is shorter than 8 characters"))
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return directory.Mailbox{}, errorf(op, err)
	}
	m := directory.Mailbox{Address: addr, PasswordHash: string(hash), Server: srv.Name, Maildir: filepath.Join("mail", domain, local)}
	err = a.atomically(ctx, func(ctx context.Context) error {
		if !a.isAccepted(ctx, domain) {
			return failed(NotFound, "%s is not an accepted domain", domain).field("Address", address).fix("add it first with %s", cmd("New-AcceptedDomain", domain))
		}
		if _, err := a.Dir.Mailbox(ctx, addr); err == nil {
			return failed(Conflict, "the mailbox %s exists already", addr).field("Address", address)
		}
		return a.Dir.PutMailbox(ctx, m)
	})
	if err != nil {
		return directory.Mailbox{}, errorf(op, err)
	}
	return m, nil
}

func (a *Admin) isAccepted(ctx context.Context, domain string) bool {
	list, err := a.Dir.AcceptedDomains(ctx)
	if err != nil {
		return false
	}
	for _, d := range list {
		if d.DomainName == domain {
			return true
		}
	}
	return false
}

// ListMailboxes lists the mailboxes (without password hashes).
func (a *Admin) ListMailboxes(ctx context.Context) ([]directory.Mailbox, error) {
	list, err := a.Dir.Mailboxes(ctx)
	for i := range list {
		list[i].PasswordHash = ""
	}
	return list, err
}

// RemoveMailbox deletes a mailbox from the directory; its Maildir stays
// on disk.
func (a *Admin) RemoveMailbox(ctx context.Context, address string) error {
	addr := strings.ToLower(strings.TrimSpace(address))
	if local, domain, err := SplitAddress(address); err == nil {
		addr = local + "@" + domain
	}
	if err := a.Dir.DeleteMailbox(ctx, addr); err != nil {
		return errorf("remove mailbox", err)
	}
	return nil
}
