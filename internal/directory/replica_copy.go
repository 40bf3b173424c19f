package directory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"certrelay/internal/db"
)

// The copy on disk.

func (r *Replica) markDirty() {
	if r.o.DB == nil {
		return
	}
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// CopyInterval spaces the writes of the copy on disk: a burst of changes
// is written once. CopyFullDelay is how long after a full refresh the
// whole copy is written (not while the server starts).
const (
	CopyInterval  = time.Second
	CopyFullDelay = 5 * time.Second
)

// writer keeps the copy on disk: the whole copy some time after each
// refresh, then the entries that changed, at most once per CopyInterval.
func (r *Replica) writer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.dirty:
		}
		r.mu.RLock()
		full := r.full
		r.mu.RUnlock()
		if full {
			select {
			case <-ctx.Done():
				return
			case <-time.After(r.o.CopyDelay):
			}
		}
		if err := r.saveCopy(context.WithoutCancel(ctx)); err != nil {
			r.log.Warn("cannot keep the copy of the directory on disk", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(CopyInterval):
		}
	}
}

type copyRow struct{ id, kind, dn, obj string }

// objectJSON encodes the object ref names; the caller holds mu.
func (r *Replica) objectJSON(ref ref) ([]byte, error) {
	switch ref.kind {
	case kindServer:
		return json.Marshal(r.servers.by[ref.key])
	case kindReceive:
		return json.Marshal(r.receive.by[ref.key])
	case kindSend:
		return json.Marshal(r.send.by[ref.key])
	case kindDomain:
		return json.Marshal(r.domains.by[ref.key])
	case kindMailbox:
		return json.Marshal(r.boxes.by[ref.key])
	case kindRoot:
		return json.Marshal(r.roots.by[ref.key])
	}
	return nil, fmt.Errorf("unknown kind %s", ref.kind)
}

// saveCopy writes what changed since the last write to the copy on disk
// (all of it after a refresh), in one transaction.
func (r *Replica) saveCopy(ctx context.Context) error {
	r.mu.Lock()
	full, pend := r.full, r.pend
	r.full, r.pend = false, map[string]bool{}
	var rows []copyRow
	var gone []string
	var err error
	add := func(id string, ref ref) {
		var obj []byte
		if obj, err = r.objectJSON(ref); err == nil {
			rows = append(rows, copyRow{id, ref.kind, ref.key, string(obj)})
		}
	}
	if full {
		rows = make([]copyRow, 0, len(r.byUUID))
		for id, ref := range r.byUUID {
			if add(id, ref); err != nil {
				break
			}
		}
	} else {
		for id := range pend {
			if ref, ok := r.byUUID[id]; ok {
				if add(id, ref); err != nil {
					break
				}
			} else {
				gone = append(gone, id)
			}
		}
	}
	synced := r.synced
	if r.up {
		synced = time.Now() // the copy follows the directory: current now
	}
	if err != nil { // write it all next time
		r.full = true
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	err = db.Tx(ctx, r.o.DB, func(ctx context.Context, tx *sql.Tx) error {
		if full {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dir_copy`); err != nil {
				return err
			}
		}
		for _, id := range gone {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dir_copy WHERE uuid = ?`, id); err != nil {
				return err
			}
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO dir_copy(uuid, kind, dn, object) VALUES(?, ?, ?, ?)
			ON CONFLICT(uuid) DO UPDATE SET kind = excluded.kind, dn = excluded.dn, object = excluded.object`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, row := range rows {
			if _, err := st.ExecContext(ctx, row.id, row.kind, row.dn, row.obj); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO dir_copy_meta(key, value) VALUES('synced', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
			synced.UTC().Format(time.RFC3339Nano))
		return err
	})
	if err != nil {
		r.mu.Lock()
		r.full = true // the transaction rolled back: write it all next time
		r.mu.Unlock()
	}
	return err
}

// loadCopy fills the replica from the copy on disk; it returns how many
// objects it read and when the copy was complete.
func (r *Replica) loadCopy(ctx context.Context) (int, time.Time, error) {
	var when time.Time
	var s string
	err := r.o.DB.QueryRowContext(ctx, `SELECT value FROM dir_copy_meta WHERE key = 'synced'`).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, when, nil
	}
	if err != nil {
		return 0, when, err
	}
	when, _ = time.Parse(time.RFC3339Nano, s)
	rows, err := r.o.DB.QueryContext(ctx, `SELECT uuid, kind, object FROM dir_copy`)
	if err != nil {
		return 0, when, err
	}
	defer rows.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for rows.Next() {
		var id, kind, obj string
		if err := rows.Scan(&id, &kind, &obj); err != nil {
			return n, when, err
		}
		k, err := loadInto(r, kind, []byte(obj))
		if err != nil {
			continue
		}
		r.own(id, ref{kind, k})
		n++
	}
	r.synced = when
	return n, when, rows.Err()
}

func loadInto(r *Replica, kind string, obj []byte) (string, error) {
	switch kind {
	case kindServer:
		return unjson(&r.servers, obj, func(v *Server) string { return key(v.Name) })
	case kindReceive:
		return unjson(&r.receive, obj, func(v *ReceiveConnector) string { return connKey(v.Server, v.Name) })
	case kindSend:
		return unjson(&r.send, obj, func(v *SendConnector) string { return key(v.Name) })
	case kindDomain:
		return unjson(&r.domains, obj, func(v *AcceptedDomain) string { return key(v.DomainName) })
	case kindMailbox:
		return unjson(&r.boxes, obj, func(v *Mailbox) string { return key(v.Address) })
	case kindRoot:
		return unjson(&r.roots, obj, func(v *TrustedRoot) string { return key(v.Thumbprint) })
	}
	return "", fmt.Errorf("unknown kind %s", kind)
}

func unjson[T any](m *kindMap[T], obj []byte, k func(*T) string) (string, error) {
	var v T
	if err := json.Unmarshal(obj, &v); err != nil {
		return "", err
	}
	m.put(k(&v), v)
	return k(&v), nil
}
