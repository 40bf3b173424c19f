package smtp

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limit names a limit of SPEC P1 that a client met. String gives the name
// of the receive connector setting that sets it (Exchange's names where
// Exchange has one).
type Limit int

// The limits a Server enforces.
const (
	// LimitConnections: the listener's group already runs
	// Limits.MaxConnections sessions; 421 4.7.0.
	LimitConnections Limit = iota + 1
	// LimitConnectionsPerClient: the client's IP address already has
	// Limits.MaxConnectionsPerClient sessions in the group; 421 4.7.0.
	LimitConnectionsPerClient
	// LimitServerConnections: the Server already runs MaxConnections
	// sessions over all its listeners (it guards the process's file
	// descriptors); 421 4.7.0.
	LimitServerConnections
	// LimitInactivity: no command (or no message data) within the
	// inactivity timeout; 421 4.4.2.
	LimitInactivity
	// LimitSession: the session's time budget is spent; 421 4.4.2.
	LimitSession
	// LimitMessageTime: the message's time budget is spent before its
	// final dot; 421 4.4.2, the message is not accepted.
	LimitMessageTime
	// LimitRecipients: the transaction has its maximum of recipients;
	// 452 4.5.3.
	LimitRecipients
	// LimitMessageSize: the message is larger than the SIZE limit;
	// 552 5.3.4 (RFC 1870 makes it permanent).
	LimitMessageSize
	// LimitAccept: accepting a connection failed (such as EMFILE, out of
	// file descriptors): no client is told, the Server backs off.
	LimitAccept
)

var limitNames = map[Limit]string{
	LimitConnections:          "MaxInboundConnection",
	LimitConnectionsPerClient: "MaxInboundConnectionPerSource",
	LimitServerConnections:    "MaxConnections",
	LimitInactivity:           "ConnectionInactivityTimeout",
	LimitSession:              "ConnectionTimeout",
	LimitMessageTime:          "MessageTimeout",
	LimitRecipients:           "MaxRecipientsPerMessage",
	LimitMessageSize:          "MaxMessageSize",
	LimitAccept:               "Accept",
}

func (l Limit) String() string {
	if n, ok := limitNames[l]; ok {
		return n
	}
	return "Limit" + strconv.Itoa(int(l))
}

// Limits are the limits of the sessions of one listener. Zero fields take
// the Server's values (see the Server fields of the same names).
type Limits struct {
	// Group names the connections that share MaxConnections and
	// MaxConnectionsPerClient, such as one receive connector with several
	// bindings. Listeners whose Limits give the same Group share the
	// counts; "" is one group too.
	Group string
	// MaxConnections bounds the sessions the group runs at once.
	// Default: the Server's MaxConnections.
	MaxConnections int
	// MaxConnectionsPerClient bounds the sessions one client IP address
	// runs at once in the group.
	MaxConnectionsPerClient int
	// InactivityTimeout bounds the wait for each command and for each
	// read of message data (RFC 5321 4.5.3.2.7). Default: the Server's
	// ReadTimeout for commands and DataTimeout for message data.
	InactivityTimeout time.Duration
	// SessionTimeout bounds the whole session, from accept to close.
	SessionTimeout time.Duration
	// MessageTimeout bounds the transfer of one message, from the 354
	// reply to the final dot.
	MessageTimeout time.Duration
	// MaxRecipients bounds the distinct recipients of one transaction.
	MaxRecipients int
}

// LimitEvent reports a limit a client met (or, for LimitAccept, a failed
// accept), for Server.LimitReached.
type LimitEvent struct {
	Limit Limit
	Group string   // the listener's Limits.Group
	Conn  ConnInfo // the connection; zero for LimitAccept
	Value string   // the limit's value, such as "20" or "10m0s"
	Err   error    // LimitAccept: what accept returned
}

// ErrDuplicateRecipient may be returned by Session.Rcpt when the address
// names a recipient the transaction already has under another spelling
// (the Session knows its aliases and case rules; the server itself only
// recognises the same address with the domain in another case). The
// client gets 250, the recipient is not added again and does not count
// towards the recipient limit.
var ErrDuplicateRecipient = errors.New("smtp: recipient already in the transaction")

// connLimits are one connection's limits, defaults applied.
type connLimits struct {
	group           string
	maxConns        int
	maxPerClient    int
	readTimeout     time.Duration
	dataTimeout     time.Duration
	sessionTimeout  time.Duration
	messageTimeout  time.Duration
	maxRcpts        int
	inactivityValue time.Duration // as configured, for reports
}

// limitsFor returns the limits of a connection accepted on local.
func (s *Server) limitsFor(local net.Addr) connLimits {
	var l Limits
	if s.Limits != nil {
		l = s.Limits(local)
	}
	c := connLimits{
		group:          l.Group,
		maxConns:       l.MaxConnections,
		maxPerClient:   l.MaxConnectionsPerClient,
		readTimeout:    s.cfg.readTimeout,
		dataTimeout:    s.cfg.dataTimeout,
		sessionTimeout: l.SessionTimeout,
		messageTimeout: l.MessageTimeout,
		maxRcpts:       l.MaxRecipients,
	}
	if l.InactivityTimeout > 0 {
		c.readTimeout, c.dataTimeout = l.InactivityTimeout, l.InactivityTimeout
	}
	if c.maxConns <= 0 {
		c.maxConns = s.cfg.maxConns
	}
	if c.maxPerClient <= 0 {
		c.maxPerClient = s.cfg.maxPerClient
	}
	if c.sessionTimeout <= 0 {
		c.sessionTimeout = s.cfg.sessionTimeout
	}
	if c.messageTimeout <= 0 {
		c.messageTimeout = s.cfg.messageTimeout
	}
	if c.maxRcpts <= 0 {
		c.maxRcpts = s.cfg.maxRcpts
	}
	return c
}

// connCounter counts the sessions of the Server, of each group and of each
// client address in a group.
type connCounter struct {
	mu     sync.Mutex
	total  int
	groups map[string]*groupCount
}

type groupCount struct {
	n       int
	clients map[string]int
}

// clientKey is what MaxConnectionsPerClient counts by: the client's IP
// address (without port), or the whole address for non-IP transports.
func clientKey(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return ""
	}
	return a.String()
}

// acquire counts a new session from remote in the group of lim, unless a
// limit forbids it: then it reports the limit met and counts nothing.
func (s *Server) acquire(lim *connLimits, remote net.Addr) (Limit, bool) {
	k := clientKey(remote)
	cc := &s.counts
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.total >= s.cfg.maxConns {
		return LimitServerConnections, false
	}
	g := cc.groups[lim.group]
	if g == nil {
		if cc.groups == nil {
			cc.groups = map[string]*groupCount{}
		}
		g = &groupCount{clients: map[string]int{}}
		cc.groups[lim.group] = g
	}
	if g.n >= lim.maxConns {
		return LimitConnections, false
	}
	if g.clients[k] >= lim.maxPerClient {
		return LimitConnectionsPerClient, false
	}
	cc.total++
	g.n++
	g.clients[k]++
	return 0, true
}

// release uncounts a session acquire counted.
func (s *Server) release(lim *connLimits, remote net.Addr) {
	k := clientKey(remote)
	cc := &s.counts
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.total--
	g := cc.groups[lim.group]
	if g == nil {
		return
	}
	g.n--
	if g.clients[k]--; g.clients[k] <= 0 {
		delete(g.clients, k)
	}
	if g.n <= 0 {
		delete(cc.groups, lim.group)
	}
}

// refuse answers a connection that a connection limit keeps out, reports
// it, and closes it. No Session is made for it.
func (s *Server) refuse(nc net.Conn, lim *connLimits, l Limit) {
	ci := ConnInfo{ID: s.nextID.Add(1), LocalAddr: nc.LocalAddr(), RemoteAddr: nc.RemoteAddr()}
	var value int
	text := "421 4.7.0 Too many connections to this server, try again later\r\n"
	switch l {
	case LimitServerConnections:
		value = s.cfg.maxConns
	case LimitConnections:
		value = lim.maxConns
	case LimitConnectionsPerClient:
		value = lim.maxPerClient
		text = "421 4.7.0 Too many connections from your address, try again later\r\n"
	}
	s.cfg.log.Debug("smtp connection refused", "conn", ci.ID, "remote", addrString(ci.RemoteAddr), "limit", l.String(), "value", value)
	s.limitReached(LimitEvent{Limit: l, Group: lim.group, Conn: ci, Value: strconv.Itoa(value)})
	// A fresh connection's send buffer is empty: the write does not
	// wait, and the deadline makes sure of it (this runs in the accept
	// loop).
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write([]byte(text))
	nc.Close()
}

// limitReached passes ev to Server.LimitReached, if set.
func (s *Server) limitReached(ev LimitEvent) {
	if s.LimitReached != nil {
		s.LimitReached(ev)
	}
}

// limitReached reports a limit this connection's client met.
func (c *conn) limitReached(l Limit, value string) {
	c.srv.limitReached(LimitEvent{Limit: l, Group: c.lim.group, Conn: c.st.ConnInfo, Value: value})
}

// timeLimit ends the session whose read failed on the deadline of limit
// l (LimitInactivity, LimitSession or LimitMessageTime) with 421 4.4.2,
// saying which; data tells whether a message was being received.
func (c *conn) timeLimit(l Limit, data bool) {
	c.closing = true
	var value time.Duration
	switch l {
	case LimitSession:
		value = c.lim.sessionTimeout
		c.writeReply(421, "4.4.2", "Session time limit reached, closing connection")
	case LimitMessageTime:
		value = c.lim.messageTimeout
		c.writeReply(421, "4.4.2", "Message time limit reached, message not accepted, closing connection")
	default:
		if data {
			value = c.lim.dataTimeout
			c.writeReply(421, "4.4.2", "Timeout waiting for data, closing connection")
		} else {
			value = c.lim.readTimeout
			c.writeReply(421, "4.4.2", "Timeout waiting for command, closing connection")
		}
	}
	c.logger().Info("smtp time limit reached", "limit", l.String(), "value", value, "data", data)
	c.limitReached(l, value.String())
}

// setReadDeadline sets the deadline of the next read of a command line:
// the inactivity timeout, or the end of the session's budget if sooner.
func (c *conn) setReadDeadline() {
	d, cause := time.Now().Add(c.lim.readTimeout), LimitInactivity
	if c.sessionEnd.Before(d) {
		d, cause = c.sessionEnd, LimitSession
	}
	c.readCause = cause
	c.nc.SetReadDeadline(d)
}

// setDataDeadline sets the deadline of the next read of message data: the
// inactivity timeout, or the end of the message's or the session's
// budget, whichever comes first.
func (c *conn) setDataDeadline() {
	d, cause := time.Now().Add(c.lim.dataTimeout), LimitInactivity
	if c.messageEnd.Before(d) {
		d, cause = c.messageEnd, LimitMessageTime
	}
	if c.sessionEnd.Before(d) {
		d, cause = c.sessionEnd, LimitSession
	}
	c.readCause = cause
	c.nc.SetReadDeadline(d)
}

// rcptKey is what makes two recipients the same: the local part as is
// (RFC 5321 2.4: it may be case-sensitive), the domain in any case;
// <postmaster> in any case.
func rcptKey(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return strings.ToLower(addr)
	}
	if d := addr[i+1:]; strings.ToLower(d) != d {
		return addr[:i+1] + strings.ToLower(d)
	}
	return addr // the usual case: no allocation
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
