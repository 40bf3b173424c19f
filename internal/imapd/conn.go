package imapd

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
)

// Idle connections (issue 19). A server holds thousands of IMAP4 clients
// in IDLE, and imapserver gives each connection one goroutine that waits
// in a read, plus, during IDLE, a second one that waits in Session.Idle
// for updates. What a connection keeps while it waits is mostly fixed by
// the library (its 4 KiB reader and 4 KiB writer, the TLS state, the
// read path's 8 KiB stack), but two costs are certrelay's to avoid, and
// Conn avoids them without changing the library. Conn is the net.Conn
// handed to imapserver for a plain-text binding, and the one under the
// tls.Conn of an implicit-TLS binding (serving.Binding.Wrap; that
// handshake is completed before imapserver sees the connection):
//
//   - The TLS handshake after STARTTLS is deep (more than 8 KiB of stack
//     with ECDSA signing and ML-KEM). imapserver starts it lazily, in the
//     connection's goroutine, whose stack then stays grown to 16 KiB until
//     garbage collections halve it, and whose freed halves stay resident.
//     Conn runs the handshake in a goroutine of its own that ends with
//     it: imapserver sets a read deadline on the new tls.Conn before it
//     reads (SetReadDeadline reaches Conn underneath), and there Conn,
//     seeing a tls.Conn in imapserver.Conn.NetConn, completes the
//     handshake aside while the connection's goroutine waits. A failed
//     handshake is kept by the tls.Conn and returned by imapserver's next
//     read, as before. If imapserver ever reads first, the handshake just
//     happens inline, as it did.
//   - IDLE's second goroutine (its stack, its channels). Session.Idle
//     returns at once instead of waiting; the updates are written by a
//     short-lived goroutine started when a folder changes, and only while
//     the connection's goroutine is blocked in Conn.Read inside the IDLE
//     command (idleState): imapserver reads the client's DONE through
//     Conn.Read, so every update is written before DONE is handled, as
//     with a waiting Session.Idle, and none after.
type Conn struct {
	net.Conn
	ic         *imapserver.Conn // set by Backend.NewSession, before any read
	tlsStarted bool             // the STARTTLS handshake has been run (or left inline)
	idle       *idleState       // the session's, once it has one
}

// NewConn wraps a connection for imapserver: a plain-text one (which may
// start TLS with STARTTLS), or the one under an implicit-TLS tls.Conn.
// Backend.NewSession finds it in imapserver.Conn.NetConn (or under it).
func NewConn(c net.Conn) *Conn { return &Conn{Conn: c} }

// SetReadDeadline sets the deadline, then completes a TLS handshake that
// STARTTLS has just begun in another goroutine (see Conn); imapserver
// calls it before every command it reads, from the connection's
// goroutine.
func (c *Conn) SetReadDeadline(t time.Time) error {
	err := c.Conn.SetReadDeadline(t)
	if !c.tlsStarted && c.ic != nil {
		if tc, ok := c.ic.NetConn().(*tls.Conn); ok {
			c.tlsStarted = true
			handshakeAside(tc)
		}
	}
	return err
}

// handshakeAside runs tc's handshake in a goroutine of its own and waits
// for it. The error stays in tc (its next Read returns it). A panic in
// the handshake is raised again here, where imapserver recovers from it
// (ending the connection, not the server).
func handshakeAside(tc *tls.Conn) {
	var p any
	done := make(chan struct{})
	go func() {
		defer func() {
			p = recover()
			close(done)
		}()
		tc.Handshake()
	}()
	<-done
	if p != nil {
		panic(p)
	}
}

// Read reads the connection; while the session is in IDLE it lets
// updates be written as long as it waits (idleState).
func (c *Conn) Read(p []byte) (int, error) {
	st := c.idle
	if st == nil {
		return c.Conn.Read(p)
	}
	st.enterRead()
	n, err := c.Conn.Read(p)
	st.leaveRead()
	return n, err
}

// idleState is a session's IDLE without a waiting goroutine. Updates may
// be written (deliver) only while the IDLE command runs (stop not yet
// closed) and the connection's goroutine is blocked in Conn.Read: then
// imapserver is waiting for the client's DONE and writes nothing itself
// but through the same encoder lock. leaveRead takes mu, so it waits for
// a write in progress, and clears reading before imapserver sees a byte.
type idleState struct {
	kicked atomic.Bool // a deliver goroutine is started and has not begun
	mu     sync.Mutex
	// Under mu:
	reading bool                     // the connection's goroutine is in Conn.Read
	w       *imapserver.UpdateWriter // the IDLE command's
	stop    <-chan struct{}          // closed by imapserver when IDLE ends
	t       *imapserver.SessionTracker
	m       *mbox // the folder the session waits on (its idlers)
}

// begin is Session.Idle: updates to t go to w until stop is closed.
// It holds m.mu while it sets st's IDLE, so that enterRead, forgetting
// the IDLE before (whose DONE came in the same read as this IDLE), does
// not take st out of m's idlers after this one put it back.
func (st *idleState) begin(w *imapserver.UpdateWriter, stop <-chan struct{}, t *imapserver.SessionTracker, m *mbox) {
	m.mu.Lock()
	m.addIdler(st)
	st.mu.Lock()
	st.w, st.stop, st.t, st.m = w, stop, t, m
	reading := st.reading
	st.mu.Unlock()
	m.mu.Unlock()
	if reading { // the connection's goroutine was quicker: updates may be waiting
		st.kick()
	}
}

// enterRead: the connection's goroutine is about to block in a read.
func (st *idleState) enterRead() {
	st.mu.Lock()
	st.reading = true
	ended := st.endedLocked()
	idling := st.stop != nil
	st.mu.Unlock()
	if ended != nil {
		ended.mu.Lock()
		st.mu.Lock()
		again := st.m == ended // the next IDLE has begun on it (begin)
		idling = idling || again
		st.mu.Unlock()
		if !again {
			ended.removeIdler(st)
		}
		ended.mu.Unlock()
	}
	if idling {
		st.kick() // what was queued while the goroutine was out of the read
	}
}

// leaveRead: the read returned; no update is written from now until the
// goroutine reads again.
func (st *idleState) leaveRead() {
	st.mu.Lock()
	st.reading = false
	st.mu.Unlock()
}

// endedLocked forgets an IDLE whose stop is closed and returns its
// folder, whose idlers the caller leaves (without st.mu: the order is
// m.mu, then st.mu).
func (st *idleState) endedLocked() *mbox {
	if st.stop == nil {
		return nil
	}
	select {
	case <-st.stop:
	default:
		return nil
	}
	m := st.m
	st.w, st.stop, st.t, st.m = nil, nil, nil, nil
	return m
}

// end forgets the IDLE at once (the session unselects or closes).
func (st *idleState) end() {
	st.mu.Lock()
	m := st.m
	st.w, st.stop, st.t, st.m = nil, nil, nil, nil
	st.mu.Unlock()
	if m != nil {
		m.mu.Lock()
		m.removeIdler(st)
		m.mu.Unlock()
	}
}

// kick has the session's pending updates written, in a goroutine (the
// caller may hold its folder's lock); one at a time is started.
func (st *idleState) kick() {
	if st.kicked.CompareAndSwap(false, true) {
		go st.deliver()
	}
}

// deliver writes the pending updates if the IDLE is waiting for DONE.
func (st *idleState) deliver() {
	st.kicked.Store(false)
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.reading || st.t == nil {
		return
	}
	select {
	case <-st.stop:
		return
	default:
	}
	// A write error ends the connection: its read fails too.
	_ = st.t.Poll(st.w, true)
}
