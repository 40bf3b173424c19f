package certview

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"certrelay/internal/db"
	"certrelay/internal/directory"
	"certrelay/internal/settings"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// OpenOptions configure Open. Zero values take the defaults stated per
// field.
type OpenOptions struct {
	Now func() time.Time // default time.Now
	// SystemRoots lists the system bundle files for ThirdParty roots; nil
	// takes trust.DefaultSystemBundles (or CERTRELAY_SYSTEM_ROOTS).
	SystemRoots []string
	// Org opens the organisation's directory of a data directory that
	// joined one: a running server follows it (directory.StartReplica).
	// Nil: read and written directly (directory.Fallback: an LDAP
	// directory, and the copy a server kept when it cannot be reached),
	// as commands do.
	Org func(ctx context.Context, cfg directory.LDAPConfig, d *sql.DB) (directory.Directory, error)
}

// SecretFile is where a data directory keeps the password it binds to
// the organisation's directory with (mode 0600).
func SecretFile(dataDir string) string { return filepath.Join(dataDir, "directory.secret") }

// DirectoryConfig returns how this data directory reaches its
// organisation's directory; ok is false when it has joined none.
func DirectoryConfig(ctx context.Context, st *settings.Settings, dataDir string) (cfg directory.LDAPConfig, ok bool, err error) {
	url, err := st.Get(ctx, settings.DirectoryURL)
	if err != nil || url == "" {
		return cfg, false, err
	}
	cfg.URL = url
	if cfg.BindDN, err = st.Get(ctx, settings.DirectoryBindDN); err != nil {
		return cfg, false, err
	}
	ca, err := st.Get(ctx, settings.DirectoryCA)
	if err != nil {
		return cfg, false, err
	}
	cfg.CA = []byte(ca)
	pw, err := os.ReadFile(SecretFile(dataDir))
	if err != nil {
		return cfg, false, fmt.Errorf("read the directory's bind password: %w", err)
	}
	cfg.Password = strings.TrimRight(string(pw), "\r\n")
	return cfg, true, nil
}

// Open opens (creating what is missing) a data directory's database and
// the parts every process that uses it needs — settings, the personal
// store with its service account, trust, the embedded directory — as one
// Source. The admin layer and the server each open their own this way.
// Close releases it.
func Open(ctx context.Context, dataDir string, o OpenOptions) (*Source, error) {
	if dataDir == "" {
		return nil, errors.New("no data directory given")
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d, err := db.Open(abs)
	if err != nil {
		return nil, err
	}
	s := &Source{DB: d, Now: o.Now, dataDir: abs}
	fail := func(err error) (*Source, error) { db.Close(d); return nil, err }
	if s.Settings, err = settings.Open(ctx, d); err != nil {
		return fail(err)
	}
	acct, err := serviceAccount(ctx, s.Settings, abs)
	if err != nil {
		return fail(err)
	}
	if s.Store, err = store.Open(ctx, d, abs, acct, o.Now); err != nil {
		return fail(err)
	}
	if s.Trust, err = trust.Open(ctx, d, o.SystemRoots); err != nil {
		return fail(err)
	}
	if s.Embedded, err = directory.OpenEmbedded(ctx, d); err != nil {
		return fail(err)
	}
	// An edge's replicated objects are read-only once it is subscribed
	// (SPEC X3): the guard refuses commands' writes of them.
	s.Dir = &directory.EdgeGuard{Embedded: s.Embedded,
		Self: func(ctx context.Context) (string, error) { return s.Settings.Get(ctx, settings.ServerName) },
		Subscribed: func(ctx context.Context) (bool, error) {
			v, err := s.Settings.Get(ctx, settings.EdgeSubscribed)
			return v != "", err
		}}
	cfg, joined, err := DirectoryConfig(ctx, s.Settings, abs)
	if err != nil {
		return fail(err)
	}
	if joined {
		if o.Org == nil {
			o.Org = openFallback
		}
		if s.Org, err = o.Org(ctx, cfg, d); err != nil {
			return fail(err)
		}
		s.Joined = &directory.Joined{Local: s.Embedded, Org: s.Org, DB: d, Self: func(ctx context.Context) (string, error) {
			return s.Settings.Get(ctx, settings.ServerName)
		}}
		s.Dir = s.Joined
	}
	s.Trust.PolicyRoots = s.policyRoots
	return s, nil
}

// openFallback opens the organisation's directory for a command: LDAP,
// and the copy a server kept for reads when it cannot be reached.
func openFallback(ctx context.Context, cfg directory.LDAPConfig, d *sql.DB) (directory.Directory, error) {
	l, err := directory.OpenLDAP(cfg)
	if err != nil {
		return nil, err
	}
	return &directory.Fallback{Primary: l, CopyDB: d}, nil
}

// policyRoots reads the roots the directory distributes (T2), for trust.
// A root whose certificate does not parse is left out (the directory's
// problems report it).
func (s *Source) policyRoots(ctx context.Context) ([]trust.Root, error) {
	list, err := s.Dir.TrustedRoots(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]trust.Root, 0, len(list))
	for _, r := range list {
		c, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			continue
		}
		out = append(out, trust.PolicyRoot(c, trust.Source(r.Source)))
	}
	return out, nil
}

// DataDir is the absolute path of the data directory Open opened ("" for
// a Source built by hand).
func (s *Source) DataDir() string { return s.dataDir }

// Close releases the database and the organisation's directory.
func (s *Source) Close() error {
	switch o := s.Org.(type) {
	case *directory.Fallback:
		o.Primary.Close()
	case *directory.LDAP:
		o.Close()
	}
	return db.Close(s.DB)
}

// serviceAccount returns the configured service account, or the data
// directory's owner (the same for every account that runs a command).
func serviceAccount(ctx context.Context, st *settings.Settings, dataDir string) (store.Account, error) {
	name, err := st.Get(ctx, settings.ServiceAccount)
	if err != nil {
		return store.Account{}, err
	}
	if name == "" {
		return store.DirOwner(dataDir), nil
	}
	acct, err := store.LookupAccount(name)
	if err != nil {
		return store.Account{}, fmt.Errorf("the service account setting: %w", err)
	}
	return acct, nil
}
