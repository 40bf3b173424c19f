package queue

import (
	"context"
	"fmt"
)

// The writer's statements, one row each, all prepared once (stmts).
// modernc.org/sqlite before v1.62 compiled a statement's SQL again at
// every execution, prepared or not, so the writer once applied a
// transaction's results with one multi-row UPDATE … FROM (VALUES …) and
// one DELETE … RETURNING of many ids. Since v1.62 a prepared statement
// keeps its compiled program, and those multi-row statements — their SQL
// different for every count of rows — became the only statements the
// writer still compiled: 10% of the server's CPU with Maildir delivery
// running (docs/performance/ingest-19.md). One prepared execution per row
// costs less than compiling one statement for the rows.

// insertMessages inserts the batch's messages and their recipients.
func (q *Queue) insertMessages(ctx context.Context, batch []*enqReq) error {
	s := &q.stmts
	for _, r := range batch {
		m := r.msg
		if _, err := s.insMsg.ExecContext(ctx, r.id, r.recv, m.Sender, len(m.Body), r.meta, m.Body); err != nil {
			return fmt.Errorf("insert message: %w", err)
		}
		for i, rc := range m.Recipients {
			if _, err := s.insRcpt.ExecContext(ctx, r.id, i, rc.Address, rc.Destination, rc.Notify, rc.ORCPT, r.recv, r.recv); err != nil {
				return fmt.Errorf("insert recipient: %w", err)
			}
		}
	}
	return nil
}

// updateRecipients applies rows in order, so the last update of a
// recipient wins; each finds its recipient by the primary key (msg_id,
// idx).
func (q *Queue) updateRecipients(ctx context.Context, rows []rowUpdate, now int64) error {
	for _, u := range rows {
		if _, err := q.stmts.updRcpt.ExecContext(ctx, string(u.status), u.attempts, u.next, u.lastErr, now, u.msgID, u.idx); err != nil {
			return fmt.Errorf("update recipient: %w", err)
		}
	}
	return nil
}

// removeDelivered removes those of the messages ids whose recipients are
// all delivered, with their recipients, and returns the removed IDs.
func (q *Queue) removeDelivered(ctx context.Context, ids []string) (map[string]bool, error) {
	removed := make(map[string]bool, len(ids))
	for _, id := range ids {
		if removed[id] {
			continue
		}
		res, err := q.stmts.delDelivered.ExecContext(ctx, id, id)
		if err != nil {
			return nil, fmt.Errorf("remove delivered message: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("remove delivered message: %w", err)
		}
		if n == 0 {
			continue
		}
		removed[id] = true
		if _, err := q.stmts.delRcpts.ExecContext(ctx, id); err != nil {
			return nil, fmt.Errorf("remove delivered message: %w", err)
		}
	}
	return removed, nil
}

// removeMessage removes message id and its recipients, whatever their
// state, and reports whether it was there.
func (q *Queue) removeMessage(ctx context.Context, id string) (bool, error) {
	if _, err := q.stmts.delRcpts.ExecContext(ctx, id); err != nil {
		return false, fmt.Errorf("remove delivered message: %w", err)
	}
	res, err := q.stmts.delMsg.ExecContext(ctx, id)
	if err != nil {
		return false, fmt.Errorf("remove delivered message: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("remove delivered message: %w", err)
	}
	return n > 0, nil
}
