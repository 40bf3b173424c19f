package acme

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"certrelay/internal/db"

	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
)

// Challenges say how the CA may validate the names of an order. At least
// one must be set; when several are, the CA's offer and acmez's
// preference pick, and a failed one is followed by another.
type Challenges struct {
	// HTTPAddr: answer http-01 on this address (host:port, or :port),
	// with a listener of this process for the order's duration. The CA
	// connects to port 80 of each name, so this is ":80", or a port that
	// port 80 is forwarded to.
	HTTPAddr string `json:"httpAddr,omitempty"`
	// TLSALPNAddr: answer tls-alpn-01 on this address, likewise; the CA
	// connects to port 443 of each name.
	TLSALPNAddr string `json:"tlsAlpnAddr,omitempty"`
	// DNSHook: answer dns-01 by running this program (an absolute path)
	// as "HOOK present NAME VALUE" and "HOOK cleanup NAME VALUE", NAME
	// being _acme-challenge.DOMAIN. It must publish the TXT record and
	// exit 0 once the record is served.
	DNSHook string `json:"dnsHook,omitempty"`
	// HTTPOnServer and TLSALPNOnServer: the running server answers
	// http-01 on its HTTP listeners, tls-alpn-01 on its console's HTTPS
	// listener (see Responder); ServerHTTP and ServerTLS are those
	// listeners' addresses, where the order checks that the server
	// answers before the CA validates (read again at each order).
	HTTPOnServer    bool     `json:"httpOnServer,omitempty"`
	TLSALPNOnServer bool     `json:"tlsAlpnOnServer,omitempty"`
	ServerHTTP      []string `json:"-"`
	ServerTLS       []string `json:"-"`
}

// Types names the challenge types set, as the CA names them.
func (c Challenges) Types() []string {
	var out []string
	if c.HTTPAddr != "" || c.HTTPOnServer {
		out = append(out, acme.ChallengeTypeHTTP01)
	}
	if c.TLSALPNAddr != "" || c.TLSALPNOnServer {
		out = append(out, acme.ChallengeTypeTLSALPN01)
	}
	if c.DNSHook != "" {
		out = append(out, acme.ChallengeTypeDNS01)
	}
	return out
}

// Order is what Obtain asks a CA for.
type Order struct {
	Account    Account
	Domains    []string // normalised DNS names; the first is the subject's CN
	Key        crypto.Signer
	Challenges Challenges
}

// Obtained is a certificate a CA issued, with its chain.
type Obtained struct {
	Leaf  *x509.Certificate
	Chain []*x509.Certificate // intermediates, leaf's issuer first
	URL   string              // the certificate's URL at the CA
}

// Obtain orders a certificate for o.Domains with o.Key, answering the
// challenges o.Challenges allow, and waits for it (bounded by ctx and the
// client's poll timeout). It stores nothing. A failure says what went
// wrong in an administrator's terms: an *OrderError when the CA answered
// with a problem.
func (a *Accounts) Obtain(ctx context.Context, o Order) (Obtained, error) {
	if len(o.Domains) == 0 {
		return Obtained{}, errors.New("no domain to order a certificate for")
	}
	if len(o.Challenges.Types()) == 0 {
		return Obtained{}, errors.New("no challenge to answer: give an http-01 or tls-alpn-01 address, or a dns-01 hook")
	}
	cl, err := a.client(o.Account)
	if err != nil {
		return Obtained{}, err
	}
	key, err := a.key(o.Account)
	if err != nil {
		return Obtained{}, err
	}
	solvers, closeAll, err := a.startSolvers(o.Challenges)
	if err != nil {
		return Obtained{}, err
	}
	defer closeAll()
	z := acmez.Client{Client: cl, ChallengeSolvers: solvers}
	acct := acme.Account{Status: acme.StatusValid, Location: o.Account.URL, PrivateKey: key}
	if o.Account.Email != "" {
		acct.Contact = []string{"mailto:" + o.Account.Email}
	}
	certs, err := z.ObtainCertificateForSANs(ctx, acct, o.Key, o.Domains)
	if err != nil {
		return Obtained{}, explain(err, "order", o.Account.Directory)
	}
	for _, c := range certs {
		got, err := parseChain(c.ChainPEM)
		if err != nil {
			return Obtained{}, fmt.Errorf("read the certificate the CA issued: %w", err)
		}
		got.URL = c.URL
		return got, nil
	}
	return Obtained{}, errors.New("the CA finalized the order but returned no certificate")
}

func parseChain(b []byte) (Obtained, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return Obtained{}, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return Obtained{}, errors.New("no certificate in the CA's answer")
	}
	return Obtained{Leaf: certs[0], Chain: certs[1:]}, nil
}

// Issued records how a certificate was obtained, so that it can be
// renewed the same way.
type Issued struct {
	Thumbprint string
	AccountID  int64
	Domains    []string
	Challenges Challenges
	KeyType    string // "rsa" or "ecdsa"
	KeySize    int
	IssuedAt   time.Time
	// RenewBefore: renew this long before expiry; 0 renews at two thirds
	// of the certificate's life.
	RenewBefore time.Duration
}

const issuedSchema = `CREATE TABLE IF NOT EXISTS acme_issued (
	thumbprint TEXT PRIMARY KEY,
	account_id INTEGER NOT NULL,
	domains    TEXT NOT NULL,
	challenges TEXT NOT NULL,
	key_type   TEXT NOT NULL,
	key_size   INTEGER NOT NULL,
	issued_at  TEXT NOT NULL,
	renew_before INTEGER NOT NULL DEFAULT 0
)`

// Record stores how the certificate i.Thumbprint was obtained, in the
// transaction ctx carries (or one of its own).
func (a *Accounts) Record(ctx context.Context, i Issued) error {
	ch, err := json.Marshal(i.Challenges)
	if err != nil {
		return err
	}
	return db.Tx(ctx, a.db, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO acme_issued(thumbprint, account_id, domains, challenges, key_type, key_size, issued_at, renew_before) VALUES(?, ?, ?, ?, ?, ?, ?, ?)`,
			i.Thumbprint, i.AccountID, strings.Join(i.Domains, ","), string(ch), i.KeyType, i.KeySize, i.IssuedAt.UTC().Format(time.RFC3339Nano), int64(i.RenewBefore/time.Second))
		return err
	})
}

// Lookup returns how the certificate t was obtained; found is false for a
// certificate that did not come from an ACME CA through certrelay.
func (a *Accounts) Lookup(ctx context.Context, t string) (i Issued, found bool, err error) {
	var domains, ch, at string
	var before int64
	err = db.Q(ctx, a.db).QueryRowContext(ctx, `SELECT thumbprint, account_id, domains, challenges, key_type, key_size, issued_at, renew_before FROM acme_issued WHERE thumbprint = ?`, t).
		Scan(&i.Thumbprint, &i.AccountID, &domains, &ch, &i.KeyType, &i.KeySize, &at, &before)
	i.RenewBefore = time.Duration(before) * time.Second
	if errors.Is(err, sql.ErrNoRows) {
		return Issued{}, false, nil
	}
	if err != nil {
		return Issued{}, false, err
	}
	i.Domains = strings.Split(domains, ",")
	if err := json.Unmarshal([]byte(ch), &i.Challenges); err != nil {
		return Issued{}, false, fmt.Errorf("the record of ACME certificate %s: %w", t, err)
	}
	i.IssuedAt, _ = time.Parse(time.RFC3339Nano, at)
	return i, true, nil
}

func randOr(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
