package certview

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
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
	if s.Dir, err = directory.OpenEmbedded(ctx, d); err != nil {
		return fail(err)
	}
	return s, nil
}

// DataDir is the absolute path of the data directory Open opened ("" for
// a Source built by hand).
func (s *Source) DataDir() string { return s.dataDir }

// Close releases the database.
func (s *Source) Close() error { return db.Close(s.DB) }

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
