package admin

import (
	"context"
	"path/filepath"

	"certrelay/internal/queue"
)

// QueueDir is the queue's directory inside the data directory.
func (a *Admin) QueueDir() string { return filepath.Join(a.dataDir, "queue") }

// withQueue opens the queue for administration beside a running server
// (no lock: the server keeps delivering).
func (a *Admin) withQueue(fn func(q *queue.Queue) error) error {
	q, err := queue.OpenAdmin(a.QueueDir())
	if err != nil {
		return err
	}
	defer q.Close()
	return fn(q)
}

// QueueList lists the messages in the queue with each recipient's state.
func (a *Admin) QueueList(ctx context.Context, f queue.Filter) ([]queue.Item, error) {
	var items []queue.Item
	err := a.withQueue(func(q *queue.Queue) error {
		var err error
		items, err = q.List(ctx, f)
		return err
	})
	return items, err
}

// QueueRetry makes the pending recipients of message id (all messages
// when id is "") due now; a running server delivers them at once. It
// returns how many recipients it made due.
func (a *Admin) QueueRetry(ctx context.Context, id string) (int, error) {
	var n int
	err := a.withQueue(func(q *queue.Queue) error {
		var err error
		n, err = q.Retry(ctx, id)
		return err
	})
	return n, err
}

// QueueRemove deletes a message from the queue without a bounce.
func (a *Admin) QueueRemove(ctx context.Context, id string) error {
	return a.withQueue(func(q *queue.Queue) error { return q.Remove(ctx, id) })
}
