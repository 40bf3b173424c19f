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
// (status, next_attempt) for the due-recipient scan and a partial index
// on (destination, next_attempt) of the pending recipients, which finds
// one destination's deferred mail when its peer comes back (below). Queries about the
// recipients of one message (the sweep after a restart, List's status
// filter, the removal of a delivered message) find them by the primary key
// (msg_id, idx); their status conditions are written +status so SQLite
// cannot pick the (status, next_attempt) index for them, which would read
// every recipient in that state once per message. Times are stored as
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
// transaction; results alone wait up to 3 ms (resultsLinger) for an
// ingest batch to share its transaction and its fsync. A result that leaves every recipient of its message
// delivered also removes the message, in that same transaction; a first
// attempt that delivered every recipient of its message (the fresh copy
// below knows how many there are) removes it without writing the
// recipients' rows first. Losing a
// result in a crash only causes the recipient to be delivered again
// (at-least-once; the Maildir deliverer detects such repeats, see
// internal/maildir). Every statement the writer runs, and the hot reads
// (the scan, a delivery's message), is prepared once and executed a row
// at a time (rows.go): the SQLite driver compiles only SQL that is not
// prepared, so SQL built for a count of rows cost more than the rows.
//
// The writer also keeps each committed message in memory (fresh.go, at
// most 8 MiB of bodies) until a delivery takes it, so a first delivery
// does not read back what was just written; later attempts and recovery
// read the database.
//
// # Delivery
//
// Run starts Options.Workers delivery goroutines (32 by default: a local
// delivery mostly waits for its Maildir round, shared by the deliveries
// in progress, so more workers make larger rounds and fewer syncfs(2)
// calls per message) and a dispatcher. The
// dispatcher scans for due recipients (status pending, next_attempt <=
// now), groups them per message and destination, and hands each group to
// the Deliverer registered for that destination with Handle ("local" for
// the mailboxes of this server, "*" for every other destination, or an
// exact destination). At most 2×Workers deliveries are handed out at a
// time, and a scan reads no more due rows than it can hand out. It scans
// when a commit added messages, when a delivery frees a slot after a scan
// that found no free slot left (so a backlog larger than the slots — mail
// recovered after a crash, or a burst once ingest stops — is delivered at
// full speed with no other prompt), every second for retries that fell
// due, and within 200 ms of a change made by another process (the
// generation counter). Until issue 9 (item 19) a scan that filled the
// last slot with the last row it read was not woken by the releases, so
// a backlog moved at 2×Workers messages per one-second poll.
//
// Leases are in memory: a recipient handed to a worker is not handed out
// again until its result is committed. A scan locks the lease set before
// its read begins and keeps it locked until every row read has been
// checked, so a lease released meanwhile (after its result's commit) is
// never mistaken for a recipient still pending in an older snapshot. This
// is correct because only one
// server process runs workers on a queue: Open takes an exclusive flock
// on the file "lock" in the queue directory (holding the server's PID),
// and a second server fails with ErrLocked. OpenAdmin, used by the CLI,
// takes no lock and starts no workers; its List, Get, Count, Retry and
// Remove work beside a running server.
//
// # Recovery after a crash
//
// Nothing a killed server held delays its mail: the kernel drops its
// flock, its leases were in memory, and recipients never tried keep 0
// attempts and next_attempt = their receive time, so they are due at once
// (the retry schedule applies only to attempts that failed). Every
// committed message is still there and pending; recipients that were being
// delivered at the crash are delivered again (at-least-once), and
// Delivery.MaybeDelivered tells the deliverer to look for an earlier copy.
// Run starts dispatching at once; the sweep for messages a crash left
// finished (all recipients done, bounce or removal not yet made) runs
// beside delivery in the finalizer's goroutine. `make crashtest` measures
// the drain after its last restart (docs/performance/crash.md).
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
// The schedule is per recipient, but a peer that was down comes back for
// all of them: when a delivery to a remote destination succeeds after
// deliveries found it unreachable (below), the same transaction that
// records it makes every recipient deferred for that destination due now
// (hop.go), and the dispatcher hands them out at once — as Exchange
// resumes a next-hop queue in Retry when a connection succeeds. Without
// it, mail that had failed twice waited up to 5 minutes (15, 30, 60 after
// more failures) after the peer's return. The first success since the
// server started does the same for the recipients held by an earlier
// process (their last_error begins "not tried: "). Recipients deferred by
// a peer that answered (greylisting, a full mailbox, a DANE or MTA-STS
// failure) keep their schedule; a destination is promoted at most once
// per PromoteInterval (1 minute); local deliveries, which fail per
// mailbox, never promote. The first delivery after the peer's return
// still waits for some recipient's next attempt (or `queue retry`).
//
// The other way round, a deliverer that could not reach the destination at
// all (no connection to any of its hosts) says so with Unreachable; the
// destination is then held until that recipient's next attempt (at most
// MaxHold, 10 minutes, as Exchange retries a next-hop queue): the
// dispatcher defers its other due recipients to that time without handing
// them to a worker (last_error "not tried: … could not be reached",
// attempts not counted), so a queue of 100,000 messages for a host that
// is down costs a few connection attempts per round of the schedule, not
// 100,000 — each of which, against a host that drops packets, would hold
// a worker for the dial timeout and starve every other destination. The
// holds live in memory: a restart, a success, the hold's time, and any
// administrative change (the generation counter: `queue retry` tries at
// once) lift them.
//
// When no recipient of a message is pending any more, a message whose
// recipients were all delivered is removed by the transaction that
// recorded the last delivery. Otherwise the finalizer calls the Bouncer
// (if one is set) once with the failed recipients — never for the null
// sender <> — and then removes the message. A crash between the bounce and the removal repeats the
// bounce after restart; a Bouncer error keeps the message and the bounce
// is tried again a minute later.
package queue
