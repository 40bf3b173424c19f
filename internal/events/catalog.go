// Package events is certrelay's event log: a typed catalog of every event
// (ID, symbolic name, category, severity, logging level, message) and a
// log stored in certrelay.db, with per-category logging levels (SPEC D1)
// and throttling of repeated events per key (thumbprint or FQDN).
//
// IDs and symbolic names are Exchange's, kept so administrators recognise
// them (SPEC §7); the messages are certrelay's own words, and each names
// the command that repairs the problem. Events certrelay adds for its own
// management actions use IDs from 16000 up.
package events

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Severity is the event's severity, as an event viewer shows it.
type Severity string

// Severities.
const (
	Error       Severity = "Error"
	Warning     Severity = "Warning"
	Information Severity = "Information"
)

// Level is a logging level of SPEC D1. An event is written when its own
// level is at most its category's configured level.
type Level int

// The levels of D1.
const (
	Lowest Level = 0
	Low    Level = 1
	Medium Level = 3
	High   Level = 5
	Expert Level = 7
)

var levelNames = map[Level]string{Lowest: "Lowest", Low: "Low", Medium: "Medium", High: "High", Expert: "Expert"}

func (l Level) String() string {
	if n, ok := levelNames[l]; ok {
		return n
	}
	return fmt.Sprintf("Level%d", int(l))
}

// ParseLevel reads a level by name or number.
func ParseLevel(s string) (Level, error) {
	for l, n := range levelNames {
		if strings.EqualFold(n, s) || s == fmt.Sprint(int(l)) {
			return l, nil
		}
	}
	return 0, fmt.Errorf("unknown logging level %q: use Lowest, Low, Medium, High or Expert", s)
}

// Sources.
const (
	SourceTransport = "MSExchangeTransport"
	SourceCertrelay = "certrelay"
)

// Categories.
const (
	SmtpReceive      = "SmtpReceive"
	SmtpSend         = "SmtpSend"
	MessageSecurity  = "MessageSecurity"
	TransportService = "TransportService"
	Certificates     = "Certificates"
	Setup            = "Setup"
	Console          = "Console"       // the HTTPS console and API, its accounts and the audit of changes
	AccessService    = "AccessService" // POP3, IMAP4 and UM (issue 14)
)

// Definition describes one event.
type Definition struct {
	ID       int
	Name     string // symbolic name
	Source   string
	Category string
	Severity Severity
	Level    Level
	Params   []string      // names of %1, %2, …
	Text     string        // message with %1, %2, … placeholders
	Throttle time.Duration // at most one event per key in this interval; 0: never throttled
}

// Message fills the definition's text with params.
func (d Definition) Message(params ...string) string {
	msg := d.Text
	for i := len(params); i >= 1; i-- { // %10 before %1
		msg = strings.ReplaceAll(msg, fmt.Sprintf("%%%d", i), params[i-1])
	}
	return msg
}

const (
	hour = time.Hour
	day  = 24 * time.Hour
	// limitThrottle spaces the events of limits met (16020–16025): enough
	// to see an attack or a misjudged limit without one event per client.
	limitThrottle = 5 * time.Minute
)

// catalog lists every event certrelay raises.
var catalog = []Definition{
	{ID: 12012, Name: "InternalTransportCertificateMissingInAD", Source: SourceTransport, Category: TransportService, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"server"},
		Text:   "The directory holds no internal transport certificate for server %1, so other servers cannot authenticate it. Make one with: certrelay cert new (it is published in the directory)."},
	{ID: 12013, Name: "CannotLoadInternalTransportCertificateFromStore", Source: SourceTransport, Category: TransportService, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint"},
		Text:   "The internal transport certificate %1 named in the directory is not in this server's personal store and no other certificate can stand in. Restore it with certrelay cert import FILE, or make a new one with certrelay cert new."},
	{ID: 12014, Name: "CannotLoadSTARTTLSCertificateFromStore", Source: SourceTransport, Category: TransportService, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"fqdn", "connector", "connectorFqdn", "reason"},
		Text:   "STARTTLS cannot be offered on connector %2 (its FQDN is %3): no certificate for %1 can be used — %4. STARTTLS is not advertised there and mail flows in plain text. Fix what the reason names, or make or import a certificate that holds %1 and enable it: certrelay cert new --domain %1 --services SMTP, or certrelay cert enable THUMBPRINT --services SMTP for one that already holds the name; certrelay cert explain --connector \"%2\" shows every certificate considered."},
	{ID: 12015, Name: "InternalTransportCertificateExpired", Source: SourceTransport, Category: TransportService, Severity: Warning, Level: Lowest, Throttle: day,
		Params: []string{"thumbprint", "notAfter"},
		Text:   "The internal transport certificate %1 expired on %2. It is still used between this organisation's servers, but renew it: certrelay cert new (answer yes to replace the internal transport certificate), then remove the old one."},
	{ID: 12016, Name: "STARTTLSCertificateExpired", Source: SourceTransport, Category: TransportService, Severity: Warning, Level: Lowest, Throttle: day,
		Params: []string{"fqdn", "thumbprint", "notAfter"},
		Text:   "The only certificate for %1, %2, expired on %3. STARTTLS still uses it, and clients will warn. Renew it: certrelay cert new --from %2 for a self-signed one, or request and import a new one from the CA."},
	{ID: 12017, Name: "InternalTransportCertificateExpiresSoon", Source: SourceTransport, Category: TransportService, Severity: Warning, Level: Lowest, Throttle: day,
		Params: []string{"thumbprint", "hours"},
		Text:   "The internal transport certificate %1 expires in %2 hours. Renew it before then: certrelay cert new (answer yes to replace the internal transport certificate)."},
	{ID: 12018, Name: "STARTTLSCertificateExpiresSoon", Source: SourceTransport, Category: TransportService, Severity: Warning, Level: Lowest, Throttle: day,
		Params: []string{"subject", "thumbprint", "hours"},
		Text:   "The STARTTLS certificate %2 (%1) expires in %3 hours. Renew it: certrelay cert new --from %2 for a self-signed one, or request and import a new one from the CA."},
	{ID: 12019, Name: "RemoteInternalTransportCertificateExpired", Source: SourceTransport, Category: TransportService, Severity: Warning, Level: Lowest, Throttle: day,
		Params: []string{"server", "thumbprint"},
		Text:   "Server %1 presented internal transport certificate %2, which has expired. On %1, run certrelay cert new to renew it."},
	{ID: 12023, Name: "CannotLoadInternalTransportCertificateFallbackServerFQDN", Source: SourceTransport, Category: TransportService, Severity: Warning, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint", "fallback"},
		Text:   "The internal transport certificate %1 cannot be loaded from the personal store; certificate %2, which holds this server's FQDN, is used instead. Restore %1 with certrelay cert import, or enable it for SMTP: certrelay cert enable %1 --services SMTP."},
	{ID: 12024, Name: "CannotLoadInternalTransportCertificateFallbackEphemeralCertificate", Source: SourceTransport, Category: TransportService, Severity: Information, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint", "ephemeral"},
		Text:   "The internal transport certificate %1 cannot be loaded from the personal store, so sessions with this organisation's servers are encrypted with %2, a self-signed certificate made in memory for this process. If %1 is still in the store, run certrelay cert enable %1 --services SMTP; if not, restore it with certrelay cert import FILE, or make a new one with certrelay cert new."},
	{ID: 1036, Name: "SmtpReceiveDirectTrustFailed", Source: SourceTransport, Category: SmtpReceive, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint", "remote"},
		Text:   "A server at [%2] presented certificate %1 for direct trust, but the directory holds no such certificate for it; the session was refused. On that server, check its internal transport certificate (certrelay server show) and that the directory has it."},
	{ID: 2018, Name: "SmtpSendDirectTrustFailed", Source: SourceTransport, Category: SmtpSend, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint", "remote"},
		Text:   "The server at [%2] presented certificate %1, which the directory does not hold for it; nothing was sent. Check that server's internal transport certificate, and run certrelay edge sync if it changed."},
	{ID: 1037, Name: "SmtpReceiveDirectTrustCertificateInvalid", Source: SourceTransport, Category: SmtpReceive, Severity: Warning, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint", "problem"},
		Text:   "The internal transport certificate %1 could not be validated on this server when receiving: %2. Run certrelay diagnose for the command that fixes it."},
	{ID: 2019, Name: "SmtpSendDirectTrustCertificateInvalid", Source: SourceTransport, Category: SmtpSend, Severity: Warning, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint", "problem"},
		Text:   "The internal transport certificate %1 could not be validated on this server when sending: %2. Run certrelay diagnose for the command that fixes it."},

	// The decisions of each session, written only when the category's
	// logging level is raised (SPEC D1; IDs 16070–16079, issue 13):
	// Set-EventLogLevel 'MSExchangeTransport\*' Expert shows every one.
	{ID: 16070, Name: "SmtpReceiveTlsNegotiated", Source: SourceTransport, Category: SmtpReceive, Severity: Information, Level: Medium,
		Params: []string{"connector", "client", "version", "cipher", "thumbprint"},
		Text:   "STARTTLS was negotiated on connector %1 with the client at [%2]: %3, %4, certificate %5. This event is written at logging level Medium and above; certrelay loglevel set 'MSExchangeTransport\\SmtpReceive' Lowest stops it."},
	{ID: 16071, Name: "CertificateSelected", Source: SourceTransport, Category: TransportService, Severity: Information, Level: High,
		Params: []string{"fqdn", "connector", "winner", "why", "candidates"},
		Text:   "Certificate selection for %1 (connector %2) chose %3: %4. Considered: %5. This event is written at logging level High and above; certrelay cert explain --connector \"%2\" shows the same decision with every reason."},
	{ID: 16072, Name: "DirectTrustChecked", Source: SourceTransport, Category: MessageSecurity, Severity: Information, Level: Expert,
		Params: []string{"direction", "server", "thumbprint", "result", "names"},
		Text:   "Direct trust (%1) checked certificate %3 for server %2: %4. The server's DNS names checked (D3): %5. This event is written at logging level Expert; certrelay trace --component 'Transport\\Certificate' shows each check live."},

	// Domain security (SPEC DS1): the receiving side (11012, 11015, 11017,
	// 11018; 16031 for a certificate that fails validation) refuses the
	// message; the sending side (11013, 11014, 11016, 11019, 11020) defers
	// it. 11012 and 11015 keep Exchange's symbolic names; the others are
	// named in the same fashion.
	{ID: 11012, Name: "MessageNotAuthenticatedTlsNotStarted", Source: SourceTransport, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "connector", "remote"},
		Text:   "Mail from domain-secured domain %1 reached connector %2 from [%3] without TLS, so it could not be authenticated and was refused. Ask %1's administrator to send to this organisation over TLS with a certificate for %1, or take %1 off the list: certrelay server set --tls-receive-domain-secure with the remaining domains."},
	{ID: 11015, Name: "TlsDomainClientCertificateSubjectMismatch", Source: SourceTransport, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "connector", "remote", "thumbprint", "domains"},
		Text:   "Mail from domain-secured domain %1 on connector %2 from [%3] was refused: the client's certificate %4 does not hold %1 (it holds %5). Ask %1's administrator for a certificate that holds %1, or take %1 off the list: certrelay server set --tls-receive-domain-secure with the remaining domains."},
	{ID: 11017, Name: "MessageNotAuthenticatedNoClientCertificate", Source: SourceTransport, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "connector", "remote"},
		Text:   "Mail from domain-secured domain %1 on connector %2 from [%3] was refused: the client used TLS but presented no certificate. Ask %1's administrator to present a certificate for %1 when sending here, or take %1 off the list: certrelay server set --tls-receive-domain-secure with the remaining domains."},
	{ID: 11018, Name: "MessageNotAuthenticatedTlsNotAdvertised", Source: SourceTransport, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "connector", "reason"},
		Text:   "Mail from domain-secured domain %1 on connector %2 was refused because this connector does not offer STARTTLS: %3. Enable a certificate for the connector's FQDN (certrelay cert explain --connector \"%2\" shows why none is used) and make sure the connector has the Tls auth mechanism."},
	{ID: 11013, Name: "TlsDomainSecureNegotiationFailed", Source: SourceTransport, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "host", "connector", "error"},
		Text:   "Mail to domain-secured domain %1 waits in the queue: the TLS negotiation with %2 through send connector %3 failed (%4), and domain security never sends without it. Check the partner's TLS service with posttls-finger or openssl s_client -starttls smtp, and this server's client certificate (certrelay cert explain --direction out --domain %1)."},
	{ID: 11014, Name: "TlsDomainSecureNotOffered", Source: SourceTransport, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "host", "connector"},
		Text:   "Mail to domain-secured domain %1 waits in the queue: %2 does not offer STARTTLS (send connector %3), and domain security never sends without it. Ask %1's administrator to offer STARTTLS, or take %1 off the list: certrelay server set --tls-send-domain-secure with the remaining domains."},
	{ID: 11016, Name: "TlsDomainServerCertificateSubjectMismatch", Source: SourceTransport, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "host", "thumbprint", "domains"},
		Text:   "Mail to domain-secured domain %1 waits in the queue: %2 presented certificate %3, which does not hold %1 (it holds %4). Ask %1's administrator for a certificate that holds %1, or take %1 off the list: certrelay server set --tls-send-domain-secure with the remaining domains."},
	{ID: 11019, Name: "TlsDomainServerCertificateValidationFailed", Source: SourceTransport, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "host", "thumbprint", "status", "problem"},
		Text:   "Mail to domain-secured domain %1 waits in the queue: the certificate %3 of %2 failed validation (%4): %5. If the partner's CA is one to trust, add its root: certrelay trust add FILE; otherwise ask %1's administrator for a certificate from a CA both sides trust."},
	{ID: 11020, Name: "TlsDomainServerCertificateRevocationFailed", Source: SourceTransport, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "host", "thumbprint", "status", "problem"},
		Text:   "Mail to domain-secured domain %1 waits in the queue: the revocation check of certificate %3 of %2 did not pass (%4): %5. A revoked certificate must be replaced by %1's administrator; when the CRL or OCSP responder is out of reach, check the network path or the proxy (certrelay server set --proxy URL)."},

	// certrelay's own transport events (IDs 16030–16039).
	{ID: 16030, Name: "STARTTLSCertificateRevocationUnknown", Source: SourceCertrelay, Category: TransportService, Severity: Warning, Level: Lowest, Throttle: day,
		Params: []string{"fqdn", "thumbprint", "status", "connector"},
		Text:   "TLS for %1 on connector %4 uses certificate %2 although its revocation could not be established (%3): no certificate from a trusted CA that holds %1 passes every check, so selection fell back to it as a last resort. See what the CRL and OCSP checks answered with certrelay cert verify %2; then repair the network path or the proxy (certrelay server set --proxy URL), or replace the certificate."},

	{ID: 16031, Name: "TlsDomainClientCertificateValidationFailed", Source: SourceCertrelay, Category: MessageSecurity, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domain", "connector", "remote", "thumbprint", "status", "problem"},
		Text:   "Mail from domain-secured domain %1 on connector %2 from [%3] was refused: the client's certificate %4 failed validation (%5): %6. If the partner's CA is one to trust, add its root: certrelay trust add FILE; a revoked certificate must be replaced by %1's administrator."},

	// certrelay's serving layer (IDs 16040–16049).
	{ID: 16040, Name: "CertificatePrivateKeyUnusable", Source: SourceCertrelay, Category: TransportService, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint", "keyFile", "error"},
		Text:   "The private key of certificate %1 cannot be loaded from %2 (%3), so no session uses the certificate: selection passes it over, and the next certificate that holds the name serves instead. Restore the key file from a backup, or replace the certificate: certrelay cert new --from %1 for a self-signed one, otherwise import it again with its key. certrelay cert explain shows what sessions get now."},

	// The access services: POP3, IMAP4 and UM (IDs 16060–16069, issue 14).
	{ID: 16060, Name: "AccessBindingFailed", Source: SourceCertrelay, Category: AccessService, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"service", "binding", "error", "retry"},
		Text:   "The %1 listener cannot listen on %2: %3. certrelay tries again in %4, then less and less often (at least once a minute). If another program holds the address, stop it (ss -ltnp shows which); or change the bindings: certrelay access pop set, certrelay access imap set or certrelay access um set (certrelay access pop show lists them)."},
	{ID: 16061, Name: "AccessBindingRestored", Source: SourceCertrelay, Category: AccessService, Severity: Information, Level: Lowest,
		Params: []string{"service", "binding", "attempts"},
		Text:   "The %1 listener listens on %2 now, after %3 failed attempts; certrelay events --id 16060 shows why they failed."},
	{ID: 16062, Name: "AccessCertificateMissing", Source: SourceCertrelay, Category: AccessService, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"service", "fqdn", "reason", "services", "cli"},
		Text:   "%1 has no certificate for %2 (its X509CertificateName, or the server's FQDN): %3. So %1 offers no STLS/STARTTLS, its SSL bindings refuse every handshake, and clients that insist on TLS cannot log in. Enable a certificate that holds %2 for %4 (certrelay cert enable THUMBPRINT --services %4, which also sets X509CertificateName to its first domain), or make one: certrelay cert new --domain %2 --services %4; certrelay cert explain --service %4 shows every certificate considered, and certrelay access %5 set --x509-certificate-name NAME changes the name."},
	{ID: 16063, Name: "AccessLimitReached", Source: SourceCertrelay, Category: AccessService, Severity: Warning, Level: Lowest, Throttle: 5 * time.Minute,
		Params: []string{"service", "client", "limit", "value", "cli", "option"},
		Text:   "%1 turned away or ended a session of [%2]: it met the limit %3 (%4). If legitimate clients need more, change it: certrelay access %5 set %6 VALUE (certrelay access %5 show lists the limits)."},
	{ID: 16064, Name: "AccessLoginsLocked", Source: SourceCertrelay, Category: AccessService, Severity: Warning, Level: Lowest, Throttle: hour,
		Params: []string{"service", "client", "failures", "lockout", "cli"},
		Text:   "%3 logins from [%2] failed (the last over %1), so POP3 and IMAP4 refuse logins from that address for %4 without checking passwords. If it is a user who forgot a password, wait or set a new one with certrelay mailbox add after certrelay mailbox remove; if it is an attack, block the address at the firewall. The limits are certrelay access %5 set --max-login-failures-per-source N --login-failure-lockout DURATION."},
	{ID: 16065, Name: "UMCertificateInUse", Source: SourceCertrelay, Category: AccessService, Severity: Information, Level: Lowest,
		Params: []string{"issuer", "serial", "thumbprint", "fqdn", "notAfter"},
		Text:   "UM's SIP listener in secure mode uses certificate %3 for %4: issuer %1, serial number %2, valid until %5. Export it for the IP gateways and IP PBXs that must trust it: certrelay cert export %3 --out um.cer."},
	{ID: 16066, Name: "UMCertificateExpiresSoon", Source: SourceCertrelay, Category: AccessService, Severity: Warning, Level: Lowest, Throttle: 23 * time.Hour,
		Params: []string{"thumbprint", "days", "notAfter"},
		Text:   "UM's certificate %1 expires in %2 days (%3). Replace it before then: certrelay cert new --from %1 for a self-signed one, or import a new one from the CA and enable it: certrelay cert enable THUMBPRINT --services UM; then give the new certificate to the IP gateways."},
	{ID: 16067, Name: "UMCertificateExpired", Source: SourceCertrelay, Category: AccessService, Severity: Warning, Level: Lowest, Throttle: 23 * time.Hour,
		Params: []string{"thumbprint", "notAfter"},
		Text:   "Certificate %1, enabled for UM, expired on %2: UM no longer uses it. Replace it (certrelay cert new --from %1, or import a new one and certrelay cert enable THUMBPRINT --services UM), give the new one to the IP gateways, then remove the old: certrelay cert remove %1."},
	{ID: 16068, Name: "UMCertificateCreated", Source: SourceCertrelay, Category: AccessService, Severity: Warning, Level: Lowest,
		Params: []string{"thumbprint", "fqdn", "notAfter"},
		Text:   "UM found no valid certificate for %2 enabled for UM, so it made the self-signed certificate %1 (valid until %3) to start in secure mode. IP gateways will not trust it until it is exported to them (certrelay cert export %1 --out um.cer); or enable a certificate from a CA: certrelay cert enable THUMBPRINT --services UM."},
	// certrelay's organisation directory (IDs 16050–16059).
	{ID: 16050, Name: "DirectoryUnavailable", Source: SourceCertrelay, Category: TransportService, Severity: Error, Level: Lowest,
		Params: []string{"directory", "error", "copy"},
		Text:   "The organisation's directory at %1 cannot be reached (%2). This server keeps running on its copy of %3: mail flows and direct trust uses the certificates it held then; commands that change the directory fail, and change nothing, until it is back. certrelay reconnects by itself; check that the directory server runs and that this server reaches it."},
	{ID: 16051, Name: "DirectoryRestored", Source: SourceCertrelay, Category: TransportService, Severity: Information, Level: Lowest,
		Params: []string{"directory", "outage"},
		Text:   "The organisation's directory at %1 is back after %2; this server's copy is current again, and what changed meanwhile is in use."},
	{ID: 16052, Name: "DirectoryObjectUnusable", Source: SourceCertrelay, Category: TransportService, Severity: Warning, Level: Lowest, Throttle: hour,
		Params: []string{"object", "problem"},
		Text:   "The directory holds %1, which certrelay cannot use: %2. This server keeps running without it (mail for a server whose object is unusable waits in the queue). If the object is a server's, run certrelay setup or certrelay cert new on that server, which publishes it again; otherwise correct or delete it in the directory (certrelay server list names the organisation's servers)."},
	// EdgeSync (SPEC X3, X4; issue 12).
	{ID: 16090, Name: "EdgeSubscriptionImported", Source: SourceCertrelay, Category: TransportService, Severity: Information, Level: Lowest,
		Params: []string{"edge", "fqdn", "thumbprint", "address"},
		Text:   "Edge %1 (%2) joined the organisation by subscription, with internal transport certificate %3; the hubs synchronise it at %4. certrelay edge status shows the rounds."},
	{ID: 16091, Name: "EdgeSyncFailed", Source: SourceCertrelay, Category: TransportService, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"edge", "error"},
		Text:   "EdgeSync with edge %1 failed: %2. The edge keeps working on what it holds, and this hub tries again by itself. Check that the edge runs and that its EdgeSync endpoint can be reached; if the edge was rebuilt, remove its subscription (certrelay edge remove) and subscribe it again (certrelay edge subscribe on the edge, certrelay edge import on a hub)."},
	{ID: 16092, Name: "EdgeSyncRestored", Source: SourceCertrelay, Category: TransportService, Severity: Information, Level: Lowest,
		Params: []string{"edge"},
		Text:   "EdgeSync with edge %1 works again."},
	{ID: 16093, Name: "EdgeCertificatePublished", Source: SourceCertrelay, Category: TransportService, Severity: Information, Level: Lowest,
		Params: []string{"edge", "old", "new"},
		Text:   "Edge %1 has a new internal transport certificate, %3 (it was %2): EdgeSync published it in the organisation, authenticated with the old one; no new subscription is needed."},
	{ID: 16053, Name: "DirectoryOwnObjectRepublished", Source: SourceCertrelay, Category: TransportService, Severity: Warning, Level: Lowest, Throttle: hour,
		Params: []string{"server", "objects"},
		Text:   "The directory's copy of %2 of server %1 differed from what this server holds (changed by hand, or a command that published and then failed); this server published its own again. Change this server's objects with certrelay commands on this server, not in the directory."},

	// certrelay's own management events.
	{ID: 16001, Name: "SetupCompleted", Source: SourceCertrelay, Category: Setup, Severity: Information, Level: Lowest,
		Params: []string{"server", "role", "fqdn", "dataDir"},
		Text:   "Server %1 was set up as a %2 with FQDN %3; its data directory is %4."},
	{ID: 16002, Name: "CertificateCreated", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"thumbprint", "subject", "domains", "services", "notAfter"},
		Text:   "Made self-signed certificate %1 (%2; domains %3; services %4), valid until %5."},
	{ID: 16003, Name: "CertificateRequestCreated", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"thumbprint", "subject", "domains"},
		Text:   "Made certificate request %1 (%2; domains %3). Send it to the CA, then import the answer with certrelay cert import FILE."},
	{ID: 16004, Name: "CertificateImported", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"thumbprint", "subject", "format", "hasKey"},
		Text:   "Imported certificate %1 (%2) from a %3 file; private key: %4."},
	{ID: 16005, Name: "CertificateServicesEnabled", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"thumbprint", "added", "services"},
		Text:   "Enabled certificate %1 for %2; it is now enabled for %3."},
	{ID: 16006, Name: "CertificateRemoved", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"thumbprint", "subject"},
		Text:   "Removed certificate %1 (%2) and, if no other certificate uses it, its private key."},
	{ID: 16007, Name: "CertificateExported", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"thumbprint", "format", "path"},
		Text:   "Exported certificate %1 as %2 to %3."},
	{ID: 16008, Name: "InternalTransportCertificateChanged", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"server", "old", "new"},
		Text:   "The internal transport certificate of %1 is now %3 (it was %2); the directory publishes the new one to the other servers."},

	// Certificates that look after themselves: ACME, renewal, the
	// self-probe (issue 18; IDs 16100–16119).
	{ID: 16100, Name: "AcmeAccountRegistered", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"directory", "account", "email"},
		Text:   "Registered ACME account %2 at %1 (contact %3); its key is kept in the data directory's acme/ folder, mode 0600."},
	{ID: 16101, Name: "AcmeCertificateIssued", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"thumbprint", "domains", "directory", "notAfter"},
		Text:   "The ACME CA %3 issued certificate %1 for %2, valid until %4; it is renewed before it expires (certrelay cert renew renews it now)."},
	{ID: 16102, Name: "AcmeOrderFailed", Source: SourceCertrelay, Category: Certificates, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"domains", "directory", "problem"},
		Text:   "The ACME CA %2 did not issue a certificate for %1: %3. Nothing was changed; certrelay cert new --acme says the likely fix."},
	{ID: 16103, Name: "CertificateRenewed", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"old", "new", "how", "notAfter", "services"},
		Text:   "Renewed certificate %1 as %2 (%3), valid until %4; the new one took over %5."},
	{ID: 16104, Name: "CertificateRenewalFailed", Source: SourceCertrelay, Category: Certificates, Severity: Warning, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint", "attempt", "error", "nextTry"},
		Text:   "Renewing certificate %1 failed (attempt %2): %3. certrelay tries again at %4; certrelay cert renew %1 tries now."},
	{ID: 16105, Name: "CertificateRenewalGivingUp", Source: SourceCertrelay, Category: Certificates, Severity: Error, Level: Lowest, Throttle: day,
		Params: []string{"thumbprint", "attempts", "error", "notAfter"},
		Text:   "certrelay stopped renewing certificate %1 by itself after %2 failed attempts (last: %3); it expires at %4. Fix the cause, then run certrelay cert renew %1."},
	{ID: 16106, Name: "CertificateProbeMismatch", Source: SourceCertrelay, Category: Certificates, Severity: Warning, Level: Lowest, Throttle: hour,
		Params: []string{"listener", "address", "fqdn", "served", "intended"},
		Text:   "The self-probe of %1 on %2 for %3 was served %4, but selection intends %5: another program may hold the address, the server may not have applied a change, or a key file may have been replaced. certrelay cert probe shows every listener; certrelay cert explain --fqdn %3 shows the intent."},
	{ID: 16107, Name: "StagedCertificateActivated", Source: SourceCertrelay, Category: Certificates, Severity: Information, Level: Lowest,
		Params: []string{"thumbprint", "services", "replaces"},
		Text:   "Activated staged certificate %1 for %2; it takes over from %3. certrelay cert rollback undoes it within the grace period."},
	{ID: 16108, Name: "StagedCertificateRolledBack", Source: SourceCertrelay, Category: Certificates, Severity: Warning, Level: Lowest,
		Params: []string{"thumbprint", "services"},
		Text:   "Rolled back the activation of certificate %1: it is no longer enabled for %2, and the certificates it replaced serve again."},
	{ID: 16109, Name: "StagedCertificateActivationRefused", Source: SourceCertrelay, Category: Certificates, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"thumbprint", "problem"},
		Text:   "The scheduled activation of certificate %1 was refused: %2. It stays staged; fix the problem, then run certrelay cert activate %1."},

	// The HTTPS console and API, accounts and the audit of changes (IDs
	// 16080–16089, issue 16).
	{ID: 16080, Name: "AdministrativeChange", Source: SourceCertrelay, Category: Console, Severity: Information, Level: Lowest,
		Params: []string{"account", "role", "from", "operation", "parameters"},
		Text:   "%1 (%2) from %3 ran %4 %5."},
	{ID: 16081, Name: "ConsoleLogin", Source: SourceCertrelay, Category: Console, Severity: Information, Level: Lowest,
		Params: []string{"account", "role", "from"},
		Text:   "%1 (%2) logged in to the console from %3."},
	{ID: 16082, Name: "ConsoleLoginFailed", Source: SourceCertrelay, Category: Console, Severity: Warning, Level: Lowest, Throttle: limitThrottle,
		Params: []string{"account", "from", "failures"},
		Text:   "A login to the console as %1 from %2 failed (%3 failures from that address in the last 15 minutes). If it is not one of your administrators mistyping, block the address; certrelay account list shows the accounts, certrelay account set NAME --password-file F changes a password."},
	{ID: 16083, Name: "ConsoleLoginRateLimited", Source: SourceCertrelay, Category: Console, Severity: Warning, Level: Lowest, Throttle: hour,
		Params: []string{"from", "retryAfter"},
		Text:   "Logins from %1 are refused for %2 after too many failures (an attack on the console's passwords, or a script with a wrong password). Nothing needs doing if it stops; otherwise block the address, or give scripts an API token (certrelay account token NAME)."},
	{ID: 16084, Name: "ConsoleCertificateMissing", Source: SourceCertrelay, Category: Console, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"hostName", "reason"},
		Text:   "The HTTPS console cannot serve %1: no certificate enabled for IIS can be used for that name — %2. Browsers get a failed handshake. Enable one that holds the name: certrelay cert enable THUMBPRINT --services IIS, or make one: certrelay cert new --domain %1 --services IIS; certrelay cert explain --fqdn %1 --service IIS shows every certificate considered."},
	{ID: 16085, Name: "ConsoleBindingFailed", Source: SourceCertrelay, Category: Console, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"listener", "binding", "error", "retry"},
		Text:   "The %1 cannot listen on %2: %3. certrelay tries again in %4, then less and less often. Stop the program that holds the address (ss -ltnp shows which), or move it: certrelay console set --bindings IP:PORT (--metrics-bindings for metrics)."},
	{ID: 16086, Name: "ConsoleBindingRestored", Source: SourceCertrelay, Category: Console, Severity: Information, Level: Lowest,
		Params: []string{"listener", "binding", "attempts"},
		Text:   "The %1 listens on %2 now, after %3 failed attempts; certrelay events --id 16085 shows why they failed."},
	{ID: 16087, Name: "ConsoleCertificateLastResort", Source: SourceCertrelay, Category: Console, Severity: Warning, Level: Lowest, Throttle: day,
		Params: []string{"hostName", "thumbprint", "how"},
		Text:   "The HTTPS console serves %1 with certificate %2 as a last resort (%3): browsers will warn. Renew or replace it: certrelay cert new --from %2 --services IIS for a self-signed one, or import a new one from the CA and certrelay cert enable THUMBPRINT --services IIS."},

	// Limits of the receive connectors (SPEC P1) and their listeners.
	// Throttled per connector, or per connector and client address.
	{ID: 16020, Name: "ReceiveConnectionLimitReached", Source: SourceTransport, Category: SmtpReceive, Severity: Warning, Level: Lowest, Throttle: limitThrottle,
		Params: []string{"connector", "client", "limit"},
		Text:   "Receive connector %1 turned away a connection from [%2] with 421 4.7.0: it already had %3 sessions, its MaxInboundConnection. If the load is legitimate, raise the limit: certrelay connector receive set \"%1\" --max-inbound-connection N."},
	{ID: 16021, Name: "ReceiveConnectionPerSourceLimitReached", Source: SourceTransport, Category: SmtpReceive, Severity: Warning, Level: Lowest, Throttle: limitThrottle,
		Params: []string{"connector", "client", "limit"},
		Text:   "Receive connector %1 turned away a connection from [%2] with 421 4.7.0: that address already had %3 sessions, the connector's MaxInboundConnectionPerSource. If that client is a legitimate relay, raise the limit: certrelay connector receive set \"%1\" --max-inbound-connection-per-source N."},
	{ID: 16022, Name: "ServerConnectionLimitReached", Source: SourceTransport, Category: SmtpReceive, Severity: Error, Level: Lowest, Throttle: limitThrottle,
		Params: []string{"connector", "client", "limit", "fileLimit"},
		Text:   "certrelay turned away a connection from [%2] to receive connector %1 with 421 4.7.0: it already had %3 sessions, all that its limit of %4 open files allows. Raise the open-file limit of certrelay serve (LimitNOFILE= in its service unit, or ulimit -n before starting it) and restart it."},
	{ID: 16023, Name: "ReceiveTimeLimitReached", Source: SourceTransport, Category: SmtpReceive, Severity: Warning, Level: Lowest, Throttle: limitThrottle,
		Params: []string{"connector", "client", "limit", "value", "option"},
		Text:   "Receive connector %1 ended the session of [%2] with 421 4.4.2: it reached the connector's %3 of %4 (a message in progress is not accepted). If legitimate clients need longer, raise it: certrelay connector receive set \"%1\" %5 DURATION."},
	{ID: 16024, Name: "ReceiveRecipientLimitReached", Source: SourceTransport, Category: SmtpReceive, Severity: Warning, Level: Lowest, Throttle: limitThrottle,
		Params: []string{"connector", "client", "limit"},
		Text:   "Receive connector %1 answered 452 4.5.3 to [%2]: a message may have at most %3 distinct recipients, its MaxRecipientsPerMessage; the client must send the others in another message. To allow more: certrelay connector receive set \"%1\" --max-recipients-per-message N."},
	{ID: 16025, Name: "ReceiveMessageSizeLimitReached", Source: SourceTransport, Category: SmtpReceive, Severity: Warning, Level: Lowest, Throttle: limitThrottle,
		Params: []string{"connector", "client", "limit"},
		Text:   "Receive connector %1 refused a message from [%2] with 552 5.3.4: it is larger than %3 bytes, the connector's MaxMessageSize. To accept larger messages: certrelay connector receive set \"%1\" --max-message-size SIZE."},
	{ID: 16026, Name: "ReceiveAcceptFailed", Source: SourceTransport, Category: SmtpReceive, Severity: Error, Level: Lowest, Throttle: limitThrottle,
		Params: []string{"binding", "error"},
		Text:   "The listener on %1 cannot accept connections (%2); it waits up to a second between tries, and clients wait meanwhile. Running out of open files is the usual cause: raise the open-file limit of certrelay serve (LimitNOFILE=, ulimit -n), or lower the connectors' --max-inbound-connection."},
	{ID: 16027, Name: "ReceiveConnectorBindingFailed", Source: SourceTransport, Category: SmtpReceive, Severity: Error, Level: Lowest, Throttle: hour,
		Params: []string{"connector", "binding", "error", "retry"},
		Text:   "Receive connector %1 cannot listen on %2: %3. certrelay tries again in %4, then less and less often (at least once a minute). If another program holds the address, stop it (ss -ltnp shows which); or move the connector: certrelay connector receive set \"%1\" --bindings IP:PORT."},
	{ID: 16028, Name: "ReceiveConnectorBindingRestored", Source: SourceTransport, Category: SmtpReceive, Severity: Information, Level: Lowest,
		Params: []string{"connector", "binding", "attempts"},
		Text:   "Receive connector %1 listens on %2 now, after %3 failed attempts; certrelay events --id 16027 shows why they failed."},
	{ID: 16029, Name: "OpenFileLimitBelowConnectionLimits", Source: SourceTransport, Category: SmtpReceive, Severity: Warning, Level: Lowest, Throttle: day,
		Params: []string{"fileLimit", "sessions", "connectorLimits"},
		Text:   "certrelay serve may open %1 files, so it holds at most %2 SMTP sessions at once (the rest is kept for its databases, queue and deliveries), fewer than its receive connectors' MaxInboundConnection add up to (%3); clients beyond %2 get 421 4.7.0. Raise the open-file limit (LimitNOFILE= in the service unit, or ulimit -n before starting it), or lower --max-inbound-connection."},
}

var byID = func() map[int]Definition {
	m := make(map[int]Definition, len(catalog))
	for _, d := range catalog {
		if _, dup := m[d.ID]; dup {
			panic(fmt.Sprintf("events: duplicate ID %d", d.ID))
		}
		m[d.ID] = d
	}
	return m
}()

// Lookup returns the definition of event id.
func Lookup(id int) (Definition, bool) {
	d, ok := byID[id]
	return d, ok
}

// Catalog returns every definition, by ID.
func Catalog() []Definition {
	out := append([]Definition(nil), catalog...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Categories returns every category of the catalog, as "Source\Category".
func Categories() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range catalog {
		k := d.Source + `\` + d.Category
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
