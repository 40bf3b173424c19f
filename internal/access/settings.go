package access

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/settings"
)

// Protocol names one of the access services.
type Protocol string

// The protocols.
const (
	POP3  Protocol = "POP3"
	IMAP4 Protocol = "IMAP4"
	UM    Protocol = "UM"
)

// Login types (Exchange's LoginType of Set-POPSettings/Set-IMAPSettings).
const (
	// SecureLogin: passwords only over TLS (after STLS/STARTTLS, or on an
	// SSL binding). The default (secure by default).
	SecureLogin = "SecureLogin"
	// PlainTextLogin: passwords in plain text allowed too.
	PlainTextLogin = "PlainTextLogin"
)

// Settings are the settings of POP3 or IMAP4, with Exchange's property
// names (Get-POPSettings, Get-IMAPSettings | fl *). They live in the data
// directory's settings (one JSON value per protocol; X509CertificateName
// under the key cert enable writes, SPEC M5), as Exchange keeps them per
// Client Access server.
type Settings struct {
	// Enabled: the service runs (Exchange installs POP3 and IMAP4
	// stopped; so does certrelay).
	Enabled bool
	// UnencryptedOrTLSBindings listen in plain text, with STLS/STARTTLS;
	// SSLBindings in TLS from the first byte (ports 995, 993).
	UnencryptedOrTLSBindings []string
	SSLBindings              []string
	// X509CertificateName is the name the certificate is selected for
	// (S8); "" takes the server's FQDN. cert enable --services POP|IMAP
	// sets it to the certificate's first domain (M5).
	X509CertificateName string
	// LoginType: SecureLogin (default) or PlainTextLogin.
	LoginType string
	// Exchange2007CertificateSelection reproduces Exchange 2007 RTM's
	// selection (S9): the newest certificate wins whatever its issuer, and
	// wildcards do not match.
	Exchange2007CertificateSelection bool
	// Limits (SPEC P1).
	MaxConnections                    int                // at once; default 1000
	MaxConnectionFromSingleIP         int                // at once from one address; default 20
	PreAuthenticatedConnectionTimeout directory.Duration // waiting for a command before login; default 1 minute (POP3)
	AuthenticatedConnectionTimeout    directory.Duration // waiting for a command after login; default 30 minutes (POP3)
	ConnectionTimeout                 directory.Duration // a whole session; default 1 hour (POP3), 1 day (IMAP4)
	MaxCommandSize                    int                // bytes of a command line; default 512 (POP3)
	MaxMessageSize                    int64              `json:",omitempty"` // an APPEND (IMAP4); default 35 MB
	// Failed logins: after MaxLoginFailuresPerSource wrong passwords from
	// one address, logins from it are refused for LoginFailureLockout.
	MaxLoginFailuresPerSource int
	LoginFailureLockout       directory.Duration
}

// UMSettings are the Unified Messaging listener's settings
// (Get-UMService): SIP over TCP and TLS.
type UMSettings struct {
	Enabled bool
	// UMStartupMode: TLS (secure mode, the default), TCP, or Dual.
	UMStartupMode  string
	SipTcpBindings []string
	SipTlsBindings []string
	// Fqdn is the name UM's certificate must hold; "" takes the server's
	// FQDN (the seeds: "the local computer's physical FQDN").
	Fqdn                      string
	MaxConnections            int
	MaxConnectionFromSingleIP int
	ConnectionTimeout         directory.Duration
	MaxMessageSize            int64 // a SIP request's body; default 64 KiB
}

// Keys of the settings.
const (
	popKey  = "pop3.settings"
	imapKey = "imap4.settings"
	umKey   = "um.settings"
)

// SettingsKeyPrefixes are the prefixes of the settings keys the access
// services read: a change to one of them needs Service.Reload.
var SettingsKeyPrefixes = []string{"pop3.", "imap4.", "um."}

// DefaultSettings returns a protocol's defaults.
func DefaultSettings(p Protocol) Settings {
	s := Settings{
		LoginType:                         SecureLogin,
		MaxConnections:                    1000,
		MaxConnectionFromSingleIP:         20,
		PreAuthenticatedConnectionTimeout: directory.Duration(time.Minute),
		AuthenticatedConnectionTimeout:    directory.Duration(30 * time.Minute),
		ConnectionTimeout:                 directory.Duration(time.Hour),
		MaxCommandSize:                    512,
		MaxLoginFailuresPerSource:         10,
		LoginFailureLockout:               directory.Duration(10 * time.Minute),
	}
	switch p {
	case POP3:
		s.UnencryptedOrTLSBindings, s.SSLBindings = []string{"127.0.0.1:1110"}, []string{"127.0.0.1:1995"}
	case IMAP4:
		s.UnencryptedOrTLSBindings, s.SSLBindings = []string{"127.0.0.1:1143"}, []string{"127.0.0.1:1993"}
		s.ConnectionTimeout = directory.Duration(24 * time.Hour)
		s.MaxMessageSize = 35 << 20
	}
	return s
}

// DefaultUMSettings returns UM's defaults.
func DefaultUMSettings() UMSettings {
	return UMSettings{UMStartupMode: "TLS", SipTcpBindings: []string{"127.0.0.1:5060"}, SipTlsBindings: []string{"127.0.0.1:5061"},
		MaxConnections: 200, MaxConnectionFromSingleIP: 20, ConnectionTimeout: directory.Duration(time.Hour), MaxMessageSize: 64 << 10}
}

func keysOf(p Protocol) (blob, certName string) {
	if p == POP3 {
		return popKey, settings.PopCertificateName
	}
	return imapKey, settings.ImapCertificateName
}

// Load reads a protocol's settings (defaults for what was never set).
func Load(ctx context.Context, st *settings.Settings, p Protocol) (Settings, error) {
	s := DefaultSettings(p)
	blob, certKey := keysOf(p)
	v, err := st.Get(ctx, blob)
	if err != nil {
		return s, err
	}
	if v != "" {
		if err := json.Unmarshal([]byte(v), &s); err != nil {
			return DefaultSettings(p), fmt.Errorf("read the %s settings (%s): %w", p, blob, err)
		}
	}
	if s.X509CertificateName, err = st.Get(ctx, certKey); err != nil {
		return s, err
	}
	return s, nil
}

// Save writes a protocol's settings, in the transaction ctx carries (or
// one of its own); the change log tells running servers.
func Save(ctx context.Context, st *settings.Settings, p Protocol, s Settings) error {
	blob, certKey := keysOf(p)
	name := s.X509CertificateName
	s.X509CertificateName = ""
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := st.Set(ctx, blob, string(b)); err != nil {
		return err
	}
	return st.Set(ctx, certKey, name)
}

// LoadUM reads UM's settings.
func LoadUM(ctx context.Context, st *settings.Settings) (UMSettings, error) {
	s := DefaultUMSettings()
	v, err := st.Get(ctx, umKey)
	if err != nil || v == "" {
		return s, err
	}
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return DefaultUMSettings(), fmt.Errorf("read the UM settings (%s): %w", umKey, err)
	}
	return s, nil
}

// SaveUM writes UM's settings.
func SaveUM(ctx context.Context, st *settings.Settings, s UMSettings) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return st.Set(ctx, umKey, string(b))
}
