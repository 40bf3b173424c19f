package selection

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"sort"
	"strings"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/certprop"
)

// Candidate is one certificate of the personal store as selection sees
// it: facts, never a private key. The caller fills it from the store and
// trust; whoever serves the winner loads its key (internal/serving), so
// that everyone who asks — a server, or `cert explain` run by any account
// that can read the data directory — gets the same decision.
type Candidate struct {
	Thumbprint   string
	Subject      string
	Issuer       string
	Domains      []string // CertificateDomains
	NotBefore    time.Time
	NotAfter     time.Time
	IsSelfSigned bool
	Services     certprop.Services
	Status       certprop.Status
	Pending      bool // a pending request (never used)
	Cert         *x509.Certificate
	// HasKey: the store holds the private key; KeyReadable: the service
	// account can read it (S2). The key must not be password-protected or
	// on a removable device: certrelay's keys never are.
	HasKey      bool
	KeyReadable bool
	// KeyError says, as a clause starting "its …" with the fix, why the
	// private key cannot be used (file missing, unreadable, damaged);
	// selection gives it as the reason and rejects the candidate. When it
	// is "" but HasKey or KeyReadable is false, a generic reason is given.
	// KeyWarning names a key problem that does not stop its use (a key
	// file other accounts can read), with the fix; the explanation
	// repeats it for every candidate not rejected.
	KeyError   string
	KeyWarning string

	// Selection does not read these: they travel with the winner to the
	// code that serves it. KeyID names the private key in the store;
	// Chain holds the intermediates to send after the certificate (not
	// the root, RFC 8446 4.4.2).
	KeyID string
	Chain []*x509.Certificate
}

// Request says what a session needs.
type Request struct {
	FQDN    string            // S1: the name to match
	Service certprop.Services // SMTP, POP, IMAP, IIS or UM
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

// LastResort reports whether the winner is one of S4's last resorts, used
// only because nothing better holds the name: WonExpired (event 12016) or
// WonRevocationUnknown (event 16030); "" for any other winner, or none.
// It looks at the winner itself, so a certificate named by a connector
// (S4a) or chosen in the Exchange 2007 mode (S9) counts too.
func (d *Decision) LastResort(now time.Time) string {
	if d.Winner == nil {
		return ""
	}
	switch u := Usability(d.Winner, now); u {
	case WonExpired, WonRevocationUnknown:
		return u
	}
	return ""
}

// Usability says how S4 can use a certificate that passed S2, on its
// own, whatever the other candidates: WonTrusted (CA-issued and Valid),
// WonSelfSigned (self-signed and Valid), or one of the last resorts —
// WonRevocationUnknown (CA-issued, revocation could not be established)
// and WonExpired (expired, Status DateInvalid) — or "" when S4 never uses
// it (revoked, untrusted, invalid, not yet valid). The walk and everything
// that tells administrators what selection will do (cert enable) use it.
func Usability(c *Candidate, now time.Time) string {
	switch {
	case now.After(c.NotAfter):
		if c.Status == certprop.DateInvalid {
			return WonExpired
		}
	case c.Status == certprop.Valid && !c.IsSelfSigned:
		return WonTrusted
	case c.Status == certprop.Valid:
		return WonSelfSigned
	case !c.IsSelfSigned && (c.Status == certprop.RevocationCheckFailure || c.Status == certprop.Unknown):
		return WonRevocationUnknown
	}
	return ""
}

// Select decides which certificate serves req (SPEC S2–S4, S4a, S9). It
// is deterministic: candidates are walked newest NotBefore first, ties
// broken by thumbprint, whatever their order in cands.
func Select(cands []Candidate, req Request, now time.Time) Decision {
	d := Decision{Request: req}
	p := plan(cands, req)
	if p.refused != "" {
		d.Why = p.refused
		for _, i := range p.order {
			d.Considered = append(d.Considered, p.verdict[i])
		}
		return d
	}
	winner, how, why := walkS4(cands, p.walk, req, now, p.verdict)
	if winner < 0 {
		why = noneWhy(cands, req, p)
	}
	for _, i := range p.order {
		v := p.verdict[i]
		if w := cands[i].KeyWarning; w != "" && v.Verdict != Rejected {
			v.Reason += "; warning: " + w
		}
		d.Considered = append(d.Considered, v)
	}
	if winner >= 0 {
		w := cands[winner]
		if w.KeyWarning != "" {
			why += "; warning: " + w.KeyWarning
		}
		d.Winner, d.How, d.Why = &w, how, why
	} else {
		d.Why = why
	}
	return d
}

// Kinds of S2 rejection, which say how near a candidate came: the
// explanation of "no certificate" names the near misses.
const (
	notHolder    = iota // a pending request, or another name (issuer and subject for S4a)
	notEnabled          // holds the name, not enabled for the service
	unusableCert        // holds the name and is enabled, but the certificate cannot serve TLS
	unusableKey         // … but its private key cannot be used
)

// planned is the part of a decision that does not depend on S4: the walk
// order of every candidate, the S2 candidates in that order, and the
// verdicts (with their kinds) of the rejected ones.
type planned struct {
	order   []int // every candidate, newest NotBefore first, then by thumbprint
	walk    []int // the S2 candidates, in that order
	inWalk  []bool
	verdict []Consideration
	kind    []int  // for S2 rejections: notHolder, notEnabled, …
	refused string // the request itself cannot be served (a wildcard FQDN, a bad TlsCertificateName)
}

// plan sorts cands into walk order and applies S2 and S3.
func plan(cands []Candidate, req Request) planned {
	p := planned{order: make([]int, len(cands)), verdict: make([]Consideration, len(cands)), kind: make([]int, len(cands)), inWalk: make([]bool, len(cands))}
	for i := range p.order {
		p.order[i] = i
	}
	sort.SliceStable(p.order, func(a, b int) bool {
		ca, cb := &cands[p.order[a]], &cands[p.order[b]]
		if !ca.NotBefore.Equal(cb.NotBefore) {
			return ca.NotBefore.After(cb.NotBefore)
		}
		return ca.Thumbprint < cb.Thumbprint
	})
	var issuerWant, subjectWant string
	switch {
	case req.Explicit == "" && IsWildcard(req.FQDN):
		p.refused = fmt.Sprintf("the name to match, %q, is itself a wildcard: a connector FQDN must be a host name (S3)", req.FQDN)
	case req.Explicit != "":
		var err error
		if issuerWant, subjectWant, err = ParseTLSCertificateName(req.Explicit); err != nil {
			p.refused = err.Error()
		}
	}
	if p.refused != "" {
		for _, i := range p.order {
			p.verdict[i] = consider(cands[i], Rejected, "the request cannot be served: "+p.refused)
		}
		return p
	}
	for _, i := range p.order {
		c := &cands[i]
		if why, kind := rejectS2(c, req, issuerWant, subjectWant); why != "" {
			p.verdict[i], p.kind[i] = consider(*c, Rejected, why), kind
			continue
		}
		p.walk = append(p.walk, i)
		p.inWalk[i] = true
	}
	return p
}

func consider(c Candidate, v Verdict, reason string) Consideration {
	return Consideration{Thumbprint: c.Thumbprint, Subject: c.Subject, NotBefore: c.NotBefore, Verdict: v, Reason: reason}
}

// rejectS2 returns why c is not a candidate for req, and how near it came;
// "" when it is one.
func rejectS2(c *Candidate, req Request, issuerWant, subjectWant string) (string, int) {
	if c.Pending {
		return "it is a pending request, not a certificate", notHolder
	}
	notHeld := holds(c, req, issuerWant, subjectWant)
	if !c.Services.Has(req.Service) {
		kind := notEnabled
		if notHeld != "" {
			kind = notHolder
		}
		return fmt.Sprintf("it is not enabled for %s (enabled: %s); enable it with certrelay cert enable %s --services %s", req.Service, c.Services, c.Thumbprint, req.Service), kind
	}
	if notHeld != "" {
		return notHeld, notHolder
	}
	if c.Cert != nil {
		if ok, why := certinfo.UsableForTLSServer(c.Cert); !ok {
			return why, unusableCert
		}
		if why := keyProblem(c.Cert.PublicKey); why != "" {
			return why, unusableCert
		}
	}
	if c.KeyError != "" {
		return c.KeyError, unusableKey
	}
	switch {
	case !c.HasKey:
		return "the store holds no private key for it", unusableKey
	case !c.KeyReadable:
		return "the service account cannot read its private key (certrelay cert enable " + c.Thumbprint + " --services " + req.Service.String() + " grants it)", unusableKey
	}
	return "", 0
}

// holds returns "" when c answers req's name (S3), or the explicit issuer
// and subject (S4a), else why not.
func holds(c *Candidate, req Request, issuerWant, subjectWant string) string {
	switch {
	case req.Explicit != "":
		if !EqualNames(c.Issuer, issuerWant) || !EqualNames(c.Subject, subjectWant) {
			return "its issuer and subject are not the connector's TlsCertificateName"
		}
	case req.Compat2007:
		if !matchExact(c.Domains, req.FQDN) {
			return fmt.Sprintf("it does not hold %s (wildcards do not count in the Exchange 2007 compatibility mode)", req.FQDN)
		}
	case !MatchName(c.Domains, req.FQDN, req.OneLabel):
		return fmt.Sprintf("it does not hold %s (its domains: %s)", req.FQDN, strings.Join(c.Domains, ", "))
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
// self-signed one, then none. It returns the winner's index (-1 for none),
// how it won and why; the caller explains "none". It sets the verdict of
// every walked candidate.
func walkS4(cands []Candidate, walk []int, req Request, now time.Time, verdict []Consideration) (int, string, string) {
	if len(walk) == 0 {
		return -1, "", ""
	}
	if umService(req) {
		return walkUM(cands, walk, now, verdict)
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
	for _, i := range walk {
		verdict[i] = Consideration{}
	}
	const revEvent = " — a last resort: each session that uses it logs event 16030"
	for k, i := range walk {
		c := &cands[i]
		switch u := Usability(c, now); {
		case now.After(c.NotAfter):
			mark(i, PassedOver, "it has expired, which ends the walk (S4)")
			switch {
			case revFallback >= 0:
				return finish(revFallback, WonRevocationUnknown, "CA-issued and the newest whose revocation could not be established; the walk ended at an expired certificate"+revEvent, k)
			case !c.IsSelfSigned && u == WonExpired:
				return finish(i, WonExpired, "CA-issued but expired: no valid certificate came before it, so it is still used (event 12016)", k)
			case selfSeen >= 0:
				return finish(selfSeen, WonSelfSigned, "self-signed and valid; no CA-issued certificate came before the walk ended at an expired one", k)
			case u == WonExpired:
				return finish(i, WonExpired, "self-signed and expired, the last resort: still used (event 12016)", k)
			}
			verdict[i] = consider(*c, Rejected, "it has expired and is "+string(c.Status)+", which ends the walk (S4)")
			return finish(-1, "", "", k)
		case u == WonTrusted:
			return finish(i, WonTrusted, "issued by a trusted CA, chain and revocation pass, and the newest such (a CA-issued certificate beats any self-signed one)", k)
		case u == WonSelfSigned:
			if selfSeen < 0 {
				selfSeen = i
				mark(i, PassedOver, "self-signed: remembered in case no CA-issued certificate is found")
			} else {
				mark(i, PassedOver, "self-signed, and a newer self-signed one was seen first")
			}
		case u == WonRevocationUnknown:
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
		return finish(revFallback, WonRevocationUnknown, "CA-issued, the newest whose revocation could not be established: no CA-issued certificate passed every check"+revEvent, len(walk))
	case selfSeen >= 0:
		return finish(selfSeen, WonSelfSigned, "self-signed and valid, the newest such: no certificate from a trusted CA holds the name", len(walk))
	}
	return finish(-1, "", "", len(walk))
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
		case win < 0 && (c.Status == certprop.Valid || c.Status == certprop.RevocationCheckFailure || c.Status == certprop.Unknown):
			win = i
		case c.Status == certprop.DateInvalid && now.After(c.NotAfter) && expired < 0:
			expired = i
			verdict[i] = consider(c, PassedOver, "expired: kept as the last resort")
		case verdict[i].Verdict == "":
			if c.Status != certprop.Valid && c.Status != certprop.RevocationCheckFailure && c.Status != certprop.Unknown {
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
		return -1, "", ""
	}
	return win, how, why
}

// noneWhy explains why no certificate serves req: the plain fact when no
// certificate came near, else the near misses — certificates that hold
// the name but are not enabled for the service, cannot serve TLS, have no
// usable private key, or have a Status S4 never uses — with their
// reasons, so that 12014 and explain say what to fix.
func noneWhy(cands []Candidate, req Request, p planned) string {
	what := fmt.Sprintf("no usable certificate enabled for %s holds %s", req.Service, req.FQDN)
	if req.Explicit != "" {
		what = fmt.Sprintf("no usable certificate in the personal store has the issuer and subject %s (S4a)", req.Explicit)
	}
	var near []string
	keys := 0
	for _, i := range p.order {
		v := p.verdict[i]
		if v.Verdict != Rejected || !p.inWalk[i] && p.kind[i] == notHolder {
			continue
		}
		if !p.inWalk[i] && p.kind[i] == unusableKey {
			keys++
		}
		near = append(near, v.Thumbprint+": "+v.Reason)
	}
	if len(near) == 0 {
		return what
	}
	const most = 3
	list := strings.Join(near[:min(len(near), most)], "; ")
	if len(near) > most {
		list += fmt.Sprintf("; and %d more (certrelay cert explain lists them)", len(near)-most)
	}
	n, held, are := fmt.Sprintf("%d certificates", len(near)), "hold "+req.FQDN, "are"
	if len(near) == 1 {
		n, held, are = "1 certificate", "holds "+req.FQDN, "is"
	}
	if req.Explicit != "" {
		held = map[bool]string{true: "has", false: "have"}[len(near) == 1] + " that issuer and subject"
	}
	if keys == len(near) {
		return fmt.Sprintf("%s %s and %s enabled for %s, but none has a usable private key — %s", n, held, are, req.Service, list)
	}
	return fmt.Sprintf("%s; %s %s but cannot serve it — %s", what, n, held, list)
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
func ForConnector(connectorFqdn, serverFqdn, tlsCertificateName string, oneLabel bool, svc certprop.Services) Request {
	fqdn := strings.ToLower(strings.TrimSuffix(connectorFqdn, "."))
	if fqdn == "" {
		fqdn = strings.ToLower(strings.TrimSuffix(serverFqdn, "."))
	}
	return Request{FQDN: fqdn, Service: svc, OneLabel: oneLabel, Explicit: tlsCertificateName}
}
