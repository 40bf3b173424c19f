// Package diagnose is certrelay's troubleshooter (SPEC §8, Q1–Q9): the
// procedures of the seeds' troubleshooting guides — an event appears, the
// administrator checks the certificate's services, its key's permissions,
// its names, the connectors' FQDNs, the trusted roots, the expiry dates —
// turned into checks that each find one kind of problem, show the
// evidence, name the events it causes, and give the command that repairs
// it.
//
// The checks are pure functions over Facts, which the caller (the admin
// layer's Test-CertrelayConfiguration, `certrelay diagnose`) gathers from
// the data directory and the organisation's directory, whether a server
// runs or not. A check never changes anything and never reads a private
// key: what it knows of keys is what the store says of their files (the
// same facts cert explain and the server's selection use).
//
// Adding a check: write a func(*Facts) []Finding in the file of its area,
// give it a unit test that builds the broken state in Facts and sees the
// finding (and a clean state and sees none), and add a line to Checks.
//
// Fixes are command lines in the marks of internal/admin's texts
// ({Enable-ExchangeCertificate T -Services SMTP}), so each face renders
// them in its own syntax: `certrelay cert enable T --services SMTP` for
// the CLI, the cmdlet for the shell. No library does this: it is the
// seeds' procedures, written down.
package diagnose

import (
	"sort"
	"strings"
	"time"

	"certrelay/internal/certview"
	"certrelay/internal/directory"
	"certrelay/internal/selection"
)

// Severity says how much a finding matters.
type Severity string

// Severities: an Error stops something working (mail, direct trust,
// STARTTLS); a Warning will, or weakens it.
const (
	Error   Severity = "Error"
	Warning Severity = "Warning"
)

// Evidence is one fact a finding rests on: a thumbprint, a name, a path,
// a mode.
type Evidence struct {
	Name  string
	Value string
}

// Step is one command of a fix, as a mark of internal/admin's texts
// ({Op arg -Param value}); Input says what the command reads on its
// standard input when it reads anything ("" when nothing), such as the
// PKCS#12 password of a backup.
type Step struct {
	Command string
	Input   string `json:",omitempty"`
}

// Finding is one problem found.
type Finding struct {
	Check    string // the check's ID: Q1 … Q9 (SPEC §8)
	Name     string // the check's name
	Severity Severity
	Events   []int  // the events the problem causes (SPEC §7)
	Problem  string // what is wrong, in words
	Evidence []Evidence
	// Fix is the commands that repair it, in order; Note what to know
	// to run them (as which account, what a placeholder stands for).
	Fix  []Step
	Note string `json:",omitempty"`
	// Subject names what the finding is about (a thumbprint, a
	// connector), so two findings of one check can be told apart.
	Subject string
}

// Facts is what the checks look at: this server, the organisation, the
// personal store judged now, the connectors. The caller fills it; the
// checks only read it.
type Facts struct {
	Now          time.Time
	ExpiryWindow time.Duration // "expires soon" (E5); 0: 30 days
	// Server is this server's object; Servers every server of the
	// organisation (this one included).
	Server  directory.Server
	Servers []directory.Server
	// Certificates are the personal store's certificates and requests
	// as cert list shows them (Status, RootCAType, Services, …), and
	// Candidates the same as selection sees them (key facts included).
	Certificates []certview.Certificate
	Candidates   []selection.Candidate
	// Receive are this server's receive connectors; Send the
	// organisation's send connectors this server is a source of.
	Receive []directory.ReceiveConnector
	Send    []directory.SendConnector
	// ServiceAccount is the account certrelay serve runs as.
	ServiceAccount string
	// Backups maps a thumbprint to a PKCS#12 file it was exported to
	// that still exists (event 16007), to restore it from.
	Backups map[string]string
	// Probes are the self-probes of this server's listeners (SPEC L2),
	// made by the caller when the server is this one.
	Probes []Probe
	// EdgeRounds are the EdgeSync rounds this server recorded (SPEC X3),
	// and EdgeSubscribed, on an edge, when its first round came (zero:
	// not subscribed).
	EdgeRounds     []EdgeRound
	EdgeSubscribed time.Time
}

// Check is one troubleshooter.
type Check struct {
	ID      string // Q1 … Q9
	Name    string
	Summary string
	Run     func(*Facts) []Finding
}

// Checks lists every check, in the order of SPEC §8.
var Checks = []Check{
	{"Q1", "InternalCertificateNotEnabledForSMTP", "the internal transport certificate is not enabled for SMTP (1037/2019, 12023/12024)", checkInternalNotSMTP},
	{"Q2", "InternalCertificateKeyUnreadable", "the service account cannot read the private key of a certificate it uses (1037/2019)", checkKeyUnreadable},
	{"Q3", "InternalCertificateLacksServerName", "the internal transport certificate lacks a DNS name of the server (1037/2019, D3)", checkInternalNames},
	{"Q4", "InternalCertificateLacksNLBName", "the internal transport certificate lacks a load-balancer name of the server (1037/2019)", checkNLBNames},
	{"Q5", "ConnectorFqdnWithoutCertificate", "a TLS connector's FQDN is in no certificate enabled for SMTP (12014)", checkConnectorFqdn},
	{"Q6", "InternalCertificateMissing", "the configured internal transport certificate is missing from the store (12012/12013/12024)", checkInternalMissing},
	{"Q7", "RootCATypeInconsistent", "a self-signed certificate with a root type, or a root trusted on this server only (C7)", checkRootCAType},
	{"Q8", "CertificateInUseUnfit", "a certificate enabled for a service is expired, expires soon, is not Valid or has no private key (12015–12018)", checkInUse},
	{"Q9", "EdgeSubscriptionStale", "an edge subscription has gone stale: EdgeSync fails direct trust, or an edge gets no rounds (16091)", checkEdgeStale},
	{"L2", "ListenerServesOtherCertificate", "a listener serves another certificate than selection intends, found by the self-probe (16106)", checkProbes},
}

// Run runs every check on f: errors first, then warnings, each in the
// order of Checks.
func Run(f *Facts) []Finding {
	out := []Finding{}
	for _, c := range Checks {
		for _, x := range c.Run(f) {
			x.Check, x.Name = c.ID, c.Name
			out = append(out, x)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i].Severity) < rank(out[j].Severity) })
	return out
}

func rank(s Severity) int {
	if s == Error {
		return 0
	}
	return 1
}

// window returns the "expires soon" window.
func (f *Facts) window() time.Duration {
	if f.ExpiryWindow > 0 {
		return f.ExpiryWindow
	}
	return 30 * 24 * time.Hour
}

// cert returns the store's certificate with thumbprint t, or nil.
func (f *Facts) cert(t string) *certview.Certificate {
	for i := range f.Certificates {
		if strings.EqualFold(f.Certificates[i].Thumbprint, t) {
			return &f.Certificates[i]
		}
	}
	return nil
}

// candidate returns the selection candidate with thumbprint t, or nil.
func (f *Facts) candidate(t string) *selection.Candidate {
	for i := range f.Candidates {
		if strings.EqualFold(f.Candidates[i].Thumbprint, t) {
			return &f.Candidates[i]
		}
	}
	return nil
}

// internal returns this server's internal transport certificate as the
// store holds it (nil when the directory names none or the store lacks
// it).
func (f *Facts) internal() *certview.Certificate {
	if f.Server.InternalTransportCertificateThumbprint == "" {
		return nil
	}
	c := f.cert(f.Server.InternalTransportCertificateThumbprint)
	if c == nil || c.CertificateRequest != "" {
		return nil
	}
	return c
}

// quote makes a value one word of a mark: quoted when it holds a space
// or a character marks give a meaning to, or starts with a dash.
func quote(v string) string {
	if v != "" && !strings.HasPrefix(v, "-") && !strings.ContainsAny(v, " '{}#\t") {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// cmd builds a Step from an operation and its words, quoting the values:
// cmd("Enable-ExchangeCertificate", T, "-Services", "SMTP").
func cmd(op string, words ...string) Step {
	parts := []string{op}
	for _, w := range words {
		if strings.HasPrefix(w, "-") && len(w) > 1 && w[1] >= 'A' && w[1] <= 'Z' {
			parts = append(parts, w) // a parameter's name
			continue
		}
		parts = append(parts, quote(w))
	}
	return Step{Command: "{" + strings.Join(parts, " ") + "}"}
}

func has(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
