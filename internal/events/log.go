package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"certrelay/internal/db"
)

// Event is one logged event.
type Event struct {
	Seq      int64     `json:"Seq"`
	Time     time.Time `json:"TimeCreated"`
	ID       int       `json:"EventId"`
	Source   string    `json:"Source"`
	Category string    `json:"Category"`
	Severity Severity  `json:"Level"`
	Name     string    `json:"SymbolicName"`
	Server   string    `json:"Server,omitempty"`
	Params   []string  `json:"Parameters"`
	Message  string    `json:"Message"`
}

// Log stores events in certrelay.db and mirrors them to a slog.Logger.
// Safe for concurrent use, and by several processes.
type Log struct {
	db     *sql.DB
	now    func() time.Time
	logger *slog.Logger
	server string

	// levels caches the logging levels Raise reads (the table is shared
	// with every process on the data directory: a change made by
	// certrelay loglevel set is seen within LevelRefresh).
	levelMu  sync.Mutex
	levels   map[string]Level // lower-case "source\category" → level
	levelsAt time.Time        // when levels was read (monotonic)
}

// LevelRefresh is how long Raise trusts the logging levels it read: a
// running server honours loglevel set within this time (SPEC D1).
const LevelRefresh = 500 * time.Millisecond

const schema = `CREATE TABLE IF NOT EXISTS events (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	time     TEXT NOT NULL,
	id       INTEGER NOT NULL,
	source   TEXT NOT NULL,
	category TEXT NOT NULL,
	severity TEXT NOT NULL,
	name     TEXT NOT NULL,
	server   TEXT NOT NULL DEFAULT '',
	params   TEXT NOT NULL,
	message  TEXT NOT NULL
)`

// Open creates the event tables if needed. logger may be nil; server names
// the server that raises the events.
func Open(ctx context.Context, d *sql.DB, now func() time.Time, logger *slog.Logger, server string) (*Log, error) {
	err := db.Migrate(ctx, d, "events", schema,
		`CREATE INDEX IF NOT EXISTS events_id ON events(id, time)`,
		`CREATE TABLE IF NOT EXISTS event_throttle (id INTEGER NOT NULL, key TEXT NOT NULL, last TEXT NOT NULL, PRIMARY KEY(id, key))`,
		`CREATE TABLE IF NOT EXISTS event_levels (category TEXT PRIMARY KEY, level INTEGER NOT NULL)`)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Log{db: d, now: now, logger: logger, server: server}, nil
}

// SetServer names the server raising events from now on.
func (l *Log) SetServer(name string) { l.server = name }

// Raise logs event id with params. key names what the event is about
// (thumbprint, FQDN, connector) for throttling: an event with a Throttle is
// written at most once per key per interval. It reports whether the event
// was written (false when throttled or below the category's level).
func (l *Log) Raise(ctx context.Context, id int, key string, params ...string) (bool, error) {
	d, ok := Lookup(id)
	if !ok {
		return false, fmt.Errorf("raise event: unknown event ID %d", id)
	}
	if d.Level > Lowest { // Lowest events are always written: no look-up
		level, err := l.cachedLevel(ctx, keyOf(d))
		if err != nil {
			return false, err
		}
		if d.Level > level {
			return false, nil
		}
	}
	now := l.now().UTC()
	msg := d.Message(params...)
	written := false
	err := db.Tx(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
		if d.Throttle > 0 {
			var last string
			err := tx.QueryRowContext(ctx, `SELECT last FROM event_throttle WHERE id = ? AND key = ?`, id, key).Scan(&last)
			if err == nil {
				if t, perr := time.Parse(time.RFC3339Nano, last); perr == nil && now.Sub(t) < d.Throttle && !now.Before(t) {
					return nil
				}
			} else if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO event_throttle(id, key, last) VALUES(?, ?, ?) ON CONFLICT(id, key) DO UPDATE SET last = excluded.last`,
				id, key, now.Format(time.RFC3339Nano)); err != nil {
				return err
			}
		}
		p, _ := json.Marshal(params)
		if _, err := tx.ExecContext(ctx, `INSERT INTO events(time, id, source, category, severity, name, server, params, message) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			now.Format(time.RFC3339Nano), id, d.Source, d.Category, string(d.Severity), d.Name, l.server, string(p), msg); err != nil {
			return err
		}
		written = true
		if l.logger != nil {
			// Mirrored once the event is committed with the change it
			// reports (an operation's events are part of its transaction).
			db.OnCommit(ctx, l.db, func() {
				lvl := slog.LevelInfo
				switch d.Severity {
				case Error:
					lvl = slog.LevelError
				case Warning:
					lvl = slog.LevelWarn
				}
				l.logger.Log(context.WithoutCancel(ctx), lvl, msg, "event", id, "name", d.Name, "category", d.Category)
			})
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("log event %d: %w", id, err)
	}
	return written, nil
}

// Filter selects events for List. Zero fields select everything.
type Filter struct {
	ID       int
	Since    time.Time
	Severity Severity
	Limit    int // 0: all
}

// List returns the events that match f, oldest first.
func (l *Log) List(ctx context.Context, f Filter) ([]Event, error) {
	var where []string
	var args []any
	if f.ID != 0 {
		where, args = append(where, "id = ?"), append(args, f.ID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, f.Since.UTC().Format(time.RFC3339Nano))
	}
	if f.Severity != "" {
		where, args = append(where, "severity = ?"), append(args, string(f.Severity))
	}
	q := `SELECT seq, time, id, source, category, severity, name, server, params, message FROM events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq"
	if f.Limit > 0 {
		q = `SELECT * FROM (` + strings.Replace(q, "ORDER BY seq", "ORDER BY seq DESC LIMIT "+strconv.Itoa(f.Limit), 1) + `) ORDER BY seq`
	}
	rows, err := db.Q(ctx, l.db).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var t, sev, params string
		if err := rows.Scan(&e.Seq, &t, &e.ID, &e.Source, &e.Category, &sev, &e.Name, &e.Server, &params, &e.Message); err != nil {
			return nil, err
		}
		e.Time, _ = time.Parse(time.RFC3339Nano, t)
		e.Severity = Severity(sev)
		_ = json.Unmarshal([]byte(params), &e.Params)
		out = append(out, e)
	}
	return out, rows.Err()
}

// CategoryLevel returns the logging level of "Source\Category" (default
// Lowest).
func (l *Log) CategoryLevel(ctx context.Context, category string) (Level, error) {
	var lv int
	err := db.Q(ctx, l.db).QueryRowContext(ctx, `SELECT level FROM event_levels WHERE category = ?`, strings.ToLower(category)).Scan(&lv)
	if errors.Is(err, sql.ErrNoRows) {
		return Lowest, nil
	}
	if err != nil {
		return Lowest, fmt.Errorf("read logging level: %w", err)
	}
	return Level(lv), nil
}

// Enabled reports whether event id would be written now: its level is at
// most its category's (throttling aside). For callers that would work to
// build its parameters.
func (l *Log) Enabled(ctx context.Context, id int) bool {
	d, ok := Lookup(id)
	if !ok {
		return false
	}
	if d.Level == Lowest {
		return true
	}
	level, err := l.cachedLevel(ctx, keyOf(d))
	return err == nil && d.Level <= level
}

// categoryKey is each event's "source\category" in lower case, as the
// levels table keys it.
var categoryKey = func() map[int]string {
	m := make(map[int]string, len(catalog))
	for _, d := range catalog {
		m[d.ID] = strings.ToLower(d.Source + `\` + d.Category)
	}
	return m
}()

// keyOf returns d's categoryKey (made here for a definition added after
// start, as tests do).
func keyOf(d Definition) string {
	if k, ok := categoryKey[d.ID]; ok {
		return k
	}
	return strings.ToLower(d.Source + `\` + d.Category)
}

// cachedLevel is CategoryLevel from a copy of the table read at most
// LevelRefresh ago; key is a categoryKey.
func (l *Log) cachedLevel(ctx context.Context, key string) (Level, error) {
	l.levelMu.Lock()
	defer l.levelMu.Unlock()
	if l.levels == nil || time.Since(l.levelsAt) >= LevelRefresh {
		rows, err := db.Q(ctx, l.db).QueryContext(ctx, `SELECT category, level FROM event_levels`)
		if err != nil {
			return Lowest, fmt.Errorf("read logging levels: %w", err)
		}
		m := map[string]Level{}
		for rows.Next() {
			var c string
			var lv int
			if err := rows.Scan(&c, &lv); err != nil {
				rows.Close()
				return Lowest, err
			}
			m[c] = Level(lv)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return Lowest, err
		}
		l.levels, l.levelsAt = m, time.Now()
	}
	return l.levels[key], nil
}

// SetCategoryLevel sets the logging level of every category matching
// pattern ("MSExchangeTransport\*" or "MSExchangeTransport\SmtpReceive";
// case-insensitive) and returns the categories changed.
func (l *Log) SetCategoryLevel(ctx context.Context, pattern string, level Level) ([]string, error) {
	var changed []string
	for _, c := range Categories() {
		if MatchCategory(pattern, c) {
			changed = append(changed, c)
		}
	}
	if len(changed) == 0 {
		return nil, fmt.Errorf("no event category matches %q: the categories are %s", pattern, strings.Join(Categories(), ", "))
	}
	err := db.Tx(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
		for _, c := range changed {
			if _, err := tx.ExecContext(ctx, `INSERT INTO event_levels(category, level) VALUES(?, ?) ON CONFLICT(category) DO UPDATE SET level = excluded.level`,
				strings.ToLower(c), int(level)); err != nil {
				return fmt.Errorf("set logging level: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	l.levelMu.Lock()
	l.levels = nil // this process sees its own change at once
	l.levelMu.Unlock()
	return changed, nil
}

// MatchCategory reports whether category c matches pattern ("Source\\*",
// a source alone — every category of it, as seed 004's
// Get-EventLogLevel -Identity msexchangetransport — or an exact name).
func MatchCategory(pattern, c string) bool {
	p, c := strings.ToLower(pattern), strings.ToLower(c)
	if p != "" && p != "*" && !strings.Contains(p, `\`) {
		return strings.HasPrefix(c, p+`\`)
	}
	if strings.HasSuffix(p, `\*`) {
		return strings.HasPrefix(c, strings.TrimSuffix(p, "*"))
	}
	return p == "*" || p == c
}

// CountByID returns how many events of each ID the log holds (for the
// metrics endpoint: the log is shared by every process, so this counts
// what the CLI raised too).
func (l *Log) CountByID(ctx context.Context) (map[int]int, error) {
	rows, err := db.Q(ctx, l.db).QueryContext(ctx, `SELECT id, count(*) FROM events GROUP BY id`)
	if err != nil {
		return nil, fmt.Errorf("count events: %w", err)
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var id, n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}
