package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Status is what Check could establish about one certificate.
type Status int

const (
	// Unknown: revocation could not be established — every source was
	// unreachable or answered something that cannot be trusted. This is
	// the zero value, so a Result nobody filled in is never Good.
	Unknown Status = iota
	// Good: at least one trusted, current response covering the
	// certificate says it is not revoked, and no trusted source says it is.
	Good
	// Revoked: a trusted, current response says the certificate is revoked.
	Revoked
	// NoSources: the certificate names neither an OCSP responder nor a
	// CRL distribution point, so there is nothing to ask. Whether that is
	// acceptable is the caller's policy (SPEC C9).
	NoSources
)

// String returns "Good", "Revoked", "Unknown" or "NoSources".
func (s Status) String() string {
	switch s {
	case Good:
		return "Good"
	case Revoked:
		return "Revoked"
	case NoSources:
		return "NoSources"
	default:
		return "Unknown"
	}
}

// MarshalText makes Status print as its name in JSON (`cert verify --json`).
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a name MarshalText wrote; anything else is Unknown.
func (s *Status) UnmarshalText(b []byte) error {
	switch string(b) {
	case "Good":
		*s = Good
	case "Revoked":
		*s = Revoked
	case "NoSources":
		*s = NoSources
	default:
		*s = Unknown
	}
	return nil
}

// Kinds of source, for Attempt.Kind.
const (
	KindOCSP = "OCSP"
	KindCRL  = "CRL"
)

// Values of Attempt.Result. Only ResultGood and ResultRevoked are answers;
// every other value means the source told us nothing we could rely on.
const (
	ResultGood           = "good"
	ResultRevoked        = "revoked"
	ResultUnknown        = "unknown"            // the OCSP responder does not know the certificate
	ResultUnreachable    = "unreachable"        // network error, timeout, HTTP status other than 200, LDAP error, no such entry
	ResultUntrusted      = "untrusted response" // bad signature, wrong issuer, unauthorised OCSP signer
	ResultMalformed      = "malformed"          // not a CRL / OCSP response at all
	ResultExpired        = "expired"            // nextUpdate has passed
	ResultNotYetValid    = "not yet valid"      // thisUpdate is in the future (beyond the allowed skew)
	ResultNotCovered     = "not covered"        // about another certificate, or a CRL whose scope excludes this one
	ResultTooLarge       = "too large"          // larger than MaxCRLSize (CRL) or 1 MiB (OCSP)
	ResultUnsupported    = "unsupported"        // URL scheme or CRL feature this package does not handle
	ResultResponderError = "responder error"    // OCSP responseStatus other than successful (tryLater, unauthorized, ...)
)

// Attempt is one URL tried and what it answered: one line of
// `certrelay cert verify`.
type Attempt struct {
	Kind       string    // KindOCSP or KindCRL
	URL        string    // as written in the certificate
	Result     string    // one of the Result* constants
	Error      string    // the full cause when Result is not an answer; empty otherwise
	FromCache  bool      // answered from the cache (or the negative cache) without a fetch
	ThisUpdate time.Time // of the response, when one was parsed
	NextUpdate time.Time // of the response, when one was parsed and had one
	RevokedAt  time.Time // when Result is ResultRevoked
	Reason     int       // RFC 5280 §5.3.1 CRLReason code, when Result is ResultRevoked
}

// Result is the outcome of Check.
type Result struct {
	Status    Status
	RevokedAt time.Time // when Status is Revoked
	Reason    int       // RFC 5280 §5.3.1 CRLReason code when Status is Revoked (0, unspecified, when the source gave none); see ReasonText
	Attempts  []Attempt // every source tried, in order
	// Error says why no source could be tried at all (e.g. issuer is not
	// the certificate's issuer); empty otherwise. Status is then Unknown.
	Error string
}

// Defaults, used when the corresponding Checker field is zero.
const (
	DefaultTimeout     = 5 * time.Second // per fetch
	DefaultMaxCRLSize  = 10 << 20        // 10 MiB
	DefaultNegativeTTL = time.Minute     // how long a failed source is not asked again (non-fresh checks)
	maxOCSPSize        = 1 << 20         // OCSP responses are small; 1 MiB is generous
	maxRedirects       = 5               // HTTP redirects followed per fetch
	clockSkew          = 5 * time.Minute // a thisUpdate this far in the future is still accepted
	maxAgeNoNextUpdate = 24 * time.Hour  // a response without nextUpdate is current this long after thisUpdate
	maxCacheNoNext     = time.Hour       // ... and is cached at most this long
	maxMemoCRLs        = 8               // parsed and verified CRLs kept in memory
	maxNegativeEntries = 4096            // bound on the negative cache
	maxMemCacheEntries = 4096            // bound on the default in-memory Cache
	cacheKeyPrefixCRL  = "crl|"          // Cache keys: "crl|" + URL
	cacheKeyPrefixOCSP = "ocsp|"         // "ocsp|" + hex SHA-256 of issuer key + "|" + hex serial + "|" + URL
	ocspRequestType    = "application/ocsp-request"
	ocspResponseType   = "application/ocsp-response"
)

// Checker checks certificates against their issuers' OCSP responders and
// CRLs. The zero value is ready to use (direct connections, in-memory
// cache, defaults above). Set the fields before the first Check and do not
// change them afterwards; a Checker must not be copied after first use.
// Check is safe for concurrent use by many goroutines.
type Checker struct {
	// HTTP is the client for http:// and https:// fetches (CRL and OCSP).
	// Nil means a client built from Proxy and Timeout, following at most 5
	// redirects. A non-nil client is used as it is: Proxy is then ignored
	// (configure the proxy in its Transport), while Timeout still bounds
	// each fetch through its context.
	HTTP *http.Client
	// Proxy, when set, is the HTTP proxy every http:// and https:// fetch
	// goes through (like the WinHTTP proxy of the seeds). Nil means direct
	// connections; the environment (HTTP_PROXY) is deliberately not read.
	// ldap:// fetches never use it.
	Proxy *url.URL
	// Timeout bounds each fetch (dial, request, response, body), default
	// DefaultTimeout. A responder that never answers gives an
	// "unreachable" Attempt after Timeout, never a hang.
	Timeout time.Duration
	// LDAPDial opens the TCP connection for ldap:// distribution points.
	// Nil means a net.Dialer. Tests may use it to redirect or count dials.
	LDAPDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Cache keeps trusted responses (good or revoked) until their
	// nextUpdate. Nil means an in-memory cache private to this Checker.
	Cache Cache
	// Now is the clock, default time.Now. Every time comparison (thisUpdate,
	// nextUpdate, cache and negative-cache expiry, delegated responder
	// validity) uses it.
	Now func() time.Time
	// MaxCRLSize is the largest CRL accepted, default DefaultMaxCRLSize.
	MaxCRLSize int64
	// NegativeTTL is how long a source that failed is answered from the
	// negative cache by non-fresh checks, default DefaultNegativeTTL, so
	// that a dead responder is not asked again on every TLS handshake.
	// Failures are never written to Cache.
	NegativeTTL time.Duration

	initOnce sync.Once
	client   *http.Client
	cache    Cache

	mu       sync.Mutex
	negative map[string]negativeEntry // failures, by cache key
	flights  map[string]*flight       // fetches in progress, by cache key
	memo     map[[32]byte]*crlMemo    // parsed and verified CRLs, by hash of DER and issuer
}

func (c *Checker) init() {
	c.initOnce.Do(func() {
		c.client = c.HTTP
		if c.client == nil {
			tr := &http.Transport{
				DialContext:         (&net.Dialer{Timeout: c.timeout()}).DialContext,
				TLSHandshakeTimeout: c.timeout(),
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     90 * time.Second,
			}
			if c.Proxy != nil {
				tr.Proxy = http.ProxyURL(c.Proxy)
			}
			c.client = &http.Client{Transport: tr, CheckRedirect: checkRedirect}
		}
		c.cache = c.Cache
		if c.cache == nil {
			c.cache = NewMemoryCache()
		}
		c.negative = make(map[string]negativeEntry)
		c.flights = make(map[string]*flight)
		c.memo = make(map[[32]byte]*crlMemo)
	})
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to unsupported scheme %q", req.URL.Scheme)
	}
	return nil
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Checker) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Checker) maxCRLSize() int64 {
	if c.MaxCRLSize > 0 {
		return c.MaxCRLSize
	}
	return DefaultMaxCRLSize
}

func (c *Checker) negativeTTL() time.Duration {
	if c.NegativeTTL > 0 {
		return c.NegativeTTL
	}
	return DefaultNegativeTTL
}

// Check establishes whether cert, issued by issuer, is revoked.
//
// Sources are tried in the certificate's order: every OCSP responder
// (Authority Information Access), then every CRL distribution point
// (http://, https:// or ldap://). Each is recorded in Result.Attempts.
//
// With fresh false (TLS handshakes, internal/trust), a source is answered
// from the cache while its response is current, and from the negative
// cache for NegativeTTL after it failed; Check stops at the first trusted
// answer, so a working OCSP responder spares the CRL download.
//
// With fresh true (`certrelay cert verify`, like `certutil -verify
// -urlfetch`), neither cache is read: every source is fetched, in full,
// so that each URL's own answer is shown; trusted answers still update the
// cache.
//
// Status is Revoked if any trusted source tried says revoked (it wins over
// Good; with fresh false only the sources up to the first answer are
// tried), Good if at least one trusted, current source covering cert says
// good, NoSources if cert names no source at all, and Unknown otherwise —
// including when every source is unsupported (ldap:/// without a host,
// ftp://) and when issuer is not the certificate's issuer (Result.Error).
// Untrusted, expired or malformed responses never count as answers.
//
// Check honours ctx: when it is cancelled the fetch in progress is
// abandoned and the Result (Unknown unless a source already answered)
// records it. Each fetch is also bounded by Timeout. Concurrent Checks that
// need the same URL share one fetch.
func (c *Checker) Check(ctx context.Context, cert, issuer *x509.Certificate, fresh bool) Result {
	c.init()
	var res Result
	if cert == nil || issuer == nil {
		res.Error = "check revocation: certificate or issuer missing"
		return res
	}
	if err := checkIssuer(cert, issuer); err != nil {
		res.Error = "check revocation: " + err.Error()
		return res
	}
	if len(cert.OCSPServer) == 0 && len(cert.CRLDistributionPoints) == 0 {
		res.Status = NoSources
		return res
	}

	type source struct {
		kind, url string
	}
	var sources []source
	for _, u := range cert.OCSPServer {
		sources = append(sources, source{KindOCSP, u})
	}
	for _, u := range cert.CRLDistributionPoints {
		sources = append(sources, source{KindCRL, u})
	}

	good := false
	for _, s := range sources {
		if err := ctx.Err(); err != nil {
			res.Attempts = append(res.Attempts, Attempt{Kind: s.kind, URL: s.url,
				Result: ResultUnreachable, Error: "not tried: " + err.Error()})
			continue
		}
		var a Attempt
		if s.kind == KindOCSP {
			a = c.checkOCSP(ctx, cert, issuer, s.url, fresh)
		} else {
			a = c.checkCRL(ctx, cert, issuer, s.url, fresh)
		}
		res.Attempts = append(res.Attempts, a)
		switch a.Result {
		case ResultRevoked:
			if res.Status != Revoked {
				res.Status, res.RevokedAt, res.Reason = Revoked, a.RevokedAt, a.Reason
			}
		case ResultGood:
			good = true
		}
		if !fresh && (res.Status == Revoked || good) {
			break
		}
	}
	if res.Status != Revoked && good {
		res.Status = Good
	}
	return res
}

// checkIssuer makes sure issuer really issued cert: a status vouched for
// by another CA (which may reuse the serial number) would mean nothing.
func checkIssuer(cert, issuer *x509.Certificate) error {
	if !bytes.Equal(cert.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("%q is not the issuer of %q: names differ", issuer.Subject, cert.Subject)
	}
	if err := cert.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%q is not the issuer of %q: %w", issuer.Subject, cert.Subject, err)
	}
	return nil
}

// ReasonText names an RFC 5280 §5.3.1 CRLReason code ("keyCompromise",
// ...), or returns "reason N" for codes it does not know.
func ReasonText(code int) string {
	names := []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged",
		"superseded", "cessationOfOperation", "certificateHold", "", "removeFromCRL",
		"privilegeWithdrawn", "aACompromise"}
	if code >= 0 && code < len(names) && names[code] != "" {
		return names[code]
	}
	return fmt.Sprintf("reason %d", code)
}
