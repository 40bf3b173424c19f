package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Filter selects messages for List. Zero fields match everything.
type Filter struct {
	ID          string // one message
	Status      Status // messages with at least one recipient in this state
	Destination string // messages with at least one recipient for this destination
	// After, when set, keeps the messages whose ID sorts after it: the
	// page that follows the one whose last message it is.
	After string
	Limit int // at most this many messages (0: no limit)
}

// Item is one queued message as List shows it (without the body).
type Item struct {
	ID         string
	ReceivedAt time.Time
	Sender     string
	Size       int
	Meta       Meta
	Recipients []RecipientState
}

// hasStatusSQL is List's condition for Filter.Status; the unary + makes
// SQLite find the message's recipients by the primary key (see sweepSQL).
const hasStatusSQL = "EXISTS (SELECT 1 FROM recipients x WHERE x.msg_id = m.id AND +x.status = ?)"

// List returns the messages matching f, oldest first (IDs sort by
// receive time), with all their recipients. It reads a consistent snapshot
// and never blocks a running server. An empty queue gives an empty list
// and no error.
//
// With a Limit it reads only that page: the messages are taken in ID
// order from the primary key and the scan stops at the Limit, so the
// first page of a queue of 100,000 costs what a queue of Limit messages
// does (docs/performance/scale-queue.md). Nothing counts the rest: ask
// for Limit+1 to learn whether there is more.
func (q *Queue) List(ctx context.Context, f Filter) ([]Item, error) {
	where := []string{"1"}
	var args []any
	if f.ID != "" {
		where = append(where, "m.id = ?")
		args = append(args, f.ID)
	}
	if f.After != "" {
		where = append(where, "m.id > ?")
		args = append(args, f.After)
	}
	if f.Status != "" {
		where = append(where, hasStatusSQL)
		args = append(args, string(f.Status))
	}
	if f.Destination != "" {
		where = append(where, "EXISTS (SELECT 1 FROM recipients x WHERE x.msg_id = m.id AND x.destination = ?)")
		args = append(args, f.Destination)
	}
	limit := ""
	if f.Limit > 0 {
		limit = " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := q.db.QueryContext(ctx, `SELECT m.id, m.received_at, m.sender, m.size, m.meta,
		r.idx, r.address, r.destination, r.notify, r.orcpt, r.status, r.attempts, r.next_attempt, r.last_error, r.updated_at
		FROM (SELECT m.id, m.received_at, m.sender, m.size, m.meta FROM messages m
			WHERE `+strings.Join(where, " AND ")+` ORDER BY m.id`+limit+`) m
		JOIN recipients r ON r.msg_id = m.id ORDER BY m.id, r.idx`, args...)
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	defer rows.Close()
	var items []Item
	for rows.Next() {
		var (
			it             Item
			meta           string
			recv, next, up int64
			rs             RecipientState
			status         string
		)
		if err := rows.Scan(&it.ID, &recv, &it.Sender, &it.Size, &meta,
			&rs.Idx, &rs.Address, &rs.Destination, &rs.Notify, &rs.ORCPT, &status, &rs.Attempts, &next, &rs.LastError, &up); err != nil {
			return nil, fmt.Errorf("list queue: %w", err)
		}
		rs.Status, rs.NextAttempt, rs.UpdatedAt = Status(status), fromMs(next), fromMs(up)
		if n := len(items); n > 0 && items[n-1].ID == it.ID {
			items[n-1].Recipients = append(items[n-1].Recipients, rs)
			continue
		}
		it.ReceivedAt = fromMs(recv)
		if err := json.Unmarshal([]byte(meta), &it.Meta); err != nil {
			return nil, fmt.Errorf("list queue: message %s: meta: %w", it.ID, err)
		}
		it.Recipients = []RecipientState{rs}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	return items, nil
}

// Counts say how much a queue holds.
type Counts struct {
	Messages int // messages in the queue
	Pending  int // recipients pending
	Deferred int // pending recipients already tried (Attempts > 0)
	// Waiting counts the pending recipients not due yet: deferred after
	// a failure, or held while their destination cannot be reached.
	Waiting int
	// Oldest is when the oldest message in the queue was received (zero
	// when the queue is empty).
	Oldest time.Time
}

// countSQL is Count's query (argument: now). It reads indexes only
// (messages_received, recipients_due), never a message or a recipient row.
const countSQL = `SELECT (SELECT count(*) FROM messages), (SELECT min(received_at) FROM messages),
	count(*), coalesce(sum(attempts > 0), 0), coalesce(sum(next_attempt > ?), 0) FROM recipients WHERE status = 'pending'`

// Count returns how much the queue holds without reading any message:
// cheap enough to poll while a server drains the queue.
func (q *Queue) Count(ctx context.Context) (Counts, error) {
	var c Counts
	var oldest sql.NullInt64
	err := q.db.QueryRowContext(ctx, countSQL, ms(q.opts.Now())).
		Scan(&c.Messages, &oldest, &c.Pending, &c.Deferred, &c.Waiting)
	if err != nil {
		return Counts{}, fmt.Errorf("count queue: %w", err)
	}
	if oldest.Valid {
		c.Oldest = fromMs(oldest.Int64)
	}
	return c, nil
}

// Get returns message id with its body and recipients, or an error
// wrapping ErrNotFound.
func (q *Queue) Get(ctx context.Context, id string) (*Message, error) {
	m, err := q.get(ctx, id, false)
	if err != nil {
		return nil, fmt.Errorf("get message %s: %w", id, err)
	}
	return m, nil
}

// get reads a message; the recipients are left out when noRcpts is set.
func (q *Queue) get(ctx context.Context, id string, noRcpts bool) (*Message, error) {
	m := &Message{ID: id}
	var recv int64
	var meta string
	err := q.reads.getMsg.QueryRowContext(ctx, id).
		Scan(&recv, &m.Sender, &meta, &m.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	m.ReceivedAt = fromMs(recv)
	if err := json.Unmarshal([]byte(meta), &m.Meta); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	if m.Body == nil {
		m.Body = []byte{}
	}
	if noRcpts {
		return m, nil
	}
	states, err := q.states(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		m.Recipients = append(m.Recipients, s.Recipient)
	}
	return m, nil
}

// getWithStates reads a message and its recipients' states.
func (q *Queue) getWithStates(ctx context.Context, id string) (*Message, []RecipientState, error) {
	m, err := q.get(ctx, id, true)
	if err != nil {
		return nil, nil, err
	}
	states, err := q.states(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range states {
		m.Recipients = append(m.Recipients, s.Recipient)
	}
	return m, states, nil
}

func (q *Queue) states(ctx context.Context, id string) ([]RecipientState, error) {
	rows, err := q.reads.states.QueryContext(ctx, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RecipientState
	for rows.Next() {
		var rs RecipientState
		var status string
		var next, up int64
		if err := rows.Scan(&rs.Idx, &rs.Address, &rs.Destination, &rs.Notify, &rs.ORCPT, &status, &rs.Attempts, &next, &rs.LastError, &up); err != nil {
			return nil, err
		}
		rs.Status, rs.NextAttempt, rs.UpdatedAt = Status(status), fromMs(next), fromMs(up)
		out = append(out, rs)
	}
	return out, rows.Err()
}

// Retry makes the pending recipients of message id ("" = of every message)
// due now and returns how many there were. A running server (this handle
// or another process's) delivers them within about 200 ms. An unknown id
// gives an error wrapping ErrNotFound; a known message with nothing
// pending gives 0 and no error.
func (q *Queue) Retry(ctx context.Context, id string) (int, error) {
	var n int64
	err := q.adminTx(ctx, func(tx *sql.Tx) error {
		now := ms(q.opts.Now())
		var res sql.Result
		var err error
		if id == "" {
			res, err = tx.ExecContext(ctx, `UPDATE recipients SET next_attempt = ?, updated_at = ? WHERE status = 'pending'`, now, now)
		} else {
			if err := exists(ctx, tx, id); err != nil {
				return err
			}
			res, err = tx.ExecContext(ctx, `UPDATE recipients SET next_attempt = ?, updated_at = ? WHERE status = 'pending' AND msg_id = ?`, now, now, id)
		}
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", orAll(id), err)
	}
	q.wake()
	return int(n), nil
}

// Remove deletes message id from the queue without delivering or bouncing
// it. A delivery in progress finishes but its result is dropped. An
// unknown id gives an error wrapping ErrNotFound.
func (q *Queue) Remove(ctx context.Context, id string) error {
	err := q.adminTx(ctx, func(tx *sql.Tx) error {
		if err := exists(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM recipients WHERE msg_id = ?`, id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	q.fresh.drop(id)
	return nil
}

func orAll(id string) string {
	if id == "" {
		return "all messages"
	}
	return id
}

func exists(ctx context.Context, tx *sql.Tx, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM messages WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// adminTx runs fn in a write transaction that also bumps the generation
// counter, so a server in another process notices the change.
func (q *Queue) adminTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%w: begin: %w", ErrStorage, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, bumpGenSQL); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%w: commit: %w", ErrStorage, err)
	}
	return nil
}
