package queue

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Many rows in one statement. modernc.org/sqlite (v1.34) compiles a
// statement's SQL again on every execution, prepared or not, so in the
// writer's transaction the cost goes by statements, not rows: in a profile
// of ingest with Maildir delivery running, compiling SQL was 15% of the
// server's CPU, most of it the writer's statements for each message and
// result. The writer therefore applies a transaction's delivery results
// with one UPDATE of many VALUES and removes the messages they finish with
// one DELETE, in chunks of at most chunkRows rows (far below SQLite's
// 32,766 variables), and one row with the prepared statement it always
// used. New messages are still inserted a row at a time (see
// insertMessages).

const chunkRows = 500

// placeholders returns n groups of vars "?" ("(?, ?), (?, ?)" for n = 2,
// vars = 2).
func placeholders(n, vars int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", vars), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", n), ", ")
}

// chunks calls fn with [i, j) ranges of n rows, at most chunkRows each.
func chunks(n int, fn func(i, j int) error) error {
	for i := 0; i < n; i += chunkRows {
		if err := fn(i, min(n, i+chunkRows)); err != nil {
			return err
		}
	}
	return nil
}

// insertMessages inserts the batch's messages and their recipients, a
// statement per row: unlike the results below, a multi-row INSERT of the
// messages measured slower (BenchmarkEnqueue4K 78–97 µs per message one
// row at a time, 105–129 µs with one INSERT per batch).
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

// updateRecipients applies rows, the last update of a recipient winning
// as when they were applied one by one. The UPDATE … FROM (VALUES …) finds
// each recipient by the primary key (msg_id, idx).
func (q *Queue) updateRecipients(ctx context.Context, c *sql.Conn, rows []rowUpdate, now int64) error {
	if len(rows) > 1 {
		last := make(map[leaseKey]int, len(rows))
		for i, u := range rows {
			last[leaseKey{u.msgID, u.idx}] = i
		}
		if len(last) < len(rows) {
			kept := make([]rowUpdate, 0, len(last))
			for i, u := range rows {
				if last[leaseKey{u.msgID, u.idx}] == i {
					kept = append(kept, u)
				}
			}
			rows = kept
		}
	}
	if len(rows) == 1 {
		u := rows[0]
		if _, err := q.stmts.updRcpt.ExecContext(ctx, string(u.status), u.attempts, u.next, u.lastErr, now, u.msgID, u.idx); err != nil {
			return fmt.Errorf("update recipient: %w", err)
		}
		return nil
	}
	err := chunks(len(rows), func(i, j int) error {
		args := make([]any, 0, 1+6*(j-i))
		args = append(args, now)
		for _, u := range rows[i:j] {
			args = append(args, string(u.status), u.attempts, u.next, u.lastErr, u.msgID, u.idx)
		}
		_, err := c.ExecContext(ctx, `UPDATE recipients SET status = v.column1, attempts = v.column2, next_attempt = v.column3,
			last_error = v.column4, updated_at = ? FROM (VALUES `+placeholders(j-i, 6)+`) AS v
			WHERE recipients.msg_id = v.column5 AND recipients.idx = v.column6`, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("update recipient: %w", err)
	}
	return nil
}

// removeDelivered removes those of the messages ids whose recipients are
// all delivered, with their recipients, and returns the removed IDs.
func (q *Queue) removeDelivered(ctx context.Context, c *sql.Conn, ids []string) (map[string]bool, error) {
	removed := map[string]bool{}
	if len(ids) == 1 {
		res, err := q.stmts.delDelivered.ExecContext(ctx, ids[0], ids[0])
		if err != nil {
			return nil, fmt.Errorf("remove delivered message: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("remove delivered message: %w", err)
		} else if n > 0 {
			removed[ids[0]] = true
		}
	} else {
		err := chunks(len(ids), func(i, j int) error {
			args := make([]any, 0, j-i)
			for _, id := range ids[i:j] {
				args = append(args, id)
			}
			rows, err := c.QueryContext(ctx, `DELETE FROM messages WHERE id IN `+placeholders(1, j-i)+` AND NOT EXISTS
				(SELECT 1 FROM recipients WHERE msg_id = messages.id AND +status <> 'delivered') RETURNING id`, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					return err
				}
				removed[id] = true
			}
			return rows.Err()
		})
		if err != nil {
			return nil, fmt.Errorf("remove delivered message: %w", err)
		}
	}
	gone := make([]any, 0, len(removed))
	for id := range removed {
		gone = append(gone, id)
	}
	err := chunks(len(gone), func(i, j int) error {
		_, err := c.ExecContext(ctx, `DELETE FROM recipients WHERE msg_id IN `+placeholders(1, j-i), gone[i:j]...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("remove delivered message: %w", err)
	}
	return removed, nil
}
