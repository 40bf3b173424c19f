// Package certview describes the personal store as every part of
// certrelay sees it: each certificate with the properties of SPEC §2 —
// its Status and RootCAType from trust and the stored revocation results,
// its key facts and whether it is the internal transport certificate —
// and the selection candidates: facts only, never private keys (the
// serving layer loads the keys of the certificates it serves), rebuilt
// one certificate at a time by a server (CandidateSet).
// It also keeps revocation results fresh. The admin layer and the server
// both build on it; it never changes the store.
package certview

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/memo"
	"certrelay/internal/settings"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// Source is an open data directory's certificate state. Use it by
// pointer: it holds caches.
type Source struct {
	DB       *sql.DB // the database the parts below share (its change log)
	Store    *store.Store
	Trust    *trust.Store
	Dir      directory.Directory // Embedded, or Joined when the data directory joined an organisation
	Embedded *directory.Embedded
	Org      directory.Directory // the organisation's directory when joined (nil: none)
	Joined   *directory.Joined   // Dir, when joined
	Settings *settings.Settings
	Now      func() time.Time
	dataDir  string

	// infos remembers each certificate's described fields by thumbprint
	// (describe); bounded, so certificates long removed are forgotten.
	infos memo.Table[string, *infoMemo]
}

// ErrNotSetUp is returned when the data directory has no server yet.
var ErrNotSetUp = errors.New("this data directory is not set up")

// LocalServer returns this data directory's server object, or an error
// wrapping ErrNotSetUp.
func (s *Source) LocalServer(ctx context.Context) (directory.Server, error) {
	name, err := s.Settings.Get(ctx, settings.ServerName)
	if err != nil {
		return directory.Server{}, err
	}
	if name == "" {
		return directory.Server{}, ErrNotSetUp
	}
	srv, err := s.Dir.Server(ctx, name)
	if errors.Is(err, directory.ErrNotFound) {
		return srv, ErrNotSetUp
	}
	return srv, err
}
