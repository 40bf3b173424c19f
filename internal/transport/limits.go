package transport

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/serving"
	"certrelay/internal/smtp"
)

// limits gives the SMTP engine the limits of the receive connector that
// listens on local (SPEC P1): the connector's name groups its bindings'
// connections. It reads the current snapshot, so a connector change
// applies to the next connection.
func (r *Receiver) limits(local net.Addr) smtp.Limits {
	st := r.state.Load()
	if st == nil {
		return smtp.Limits{}
	}
	c := st.connectorFor(local.String())
	if c == nil {
		return smtp.Limits{} // NewSession refuses it
	}
	return connectorLimits(c)
}

// connectorLimits maps a connector's settings to the engine's limits.
func connectorLimits(c *directory.ReceiveConnector) smtp.Limits {
	return smtp.Limits{
		Group:                   c.Name,
		MaxConnections:          c.MaxInboundConnection,
		MaxConnectionsPerClient: c.MaxInboundConnectionPerSource,
		InactivityTimeout:       time.Duration(c.ConnectionInactivityTimeout),
		SessionTimeout:          time.Duration(c.ConnectionTimeout),
		MessageTimeout:          time.Duration(c.MessageTimeout),
		MaxRecipients:           c.MaxRecipientsPerMessage,
	}
}

// limitOptions names the `connector receive set` option of each time limit.
var limitOptions = map[smtp.Limit]string{
	smtp.LimitInactivity:  "--connection-inactivity-timeout",
	smtp.LimitSession:     "--connection-timeout",
	smtp.LimitMessageTime: "--message-timeout",
}

// limitReached turns a limit a client met into an event (16020–16026),
// throttled per connector, or per connector and client address. It is
// called from sessions and accept loops, so it never waits: see
// eventQueue.
func (r *Receiver) limitReached(ev smtp.LimitEvent) {
	conn, client := ev.Group, ""
	if tcp, ok := ev.Conn.RemoteAddr.(*net.TCPAddr); ok {
		client = tcp.IP.String()
	} else if ev.Conn.RemoteAddr != nil {
		client = ev.Conn.RemoteAddr.String()
	}
	q := &r.evq
	switch ev.Limit {
	case smtp.LimitConnections:
		q.raise(16020, conn, conn, client, ev.Value)
	case smtp.LimitConnectionsPerClient:
		q.raise(16021, conn+"|"+client, conn, client, ev.Value)
	case smtp.LimitServerConnections:
		q.raise(16022, "server", conn, client, ev.Value, strconv.FormatUint(r.FileLimit, 10))
	case smtp.LimitInactivity, smtp.LimitSession, smtp.LimitMessageTime:
		value := ev.Value
		if d, err := time.ParseDuration(value); err == nil {
			value = directory.Duration(d).String()
		}
		q.raise(16023, conn+"|"+ev.Limit.String(), conn, client, ev.Limit.String(), value, limitOptions[ev.Limit])
	case smtp.LimitRecipients:
		q.raise(16024, conn, conn, client, ev.Value)
	case smtp.LimitMessageSize:
		q.raise(16025, conn, conn, client, ev.Value)
	case smtp.LimitAccept:
		b := ""
		if ev.Conn.LocalAddr != nil {
			b = ev.Conn.LocalAddr.String()
		}
		cause := ""
		if ev.Err != nil {
			cause = serving.BindError(ev.Err)
		}
		q.raise(16026, b, b, cause)
	}
}

// eventSpacing is the least time between two events of one ID and key
// that the queue passes on; the event log throttles further, per its
// catalog. It keeps a flood of refused clients from becoming a flood of
// database writes.
const eventSpacing = time.Minute

// maxEventKeys bounds the keys the queue remembers (one per connector and
// client address met): beyond, events with new keys are dropped until old
// ones expire.
const maxEventKeys = 4096

// pendingEvent is an event waiting in the queue.
type pendingEvent struct {
	id     int
	key    string
	params []string
}

// eventQueue raises events off the caller's goroutine: raise never
// blocks; events wait in a bounded channel (dropped when it is full) for
// one goroutine that writes them to the event log.
type eventQueue struct {
	sink EventSink
	log  *slog.Logger
	now  func() time.Time

	mu   sync.Mutex
	last map[string]time.Time // by ID and key: when last passed on
	ch   chan pendingEvent
}

func (q *eventQueue) start(sink EventSink, log *slog.Logger, now func() time.Time, done <-chan struct{}) {
	q.sink, q.log, q.now = sink, log, now
	q.last = map[string]time.Time{}
	q.ch = make(chan pendingEvent, 256)
	if sink == nil {
		return
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case e := <-q.ch:
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if _, err := q.sink.Raise(ctx, e.id, e.key, e.params...); err != nil {
					q.log.Warn("cannot log event", "event", e.id, "err", err)
				}
				cancel()
			}
		}
	}()
}

// raise queues event id about key, unless one was queued for the same ID
// and key within eventSpacing.
func (q *eventQueue) raise(id int, key string, params ...string) {
	if q.sink == nil {
		return
	}
	k := strconv.Itoa(id) + "\x00" + key
	now := q.now()
	q.mu.Lock()
	if t, ok := q.last[k]; ok && now.Sub(t) < eventSpacing {
		q.mu.Unlock()
		return
	}
	if len(q.last) >= maxEventKeys {
		for k2, t := range q.last {
			if now.Sub(t) >= eventSpacing {
				delete(q.last, k2)
			}
		}
		if len(q.last) >= maxEventKeys {
			q.mu.Unlock()
			return
		}
	}
	q.last[k] = now
	q.mu.Unlock()
	select {
	case q.ch <- pendingEvent{id, key, params}:
	default: // the log is behind: drop rather than hold up a session
	}
}
