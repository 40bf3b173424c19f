package serving

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"

	"certrelay/internal/certinfo"
	"certrelay/internal/certprop"
	"certrelay/internal/selection"
)

// The internal transport certificate (SPEC S6, X2): what a server
// presents to the other servers of its organisation, both ways, in
// sessions encrypted with X-AnonymousTLS. It is the certificate the
// directory names for the server, from the personal store; if that cannot
// be used, a certificate for the server's physical FQDN (event 12023);
// if there is none either, and only between hubs, a self-signed
// certificate made in memory for the life of the process (event 12024).

// InternalRequest asks for a server's internal transport certificate.
type InternalRequest struct {
	// Thumbprint is the certificate the directory names for the server
	// ("" when it names none: event 12012).
	Thumbprint string
	// PhysicalFQDN is the name the first fallback is selected for.
	PhysicalFQDN string
	// HostName and FQDN are the names of an ephemeral certificate.
	HostName, FQDN string
	// Ephemeral allows the last fallback (sessions between hubs).
	Ephemeral bool
}

// InternalSource says which certificate an Internal is.
type InternalSource int

// Sources of the internal transport certificate.
const (
	// InternalNone: no certificate (a hub↔edge session fails, 12013).
	InternalNone InternalSource = iota
	// InternalConfigured: the one the directory names.
	InternalConfigured
	// InternalFQDN: a certificate for the physical FQDN (12023).
	InternalFQDN
	// InternalEphemeral: made in memory for this process (12024).
	InternalEphemeral
)

func (s InternalSource) String() string {
	return [...]string{"none", "configured", "fqdn-fallback", "ephemeral"}[s]
}

// Internal is the certificate a server uses with its organisation's
// servers, with the TLS configurations built on it (shared: do not change
// them).
type Internal struct {
	Source     InternalSource
	Thumbprint string
	Leaf       *x509.Certificate
	// Why says why the configured certificate is not used ("" when it is).
	Why string
	// Server is the configuration of the receiving side of X-AnonymousTLS:
	// this certificate, and a certificate required from the client
	// (checked by direct trust after the handshake, not by the chain).
	Server *tls.Config
	// Client is the configuration of the sending side: this certificate
	// as client certificate; the server's is checked by direct trust.
	Client *tls.Config
}

// internalCache keeps the configurations of the internal certificates in
// use, and the process's ephemeral certificate.
type internalCache struct {
	mu        sync.Mutex
	configs   map[string]*Internal // by thumbprint and source
	ephemeral *tls.Certificate     // made once per process, for its names
	ephNames  string

	// The last answer, for the snapshot it was made from.
	lastIx  *selection.Index
	lastReq InternalRequest
	last    Internal
}

// Internal returns the internal transport certificate req asks for, from
// the published snapshot: no allocation once its configuration is built.
func (l *Layer) Internal(req InternalRequest) Internal {
	ix := l.index.Load()
	c := &l.internal
	c.mu.Lock()
	if c.lastIx == ix && c.lastReq == req {
		in := c.last
		c.mu.Unlock()
		return in
	}
	c.mu.Unlock()
	in := l.resolveInternal(ix, req)
	c.mu.Lock()
	c.lastIx, c.lastReq, c.last = ix, req, in
	c.mu.Unlock()
	return in
}

func (l *Layer) resolveInternal(ix *selection.Index, req InternalRequest) Internal {
	why := ""
	if req.Thumbprint == "" {
		why = "the directory names no internal transport certificate for this server"
	} else if c := findCandidate(ix, req.Thumbprint); c == nil {
		why = fmt.Sprintf("certificate %s is not in the personal store", req.Thumbprint)
	} else if w := internalProblem(c); w != "" {
		why = fmt.Sprintf("certificate %s %s", req.Thumbprint, w)
	} else if s, err := l.serve(c); err != nil {
		why = fmt.Sprintf("the private key of certificate %s cannot be loaded: %v", req.Thumbprint, err)
	} else {
		return *l.internalConfigs(s.cert, InternalConfigured, "")
	}
	if req.PhysicalFQDN != "" {
		if s, d := l.get(selection.Request{FQDN: req.PhysicalFQDN, Service: certprop.SMTP}, 0); s != nil && d.Winner != nil {
			in := *l.internalConfigs(s.cert, InternalFQDN, why)
			in.Why = why
			return in
		}
	}
	if !req.Ephemeral {
		return Internal{Source: InternalNone, Why: why}
	}
	cert, err := l.ephemeral(req.HostName, req.FQDN)
	if err != nil {
		return Internal{Source: InternalNone, Why: why + "; and no ephemeral certificate could be made: " + err.Error()}
	}
	in := *l.internalConfigs(cert, InternalEphemeral, why)
	in.Why = why
	return in
}

func findCandidate(ix *selection.Index, thumbprint string) *selection.Candidate {
	cands := ix.Candidates()
	for i := range cands {
		if strings.EqualFold(cands[i].Thumbprint, thumbprint) {
			return &cands[i]
		}
	}
	return nil
}

// internalProblem says why candidate c cannot be the internal transport
// certificate ("" when it can): it must be a certificate, enabled for
// SMTP (Q1), with a private key the service can read (Q2). Its chain is
// not judged — direct trust does not use it — and an expired one is
// still used (C12).
func internalProblem(c *selection.Candidate) string {
	switch {
	case c.Pending || c.Cert == nil:
		return "is a pending request"
	case !c.Services.Has(certprop.SMTP):
		return "is not enabled for SMTP"
	case c.KeyError != "":
		return strings.TrimPrefix(c.KeyError, "its ") + " (its key)"
	case !c.HasKey:
		return "has no private key in the store"
	case !c.KeyReadable:
		return "has a private key the service account cannot read"
	}
	return ""
}

// internalConfigs returns the configurations built on cert, made once.
func (l *Layer) internalConfigs(cert *tls.Certificate, src InternalSource, why string) *Internal {
	t := certinfo.Thumbprint(cert.Leaf.Raw)
	k := t + "/" + src.String()
	c := &l.internal
	c.mu.Lock()
	defer c.mu.Unlock()
	if in, ok := c.configs[k]; ok && in.Leaf == cert.Leaf {
		return in
	}
	if c.configs == nil || len(c.configs) > 16 {
		c.configs = map[string]*Internal{}
	}
	server := &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
		// Every organisation server presents its certificate; direct
		// trust checks it against the directory after the handshake
		// (self-signed or CA-issued makes no difference, X2).
		ClientAuth: tls.RequireAnyClientCert,
		// Each session shows both certificates afresh.
		SessionTicketsDisabled: true,
	}
	client := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
		// The server's certificate is checked by direct trust, against
		// the directory, after the handshake.
		InsecureSkipVerify:   true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
	}
	in := &Internal{Source: src, Thumbprint: t, Leaf: cert.Leaf, Why: why, Server: server, Client: client}
	c.configs[k] = in
	return in
}

// ephemeral returns the process's ephemeral certificate for these names,
// made on first use: self-signed, RSA 2048, twelve months (S6).
func (l *Layer) ephemeral(host, fqdn string) (*tls.Certificate, error) {
	c := &l.internal
	names := host + " " + fqdn
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ephemeral != nil && c.ephNames == names {
		return c.ephemeral, nil
	}
	key, err := certinfo.GenerateKey(certinfo.KeySpec{Type: "rsa", Size: 2048}, rand.Reader)
	if err != nil {
		return nil, err
	}
	var domains []string
	for _, n := range []string{host, fqdn} {
		if n != "" && (len(domains) == 0 || domains[0] != n) {
			domains = append(domains, n)
		}
	}
	der, err := certinfo.NewSelfSigned(certinfo.SelfSignedOptions{Domains: domains, Key: key, Now: l.o.Now(), Validity: certinfo.DefaultValidity}, rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c.ephemeral, c.ephNames = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, names
	return c.ephemeral, nil
}
