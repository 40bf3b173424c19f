package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Delivery is one attempt to deliver a message to the recipients of one
// destination.
type Delivery struct {
	MsgID       string
	ReceivedAt  time.Time
	Sender      string // "" is the null sender <>
	Recipients  []Recipient
	Destination string
	Body        []byte // shared: must not be modified
	Meta        Meta
	// Attempt is 1 for the first attempt (the highest among Recipients).
	Attempt int
	// MaybeDelivered is true when an earlier attempt may already have
	// delivered to some recipient without its result being recorded: a
	// retry, or a message queued before this process started (crash
	// recovery). Deliverers that can detect a copy already delivered
	// should check for it then (internal/maildir does).
	MaybeDelivered bool
}

// Outcome is the result for one recipient, named by its Idx. Err nil means
// delivered; an error wrapped by Permanent fails the recipient; any other
// error defers it (see the retry schedule in the package doc).
type Outcome struct {
	Idx int
	Err error
}

// Deliverer delivers messages for one kind of destination.
//
// Deliver returns one Outcome per recipient of d; a recipient without an
// outcome counts as a temporary failure. It must honour ctx (which ends at
// Options.DeliveryTimeout or shutdown) and be safe for concurrent use.
type Deliverer interface {
	Deliver(ctx context.Context, d Delivery) []Outcome
}

// DelivererFunc adapts a function to Deliverer.
type DelivererFunc func(ctx context.Context, d Delivery) []Outcome

// Deliver calls f.
func (f DelivererFunc) Deliver(ctx context.Context, d Delivery) []Outcome { return f(ctx, d) }

// Bouncer produces a non-delivery report. Bounce is called once per
// finished message that has failed recipients, never for the null sender;
// failed holds those recipients with their last error, msg the whole
// message with its body. An error keeps the message; Bounce is called
// again BounceRetry later.
type Bouncer interface {
	Bounce(ctx context.Context, msg *Message, failed []RecipientState) error
}

// BouncerFunc adapts a function to Bouncer.
type BouncerFunc func(ctx context.Context, msg *Message, failed []RecipientState) error

// Bounce calls f.
func (f BouncerFunc) Bounce(ctx context.Context, msg *Message, failed []RecipientState) error {
	return f(ctx, msg, failed)
}

// PermanentError marks a delivery error as permanent: the recipient fails
// at once and is not retried.
type PermanentError struct{ Err error }

// Error returns the wrapped error's text.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err (which must not be nil) as a PermanentError.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err is, or wraps, a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// Handle registers d for destination: Local, AnyRemote, or an exact
// destination (which takes precedence over AnyRemote). A nil d removes the
// registration. It may be called while Run runs.
func (q *Queue) Handle(destination string, d Deliverer) {
	q.mu.Lock()
	if d == nil {
		delete(q.routes, destination)
	} else {
		q.routes[destination] = d
	}
	q.mu.Unlock()
	q.wake()
}

// SetBouncer sets the hook called for failed recipients (nil: none; the
// failures are only logged).
func (q *Queue) SetBouncer(b Bouncer) {
	q.mu.Lock()
	q.bouncer = b
	q.mu.Unlock()
}

func (q *Queue) route(dest string) Deliverer {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d, ok := q.routes[dest]; ok {
		return d
	}
	if dest != Local {
		return q.routes[AnyRemote]
	}
	return nil
}

// backoffs is the retry schedule; after its end, the last step repeats.
var backoffs = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour}

// Backoff returns the delay after the given number of failed attempts
// (1 → 1m, 2 → 5m, 3 → 15m, 4 → 30m, 5 and more → 1h), before jitter.
func Backoff(attempts int) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	if attempts > len(backoffs) {
		return backoffs[len(backoffs)-1]
	}
	return backoffs[attempts-1]
}

// jitter adds up to 10% to d.
var jitter = func(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// Run delivers until ctx ends or Close is called, then waits for the
// deliveries in progress to return and hands their results to the writer.
// It returns nil after such a stop, and an error at once on an
// administration handle or when Run is already running.
func (q *Queue) Run(ctx context.Context) error {
	if q.admin {
		return errors.New("queue run: opened for administration (no lock); use Open")
	}
	q.mu.Lock()
	if q.running {
		q.mu.Unlock()
		return errors.New("queue run: already running")
	}
	if q.closing {
		q.mu.Unlock()
		return fmt.Errorf("queue run: %w", ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	q.running, q.runCancel, q.runDone = true, cancel, make(chan struct{})
	fin := newFinalizer(q)
	q.fin.Store(fin)
	q.mu.Unlock()
	runDone := q.runDone
	defer func() {
		cancel()
		q.mu.Lock()
		q.running = false
		q.mu.Unlock()
		close(runDone)
	}()

	maxInflight := 2 * q.opts.Workers
	jobs := make(chan *job, maxInflight)
	var wg sync.WaitGroup
	for range q.opts.Workers {
		wg.Go(func() {
			for j := range jobs {
				q.runJob(ctx, j)
			}
		})
	}
	// The sweep for messages a crash left finished runs beside delivery,
	// never before it: recovered mail starts flowing at once.
	var finWG sync.WaitGroup
	finWG.Go(func() {
		if err := fin.sweep(ctx); err != nil && ctx.Err() == nil {
			q.log.Error("queue: look for finished messages", "err", err)
		}
		fin.run(ctx)
	})
	q.dispatch(ctx, jobs, maxInflight)
	close(jobs)
	wg.Wait()
	finWG.Wait()
	return nil
}

// wake makes the dispatcher scan soon.
func (q *Queue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

type leaseKey struct {
	msgID string
	idx   int
}

type leaseSet struct {
	mu       sync.Mutex
	m        map[leaseKey]struct{}
	inflight atomic.Int64 // jobs handed to workers and not yet released
	limited  atomic.Bool  // the last scan stopped for lack of room: a release wakes the dispatcher
}

type job struct {
	msgID    string
	dest     string
	rcpts    []Recipient
	attempts map[int]int
	d        Deliverer
	counted  bool // holds a slot of inflight
}

func (q *Queue) release(j *job) {
	q.leases.mu.Lock()
	for _, r := range j.rcpts {
		delete(q.leases.m, leaseKey{j.msgID, r.Idx})
	}
	q.leases.mu.Unlock()
	if j.counted {
		q.leases.inflight.Add(-1)
		if q.leases.limited.Load() {
			q.wake()
		}
	}
}

const scanBatch = 256

// The dispatcher's timed scans: for retries that fell due, and for changes
// made by other processes. Variables so tests can take them away and show
// that nothing else depends on them.
var (
	pollInterval = time.Second
	genInterval  = 200 * time.Millisecond
)

func (q *Queue) dispatch(ctx context.Context, jobs chan<- *job, maxInflight int) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	genTick := time.NewTicker(genInterval)
	defer genTick.Stop()
	lastGen, _ := q.generation(ctx)
	q.hops.generation(lastGen)
	more := true
	for {
		for more && ctx.Err() == nil {
			var err error
			more, err = q.scan(ctx, jobs, maxInflight)
			if err != nil && ctx.Err() == nil {
				q.log.Error("queue: scan for due recipients", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-q.kick:
		case <-tick.C:
		case <-genTick.C:
			g, err := q.generation(ctx)
			if err != nil || g == lastGen {
				continue
			}
			lastGen = g
		}
		more = true
	}
}

func (q *Queue) generation(ctx context.Context) (int64, error) {
	var g int64
	err := q.reads.generation.QueryRowContext(ctx).Scan(&g)
	return g, err
}

// scan leases due recipients and hands them to the workers. It reports
// whether another scan should follow at once.
//
// A scan that fills the last free slot may leave due recipients behind
// (it reads no more rows than it can hand out), and only a release can
// make room for them: so whenever a scan ends with no room — before
// reading, or after handing out its last slot — it goes through full,
// which asks the next release to wake the dispatcher. Nothing else
// would: the one-second poll is for retries that fall due, and after a
// crash (or once ingest stops) no commit of new mail prompts a scan.
func (q *Queue) scan(ctx context.Context, jobs chan<- *job, maxInflight int) (bool, error) {
	room := maxInflight - int(q.leases.inflight.Load())
	if room <= 0 {
		return q.full(maxInflight), nil
	}
	q.leases.limited.Store(false)
	// The lease set is locked from before the read begins until every row
	// has been checked against it. A lease is released only after its
	// result is committed, so a lease missing here was released before
	// the read's snapshot was taken, which therefore holds its result.
	// (Locking after the read began let a result committed and released
	// in between look pending and unleased: a second delivery.)
	q.leases.mu.Lock()
	leased := len(q.leases.m)
	// At most `leased` rows of the result are leased, so it holds up to
	// min(room, scanBatch) rows that are not: no more than can be
	// dispatched now (reading more only to release them again cost a
	// quarter of the server's CPU under load).
	limit := leased + min(room, scanBatch)
	now := q.opts.Now()
	rows, err := q.reads.scan.QueryContext(ctx, ms(now), limit)
	if err != nil {
		q.leases.mu.Unlock()
		return false, err
	}
	type gkey struct{ msgID, dest string }
	var order []*job
	groups := map[gkey]*job{}
	n := 0
	for rows.Next() {
		n++
		var r Recipient
		var msgID string
		var attempts int
		if err := rows.Scan(&msgID, &r.Idx, &r.Address, &r.Destination, &r.Notify, &r.ORCPT, &attempts); err != nil {
			q.leases.mu.Unlock()
			rows.Close()
			return false, err
		}
		k := leaseKey{msgID, r.Idx}
		if _, ok := q.leases.m[k]; ok {
			continue
		}
		q.leases.m[k] = struct{}{}
		g := groups[gkey{msgID, r.Destination}]
		if g == nil {
			g = &job{msgID: msgID, dest: r.Destination, attempts: map[int]int{}}
			groups[gkey{msgID, r.Destination}] = g
			order = append(order, g)
		}
		g.rcpts = append(g.rcpts, r)
		g.attempts[r.Idx] = attempts
	}
	q.leases.mu.Unlock()
	err = rows.Err()
	rows.Close()
	if err != nil {
		for _, g := range order {
			q.release(g)
		}
		return false, err
	}

	if q.hops.holding() {
		// An administrator's change (Retry-Queue) lifts the holds. The
		// counter is read after the rows, so a change whose rows this
		// scan read is seen here, and one committed later is seen by the
		// next scan, which the change prompts.
		if g, err := q.generation(ctx); err == nil {
			q.hops.generation(g)
		}
	}
	var noRoute []rowUpdate
	var noRouteJobs []*job
	expiry := q.opts.Expiry
	var heldJobs []*job
	heldFor := map[string]hopHold{} // the hold each held job's destination had when it was checked
	isHeld := func(g *job) bool {
		until, why, held := q.hops.held(g.dest, now)
		if held {
			heldFor[g.dest] = hopHold{until: until, why: why}
		}
		return held
	}
	for i, g := range order {
		g.d = q.route(g.dest)
		if g.d == nil {
			noRouteJobs = append(noRouteJobs, g)
			continue
		}
		if isHeld(g) {
			heldJobs = append(heldJobs, g)
			continue
		}
		if room == 0 {
			for _, rest := range order[i:] {
				if rest.d == nil && q.route(rest.dest) == nil {
					noRouteJobs = append(noRouteJobs, rest)
				} else if isHeld(rest) {
					heldJobs = append(heldJobs, rest)
				} else {
					q.release(rest)
				}
			}
			break
		}
		room--
		g.counted = true
		q.leases.inflight.Add(1)
		jobs <- g
	}
	if len(noRouteJobs)+len(heldJobs) > 0 {
		recv, err := q.receivedTimes(ctx, append(append([]*job(nil), noRouteJobs...), heldJobs...))
		if err != nil {
			for _, g := range noRouteJobs {
				q.release(g)
			}
			for _, g := range heldJobs {
				q.release(g)
			}
			return false, err
		}
		for _, g := range noRouteJobs {
			q.fresh.drop(g.msgID) // no delivery will take it
			deadline := recv[g.msgID].Add(expiry)
			for _, r := range g.rcpts {
				u := rowUpdate{msgID: g.msgID, idx: r.Idx, status: Pending, attempts: g.attempts[r.Idx],
					next:    ms(minTime(now.Add(NoRouteRetry), deadline)),
					lastErr: "no route yet for destination " + g.dest}
				if !now.Before(deadline) {
					u.status, u.next = Failed, ms(now)
					u.lastErr = fmt.Sprintf("expired after %v: no route for destination %s", expiry, g.dest)
					q.failed.Add(1)
				}
				noRoute = append(noRoute, u)
			}
		}
		for _, g := range heldJobs {
			q.fresh.drop(g.msgID) // no delivery takes it before the hold ends
			deadline := recv[g.msgID].Add(expiry)
			until, why := heldFor[g.dest].until, heldFor[g.dest].why
			for _, r := range g.rcpts {
				u := rowUpdate{msgID: g.msgID, idx: r.Idx, status: Pending, attempts: g.attempts[r.Idx],
					next:    ms(minTime(until, deadline)),
					lastErr: heldError(g.dest, why, until)}
				if !now.Before(deadline) {
					u.status, u.next = Failed, ms(now)
					u.lastErr = truncate(fmt.Sprintf("expired after %v: %s could not be reached: %s", expiry, g.dest, why))
					q.failed.Add(1)
				}
				noRoute = append(noRoute, u)
			}
		}
		noRouteJobs = append(noRouteJobs, heldJobs...)
		jobsCopy := noRouteJobs
		q.submit(&op{rows: noRoute, release: func() {
			for _, g := range jobsCopy {
				q.release(g)
			}
			if f := q.fin.Load(); f != nil {
				for _, g := range jobsCopy {
					f.add(g.msgID, time.Time{})
				}
			}
		}})
	}
	if room == 0 {
		return q.full(maxInflight), nil
	}
	return n == limit, nil
}

// full records that the dispatcher stopped for lack of room, so that the
// next release wakes it, and reports whether room has appeared since: a
// release that ran before the flag was set did not wake anyone, so the
// caller must scan again itself. (release lowers inflight, then reads the
// flag; full sets the flag, then reads inflight: one of them sees the
// other's write.)
func (q *Queue) full(maxInflight int) bool {
	q.leases.limited.Store(true)
	return int(q.leases.inflight.Load()) < maxInflight
}

func (q *Queue) receivedTimes(ctx context.Context, js []*job) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for _, g := range js {
		if _, ok := out[g.msgID]; ok {
			continue
		}
		var recv int64
		err := q.reads.received.QueryRowContext(ctx, g.msgID).Scan(&recv)
		if errors.Is(err, sql.ErrNoRows) {
			out[g.msgID] = q.opts.Now() // removed meanwhile: the update touches nothing
			continue
		}
		if err != nil {
			return nil, err
		}
		out[g.msgID] = fromMs(recv)
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// runJob makes one delivery and hands its results to the writer, which
// releases the leases after committing them.
func (q *Queue) runJob(ctx context.Context, j *job) {
	m, rcpts := q.fresh.take(j.msgID)
	fresh := m != nil
	var err error
	if m == nil {
		m, err = q.get(ctx, j.msgID, true)
	}
	if err != nil {
		if !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
			q.log.Error("queue: load message for delivery", "msg", j.msgID, "err", err)
		}
		q.release(j) // removed meanwhile, or tried again at the next scan
		return
	}
	attempt := 0
	for _, a := range j.attempts {
		attempt = max(attempt, a)
	}
	d := Delivery{
		MsgID: m.ID, ReceivedAt: m.ReceivedAt, Sender: m.Sender, Recipients: j.rcpts,
		Destination: j.dest, Body: m.Body, Meta: m.Meta, Attempt: attempt + 1,
		MaybeDelivered: attempt > 0 || m.ReceivedAt.Before(q.openedAt),
	}
	dctx, cancel := context.WithTimeout(ctx, q.opts.DeliveryTimeout)
	outs := q.callDeliverer(dctx, j.d, d)
	cancel()

	byIdx := make(map[int]error, len(outs))
	have := make(map[int]bool, len(outs))
	for _, o := range outs {
		byIdx[o.Idx], have[o.Idx] = o.Err, true
	}
	now := q.opts.Now()
	deadline := m.ReceivedAt.Add(q.opts.Expiry)
	shutdown := ctx.Err() != nil
	var rows []rowUpdate
	finished, reached, deferred := false, false, false
	var unreachable error
	var holdUntil int64
	for _, r := range j.rcpts {
		err, ok := byIdx[r.Idx], have[r.Idx]
		if !ok {
			err = errors.New("deliverer returned no outcome for this recipient")
		}
		u := rowUpdate{msgID: j.msgID, idx: r.Idx, attempts: j.attempts[r.Idx]}
		switch {
		case err == nil:
			u.status, u.next = Delivered, ms(now)
			q.delivered.Add(1)
			reached = true
		case IsPermanent(err):
			u.status, u.next, u.attempts, u.lastErr = Failed, ms(now), u.attempts+1, truncate(err.Error())
			q.failed.Add(1)
		case shutdown:
			continue // interrupted by the stop: not an attempt; stays as it was
		default:
			deferred = true
			u.attempts++
			u.lastErr = truncate(err.Error())
			if !now.Before(deadline) {
				u.status, u.next = Failed, ms(now)
				u.lastErr = truncate(fmt.Sprintf("expired after %v: %v", q.opts.Expiry, err))
				q.failed.Add(1)
			} else {
				u.status = Pending
				u.next = ms(minTime(now.Add(jitter(Backoff(u.attempts))), deadline))
				if IsUnreachable(err) {
					unreachable, holdUntil = err, max(holdUntil, u.next)
				}
			}
		}
		if u.status != Pending {
			finished = true
		}
		rows = append(rows, u)
	}
	o := &op{rows: rows, release: func() { q.release(j) }}
	if finished {
		o.finalize = j.msgID
		// A first attempt that delivered every recipient of the
		// message (the fresh copy knows them all; this job leases
		// each): the message goes, with no row written first.
		o.removeAll = fresh && len(rows) == rcpts && allDelivered(rows)
	}
	switch {
	case reached:
		if k := q.hops.reached(j.dest, now); k != promoteNone {
			o.promote, o.promoteAll = j.dest, k == promoteAll
		}
	case deferred:
		if unreachable != nil {
			// The hold ends by MaxHold at the latest, so after a long outage
			// the destination is tried again within minutes of its return,
			// not at the hourly step of the recipient that found it down.
			holdUntil = min(holdUntil, ms(now.Add(MaxHold)))
			q.hops.unreachable(j.dest)
			why := truncate(unreachable.Error())
			q.hops.hold(j.dest, fromMs(holdUntil), why)
			// The destination's mail already due is held in the same
			// transaction, by one statement on the recipients_hop index,
			// rather than by the scans a few rows at a time.
			o.hold = &holdOp{dest: j.dest, until: holdUntil, lastErr: heldError(j.dest, why, fromMs(holdUntil)), expiry: q.opts.Expiry.Milliseconds()}
		}
	}
	q.submit(o)
}

func allDelivered(rows []rowUpdate) bool {
	for _, u := range rows {
		if u.status != Delivered {
			return false
		}
	}
	return true
}

func (q *Queue) callDeliverer(ctx context.Context, dl Deliverer, d Delivery) (outs []Outcome) {
	defer func() {
		if p := recover(); p != nil {
			q.log.Error("queue: deliverer panicked", "msg", d.MsgID, "destination", d.Destination, "panic", p)
			outs = nil // every recipient: temporary failure
		}
	}()
	return dl.Deliver(ctx, d)
}

func truncate(s string) string {
	const maxErr = 1000
	if len(s) > maxErr {
		return s[:maxErr] + "…"
	}
	return s
}

// finalizer removes finished messages, bouncing their failed recipients
// first. It is one goroutine, so a message is never bounced twice by
// concurrent passes.
type finalizer struct {
	q    *Queue
	mu   sync.Mutex
	due  map[string]time.Time // zero: now
	wake chan struct{}
}

func newFinalizer(q *Queue) *finalizer {
	return &finalizer{q: q, due: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

func (f *finalizer) add(id string, at time.Time) {
	f.mu.Lock()
	if old, ok := f.due[id]; !ok || at.Before(old) {
		f.due[id] = at
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// sweepSQL lists the messages none of whose recipients is pending. The
// unary + keeps SQLite from answering the subquery with the (status,
// next_attempt) index, which reads every pending recipient once per
// message (quadratic: minutes for a large spool after a crash); the
// recipients of one message are then found by the primary key.
const sweepSQL = `SELECT id FROM messages m WHERE NOT EXISTS
		(SELECT 1 FROM recipients r WHERE r.msg_id = m.id AND +r.status = 'pending')`

// beforeSweep is called when the sweep starts; tests hold the sweep there.
var beforeSweep = func() {}

// sweep finds messages left finished by a crash between a result and the
// removal.
func (f *finalizer) sweep(ctx context.Context) error {
	beforeSweep()
	rows, err := f.q.db.QueryContext(ctx, sweepSQL)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		f.add(id, time.Time{})
	}
	return rows.Err()
}

func (f *finalizer) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		var ready []string
		next := now.Add(time.Hour)
		f.mu.Lock()
		for id, at := range f.due {
			if !at.After(now) {
				ready = append(ready, id)
				delete(f.due, id)
			} else if at.Before(next) {
				next = at
			}
		}
		f.mu.Unlock()
		for _, id := range ready {
			if ctx.Err() != nil {
				return
			}
			if err := f.q.finalize(ctx, id); err != nil && ctx.Err() == nil {
				f.q.log.Error("queue: finish message", "msg", id, "err", err)
				f.add(id, time.Now().Add(BounceRetry))
			}
		}
		if len(ready) > 0 {
			continue
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-timer.C:
		}
	}
}

// finalize bounces and removes message id if none of its recipients is
// pending; otherwise it does nothing.
func (q *Queue) finalize(ctx context.Context, id string) error {
	m, states, err := q.getWithStates(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var failed []RecipientState
	for _, s := range states {
		switch s.Status {
		case Pending:
			return nil
		case Failed:
			failed = append(failed, s)
		}
	}
	if len(failed) > 0 {
		q.mu.Lock()
		b := q.bouncer
		q.mu.Unlock()
		switch {
		case m.Sender == "":
			q.log.Info("queue: recipients failed; no bounce for the null sender", "msg", id, "failed", len(failed))
		case b == nil:
			q.log.Warn("queue: recipients failed; no bouncer set", "msg", id, "failed", len(failed))
		default:
			if err := b.Bounce(ctx, m, failed); err != nil {
				return fmt.Errorf("bounce: %w", err)
			}
		}
	}
	done := make(chan error, 1)
	q.submit(&op{deleteMsg: id, done: done})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
