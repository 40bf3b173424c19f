// Package queue is certrelay's durable mail spool: accepted messages are
// written to a SQLite database with group commit before the SMTP server
// answers 250, then delivered by worker goroutines with a retry schedule,
// and removed once every recipient is delivered or has failed (failed
// recipients first produce a bounce through a caller-supplied hook).
//
// # Storage
//
// The spool is the SQLite database queue.db in the directory given to Open
// (the data directory's queue/), opened like internal/db: WAL journal,
// synchronous=FULL, busy_timeout 10 s, IMMEDIATE write transactions. Two
// tables: messages (id, received_at, sender, size, meta JSON, body) and
// recipients (msg_id, idx, address, destination, status, attempts,
// next_attempt, last_error, updated_at), with an index on
// (status, next_attempt) for the due-recipient scan. Times are stored as
// Unix milliseconds (UTC). A one-row table "state" holds a generation
// counter that administrative changes (Retry, Remove, Enqueue from an
// administration handle) increment so a running server notices them.
//
// # Group commit
//
// Enqueue hands the message to a single writer goroutine and waits. The
// writer takes everything waiting, up to MaxBatchMessages messages or
// MaxBatchBytes of bodies, writes it in one transaction and commits it:
// one WAL fsync for the whole batch. Then it answers every caller. While
// it commits, the next batch accumulates, so under load the batch size
// follows the number of concurrent callers without any added delay; a
// lone caller pays one fsync. Enqueue returns only after the commit: that
// is the durability point the SMTP layer waits on before 250.
//
// If the caller's context ends first, Enqueue returns an error (the SMTP
// layer answers 4xx). If the writer had not yet taken the message it is
// never written; if it had, the message may still be committed. The
// client then retries and the message is delivered twice: a cancelled
// Enqueue can produce a duplicate, never a loss.
//
// A failed write (disk full, I/O error, read-only file system, a lock
// held too long by another process) is reported as an error wrapping
// ErrStorage so the SMTP layer can answer "452 4.3.1 Insufficient system
// storage". Nothing is kept in memory: the next batch simply tries again,
// so the queue works again as soon as space returns.
//
// The same writer also applies delivery results (delivered, deferred,
// failed) and removals. Those are not waited on: they ride in the next
// transaction. Losing one in a crash only causes the recipient to be
// delivered again (at-least-once; the Maildir deliverer detects such
// repeats, see internal/maildir).
//
// # Delivery
//
// Run starts Options.Workers delivery goroutines and a dispatcher. The
// dispatcher scans for due recipients (status pending, next_attempt <=
// now), groups them per message and destination, and hands each group to
// the Deliverer registered for that destination with Handle ("local" for
// the mailboxes of this server, "*" for every other destination, or an
// exact destination). It scans when a commit added messages, every second
// for retries that fell due, and within 200 ms of a change made by
// another process (the generation counter).
//
// Leases are in memory: a recipient handed to a worker is not handed out
// again until its result is committed. This is correct because only one
// server process runs workers on a queue: Open takes an exclusive flock
// on the file "lock" in the queue directory (holding the server's PID),
// and a second server fails with ErrLocked. OpenAdmin, used by the CLI,
// takes no lock and starts no workers; its List, Get, Retry and Remove
// work beside a running server. After a crash every committed message is
// still there and pending; recipients that were being delivered at the
// crash are delivered again (at-least-once), and Delivery.MaybeDelivered
// tells the deliverer to look for an earlier copy.
//
// A recipient whose destination has no deliverer stays pending with
// last_error "no route yet for destination …" and is looked at again
// every NoRouteRetry (1 minute), without counting an attempt, until the
// expiry fails it.
//
// # Retry schedule
//
// A temporary failure (any error not wrapped by Permanent) counts an
// attempt and defers the recipient by Backoff(attempts) plus up to 10%
// random jitter: 1m, 5m, 15m, 30m, 1h, then every hour. No attempt is
// scheduled after the message's expiry (received_at + Options.Expiry,
// default 2 days): the last retry happens at the expiry, and a temporary
// failure at or after it fails the recipient ("expired after …"). A
// permanent failure fails the recipient at once.
//
// When no recipient of a message is pending any more, the Bouncer (if
// one is set) is called once with the failed recipients — never for the
// null sender <> and never when all were delivered — and then the message
// is removed. A crash between the bounce and the removal repeats the
// bounce after restart; a Bouncer error keeps the message and the bounce
// is tried again a minute later.
package queue
