package directory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"certrelay/internal/db"
)

// Embedded keeps the directory in the server's own database.
type Embedded struct{ db *sql.DB }

var _ Directory = (*Embedded)(nil)

// OpenEmbedded creates the directory's tables in d if needed.
func OpenEmbedded(ctx context.Context, d *sql.DB) (*Embedded, error) {
	err := db.Migrate(ctx, d, "directory",
		`CREATE TABLE IF NOT EXISTS dir_servers (name TEXT PRIMARY KEY, object TEXT NOT NULL)`)
	if err != nil {
		return nil, err
	}
	return &Embedded{db: d}, nil
}

// Server implements Directory.
func (e *Embedded) Server(ctx context.Context, name string) (Server, error) {
	var obj string
	err := e.db.QueryRowContext(ctx, `SELECT object FROM dir_servers WHERE name = ?`, key(name)).Scan(&obj)
	if errors.Is(err, sql.ErrNoRows) {
		return Server{}, fmt.Errorf("server %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Server{}, fmt.Errorf("read server %q: %w", name, err)
	}
	var s Server
	if err := json.Unmarshal([]byte(obj), &s); err != nil {
		return Server{}, fmt.Errorf("server %q in the directory is damaged: %w", name, err)
	}
	return s, nil
}

// Servers implements Directory.
func (e *Embedded) Servers(ctx context.Context) ([]Server, error) {
	rows, err := e.db.QueryContext(ctx, `SELECT object FROM dir_servers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	defer rows.Close()
	var out []Server
	for rows.Next() {
		var obj string
		var s Server
		if err := rows.Scan(&obj); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(obj), &s); err != nil {
			return nil, fmt.Errorf("a server in the directory is damaged: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// PutServer implements Directory.
func (e *Embedded) PutServer(ctx context.Context, s Server) error {
	obj, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = e.db.ExecContext(ctx, `INSERT INTO dir_servers(name, object) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET object = excluded.object`, key(s.Name), string(obj))
	if err != nil {
		return fmt.Errorf("write server %q: %w", s.Name, err)
	}
	return nil
}
