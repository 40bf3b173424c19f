package selection

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sort"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/store"
	"certrelay/internal/trust"
)

// Candidate is one certificate of the personal store as selection sees
// it. The caller fills it from the store and trust.
type Candidate struct {
	Thumbprint   string
	Subject      string
	Issuer       string
	Domains      []string // CertificateDomains
	NotBefore    time.Time
	NotAfter     time.Time
	IsSelfSigned bool
	Services     store.Services
	Status       trust.Status
	Pending      bool // a pending request (never used)
	Cert         *x509.Certificate
	// HasKey: the store holds the private key; KeyReadable: the service
	// account can read it (S2). The key must not be password-protected or
	// on a removable device: certrelay's keys never are.
	HasKey      bool
	KeyReadable bool
	// TLS is the certificate ready for a handshake (key and chain loaded),
	// or nil when it could not be loaded; KeyError says why.
	TLS      *tls.Certificate
	KeyError string
}

// Request says what a session needs.
type Request struct {
	FQDN    string         // S1: the name to match
	Service store.Services // SMTP, POP, IMAP, IIS or UM
	// OneLabel restricts wildcards to one label (S3's per-connector switch).
	OneLabel bool
	// Explicit names the certificate as "<I>issuer<S>subject" (S4a); the
	// FQDN is then not matched.
	Explicit string
	// Compat2007 reproduces Exchange 2007 RTM's POP3/IMAP4 selection (S9):
	// the newest certificate wins whatever its issuer, wildcards do not match.
	Compat2007 bool
}

// Verdict is what selection made of one candidate.
type Verdict string

// Verdicts.
const (
	Rejected   Verdict = "rejected"    // not a candidate (S2, S3) or unusable (S4)
	PassedOver Verdict = "passed over" // a candidate, but another won
	Chosen     Verdict = "chosen"
	NotReached Verdict = "not reached" // the walk ended before it (S4)
)

// Consideration is one line of the explanation.
type Consideration struct {
	Thumbprint string
	Subject    string
	NotBefore  time.Time
	Verdict    Verdict
	Reason     string
}

// Outcome kinds: how the winner won (S4).
const (
	WonTrusted           = "trusted"            // CA-issued, chain and revocation pass
	WonRevocationUnknown = "revocation-unknown" // CA-issued, revocation could not be established (fallback)
	WonSelfSigned        = "self-signed"        // self-signed and valid
	WonExpired           = "expired"            // expired: still used, with event 12016
	WonNewest            = "newest"             // S9 compatibility: newest wins
	WonExplicit          = "explicit"           // S4a
)

// Decision is the result of Select.
type Decision struct {
	Request Request
	Winner  *Candidate // nil: no certificate (S5)
	How     string     // one of the Won* constants, "" without a winner
	// Why says in words why the winner won, or why there is none.
	Why        string
	Considered []Consideration
}

// Expired reports whether the winner has expired (12016, S4).
func (d *Decision) Expired(now time.Time) bool {
	return d.Winner != nil && now.After(d.Winner.NotAfter)
}

// Select decides which certificate serves req (SPEC S2–S4, S4a, S9). It
// is deterministic: candidates are walked newest NotBefore first, ties
// broken by thumbprint, whatever their order in cands.
func Select(cands []Candidate, req Request, now time.Time) Decision {
	d := Decision{Request: req}
	if req.Explicit == "" && IsWildcard(req.FQDN) {
		d.Why = fmt.Sprintf("the name to match, %q, is itself a wildcard: a connector FQDN must be a host name (S3)", req.FQDN)
		for _, c := range cands {
			d.Considered = append(d.Considered, consider(c, Rejected, "the search name is a wildcard"))
		}
		return d
	}
	var issuerWant, subjectWant string
	if req.Explicit != "" {
		var err error
		if issuerWant, subjectWant, err = ParseTLSCertificateName(req.Explicit); err != nil {
			d.Why = err.Error()
			return d
		}
	}
	order := make([]int, len(cands))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ca, cb := &cands[order[a]], &cands[order[b]]
		if !ca.NotBefore.Equal(cb.NotBefore) {
			return ca.NotBefore.After(cb.NotBefore)
		}
		return ca.Thumbprint < cb.Thumbprint
	})
	verdict := make([]Consideration, len(cands))
	var walk []int // S2/S3 candidates, in walk order
	for _, i := range order {
		c := &cands[i]
		if why := rejectS2(c, req, issuerWant, subjectWant); why != "" {
			verdict[i] = consider(*c, Rejected, why)
			continue
		}
		walk = append(walk, i)
	}
	winner, how, why := walkS4(cands, walk, req, now, verdict)
	for _, i := range order {
		d.Considered = append(d.Considered, verdict[i])
	}
	if winner >= 0 {
		w := cands[winner]
		d.Winner, d.How, d.Why = &w, how, why
	} else {
		d.Why = why
	}
	return d
}

func consider(c Candidate, v Verdict, reason string) Consideration {
	return Consideration{Thumbprint: c.Thumbprint, Subject: c.Subject, NotBefore: c.NotBefore, Verdict: v, Reason: reason}
}

// rejectS2 returns why c is not a candidate for req, or "".
func rejectS2(c *Candidate, req Request, issuerWant, subjectWant string) string {
	switch {
	case c.Pending:
		return "it is a pending request, not a certificate"
	case !c.Services.Has(req.Service):
		return fmt.Sprintf("it is not enabled for %s (enabled: %s); enable it with certrelay cert enable %s --services %s", req.Service, c.Services, c.Thumbprint, req.Service)
	}
	if req.Explicit != "" {
		if !EqualNames(c.Issuer, issuerWant) || !EqualNames(c.Subject, subjectWant) {
			return "its issuer and subject are not the connector's TlsCertificateName"
		}
	} else if req.Compat2007 {
		if !matchExact(c.Domains, req.FQDN) {
			return fmt.Sprintf("it does not hold %s (wildcards do not count in the Exchange 2007 compatibility mode)", req.FQDN)
		}
	} else if !MatchName(c.Domains, req.FQDN, req.OneLabel) {
		return fmt.Sprintf("it does not hold %s (its domains: %s)", req.FQDN, strings.Join(c.Domains, ", "))
	}
	if c.Cert != nil {
		if ok, why := certinfo.UsableForTLSServer(c.Cert); !ok {
			return why
		}
		if why := keyProblem(c.Cert.PublicKey); why != "" {
			return why
		}
	}
	switch {
	case !c.HasKey:
		return "the store holds no private key for it"
	case !c.KeyReadable:
		return "the service account cannot read its private key (certrelay cert enable " + c.Thumbprint + " --services " + req.Service.String() + " grants it)"
	case c.TLS == nil:
		if c.KeyError != "" {
			return "its private key cannot be loaded: " + c.KeyError
		}
		return "its private key cannot be loaded"
	}
	return ""
}

func keyProblem(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < certinfo.MinRSABits {
			return fmt.Sprintf("its RSA key has %d bits, under %d", k.N.BitLen(), certinfo.MinRSABits)
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return fmt.Sprintf("its key type %T cannot be used for TLS", pub)
	}
	return ""
}

func matchExact(domains []string, fqdn string) bool {
	fqdn = strings.TrimSuffix(fqdn, ".")
	for _, d := range domains {
		if strings.EqualFold(d, fqdn) {
			return true
		}
	}
	return false
}

// walkS4 reproduces Exchange's walk over the candidates, newest NotBefore
// first: the first CA-issued certificate whose chain and revocation pass
// wins at once; the first whose revocation is merely unknown and the
// first self-signed one are remembered; an expired certificate ends the
// walk (then: the revocation fallback, else that expired certificate if
// CA-issued, else the self-signed one seen, else the expired self-signed
// one); at the end of the list: the revocation fallback, then the
// self-signed one, then none.
func walkS4(cands []Candidate, walk []int, req Request, now time.Time, verdict []Consideration) (int, string, string) {
	if len(walk) == 0 {
		return -1, "", noneWhy(req)
	}
	if req.Explicit != "" || req.Compat2007 {
		return walkNewest(cands, walk, req, now, verdict)
	}
	revFallback, selfSeen := -1, -1
	mark := func(i int, v Verdict, reason string) { verdict[i] = consider(cands[i], v, reason) }
	finish := func(win int, how, why string, from int) (int, string, string) {
		for k, i := range walk {
			if verdict[i].Verdict != "" {
				continue
			}
			if k > from {
				mark(i, NotReached, "the walk ended before it")
			}
		}
		for _, i := range walk {
			if i == win {
				mark(i, Chosen, why)
			} else if verdict[i].Verdict == "" {
				mark(i, PassedOver, "another certificate won")
			}
		}
		return win, how, why
	}
	for k, i := range walk {
		c := &cands[i]
		expired := now.After(c.NotAfter)
		switch {
		case expired:
			mark(i, PassedOver, "it has expired, which ends the walk (S4)")
			switch {
			case revFallback >= 0:
				return finish(revFallback, WonRevocationUnknown, "CA-issued and the newest whose revocation could not be established; the walk ended at an expired certificate", k)
			case !c.IsSelfSigned && (c.Status == trust.DateInvalid):
				return finish(i, WonExpired, "CA-issued but expired: no valid certificate came before it, so it is still used (event 12016)", k)
			case selfSeen >= 0:
				return finish(selfSeen, WonSelfSigned, "self-signed and valid; no CA-issued certificate came before the walk ended at an expired one", k)
			case c.IsSelfSigned && c.Status == trust.DateInvalid:
				return finish(i, WonExpired, "self-signed and expired, the last resort: still used (event 12016)", k)
			}
			verdict[i] = consider(*c, Rejected, "it has expired and is "+string(c.Status))
			return finish(-1, "", noneWhy(req), k)
		case c.Status == trust.Valid && !c.IsSelfSigned:
			return finish(i, WonTrusted, "issued by a trusted CA, chain and revocation pass, and the newest such (a CA-issued certificate beats any self-signed one)", k)
		case c.Status == trust.Valid && c.IsSelfSigned:
			if selfSeen < 0 {
				selfSeen = i
				mark(i, PassedOver, "self-signed: remembered in case no CA-issued certificate is found")
			} else {
				mark(i, PassedOver, "self-signed, and a newer self-signed one was seen first")
			}
		case !c.IsSelfSigned && (c.Status == trust.RevocationCheckFailure || c.Status == trust.Unknown):
			if revFallback < 0 {
				revFallback = i
				mark(i, PassedOver, "CA-issued, but its revocation could not be established ("+string(c.Status)+"): remembered as the fallback")
			} else {
				mark(i, PassedOver, "CA-issued with revocation unknown, and a newer one was seen first")
			}
		default:
			mark(i, Rejected, fmt.Sprintf("its Status is %s", c.Status))
		}
	}
	switch {
	case revFallback >= 0:
		return finish(revFallback, WonRevocationUnknown, "CA-issued, the newest whose revocation could not be established: no CA-issued certificate passed every check", len(walk))
	case selfSeen >= 0:
		return finish(selfSeen, WonSelfSigned, "self-signed and valid, the newest such: no certificate from a trusted CA holds the name", len(walk))
	}
	return finish(-1, "", noneWhy(req), len(walk))
}

// walkNewest serves S4a and S9: the newest usable certificate wins
// (valid or, as a last resort, expired), whatever its issuer.
func walkNewest(cands []Candidate, walk []int, req Request, now time.Time, verdict []Consideration) (int, string, string) {
	how := WonNewest
	if req.Explicit != "" {
		how = WonExplicit
	}
	win, expired := -1, -1
	for _, i := range walk {
		c := cands[i]
		switch {
		case win < 0 && (c.Status == trust.Valid || c.Status == trust.RevocationCheckFailure || c.Status == trust.Unknown):
			win = i
		case c.Status == trust.DateInvalid && now.After(c.NotAfter) && expired < 0:
			expired = i
			verdict[i] = consider(c, PassedOver, "expired: kept as the last resort")
		case verdict[i].Verdict == "":
			if c.Status != trust.Valid && c.Status != trust.RevocationCheckFailure && c.Status != trust.Unknown {
				verdict[i] = consider(c, Rejected, fmt.Sprintf("its Status is %s", c.Status))
			}
		}
	}
	why := "the newest usable certificate"
	if req.Explicit != "" {
		why = "the connector names it (TlsCertificateName), and it is the newest usable one with that issuer and subject"
	}
	if win < 0 && expired >= 0 {
		win, how, why = expired, WonExpired, "expired, but the only one: still used (event 12016)"
	}
	for _, i := range walk {
		switch {
		case i == win:
			verdict[i] = consider(cands[i], Chosen, why)
		case verdict[i].Verdict == "":
			verdict[i] = consider(cands[i], PassedOver, "a newer one was chosen")
		}
	}
	if win < 0 {
		return -1, "", noneWhy(req)
	}
	return win, how, why
}

func noneWhy(req Request) string {
	if req.Explicit != "" {
		return fmt.Sprintf("no usable certificate in the personal store has the issuer and subject %s (S4a)", req.Explicit)
	}
	return fmt.Sprintf("no usable certificate enabled for %s holds %s", req.Service, req.FQDN)
}

// ParseTLSCertificateName reads "<I>issuer<S>subject" (S4a).
func ParseTLSCertificateName(s string) (issuer, subject string, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "<I>")
	if !ok {
		return "", "", fmt.Errorf("TlsCertificateName %q must be written <I>issuer<S>subject", s)
	}
	issuer, subject, ok = strings.Cut(rest, "<S>")
	if !ok || strings.TrimSpace(issuer) == "" || strings.TrimSpace(subject) == "" {
		return "", "", fmt.Errorf("TlsCertificateName %q must be written <I>issuer<S>subject", s)
	}
	return strings.TrimSpace(issuer), strings.TrimSpace(subject), nil
}

// EqualNames compares two X.500 names as written by people: attribute
// order (RFC 4514 or the seeds' C-first), case and spaces around commas
// do not matter.
func EqualNames(a, b string) bool { return canonicalName(a) == canonicalName(b) }

func canonicalName(n string) string {
	s, err := certinfo.ParseSubject(n)
	if err != nil {
		return strings.ToLower(strings.Join(strings.Fields(n), ""))
	}
	parts := strings.Split(strings.ToLower(s.String()), ",")
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// ForConnector builds the request of a connector's session (S1): the
// connector's FQDN, or the server's physical FQDN when it has none; its
// explicit certificate name (S4a) and wildcard switch (S3).
func ForConnector(connectorFqdn, serverFqdn, tlsCertificateName string, oneLabel bool, svc store.Services) Request {
	fqdn := strings.ToLower(strings.TrimSuffix(connectorFqdn, "."))
	if fqdn == "" {
		fqdn = strings.ToLower(strings.TrimSuffix(serverFqdn, "."))
	}
	return Request{FQDN: fqdn, Service: svc, OneLabel: oneLabel, Explicit: tlsCertificateName}
}
