// Package admin is every management operation of certrelay — the cmdlets
// of the seeds — declared once in an operation registry (registry.go,
// ops_*.go) and run through one call shape, Admin.Call: operation, caller
// and parameters in; result data, or a typed error, out. The CLI, the
// cmdlet shell and the HTTPS API are thin faces over it: they read
// input, call, and print.
//
// Operations are atomic: a bad input gets an *Error that says what is
// wrong, which parameter, and the fix, and leaves the store, the trust
// store and the directory as they were. Texts name operations and
// parameters with marks each face renders in its own syntax (text.go).
// Questions to the administrator (replace the internal transport
// certificate? remove this certificate?) are a typed answer,
// *ConfirmationRequired, so each face can ask in its own way; the typed
// methods (NewCertificate, …) remain as the Go API for tests and the
// server, and take a Confirmer instead.
package admin

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"certrelay/internal/accounts"
	"certrelay/internal/acme"
	"certrelay/internal/certview"
	"certrelay/internal/db"
	"certrelay/internal/directory"
	"certrelay/internal/events"
	"certrelay/internal/settings"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// Options configure Open. Zero values take the defaults stated per field.
type Options struct {
	DataDir  string                 // required
	Now      func() time.Time       // default time.Now
	Rand     io.Reader              // default crypto/rand
	Hostname func() (string, error) // default os.Hostname
	Logger   *slog.Logger           // where events are mirrored; default: discard
	// SystemRoots lists the system bundle files for ThirdParty roots; nil
	// takes trust.DefaultSystemBundles (or CERTRELAY_SYSTEM_ROOTS).
	SystemRoots []string
	// Validity of self-signed certificates; default certinfo.DefaultValidity.
	Validity time.Duration
}

// Admin is an open data directory. Safe for concurrent use.
type Admin struct {
	dataDir  string
	now      func() time.Time
	rand     io.Reader
	hostname func() (string, error)
	validity time.Duration

	db        *sql.DB
	src       *certview.Source
	questions questions // asked by Call, waiting for their answer
	Store     *store.Store
	Trust     *trust.Store
	Dir       directory.Directory
	Events    *events.Log
	Settings  *settings.Settings
	Accounts  *accounts.Store // the HTTPS console's accounts (SPEC I3)
	ACME      *acme.Accounts  // ACME accounts and the certificates obtained with them
}

// Open opens (creating if needed) the data directory's database.
func Open(ctx context.Context, o Options) (*Admin, error) {
	if o.DataDir == "" {
		return nil, errors.New("no data directory given")
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, err
	}
	a := &Admin{dataDir: abs, now: o.Now, rand: o.Rand, hostname: o.Hostname, validity: o.Validity}
	if a.now == nil {
		a.now = time.Now
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	if a.hostname == nil {
		a.hostname = os.Hostname
	}
	if a.src, err = certview.Open(ctx, abs, certview.OpenOptions{Now: a.now, SystemRoots: o.SystemRoots}); err != nil {
		return nil, err
	}
	a.db, a.Settings, a.Store, a.Trust, a.Dir = a.src.DB, a.src.Settings, a.src.Store, a.src.Trust, a.src.Dir
	fail := func(err error) (*Admin, error) { a.src.Close(); return nil, err }
	name, _ := a.Settings.Get(ctx, settings.ServerName)
	if a.Events, err = events.Open(ctx, a.db, a.now, o.Logger, name); err != nil {
		return fail(err)
	}
	if a.Accounts, err = accounts.Open(ctx, a.db, a.now); err != nil {
		return fail(err)
	}
	if a.ACME, err = acme.Open(ctx, a.db, abs, a.now); err != nil {
		return fail(err)
	}
	return a, nil
}

// Close releases the database.
func (a *Admin) Close() error { return db.Close(a.db) }

// DataDir is the absolute path of the data directory.
func (a *Admin) DataDir() string { return a.dataDir }

// Now is the admin layer's clock.
func (a *Admin) Now() time.Time { return a.now() }

// raise logs an event; a failure to log never fails the operation, but
// is reported to the logger.
func (a *Admin) raise(ctx context.Context, id int, key string, params ...string) {
	_, _ = a.Events.Raise(ctx, id, key, params...)
}

// ErrNotSetUp is returned by operations that need setup first.
var ErrNotSetUp = certview.ErrNotSetUp

// Source returns the certificate view of this data directory, for the
// server.
func (a *Admin) Source() *certview.Source { return a.src }

// atomically runs fn as one transaction over everything this data
// directory's database holds — store, trust, settings, embedded directory
// and event log (SPEC M: every operation atomic; P2). Key files the store
// writes on the way are removed if it rolls back. fn must not wait on the
// network or on a person: the transaction holds the database's write lock.
func (a *Admin) atomically(ctx context.Context, fn func(ctx context.Context) error) error {
	return db.Tx(ctx, a.db, func(ctx context.Context, _ *sql.Tx) error { return fn(ctx) })
}
