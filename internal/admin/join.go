package admin

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"strings"

	"certrelay/internal/certview"
	"certrelay/internal/db"
	"certrelay/internal/directory"
	"certrelay/internal/safeio"
	"certrelay/internal/servercred"
	"certrelay/internal/settings"
)

// Joining an organisation's directory (setup --directory): everything is
// checked before anything is written — the URL, the bind DN and password,
// TLS, the base DN, certrelay's schema, LDAP Sync, and that no other
// server has this name — so each mistake gets its own error and fix, and
// leaves the data directory and the directory as they were. Then one
// local transaction records the server, its certificate and the
// directory settings, and its last step publishes the server's own
// objects in the directory (directory.Joined).

// joinPlan is a checked directory to join.
type joinPlan struct {
	cfg directory.LDAPConfig
	l   *directory.LDAP
}

// planJoin checks o's directory settings and the directory itself, and
// that name is free there. It writes nothing.
func (a *Admin) planJoin(ctx context.Context, o SetupOptions, name string) (*joinPlan, error) {
	u, err := directory.ParseLDAPURL(o.Directory)
	if err != nil {
		return nil, invalid("Directory", o.Directory, "%v", err)
	}
	if strings.TrimSpace(o.BindDN) == "" {
		return nil, usage("BindDN", "give {-BindDN}: the DN this server binds to the directory as (with {-BindPassword})")
	}
	if o.BindPassword == "" {
		return nil, usage("BindPassword", "give {-BindPassword}: the password of {-BindDN}, from a file")
	}
	if len(o.DirectoryCA) > 0 {
		if b, _ := pem.Decode(o.DirectoryCA); b == nil {
			return nil, invalid("DirectoryCA", "", "the directory's CA file holds no PEM certificate").fix("give the PEM file of the CA that issued the directory's TLS certificate")
		} else if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, invalid("DirectoryCA", "", "the directory's CA file: %v", err)
		}
	}
	cfg := directory.LDAPConfig{URL: u.String(), BindDN: strings.TrimSpace(o.BindDN), Password: o.BindPassword, CA: o.DirectoryCA}
	l, err := directory.OpenLDAP(cfg)
	if err != nil {
		return nil, invalid("Directory", o.Directory, "%v", err)
	}
	fail := func(e *Error) (*joinPlan, error) { l.Close(); e.Err = err; return nil, e }
	if err = l.Check(ctx); err != nil {
		host := u.Host
		switch {
		case errors.Is(err, directory.ErrBind):
			return fail(failed(Invalid, "the directory at %s refused the bind DN %s or its password", host, cfg.BindDN).field("BindDN", cfg.BindDN).
				fix("check {-BindDN} and the password in the file {-BindPassword} names (it must hold the password alone); nothing was written"))
		case errors.Is(err, directory.ErrTLS):
			fix := "give the CA that issued the directory's certificate with {-DirectoryCA} FILE"
			if u.Scheme == "ldap" {
				fix += ", or check that the directory offers StartTLS"
			}
			return fail(failed(Invalid, "TLS with the directory at %s failed", host).field("DirectoryCA", "").fix("%s; nothing was written", fix))
		case errors.Is(err, directory.ErrNoBase):
			return fail(failed(NotFound, "the base DN %s does not exist in the directory at %s", u.Base, host).field("Directory", o.Directory).
				fix("correct the base DN in {-Directory}, or create that entry first (an organization or organizationalUnit); nothing was written"))
		case errors.Is(err, directory.ErrNoSchema):
			return fail(failed(Unavailable, "the directory at %s does not know certrelay's object classes", host).field("Directory", o.Directory).
				fix("load certrelay's schema into it — schema/certrelay.ldif with ldapadd -Y EXTERNAL -H ldapi:/// -f schema/certrelay.ldif, or include schema/certrelay.schema in slapd.conf (docs/DIRECTORY.md); nothing was written"))
		case errors.Is(err, directory.ErrNoSync):
			return fail(failed(Unavailable, "the directory at %s does not offer LDAP Sync (RFC 4533) on %s, which servers follow changes with", host, u.Base).field("Directory", o.Directory).
				fix("load the syncprov overlay on the database that holds %s (docs/DIRECTORY.md); nothing was written", u.Base))
		case errors.Is(err, directory.ErrUnavailable):
			return fail(failed(Unavailable, "cannot reach the directory at %s", host).field("Directory", o.Directory).
				fix("check the host and port in {-Directory} and that the directory server runs; nothing was written"))
		}
		return fail(failed(Unavailable, "cannot use the directory at %s", host).field("Directory", o.Directory))
	}
	switch s, gerr := l.Server(ctx, name); {
	case gerr == nil:
		err = nil
		return fail(failed(Conflict, "a server named %s is in the directory already (FQDN %s, internal transport certificate %s)", name, s.Fqdn, s.InternalTransportCertificateThumbprint).field("Name", name).
			fix("set this server up with another {-Name}; if %s is gone for good, delete its object from the directory first (ldapdelete -r 'cn=%s,ou=Servers,%s')", name, name, u.Base))
	case errors.Is(gerr, directory.ErrNotFound):
	case errors.Is(gerr, directory.ErrUnavailable):
		err = gerr
		return fail(failed(Unavailable, "cannot reach the directory at %s", u.Host).field("Directory", o.Directory))
	default: // an object of that name that does not decode is taken too
		err = gerr
		return fail(failed(Conflict, "an object named %s is in the directory already, and it is damaged", name).field("Name", name).
			fix("set this server up with another {-Name}, or repair or delete that object (ldapdelete -r 'cn=%s,ou=Servers,%s')", name, u.Base))
	}
	return &joinPlan{cfg: cfg, l: l}, nil
}

// recordJoin, inside setup's transaction, keeps the directory's settings
// and password in the data directory, and makes publishing this server's
// own objects the transaction's last step.
func (a *Admin) recordJoin(ctx context.Context, p *joinPlan) error {
	for k, v := range map[string]string{settings.DirectoryURL: p.cfg.URL, settings.DirectoryBindDN: p.cfg.BindDN, settings.DirectoryCA: string(p.cfg.CA)} {
		if err := a.Settings.Set(ctx, k, v); err != nil {
			return err
		}
	}
	secret := certview.SecretFile(a.dataDir)
	if err := safeio.WriteFile(secret, []byte(p.cfg.Password+"\n"), 0o600); err != nil {
		return err
	}
	db.OnRollback(ctx, a.db, func() { os.Remove(secret) })
	j := &directory.Joined{Local: a.src.Embedded, Org: p.l, DB: a.db, Self: func(ctx context.Context) (string, error) {
		return a.Settings.Get(ctx, settings.ServerName)
	}}
	return db.BeforeCommit(ctx, a.db, func(ctx context.Context) error {
		if err := p.l.Prepare(ctx); err != nil {
			return err
		}
		_, err := j.Reconcile(ctx)
		return err
	})
}

// ensureCredential gives this server its organisation credential
// (servercred) when it has none — a data directory set up before they
// existed, or whose key file was removed to replace it: a new key file,
// and the public key in its server object (published).
func (a *Admin) ensureCredential(ctx context.Context) error {
	have := func(srv directory.Server) bool {
		k, err := servercred.Load(servercred.File(a.dataDir))
		return err == nil && len(srv.ServerCredential) > 0 && string(k.Public) == string(srv.ServerCredential)
	}
	srv, err := a.requireSetup(ctx)
	if err != nil || have(srv) {
		return err
	}
	return a.atomically(ctx, func(ctx context.Context) error {
		srv, err := a.requireSetup(ctx)
		if err != nil || have(srv) {
			return err
		}
		if srv.ServerCredential, err = a.writeCredential(ctx); err != nil {
			return err
		}
		return a.Dir.PutServer(ctx, srv)
	})
}

// writeCredential makes a credential and writes its key file in the
// transaction ctx carries (removed if it rolls back); it returns the
// public key.
func (a *Admin) writeCredential(ctx context.Context) ([]byte, error) {
	k, err := servercred.New()
	if err != nil {
		return nil, err
	}
	pemData, err := k.PEM()
	if err != nil {
		return nil, err
	}
	path := servercred.File(a.dataDir)
	if err := safeio.WriteFile(path, pemData, 0o600); err != nil {
		return nil, err
	}
	db.OnRollback(ctx, a.db, func() { os.Remove(path) })
	return k.Public, nil
}
