package transport

import (
	"context"
	"errors"
	"strings"

	"certrelay/internal/queue"
)

// QueueSpool stores accepted messages in the queue: local recipients are
// delivered to mailboxes (queue.Local), the others are routed by their
// domain to the send connectors (SPEC S1).
type QueueSpool struct{ Q *queue.Queue }

var (
	_ Spool        = QueueSpool{}
	_ SpaceChecker = QueueSpool{}
)

// Enqueue implements Spool: it returns once the message is durable.
func (sp QueueSpool) Enqueue(ctx context.Context, env Envelope, body []byte) (string, error) {
	m := &queue.Message{
		ID: env.ID, ReceivedAt: env.Received, Sender: env.From, Body: body,
		Meta: queue.Meta{Helo: env.Helo, ClientAddr: env.ClientAddr, AuthIdentity: env.AuthUser, TLS: env.TLS, Connector: env.Connector,
			EnvelopeID: env.EnvID, Ret: env.Ret, BodyType: env.BodyType, SMTPUTF8: env.SMTPUTF8, RequireTLS: env.RequireTLS},
	}
	for i, r := range env.Recipients {
		dest := queue.Local
		switch {
		case r.Server != "":
			dest = ServerDestination(r.Server)
		case !r.Local:
			_, dest, _ = strings.Cut(strings.ToLower(r.Address), "@")
		}
		m.Recipients = append(m.Recipients, queue.Recipient{Idx: i, Address: r.Address, Destination: dest, Notify: r.Notify, ORCPT: r.ORCPT})
	}
	id, err := sp.Q.Enqueue(ctx, m)
	if errors.Is(err, queue.ErrStorage) {
		return "", storageFull{err}
	}
	return id, err
}

// CheckSpace implements SpaceChecker.
func (sp QueueSpool) CheckSpace(size int64) error { return sp.Q.CheckSpace(size) }

type storageFull struct{ error }

func (storageFull) StorageFull() bool { return true }
func (e storageFull) Unwrap() error   { return e.error }

// serverPrefix marks a queue destination that is a server of the
// organisation (a mailbox's home server), not a domain.
const serverPrefix = "server:"

// ServerDestination is the queue destination of mail for the mailboxes
// homed on server.
func ServerDestination(server string) string { return serverPrefix + strings.ToLower(server) }
