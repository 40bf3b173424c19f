package access

import (
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
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !ok || m.PasswordHash == "" {
		lockout := time.Duration(cfg.LoginFailureLockout)
		locked, n := s.fails.fail(ip, now, max(cfg.MaxLoginFailuresPerSource, 1), lockout)
		s.o.Log.Warn("login failed", "service", p, "user", shown, "client", ip, "failures", n)
		if locked {
			go s.raise(EventLoginsLocked, ip, string(p), ip, strconv.Itoa(n), cfg.LoginFailureLockout.String(), cliWord(p))
		}
		return "", errAuthFailed
	}
	s.o.Log.Info("logged in", "service", p, "user", addr, "client", ip)
	return filepath.Join(s.o.DataDir, m.Maildir), nil
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
