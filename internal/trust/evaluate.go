package trust

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"certrelay/internal/certinfo"
)

// Element is one certificate of a chain, leaf first.
type Element struct {
	Subject    string
	Thumbprint string
	Status     Status
	Problem    string             `json:",omitempty"`
	Revocation *ElementRevocation `json:",omitempty"`
	Cert       *x509.Certificate  `json:"-"`
}

// Result is the verdict on one certificate.
type Result struct {
	Status     Status
	RootCAType RootCAType
	Chain      []Element
	Problem    string // what is wrong, in words; "" when Valid
	Fix        string // what the administrator can do about it
}

// Snapshot is the trust state at one moment: the pools of roots and
// intermediates. Evaluate on a snapshot does no I/O. Safe for concurrent
// use.
type Snapshot struct {
	roots       *x509.CertPool
	rootSource  map[string]Source
	inter       *x509.CertPool
	interByName map[string][]*x509.Certificate
}

// Snapshot reads the roots and intermediates into pools.
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) {
	roots, err := s.Roots(ctx)
	if err != nil {
		return nil, err
	}
	inters, err := s.Intermediates(ctx)
	if err != nil {
		return nil, err
	}
	return NewSnapshot(roots, inters), nil
}

// NewSnapshot builds a snapshot from roots and intermediates. When a root
// is listed twice, the first listing's source wins (roots added here come
// before system ones, so a hand-added public root reads as Registry).
func NewSnapshot(roots []Root, inters []*x509.Certificate) *Snapshot {
	sn := &Snapshot{roots: x509.NewCertPool(), rootSource: map[string]Source{}, inter: x509.NewCertPool(), interByName: map[string][]*x509.Certificate{}}
	for _, r := range roots {
		if _, dup := sn.rootSource[r.Thumbprint]; dup {
			continue
		}
		sn.rootSource[r.Thumbprint] = r.Source
		sn.roots.AddCert(r.Cert)
	}
	for _, c := range inters {
		sn.inter.AddCert(c)
		sn.interByName[string(c.RawSubject)] = append(sn.interByName[string(c.RawSubject)], c)
	}
	return sn
}

// RootSource returns the source of a trusted root, if c is one.
func (sn *Snapshot) RootSource(c *x509.Certificate) (Source, bool) {
	src, ok := sn.rootSource[certinfo.Thumbprint(c.Raw)]
	return src, ok
}

// Evaluate judges c at time now (T1): self-signed certificates are their
// own roots; others must chain to a trusted root through the intermediate
// store and extra (certificates that came with c). Revocation is not
// checked here; see Checker.
//
// Precedence when several things are wrong: Invalid, then Untrusted, then
// DateInvalid — an expired certificate from an untrusted CA is reported
// as untrusted, since trusting its CA is the first thing to fix.
func (sn *Snapshot) Evaluate(c *x509.Certificate, extra []*x509.Certificate, now time.Time) Result {
	if certinfo.IsSelfSigned(c) {
		r := sn.JudgeSelfSigned(certinfo.Thumbprint(c.Raw), certinfo.NameString(c.RawSubject), c.NotBefore, c.NotAfter, now)
		r.Chain[0].Cert = c
		return r
	}
	inter := sn.inter
	if len(extra) > 0 {
		inter = sn.inter.Clone()
		for _, e := range extra {
			inter.AddCert(e)
		}
	}
	opts := x509.VerifyOptions{Roots: sn.roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	chains, err := c.Verify(opts)
	if err == nil {
		return sn.result(chains[0], Valid, "", "")
	}
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		// Find the chain as it stood while c was valid, to name the root:
		// try the end of its validity nearest to now, then its middle.
		problem := dateProblem(c, now)
		if problem == "" {
			problem = "a certificate of its chain is outside its validity period: " + inv.Detail
		}
		fix := "renew it with the CA (certrelay cert request …, then certrelay cert import), and check this server's clock"
		near := c.NotAfter.Add(-time.Second)
		if now.Before(c.NotBefore) {
			near = c.NotBefore.Add(time.Second)
		}
		for _, at := range []time.Time{near, c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)} {
			opts.CurrentTime = at
			chains, err2 := c.Verify(opts)
			if err2 == nil {
				return sn.result(chains[0], DateInvalid, problem, fix)
			}
			if errors.As(err2, &ua) {
				return sn.untrusted(c, extra, ua)
			}
		}
		return Result{Status: DateInvalid, RootCAType: RootUnknown, Chain: sn.partialChain(c, extra, DateInvalid, problem), Problem: problem, Fix: fix}
	case errors.As(err, &ua):
		return sn.untrusted(c, extra, ua)
	default:
		problem := "its chain is invalid: " + err.Error()
		return Result{Status: Invalid, RootCAType: RootUnknown, Chain: sn.partialChain(c, extra, Invalid, problem), Problem: problem,
			Fix: "ask the CA for a correctly issued certificate; check the intermediates with certrelay cert verify"}
	}
}

// JudgeSelfSigned judges a self-signed certificate from its facts alone
// (T1: it is its own root; no revocation): Valid, or DateInvalid outside
// its validity period; RootCAType None unless it is also a trusted root.
// Evaluate gives the same for the parsed certificate, with Chain[0].Cert
// set.
func (sn *Snapshot) JudgeSelfSigned(thumbprint, subject string, notBefore, notAfter, now time.Time) Result {
	r := Result{Status: Valid, RootCAType: RootNone, Chain: []Element{{Subject: subject, Thumbprint: thumbprint, Status: Valid}}}
	if src, ok := sn.rootSource[thumbprint]; ok {
		r.RootCAType = src
	}
	if p := datesProblem(notBefore, notAfter, now); p != "" {
		r.Status, r.Problem = DateInvalid, p
		r.Chain[0].Status, r.Chain[0].Problem = DateInvalid, p
		r.Fix = "make a new certificate: certrelay cert new --from " + thumbprint
	}
	return r
}

func (sn *Snapshot) untrusted(c *x509.Certificate, extra []*x509.Certificate, ua x509.UnknownAuthorityError) Result {
	chain := sn.partialChain(c, extra, Untrusted, "")
	top := chain[len(chain)-1]
	problem := fmt.Sprintf("its chain ends at %q, which is not a trusted root", c.Issuer.String())
	if top.Cert != nil && top.Cert != c {
		problem = fmt.Sprintf("its chain ends at %q, issued by %q, which is not a trusted root", top.Subject, top.Cert.Issuer.String())
	}
	chain[0].Problem = problem
	return Result{Status: Untrusted, RootCAType: RootUnknown, Chain: chain, Problem: problem,
		Fix: "trust the CA's root: certrelay trust add ROOT.pem --source registry (or grouppolicy/enterprise for every server); if an intermediate is missing, add it with certrelay trust add INTERMEDIATE.pem --intermediate"}
}

func (sn *Snapshot) result(chain []*x509.Certificate, st Status, problem, fix string) Result {
	r := Result{Status: st, RootCAType: RootUnknown, Problem: problem, Fix: fix}
	if src, ok := sn.rootSource[certinfo.Thumbprint(chain[len(chain)-1].Raw)]; ok {
		r.RootCAType = src
	}
	for i, c := range chain {
		es, ep := Valid, ""
		if i == 0 {
			es, ep = st, problem
		}
		r.Chain = append(r.Chain, element(c, es, ep))
	}
	return r
}

// partialChain follows issuer names through extra and the intermediate
// store as far as it can, for display when no chain verifies.
func (sn *Snapshot) partialChain(c *x509.Certificate, extra []*x509.Certificate, st Status, problem string) []Element {
	out := []Element{element(c, st, problem)}
	seen := map[string]bool{certinfo.Thumbprint(c.Raw): true}
	cur := c
	for len(out) < 10 && !certinfo.IsSelfSigned(cur) {
		var next *x509.Certificate
		for _, cand := range append(append([]*x509.Certificate{}, extra...), sn.interByName[string(cur.RawIssuer)]...) {
			if string(cand.RawSubject) == string(cur.RawIssuer) && !seen[certinfo.Thumbprint(cand.Raw)] && cur.CheckSignatureFrom(cand) == nil {
				next = cand
				break
			}
		}
		if next == nil {
			break
		}
		seen[certinfo.Thumbprint(next.Raw)] = true
		out = append(out, element(next, Valid, ""))
		cur = next
	}
	return out
}

func element(c *x509.Certificate, st Status, problem string) Element {
	return Element{Subject: certinfo.NameString(c.RawSubject), Thumbprint: certinfo.Thumbprint(c.Raw), Status: st, Problem: problem, Cert: c}
}

func dateProblem(c *x509.Certificate, now time.Time) string {
	return datesProblem(c.NotBefore, c.NotAfter, now)
}

func datesProblem(notBefore, notAfter, now time.Time) string {
	switch {
	case now.After(notAfter):
		return fmt.Sprintf("it expired on %s", notAfter.UTC().Format(time.RFC3339))
	case now.Before(notBefore):
		return fmt.Sprintf("it is not valid before %s (check this server's clock)", notBefore.UTC().Format(time.RFC3339))
	}
	return ""
}

// RootPool returns the snapshot's trusted roots (the system bundle and
// those added), for PKIX checks of peers such as MTA-STS hosts. The pool
// must not be modified.
func (sn *Snapshot) RootPool() *x509.CertPool { return sn.roots }
