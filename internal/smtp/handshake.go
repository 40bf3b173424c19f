package smtp

import (
	"crypto/tls"
	"sync/atomic"
	"time"
)

// TLS handshakes on long-lived goroutines (issue 19). A handshake's
// calls (ECDSA or RSA signing, the key exchange, the certificate's
// encoding) need a deeper stack than anything else a session does: run
// on the session's goroutine, which starts small, each handshake grew its
// stack two or three times, each growth a copy of the stack (about 4% of
// a STARTTLS session's CPU), and an idle session kept the grown stack
// until the garbage collector halved it. The handshakers are a few
// goroutines whose stacks have grown already and are kept grown while
// they wait for the next handshake; the session's goroutine hands its
// handshake over and waits. When all are busy and there are
// maxHandshakers, a session runs its handshake itself, as before.

const (
	// maxHandshakers bounds the handshake goroutines: 128 stacks of
	// 16–32 KiB at most.
	maxHandshakers = 128
	// handshakerIdle is how long a handshaker waits for work before it
	// ends, so a burst of handshakes does not keep its stacks.
	handshakerIdle = 10 * time.Second
	// handshakerStackKeep is the stack a handshaker holds while it waits:
	// the garbage collector halves the stack of a goroutine that uses
	// less than a quarter of it, and a waiting handshaker would otherwise
	// grow again at every handshake after a collection.
	handshakerStackKeep = 6 << 10
)

// handshakers is a Server's pool of handshake goroutines. The zero value
// is ready; safe for concurrent use.
type handshakers struct {
	jobs chan *handshakeJob // unbuffered: a send succeeds when a handshaker waits
	n    atomic.Int32       // handshakers running
	idle time.Duration      // 0: handshakerIdle (tests shorten it)
}

// handshakeJob is one handshake handed to a handshaker.
type handshakeJob struct {
	tc    *tls.Conn
	err   error
	panic any // a panic of the handshake, raised again in the session
	done  chan struct{}
}

// handshake runs tc's handshake on a handshaker and returns its result;
// a panic of the handshake is raised again here, in the session's
// goroutine (see conn.recoverPanic).
func (p *handshakers) handshake(tc *tls.Conn) error {
	j := &handshakeJob{tc: tc, done: make(chan struct{})}
	select {
	case p.jobs <- j:
	default:
		if p.n.Add(1) > maxHandshakers {
			p.n.Add(-1)
			return tc.Handshake()
		}
		go p.work(j)
	}
	<-j.done
	if j.panic != nil {
		panic(j.panic)
	}
	return j.err
}

// work runs j, then the handshakes handed over, until none comes for
// handshakerIdle.
func (p *handshakers) work(j *handshakeJob) {
	defer p.n.Add(-1)
	wait := p.idle
	if wait <= 0 {
		wait = handshakerIdle
	}
	idle := time.NewTimer(wait)
	defer idle.Stop()
	for j != nil {
		j.run()
		idle.Reset(wait)
		j = p.next(idle)
	}
}

// run runs the handshake and reports it.
func (j *handshakeJob) run() {
	defer close(j.done)
	defer func() {
		if r := recover(); r != nil {
			j.panic = r
		}
	}()
	j.err = j.tc.Handshake()
}

// next waits for the next handshake, nil when idle fires first. Its frame
// holds handshakerStackKeep bytes, so the waiting handshaker's stack stays
// in use and is not halved by the garbage collector.
//
//go:noinline
func (p *handshakers) next(idle *time.Timer) *handshakeJob {
	var keep [handshakerStackKeep]byte
	touch(keep[:])
	select {
	case j := <-p.jobs:
		return j
	case <-idle.C:
		return nil
	}
}

// touch keeps its argument from being optimized away.
//
//go:noinline
func touch(b []byte) { b[0] = 0 }
