package edgesync

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"certrelay/internal/db"
)

// Round is the last synchronisation round of one kind with one edge, as
// `edge status` shows it: on a hub, what it sent; on the edge, what it
// received.
type Round struct {
	Edge     string
	Kind     string // configuration or recipients
	Hub      string // the hub that ran it
	Time     time.Time
	Objects  int // objects sent (hub) or held after it (edge)
	Changed  int // objects the round added, changed or removed on the edge
	Duration string
	Error    string `json:",omitempty"`
}

func migrate(ctx context.Context, d *sql.DB) error {
	return db.Migrate(ctx, d, "edgesync",
		`CREATE TABLE IF NOT EXISTS edgesync_rounds (edge TEXT NOT NULL, kind TEXT NOT NULL, round TEXT NOT NULL, PRIMARY KEY(edge, kind))`)
}

// Record keeps r as the last round of its edge and kind.
func Record(ctx context.Context, d *sql.DB, r Round) error {
	if err := migrate(ctx, d); err != nil {
		return err
	}
	return db.Tx(ctx, d, func(ctx context.Context, tx *sql.Tx) error {
		b, err := jsonOf(r)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO edgesync_rounds(edge, kind, round) VALUES(?, ?, ?) ON CONFLICT(edge, kind) DO UPDATE SET round = excluded.round`, key(r.Edge), r.Kind, b)
		return err
	})
}

// Rounds returns the last rounds recorded, by edge and kind.
func Rounds(ctx context.Context, d *sql.DB) ([]Round, error) {
	if err := migrate(ctx, d); err != nil {
		return nil, err
	}
	rows, err := db.Q(ctx, d).QueryContext(ctx, `SELECT round FROM edgesync_rounds ORDER BY edge, kind`)
	if err != nil {
		return nil, fmt.Errorf("read the EdgeSync rounds: %w", err)
	}
	defer rows.Close()
	var out []Round
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		var r Round
		if err := unjson(s, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Forget drops the rounds of an edge (its subscription removed).
func Forget(ctx context.Context, d *sql.DB, edge string) error {
	if err := migrate(ctx, d); err != nil {
		return err
	}
	_, err := db.Q(ctx, d).ExecContext(ctx, `DELETE FROM edgesync_rounds WHERE edge = ?`, key(edge))
	return err
}
