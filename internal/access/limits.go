package access

import (
	"net"
	"sync"
	"time"
)

// conns counts one protocol's connections, in total and per client
// address (SPEC P1). Safe for concurrent use.
type conns struct {
	mu    sync.Mutex
	total int
	per   map[string]int
}

// admit counts a connection from remote if the limits allow it, and
// returns the function that uncounts it; otherwise which limit was met.
func (c *conns) admit(remote net.Addr, maxTotal, maxPer int) (release func(), limit string) {
	ip := hostOf(remote)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.per == nil {
		c.per = map[string]int{}
	}
	switch {
	case c.total >= maxTotal:
		return nil, "MaxConnections"
	case c.per[ip] >= maxPer:
		return nil, "MaxConnectionFromSingleIP"
	}
	c.total++
	c.per[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.total--
			if c.per[ip]--; c.per[ip] <= 0 {
				delete(c.per, ip)
			}
			c.mu.Unlock()
		})
	}, ""
}

func (c *conns) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// failures counts failed logins per client address, across POP3 and
// IMAP4, so that guessing passwords costs the guesser time and not the
// server: past the limit, logins from the address are refused without
// looking at the password until the lockout ends. Safe for concurrent use.
type failures struct {
	mu sync.Mutex
	m  map[string]*failure
}

type failure struct {
	n     int
	first time.Time // of the current window
	until time.Time // locked out until
}

// maxTracked bounds the addresses remembered.
const maxTracked = 100000

// blocked reports whether remote is locked out now.
func (f *failures) blocked(ip string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.m[ip]
	return e != nil && now.Before(e.until)
}

// fail counts a failed login and reports whether it reached the limit
// (the address is locked out from now on) and how many failures there
// were in the window.
func (f *failures) fail(ip string, now time.Time, limit int, lockout time.Duration) (locked bool, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil || len(f.m) > maxTracked {
		f.m = map[string]*failure{}
	}
	e := f.m[ip]
	if e == nil || now.Sub(e.first) > lockout {
		e = &failure{first: now}
		f.m[ip] = e
	}
	e.n++
	if e.n >= limit {
		e.until = now.Add(lockout)
		return true, e.n
	}
	return false, e.n
}
