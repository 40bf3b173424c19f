package directory

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"
)

// LDAP is an organisation's directory on an LDAP server (OpenLDAP with
// certrelay's schema), read and written directly: every call is one or
// two requests, bounded by the configuration's timeout. Objects that do
// not decode (edited by hand into something certrelay cannot use) are
// left out of lists and reported by Problems. Safe for concurrent use.
type LDAP struct {
	c    *ldapConn
	base string

	mu       sync.Mutex
	problems map[string]Problem // by DN
}

var _ Directory = (*LDAP)(nil)

// Problem is an object of the directory certrelay cannot use, and why.
type Problem struct {
	DN   string
	Kind string // server, receiveconnector, …
	Err  error
}

func (p Problem) Error() string { return fmt.Sprintf("%s %s: %v", p.Kind, p.DN, p.Err) }

// OpenLDAP returns a directory on the server cfg names. It does not
// connect until the first request; CheckLDAP tells whether it can.
func OpenLDAP(cfg LDAPConfig) (*LDAP, error) {
	c, err := newLDAPConn(cfg)
	if err != nil {
		return nil, err
	}
	return &LDAP{c: c, base: c.url.Base, problems: map[string]Problem{}}, nil
}

// Close ends the connection.
func (l *LDAP) Close() { l.c.close() }

// URL returns the directory's URL.
func (l *LDAP) URL() LDAPURL { return l.c.url }

// Problems returns the objects the last lists left out, by DN.
func (l *LDAP) Problems() []Problem {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Problem, 0, len(l.problems))
	for _, p := range l.problems {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DN < out[j].DN })
	return out
}

func (l *LDAP) noteProblems(kind string, ps []Problem) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for dn, p := range l.problems {
		if p.Kind == kind {
			delete(l.problems, dn)
		}
	}
	for _, p := range ps {
		l.problems[p.DN] = p
	}
}

// Check tells whether certrelay can use the directory: it connects and
// binds (ErrUnavailable, ErrTLS, ErrBind), and checks that the base DN
// exists (ErrNoBase), that certrelay's schema is loaded (ErrNoSchema) and
// that the directory offers LDAP Sync there (ErrNoSync), which running
// servers follow changes with. It writes nothing.
func (l *LDAP) Check(ctx context.Context) error {
	return l.c.do(ctx, func(conn *ldap.Conn) error {
		_, err := conn.Search(ldap.NewSearchRequest(l.base, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return fmt.Errorf("%w: %s", ErrNoBase, l.base)
		}
		if err != nil {
			return err
		}
		if err := checkSchema(conn); err != nil {
			return err
		}
		return checkSync(ctx, conn, l.base)
	})
}

// schemaClasses are the object classes certrelay's schema defines.
var schemaClasses = []string{"certrelayServer", "certrelayReceiveConnector", "certrelaySendConnector", "certrelayAcceptedDomain", "certrelayMailbox", "certrelayTrustedRoot"}

func checkSchema(conn *ldap.Conn) error {
	root, err := conn.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"subschemaSubentry"}, nil))
	if err != nil {
		return err
	}
	sub := "cn=Subschema"
	if len(root.Entries) > 0 {
		if s := root.Entries[0].GetAttributeValue("subschemaSubentry"); s != "" {
			sub = s
		}
	}
	res, err := conn.Search(ldap.NewSearchRequest(sub, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=subschema)", []string{"objectClasses"}, nil))
	if err != nil {
		return err
	}
	have := map[string]bool{}
	if len(res.Entries) > 0 {
		for _, oc := range res.Entries[0].GetAttributeValues("objectClasses") {
			if i := strings.Index(oc, "NAME '"); i >= 0 {
				name, _, _ := strings.Cut(oc[i+6:], "'")
				have[strings.ToLower(name)] = true
			}
		}
	}
	var missing []string
	for _, c := range schemaClasses {
		if !have[strings.ToLower(c)] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (no object class %s)", ErrNoSchema, strings.Join(missing, ", "))
	}
	return nil
}

// checkSync runs an LDAP Sync refresh of nothing at the base: a
// directory without the sync provider refuses the critical control.
func checkSync(ctx context.Context, conn *ldap.Conn, base string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := ldap.NewSearchRequest(base, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=certrelayServer)", []string{"1.1"}, nil)
	r := conn.Syncrepl(ctx, req, 4, ldap.SyncRequestModeRefreshOnly, nil, false)
	for r.Next() {
	}
	if err := r.Err(); err != nil {
		if ldap.IsErrorAnyOf(err, ldap.LDAPResultUnavailableCriticalExtension, ldap.LDAPResultUnwillingToPerform, ldap.LDAPResultProtocolError) {
			return fmt.Errorf("%w on %s", ErrNoSync, base)
		}
		return err
	}
	return nil
}

// Prepare creates the containers of certrelay's tree under the base DN
// that are missing (joining does, before writing its first object).
func (l *LDAP) Prepare(ctx context.Context) error {
	return l.c.do(ctx, func(conn *ldap.Conn) error {
		for _, name := range containers {
			req := ldap.NewAddRequest("ou="+name+","+l.base, nil)
			req.Attribute("objectClass", []string{"top", "organizationalUnit"})
			req.Attribute("ou", []string{name})
			if err := conn.Add(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
				return classify(err, "create ou="+name+","+l.base)
			}
		}
		return nil
	})
}

func getOne[T any](ctx context.Context, l *LDAP, c *codec[T], dn, what string) (T, error) {
	var v T
	err := l.c.do(ctx, func(conn *ldap.Conn) error {
		res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass="+c.class+")", c.attrNames(), nil))
		if err != nil {
			return err
		}
		if len(res.Entries) == 0 {
			return ldap.NewError(ldap.LDAPResultNoSuchObject, errors.New("not a "+c.class))
		}
		v, err = c.decode(res.Entries[0])
		if err != nil {
			return fmt.Errorf("%s (%s) cannot be used: %w", what, dn, err)
		}
		return nil
	})
	return v, classify(err, what)
}

func listAll[T any](ctx context.Context, l *LDAP, c *codec[T], under string, key func(*T) string) ([]T, error) {
	var out []T
	err := l.c.do(ctx, func(conn *ldap.Conn) error {
		out = out[:0]
		res, err := conn.SearchWithPaging(ldap.NewSearchRequest(under, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false, "(objectClass="+c.class+")", c.attrNames(), nil), 1000)
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return nil // no container yet: no objects
		}
		if err != nil {
			return err
		}
		var ps []Problem
		for _, e := range res.Entries {
			v, err := c.decode(e)
			if err != nil {
				ps = append(ps, Problem{DN: e.DN, Kind: c.kind, Err: err})
				continue
			}
			out = append(out, v)
		}
		if c.parent == nil {
			l.noteProblems(c.kind, ps)
		}
		return nil
	})
	if err != nil {
		return nil, classify(err, "list "+c.kind+"s")
	}
	sort.Slice(out, func(i, j int) bool { return key(&out[i]) < key(&out[j]) })
	return out, nil
}

// putOne adds the object, or replaces the one there.
func putOne[T any](ctx context.Context, l *LDAP, c *codec[T], v *T) error {
	dn := c.dn(l.base, v)
	err := l.c.do(ctx, func(conn *ldap.Conn) error {
		add := ldap.NewAddRequest(dn, nil)
		add.Attributes = c.attrs(v)
		err := conn.Add(add)
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
			return err
		}
		return conn.Modify(c.changes(dn, v))
	})
	return classify(err, "write "+dn)
}

func delOne(ctx context.Context, l *LDAP, dn string) error {
	err := l.c.do(ctx, func(conn *ldap.Conn) error { return conn.Del(ldap.NewDelRequest(dn, nil)) })
	return classify(err, "delete "+dn)
}

func (l *LDAP) under(container string) string { return "ou=" + container + "," + l.base }

// Server implements Directory.
func (l *LDAP) Server(ctx context.Context, name string) (Server, error) {
	s := Server{Name: name}
	return getOne(ctx, l, &serverCodec, serverCodec.dn(l.base, &s), fmt.Sprintf("server %q", name))
}

// Servers implements Directory.
func (l *LDAP) Servers(ctx context.Context) ([]Server, error) {
	return listAll(ctx, l, &serverCodec, l.under("Servers"), func(s *Server) string { return key(s.Name) })
}

// PutServer implements Directory.
func (l *LDAP) PutServer(ctx context.Context, s Server) error {
	return putOne(ctx, l, &serverCodec, &s)
}

// DeleteServer removes a server object and its receive connectors.
func (l *LDAP) DeleteServer(ctx context.Context, name string) error {
	conns, err := l.ReceiveConnectors(ctx, name)
	if err != nil {
		return err
	}
	for _, c := range conns {
		if err := l.DeleteReceiveConnector(ctx, name, c.Name); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	s := Server{Name: name}
	return delOne(ctx, l, serverCodec.dn(l.base, &s))
}

// ReceiveConnectors implements Directory.
func (l *LDAP) ReceiveConnectors(ctx context.Context, server string) ([]ReceiveConnector, error) {
	s := Server{Name: server}
	return listAll(ctx, l, &receiveCodec, serverCodec.dn(l.base, &s), func(c *ReceiveConnector) string { return key(c.Name) })
}

// ReceiveConnector implements Directory.
func (l *LDAP) ReceiveConnector(ctx context.Context, server, name string) (ReceiveConnector, error) {
	c := ReceiveConnector{Server: server, Name: name}
	return getOne(ctx, l, &receiveCodec, receiveCodec.dn(l.base, &c), fmt.Sprintf("receive connector %q", name))
}

// PutReceiveConnector implements Directory.
func (l *LDAP) PutReceiveConnector(ctx context.Context, c ReceiveConnector) error {
	return putOne(ctx, l, &receiveCodec, &c)
}

// DeleteReceiveConnector implements Directory.
func (l *LDAP) DeleteReceiveConnector(ctx context.Context, server, name string) error {
	c := ReceiveConnector{Server: server, Name: name}
	return delOne(ctx, l, receiveCodec.dn(l.base, &c))
}

// SendConnectors implements Directory.
func (l *LDAP) SendConnectors(ctx context.Context) ([]SendConnector, error) {
	return listAll(ctx, l, &sendCodec, l.under("Connectors"), func(c *SendConnector) string { return key(c.Name) })
}

// SendConnector implements Directory.
func (l *LDAP) SendConnector(ctx context.Context, name string) (SendConnector, error) {
	c := SendConnector{Name: name}
	return getOne(ctx, l, &sendCodec, sendCodec.dn(l.base, &c), fmt.Sprintf("send connector %q", name))
}

// PutSendConnector implements Directory.
func (l *LDAP) PutSendConnector(ctx context.Context, c SendConnector) error {
	return putOne(ctx, l, &sendCodec, &c)
}

// DeleteSendConnector implements Directory.
func (l *LDAP) DeleteSendConnector(ctx context.Context, name string) error {
	c := SendConnector{Name: name}
	return delOne(ctx, l, sendCodec.dn(l.base, &c))
}

// AcceptedDomains implements Directory.
func (l *LDAP) AcceptedDomains(ctx context.Context) ([]AcceptedDomain, error) {
	return listAll(ctx, l, &domainCodec, l.under("Domains"), func(d *AcceptedDomain) string { return key(d.DomainName) })
}

// PutAcceptedDomain implements Directory.
func (l *LDAP) PutAcceptedDomain(ctx context.Context, d AcceptedDomain) error {
	return putOne(ctx, l, &domainCodec, &d)
}

// DeleteAcceptedDomain implements Directory.
func (l *LDAP) DeleteAcceptedDomain(ctx context.Context, name string) error {
	d := AcceptedDomain{DomainName: name}
	return delOne(ctx, l, domainCodec.dn(l.base, &d))
}

// Mailboxes implements Directory.
func (l *LDAP) Mailboxes(ctx context.Context) ([]Mailbox, error) {
	return listAll(ctx, l, &mailboxCodec, l.under("Mailboxes"), func(m *Mailbox) string { return key(m.Address) })
}

// Mailbox implements Directory.
func (l *LDAP) Mailbox(ctx context.Context, address string) (Mailbox, error) {
	m := Mailbox{Address: address}
	return getOne(ctx, l, &mailboxCodec, mailboxCodec.dn(l.base, &m), fmt.Sprintf("mailbox %q", address))
}

// PutMailbox implements Directory.
func (l *LDAP) PutMailbox(ctx context.Context, m Mailbox) error {
	return putOne(ctx, l, &mailboxCodec, &m)
}

// DeleteMailbox implements Directory.
func (l *LDAP) DeleteMailbox(ctx context.Context, address string) error {
	m := Mailbox{Address: address}
	return delOne(ctx, l, mailboxCodec.dn(l.base, &m))
}

// TrustedRoots implements Directory.
func (l *LDAP) TrustedRoots(ctx context.Context) ([]TrustedRoot, error) {
	return listAll(ctx, l, &rootCodec, l.under("Trust"), func(r *TrustedRoot) string { return key(r.Thumbprint) })
}

// PutTrustedRoot implements Directory.
func (l *LDAP) PutTrustedRoot(ctx context.Context, r TrustedRoot) error {
	return putOne(ctx, l, &rootCodec, &r)
}

// DeleteTrustedRoot implements Directory.
func (l *LDAP) DeleteTrustedRoot(ctx context.Context, thumbprint string) error {
	r := TrustedRoot{Thumbprint: thumbprint}
	return delOne(ctx, l, rootCodec.dn(l.base, &r))
}
