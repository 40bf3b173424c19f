package access

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"certrelay/internal/dnsname"
)

var dummy struct {
	once sync.Once
	hash []byte
}

// dummyHash is compared against when the user does not exist, so that a
// wrong user name costs as long as a wrong password.
func dummyHash() []byte {
	dummy.once.Do(func() {
		dummy.hash, _ = bcrypt.GenerateFromPassword([]byte("certrelay access timing equaliser"), bcrypt.DefaultCost)
	})
	return dummy.hash
}

// login checks user's password against the directory (the bcrypt hash
// mailbox add stored) and returns the mailbox's directory. Failures are
// counted per client address (POP3 and IMAP4 together); past the
// protocol's MaxLoginFailuresPerSource the address is locked out for
// LoginFailureLockout: logins from it fail at once, without looking at the
// password, and event 16064 says so. The password is never logged.
func (s *Service) login(p Protocol, cfg Settings, user, password string, remote net.Addr) (string, error) {
	ip := hostOf(remote)
	now := s.o.Now()
	shown := printable(user)
	if s.fails.blocked(ip, now) {
		s.o.Log.Warn("login refused: too many failed logins from this address", "service", p, "user", shown, "client", ip)
		return "", errRateLimited
	}
	addr := normalUser(user)
	m, ok := s.o.Mailbox(addr)
	hash := dummyHash()
	if ok && m.PasswordHash != "" {
		hash = []byte(m.PasswordHash)
	}
	if ok && m.PasswordHash != "" && s.creds.verified(addr, password, m.PasswordHash, now) {
		s.o.Log.Debug("logged in", "service", p, "user", addr, "client", ip, "cached", true)
		return filepath.Join(s.o.DataDir, m.Maildir), nil
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !ok || m.PasswordHash == "" {
		lockout := time.Duration(cfg.LoginFailureLockout)
		locked, n := s.fails.fail(ip, now, max(cfg.MaxLoginFailuresPerSource, 1), lockout)
		s.o.Log.Warn("login failed", "service", p, "user", shown, "client", ip, "failures", n)
		if locked {
			go s.raise(EventLoginsLocked, ip, string(p), ip, strconv.Itoa(n), cfg.LoginFailureLockout.String(), cliWord(p))
		}
		return "", errAuthFailed
	}
	s.creds.remember(addr, password, m.PasswordHash, now)
	s.o.Log.Info("logged in", "service", p, "user", addr, "client", ip)
	return filepath.Join(s.o.DataDir, m.Maildir), nil
}

// credCache remembers, for CredentialCacheTTL, that a password was right
// for a mailbox, so a client that logs in again and again (mail clients
// poll; mbsync and fetchmail open a session per run) does not cost a
// bcrypt comparison each time — Dovecot's auth_cache does the same. It
// keeps no password: an HMAC-SHA256 of it under a key made at random for
// the process, with the bcrypt hash it was checked against, so a new
// password (mailbox remove, add) is checked afresh. Failed logins are
// never cached. Safe for concurrent use.
type credCache struct {
	once sync.Once
	key  []byte
	mu   sync.Mutex
	m    map[string]credEntry
}

type credEntry struct {
	mac   []byte
	hash  string
	until time.Time
}

// CredentialCacheTTL is how long a verified password is remembered.
const CredentialCacheTTL = 5 * time.Minute

func (c *credCache) mac(addr, password string) []byte {
	c.once.Do(func() {
		c.key = make([]byte, 32)
		_, _ = rand.Read(c.key)
	})
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte(addr))
	h.Write([]byte{0})
	h.Write([]byte(password))
	return h.Sum(nil)
}

func (c *credCache) verified(addr, password, hash string, now time.Time) bool {
	c.mu.Lock()
	e, ok := c.m[addr]
	c.mu.Unlock()
	return ok && e.hash == hash && now.Before(e.until) && hmac.Equal(e.mac, c.mac(addr, password))
}

func (c *credCache) remember(addr, password, hash string, now time.Time) {
	mac := c.mac(addr, password)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > maxTracked {
		c.m = map[string]credEntry{}
	}
	c.m[addr] = credEntry{mac: mac, hash: hash, until: now.Add(CredentialCacheTTL)}
}

// normalUser reads a login name as a mailbox address: lower-case, the
// domain as its A-label (SPEC P3).
func normalUser(user string) string {
	u := strings.ToLower(strings.TrimSpace(user))
	local, domain, ok := strings.Cut(u, "@")
	if !ok {
		return u
	}
	if n, err := dnsname.ParseHost(domain); err == nil {
		domain = string(n)
	}
	return local + "@" + domain
}

// printable makes client input safe for a log line: no control
// characters, at most 100 bytes.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 100 {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7f {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
