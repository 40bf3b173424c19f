// Package settings keeps this server's local settings — the ones that
// belong to the data directory rather than to the organisation's
// directory: which server object this data directory is, the directory
// URL, the service account, the HTTP proxy for revocation fetches.
package settings

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"certrelay/internal/db"
)

// Keys of the settings certrelay uses.
const (
	ServerName     = "server.name"     // the server object this data directory runs
	ServiceAccount = "service.account" // the account the server runs as; default: the data directory's owner
	Proxy          = "http.proxy"      // HTTP proxy for CRL and OCSP fetches, "" for direct
	DNSResolver    = "dns.resolver"    // ip:port of the DNS server for MX lookups, "" for the system's
	// DNSSECResolver is the ip:port of a DNSSEC-validating resolver whose
	// AD bit DANE trusts (RFC 7672); "": no DANE.
	DNSSECResolver = "dns.dnssec_resolver"
	SetupDone      = "setup.done" // RFC 3339 time of the first setup

	// Domain security (SPEC DS1; Exchange's TLSSendDomainSecureList and
	// TLSReceiveDomainSecureList): partner domains, normalised, separated
	// by commas; "" or unset for none.
	TLSSendDomainSecureList    = "tls.send_domain_secure"
	TLSReceiveDomainSecureList = "tls.receive_domain_secure"

	// The MTA-STS policy this server publishes for its accepted domains
	// (RFC 8461) at https://mta-sts.DOMAIN/.well-known/mta-sts.txt on the
	// HTTPS listener: mode ("" not published), MX patterns separated by
	// commas, max_age in seconds.
	MTASTSMode   = "mtasts.mode"
	MTASTSMX     = "mtasts.mx"
	MTASTSMaxAge = "mtasts.max_age"

	// The organisation's directory this server joined (setup
	// --directory); none: the embedded directory. The bind password is in
	// the data directory's directory.secret (mode 0600), never here.
	DirectoryURL    = "directory.url"     // ldap://HOST:PORT/BASE-DN or ldaps://…
	DirectoryBindDN = "directory.bind_dn" // the DN servers bind as
	DirectoryCA     = "directory.ca"      // PEM: the CA of the directory's TLS certificate (StartTLS with ldap://)
)

// SplitList reads a list setting written as comma-separated values;
// empty items are dropped, and "" is the empty list.
func SplitList(v string) []string {
	out := []string{}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Settings is a key/value table in certrelay.db. Safe for concurrent use.
type Settings struct{ db *sql.DB }

// Open creates the table if needed.
func Open(ctx context.Context, d *sql.DB) (*Settings, error) {
	err := db.Migrate(ctx, d, "settings",
		`CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)`)
	if err != nil {
		return nil, err
	}
	return &Settings{db: d}, nil
}

// Get returns the value of key, or "" when it is not set.
func (s *Settings) Get(ctx context.Context, key string) (string, error) {
	var v string
	err := db.Q(ctx, s.db).QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read setting %s: %w", key, err)
	}
	return v, nil
}

// Set stores value under key, in the transaction ctx carries (db.Tx) or
// in one of its own.
func (s *Settings) Set(ctx context.Context, key, value string) error {
	err := db.Tx(ctx, s.db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
			return err
		}
		return db.LogChange(ctx, s.db, db.ScopeSettings, key)
	})
	if err != nil {
		return fmt.Errorf("write setting %s: %w", key, err)
	}
	return nil
}

// Keys written by Enable (SPEC M5, S8).
const (
	PopCertificateName  = "pop3.X509CertificateName"  // FQDN POP3 selects its certificate for
	ImapCertificateName = "imap4.X509CertificateName" // FQDN IMAP4 selects its certificate for
	HTTPSCertificate    = "https.certificate"         // thumbprint the HTTPS console is bound to
)

// Keys of the HTTPS console and the metrics endpoint (SPEC I3; issue 16),
// written by Set-CertrelayConsole. Bindings are IP:PORT lists separated
// by commas; "" (the default) means off.
const (
	ConsoleBindings = "console.bindings" // where the HTTPS console and API listen
	ConsoleHostName = "console.hostname" // the name the console selects its certificate for (S8); "": the server's FQDN
	MetricsBindings = "metrics.bindings" // where /metrics listens, plain HTTP
)

// ExpiryWarning is the key of E5's warning window, in days (Set-ExchangeServer
// -ExpiryWarningDays): "expires soon" events (12017, 12018) and diagnose's
// findings start that many days before NotAfter.
const ExpiryWarning = "expiry.warning_days"

// DefaultExpiryWarningDays is E5's default window (Exchange 2013 and later
// use 90).
const DefaultExpiryWarningDays = 30

// ExpiryWarningDays reads the warning window in days: the setting, or
// DefaultExpiryWarningDays when it is not set. A stored value that is not
// a positive number is an error naming the key and the value.
func ExpiryWarningDays(ctx context.Context, s *Settings) (int, error) {
	v, err := s.Get(ctx, ExpiryWarning)
	if err != nil || v == "" {
		return DefaultExpiryWarningDays, err
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil || n <= 0 {
		return DefaultExpiryWarningDays, fmt.Errorf("setting %s holds %q, not a positive number of days", ExpiryWarning, v)
	}
	return n, nil
}

// Keys of EdgeSync (SPEC X3; issue 12). On an edge: where its endpoint
// listens, the subscription's bootstrap account while it is valid, when
// the first synchronisation came, and which of its certificates the
// organisation holds for it. On a hub: a counter `edge sync` raises to
// ask the running server for a round now.
const (
	EdgeSyncBinding = "edgesync.binding"    // IP:PORT of the edge's EdgeSync endpoint; default DefaultEdgeSyncBinding
	EdgeBootstrap   = "edgesync.bootstrap"  // "ACCOUNT BCRYPT-HASH UNIX-EXPIRY" of the subscription's bootstrap account
	EdgeSubscribed  = "edgesync.subscribed" // RFC 3339 time of the first synchronisation; "": not subscribed
	EdgePresented   = "edgesync.presented"  // thumbprint the organisation holds for this edge
	// EdgeRecipientsRound names the last recipients round the edge
	// applied, the base a hub's delta must start from.
	EdgeRecipientsRound = "edgesync.recipients_round"
	EdgeSyncRequested   = "edgesync.request" // a counter: a round is wanted now
)

// DefaultEdgeSyncBinding is where an edge's EdgeSync endpoint listens
// when nothing else is set (Exchange's EdgeSync uses LDAPS on 50636).
const DefaultEdgeSyncBinding = "0.0.0.0:50636"
