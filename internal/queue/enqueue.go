package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Request states, for the race between the writer taking a request and
// its caller giving up.
const (
	reqWaiting int32 = iota
	reqTaken
	reqAbandoned
)

type enqReq struct {
	id    string
	msg   *Message
	recv  int64
	meta  string
	state atomic.Int32
	done  chan error // buffered: the writer never blocks on it
}

// op is a change the writer applies without a caller waiting for the
// commit: delivery results and removals of finished messages.
type op struct {
	rows      []rowUpdate
	deleteMsg string
	release   func()     // after the commit (or at shutdown): frees leases
	finalize  string     // message to look at once the rows are committed
	done      chan error // optional
	// removed is set when the commit also removed finalize, all of whose
	// recipients were delivered: the finalizer has nothing left to do.
	removed bool
	// removeAll, with finalize, says that rows deliver every recipient
	// of the message: the commit removes it with its recipients and
	// writes no rows (an UPDATE of each recipient only for the DELETE
	// to remove it in the same transaction: 8 of 50 µs of CPU per
	// message in BenchmarkEnqueueWhileDelivering4K).
	removeAll bool
	// promote, when set, is a destination a delivery just reached: its
	// held recipients (all its deferred ones with promoteAll) are made
	// due in the same transaction (see hopState); promoted counts them.
	promote    string
	promoteAll bool
	promoted   int64
	// hold, when set, holds a destination found unreachable: see holdOp.
	hold *holdOp
}

type rowUpdate struct {
	msgID    string
	idx      int
	status   Status
	attempts int
	next     int64
	lastErr  string
}

// Enqueue stores m durably and returns its ID. It returns after the
// transaction holding m has been committed and fsynced — the durability
// point before 250 — sharing that commit with concurrent callers.
//
// m.ID, when set, must come from NewID (so the ID can appear in the
// Received header written before the message is queued); otherwise one is
// assigned. m must have at least one recipient, each with an address and a
// destination; Enqueue assigns the recipients' Idx by position and does
// not modify m. m and m.Body must not be modified after the call, even
// when it returns early on ctx.
//
// When ctx ends before the commit, Enqueue returns an error wrapping
// ctx.Err(); the message may still be committed (see the package doc:
// a duplicate, never a loss). A failed write returns an error wrapping
// ErrStorage; a closed queue, ErrClosed.
func (q *Queue) Enqueue(ctx context.Context, m *Message) (string, error) {
	if len(m.Recipients) == 0 {
		return "", errors.New("enqueue: message has no recipients")
	}
	for i, r := range m.Recipients {
		if r.Address == "" || r.Destination == "" {
			return "", fmt.Errorf("enqueue: recipient %d: address and destination are required", i)
		}
	}
	meta := "{}"
	if m.Meta != (Meta{}) {
		b, err := json.Marshal(m.Meta)
		if err != nil {
			return "", fmt.Errorf("enqueue: encode meta: %w", err)
		}
		meta = string(b)
	}
	now := q.opts.Now()
	recv := m.ReceivedAt
	if recv.IsZero() {
		recv = now
	}
	id := m.ID
	if id == "" {
		id = q.newID(now)
	} else if !validID(id) {
		return "", fmt.Errorf("enqueue: %q is not a queue ID (take one from NewID)", id)
	}
	r := &enqReq{id: id, msg: m, recv: ms(recv), meta: meta, done: make(chan error, 1)}

	q.sendMu.RLock()
	if q.closed {
		q.sendMu.RUnlock()
		return "", fmt.Errorf("enqueue: %w", ErrClosed)
	}
	select {
	case q.reqs <- r:
		q.sendMu.RUnlock()
	case <-ctx.Done():
		q.sendMu.RUnlock()
		return "", fmt.Errorf("enqueue: not queued: %w", ctx.Err())
	}

	select {
	case err := <-r.done:
		if err != nil {
			return "", err
		}
		return r.id, nil
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqWaiting, reqAbandoned) {
			return "", fmt.Errorf("enqueue: not queued: %w", ctx.Err())
		}
		return "", fmt.Errorf("enqueue: gave up waiting for the commit (message %s may still be queued): %w", r.id, ctx.Err())
	}
}

// submit hands an op to the writer. After Close it runs op.release at once.
func (q *Queue) submit(o *op) {
	q.sendMu.RLock()
	if q.closed {
		q.sendMu.RUnlock()
		if o.release != nil {
			o.release()
		}
		if o.done != nil {
			o.done <- ErrClosed
		}
		return
	}
	q.ops <- o
	q.sendMu.RUnlock()
}

// writer is the single goroutine that writes to the database (apart from
// the administration methods). See "Group commit" in the package doc.
func (q *Queue) writer() {
	defer close(q.writerDone)
	var (
		batch   []*enqReq
		carried []*op // ops whose transaction failed, tried again
		retry   *time.Timer
		retryC  <-chan time.Time
	)
	stopping := false
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	for {
		batch = batch[:0]
		ops := carried
		newOps := len(carried) == 0
		carried = nil
		// Block unless stopping or holding results ready to retry now.
		if (!stopping && len(ops) == 0) || retryC != nil {
			select {
			case r := <-q.reqs:
				batch = append(batch, r)
			case o := <-q.ops:
				ops = append(ops, o)
			case <-retryC:
				retryC = nil
			case <-q.stop:
				stopping = true
			}
		}
		// Results alone wait a little for the next ingest batch to ride
		// in its transaction (resultsLinger).
		if newOps && len(batch) == 0 && !stopping && mayLinger(ops) {
			linger.Reset(resultsLinger)
		wait:
			for len(ops) < MaxBatchMessages {
				select {
				case r := <-q.reqs:
					batch = append(batch, r)
					break wait
				case o := <-q.ops:
					ops = append(ops, o)
					if !mayLinger(ops[len(ops)-1:]) {
						break wait
					}
				case <-linger.C:
					break wait
				case <-q.stop:
					stopping = true
					break wait
				}
			}
			linger.Stop()
		}
		size := 0
		for _, r := range batch {
			size += len(r.msg.Body)
		}
	gather:
		for len(batch) < MaxBatchMessages && size < MaxBatchBytes && len(ops) < 4*MaxBatchMessages {
			select {
			case r := <-q.reqs:
				batch = append(batch, r)
				size += len(r.msg.Body)
			case o := <-q.ops:
				ops = append(ops, o)
			default:
				break gather
			}
		}
		// Claim the requests whose callers still wait.
		n := 0
		for _, r := range batch {
			if r.state.CompareAndSwap(reqWaiting, reqTaken) {
				batch[n] = r
				n++
			}
		}
		batch = batch[:n]
		if len(batch) == 0 && len(ops) == 0 {
			if stopping {
				return
			}
			continue
		}
		// Into the fresh cache before the commit makes the rows visible
		// to the dispatcher's scan, so a first delivery finds its message
		// there; out again if the commit fails (the scan never sees
		// those rows then).
		cache := len(batch) > 0 && !q.admin
		if cache {
			q.fresh.put(batch)
		}
		err := q.commit(batch, ops)
		if err != nil && cache {
			for _, r := range batch {
				q.fresh.drop(r.id)
			}
		}
		if err != nil {
			err = fmt.Errorf("enqueue: %w: %w", ErrStorage, err)
		}
		for _, r := range batch {
			r.done <- err
		}
		if err == nil {
			q.commits.Add(1)
			q.enqueued.Add(uint64(len(batch)))
			if len(batch) > 0 {
				q.wake()
			}
			for _, o := range ops {
				if o.promoted > 0 {
					q.log.Info("queue: a destination is reachable again; its deferred mail is retried now",
						"destination", o.promote, "recipients", o.promoted)
					q.wake()
				}
				q.opDone(o, nil)
			}
			continue
		}
		q.log.Error("queue write failed", "messages", len(batch), "updates", len(ops), "err", err)
		if stopping {
			for _, o := range ops {
				q.opDone(o, err)
			}
			continue
		}
		// Keep the results for the next transaction, after a pause so a
		// full disk does not turn into a busy loop.
		carried = ops
		if len(carried) > 0 {
			if retry == nil {
				retry = time.NewTimer(time.Second)
			} else {
				retry.Reset(time.Second)
			}
			retryC = retry.C
		}
	}
}

// resultsLinger is how long the writer holds delivery results when no
// message waits to be enqueued, so that they share the next ingest
// batch's transaction (and its WAL fsync) instead of paying one of their
// own: under ingest with Maildir delivery a third of the transactions
// held results only. Nothing waits for a result but its leases (the
// delivery itself is done and durable; a crash before the commit makes
// the recipient's next delivery MaybeDelivered, which finds the copy),
// so a few milliseconds cost only that the slot is handed out again a
// little later.
var resultsLinger = 3 * time.Millisecond // a variable for tests

// mayLinger reports whether ops may wait for resultsLinger: not when
// someone waits for one (a removal, an administrative change).
func mayLinger(ops []*op) bool {
	for _, o := range ops {
		if o.done != nil {
			return false
		}
	}
	return true
}

func (q *Queue) opDone(o *op, err error) {
	if f := q.fin.Load(); err == nil && o.finalize != "" && !o.removed && f != nil {
		f.add(o.finalize, time.Time{})
	}
	if o.release != nil {
		o.release()
	}
	if o.done != nil {
		o.done <- err
	}
}

// commit writes one batch in one IMMEDIATE transaction. A message an op
// finishes with every recipient delivered is removed in the same
// transaction (nothing to bounce, so no need for the finalizer), and the
// op is marked removed once the commit succeeded.
func (q *Queue) commit(batch []*enqReq, ops []*op) (err error) {
	ctx := context.Background() // a caller's cancellation must not abort the others' commit
	s := &q.stmts
	if _, err := s.begin.ExecContext(ctx); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			// Some errors (SQLITE_FULL, SQLITE_IOERR) roll back by
			// themselves; then this ROLLBACK fails harmlessly.
			_, _ = s.rollback.ExecContext(ctx)
		}
	}()
	if len(batch) > 0 {
		if err := q.insertMessages(ctx, batch); err != nil {
			return err
		}
	}
	// The results of every op, then the removal of the messages they
	// finish with every recipient delivered, each in as few statements as
	// the rows allow (rows.go); then each op's own removal.
	now := ms(q.opts.Now())
	var updates []rowUpdate
	var finish []string
	for _, o := range ops {
		if o.removeAll {
			continue // removed below, rows and all
		}
		updates = append(updates, o.rows...)
		if o.finalize != "" {
			finish = append(finish, o.finalize)
		}
	}
	if len(updates) > 0 {
		if err := q.updateRecipients(ctx, updates, now); err != nil {
			return err
		}
	}
	var removed []*op
	for _, o := range ops {
		if !o.removeAll {
			continue
		}
		gone, err := q.removeMessage(ctx, o.finalize)
		if err != nil {
			return err
		}
		if gone {
			removed = append(removed, o)
		}
	}
	if len(finish) > 0 {
		gone, err := q.removeDelivered(ctx, finish)
		if err != nil {
			return err
		}
		for _, o := range ops {
			if o.finalize != "" && !o.removeAll && gone[o.finalize] {
				removed = append(removed, o)
			}
		}
	}
	for _, o := range ops {
		if o.promote != "" {
			st := s.promoteHeld
			if o.promoteAll {
				st = s.promote
			}
			res, err := st.ExecContext(ctx, now, o.promote, now)
			if err != nil {
				return fmt.Errorf("retry the deferred mail for %s: %w", o.promote, err)
			}
			if o.promoted, err = res.RowsAffected(); err != nil {
				return fmt.Errorf("retry the deferred mail for %s: %w", o.promote, err)
			}
		}
		if h := o.hold; h != nil {
			if _, err := s.hold.ExecContext(ctx, h.until, h.expiry, h.lastErr, now, h.dest, now); err != nil {
				return fmt.Errorf("hold the mail for %s: %w", h.dest, err)
			}
		}
		if o.deleteMsg != "" {
			if _, err := s.delRcpts.ExecContext(ctx, o.deleteMsg); err != nil {
				return fmt.Errorf("delete message: %w", err)
			}
			if _, err := s.delMsg.ExecContext(ctx, o.deleteMsg); err != nil {
				return fmt.Errorf("delete message: %w", err)
			}
		}
	}
	if q.admin && len(batch) > 0 {
		if _, err := s.bumpGen.ExecContext(ctx); err != nil {
			return fmt.Errorf("bump generation: %w", err)
		}
	}
	if _, err := s.commit.ExecContext(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, o := range removed {
		o.removed = true
	}
	return nil
}

// delDeliveredSQL removes a message if no recipient of it is anything but
// delivered (its recipients found by the primary key: see sweepSQL).
const delDeliveredSQL = `DELETE FROM messages WHERE id = ? AND NOT EXISTS
	(SELECT 1 FROM recipients WHERE msg_id = ? AND +status <> 'delivered')`

// stmts are the writer's statements, prepared once on its connection:
// with modernc.org/sqlite v1.62 a prepared statement is compiled once, an
// SQL string at every execution (BEGIN and COMMIT included).
type stmts struct {
	begin, commit, rollback                                                                       *sql.Stmt
	insMsg, insRcpt, updRcpt, delRcpts, delMsg, delDelivered, bumpGen, promote, promoteHeld, hold *sql.Stmt
}

func (s *stmts) all() []*sql.Stmt {
	return []*sql.Stmt{s.begin, s.commit, s.rollback, s.insMsg, s.insRcpt, s.updRcpt, s.delRcpts, s.delMsg, s.delDelivered, s.bumpGen, s.promote, s.promoteHeld, s.hold}
}

// promoteSQL makes the deferred recipients of one destination due now
// (arguments: now, destination, now). It reads the partial index
// recipients_hop, so it touches only that destination's pending rows.
const promoteSQL = `UPDATE recipients SET next_attempt = ? WHERE destination = ? AND status = 'pending' AND next_attempt > ?`

// promoteHeldSQL is promoteSQL for the recipients held with their
// destination (heldError) only.
const promoteHeldSQL = promoteSQL + ` AND last_error LIKE 'not tried: %'`

const bumpGenSQL = `UPDATE state SET v = v + 1 WHERE k = 'generation'`

func (s *stmts) prepare(ctx context.Context, c *sql.Conn) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.begin, `BEGIN IMMEDIATE`},
		{&s.commit, `COMMIT`},
		{&s.rollback, `ROLLBACK`},
		{&s.insMsg, `INSERT INTO messages (id, received_at, sender, size, meta, body) VALUES (?, ?, ?, ?, ?, ?)`},
		{&s.insRcpt, `INSERT INTO recipients (msg_id, idx, address, destination, notify, orcpt, next_attempt, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.updRcpt, `UPDATE recipients SET status = ?, attempts = ?, next_attempt = ?, last_error = ?, updated_at = ? WHERE msg_id = ? AND idx = ?`},
		{&s.delRcpts, `DELETE FROM recipients WHERE msg_id = ?`},
		{&s.delMsg, `DELETE FROM messages WHERE id = ?`},
		{&s.delDelivered, delDeliveredSQL},
		{&s.bumpGen, bumpGenSQL},
		{&s.promote, promoteSQL},
		{&s.promoteHeld, promoteHeldSQL},
		{&s.hold, holdSQL},
	} {
		st, err := c.PrepareContext(ctx, p.sql)
		if err != nil {
			s.close()
			return fmt.Errorf("prepare: %w", err)
		}
		*p.dst = st
	}
	return nil
}

// reads are the hot reads on the pool (the dispatcher's scan, a
// delivery's message, the generation), prepared once: database/sql
// prepares a DB statement once on each connection that runs it and keeps
// it there.
type reads struct {
	scan, getMsg, states, generation, received *sql.Stmt
}

const scanSQL = `SELECT msg_id, idx, address, destination, notify, orcpt, attempts
		FROM recipients WHERE status = 'pending' AND next_attempt <= ?
		ORDER BY next_attempt LIMIT ?`

const statesSQL = `SELECT idx, address, destination, notify, orcpt, status, attempts, next_attempt, last_error, updated_at
		FROM recipients WHERE msg_id = ? ORDER BY idx`

func (r *reads) prepare(ctx context.Context, d *sql.DB) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&r.scan, scanSQL},
		{&r.getMsg, `SELECT received_at, sender, meta, body FROM messages WHERE id = ?`},
		{&r.states, statesSQL},
		{&r.generation, `SELECT v FROM state WHERE k = 'generation'`},
		{&r.received, `SELECT received_at FROM messages WHERE id = ?`},
	} {
		st, err := d.PrepareContext(ctx, p.sql)
		if err != nil {
			r.close()
			return fmt.Errorf("prepare: %w", err)
		}
		*p.dst = st
	}
	return nil
}

func (r *reads) close() {
	for _, st := range []*sql.Stmt{r.scan, r.getMsg, r.states, r.generation, r.received} {
		if st != nil {
			st.Close()
		}
	}
}

func (s *stmts) close() {
	for _, st := range s.all() {
		if st != nil {
			st.Close()
		}
	}
}
