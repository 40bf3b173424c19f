package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the spool database's name inside the queue directory.
const FileName = "queue.db"

// LockName is the lock file a server holds inside the queue directory.
const LockName = "lock"

// Destinations with a meaning of their own.
const (
	// Local is the destination of recipients whose mailbox is on this
	// server.
	Local = "local"
	// AnyRemote, given to Handle, registers the deliverer for every
	// destination other than Local that has no deliverer of its own.
	AnyRemote = "*"
)

// Batching limits of the group commit.
const (
	MaxBatchMessages = 256
	MaxBatchBytes    = 8 << 20
)

// Defaults of Options.
const (
	// DefaultWorkers is 32: local delivery spends most of its time
	// waiting for its Maildir round (internal/maildir's batch.go), and a
	// round holds about half the deliveries in progress, so the workers
	// set how many messages share one syncfs(2). With 16, ingest with
	// Maildir delivery cost 444–462 µs of server CPU per message; with 32,
	// 391–440 in the same minutes (docs/performance/ingest-19.md); 64
	// gave no more.
	DefaultWorkers         = 32
	DefaultExpiry          = 48 * time.Hour
	DefaultDeliveryTimeout = 10 * time.Minute
	// NoRouteRetry is how long a recipient without a deliverer waits
	// before it is looked at again.
	NoRouteRetry = time.Minute
	// BounceRetry is how long a message waits after its Bouncer failed.
	BounceRetry = time.Minute
)

var (
	// ErrStorage is wrapped by errors from writes that failed in the
	// database (disk full, I/O error, read-only file system, lock held
	// too long by another process). The SMTP layer answers
	// "452 4.3.1 Insufficient system storage".
	ErrStorage = errors.New("queue storage failure")
	// ErrNotFound is wrapped when a message ID is not in the queue.
	ErrNotFound = errors.New("message not in queue")
	// ErrLocked is wrapped when another server holds the queue's lock.
	ErrLocked = errors.New("queue locked by another server")
	// ErrClosed is returned by operations on a closed Queue.
	ErrClosed = errors.New("queue closed")
)

// Status is the state of one recipient.
type Status string

// Recipient states.
const (
	Pending   Status = "pending"
	Delivered Status = "delivered"
	Failed    Status = "failed"
)

// Recipient is one envelope recipient of a queued message.
type Recipient struct {
	// Idx is the recipient's position in Message.Recipients, assigned by
	// Enqueue; it names the recipient together with the message ID.
	Idx int `json:"idx"`
	// Address is the RCPT TO address, without angle brackets.
	Address string `json:"address"`
	// Destination is Local or, for remote recipients, a domain (what the
	// router decided at RCPT time). Required.
	Destination string `json:"destination"`
	// Notify and ORCPT are the RFC 3461 RCPT parameters, kept for the
	// DSN; empty when absent.
	Notify string `json:"notify,omitempty"`
	ORCPT  string `json:"orcpt,omitempty"`
}

// Meta is what the SMTP layer knew about a message beyond its envelope.
// It is stored as JSON; every field is optional.
type Meta struct {
	Helo         string `json:"helo,omitempty"`
	ClientAddr   string `json:"client_addr,omitempty"`
	AuthIdentity string `json:"auth,omitempty"`
	TLS          string `json:"tls,omitempty"` // e.g. "TLS1.3 TLS_AES_128_GCM_SHA256"
	Connector    string `json:"connector,omitempty"`
	EnvelopeID   string `json:"envid,omitempty"` // RFC 3461 ENVID
	Ret          string `json:"ret,omitempty"`   // RFC 3461 RET: FULL or HDRS
	BodyType     string `json:"body,omitempty"`  // 7BIT, 8BITMIME, BINARYMIME
	SMTPUTF8     bool   `json:"smtputf8,omitempty"`
	// RequireTLS is MAIL's REQUIRETLS (RFC 8689): relay only over TLS
	// authenticated by DANE, MTA-STS or domain security, to a server that
	// supports REQUIRETLS.
	RequireTLS bool `json:"requiretls,omitempty"`
}

// Message is a message to queue, or one read back by Get.
type Message struct {
	ID         string    // set by Enqueue; ignored on input
	ReceivedAt time.Time // when zero, Enqueue uses the current time
	Sender     string    // MAIL FROM without brackets; "" is the null sender <>
	Recipients []Recipient
	Body       []byte
	Meta       Meta
}

// RecipientState is a recipient with its delivery state.
type RecipientState struct {
	Recipient
	Status      Status
	Attempts    int
	NextAttempt time.Time
	LastError   string
	UpdatedAt   time.Time
}

// Options configure a server's Queue. The zero value is usable.
type Options struct {
	// Workers is the number of delivery goroutines (default
	// DefaultWorkers).
	Workers int
	// Expiry is how long a message may stay in the queue before a
	// temporary failure fails it (default DefaultExpiry, 2 days).
	Expiry time.Duration
	// DeliveryTimeout bounds one Deliver call (default 10 minutes).
	DeliveryTimeout time.Duration
	// Now is the clock (default time.Now). It decides received_at,
	// next_attempt and expiry; the polling intervals use real time.
	Now func() time.Time
	// Logger receives delivery problems (default slog.Default()).
	Logger *slog.Logger
}

// Queue is a durable mail spool. All methods are safe for concurrent use.
type Queue struct {
	dir   string
	space freeSpace // CheckSpace's reading of the free space
	admin bool
	db    *sql.DB
	wconn *sql.Conn // the writer's connection
	lock  *os.File  // nil for an administration handle
	opts  Options
	log   *slog.Logger

	// writer
	sendMu     sync.RWMutex // guards closed against sends on reqs/ops
	closed     bool
	reqs       chan *enqReq
	ops        chan *op
	stop       chan struct{}
	writerDone chan struct{}
	stmts      stmts
	reads      reads
	commits    atomic.Uint64
	enqueued   atomic.Uint64

	// delivery
	mu         sync.Mutex
	routes     map[string]Deliverer
	bouncer    Bouncer
	running    bool
	runCancel  context.CancelFunc
	runDone    chan struct{}
	kick       chan struct{}
	fin        atomic.Pointer[finalizer]
	closing    bool // Close has begun (under mu)
	leases     leaseSet
	hops       hopState
	openedAt   time.Time
	delivered  atomic.Uint64
	failed     atomic.Uint64
	closeOnce  sync.Once
	closeErr   error
	lastIDNano atomic.Int64
	fresh      freshCache // committed messages not yet loaded by a delivery (fresh.go)
}

// Open opens the queue in dir for a server: it creates dir (0700) and
// queue.db if needed, and takes the exclusive lock file dir/lock. A second
// Open of the same directory, in this process or another, fails with an
// error wrapping ErrLocked that names the lock file and the holder's PID.
// Call Run to deliver and Close when done.
func Open(dir string, opts Options) (*Queue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open queue: create %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	q, err := open(dir, opts, false)
	if err != nil {
		lock.Close()
		return nil, err
	}
	q.lock = lock
	return q, nil
}

// OpenAdmin opens the queue in dir for administration (the CLI), beside a
// server that may be running: it takes no lock and cannot Run. List, Get,
// Count, Retry, Remove and Enqueue work; the server notices their changes
// within 200 ms.
func OpenAdmin(dir string) (*Queue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open queue: create %s: %w", dir, err)
	}
	return open(dir, Options{}, true)
}

func open(dir string, opts Options, admin bool) (*Queue, error) {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Expiry <= 0 {
		opts.Expiry = DefaultExpiry
	}
	if opts.DeliveryTimeout <= 0 {
		opts.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	path := filepath.Join(dir, FileName)
	d, err := openDB(path, opts.Workers+4)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := migrate(ctx, d); err != nil {
		d.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	wconn, err := d.Conn(ctx)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	q := &Queue{
		dir:        dir,
		admin:      admin,
		db:         d,
		wconn:      wconn,
		opts:       opts,
		log:        opts.Logger.With("component", "queue"),
		reqs:       make(chan *enqReq, 1024),
		ops:        make(chan *op, 1024),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
		routes:     map[string]Deliverer{},
		kick:       make(chan struct{}, 1),
		leases:     leaseSet{m: map[leaseKey]struct{}{}},
		hops:       hopState{up: map[string]bool{}, down: map[string]bool{}, promoted: map[string]time.Time{}},
		openedAt:   opts.Now(),
	}
	if err := q.stmts.prepare(ctx, wconn); err != nil {
		wconn.Close()
		d.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	if err := q.reads.prepare(ctx, d); err != nil {
		q.stmts.close()
		q.reads.close()
		wconn.Close()
		d.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	go q.writer()
	return q, nil
}

// Close stops the workers (cancelling Run and waiting for it), commits
// what the writer holds, and closes the database and the lock. Enqueue
// calls after Close fail with ErrClosed.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closing = true
		cancel, done := q.runCancel, q.runDone
		q.mu.Unlock()
		if cancel != nil {
			cancel()
			<-done
		}
		q.sendMu.Lock()
		q.closed = true
		q.sendMu.Unlock()
		close(q.stop)
		<-q.writerDone
		q.stmts.close()
		q.reads.close()
		err := errors.Join(q.wconn.Close(), q.db.Close())
		if q.lock != nil {
			err = errors.Join(err, q.lock.Close()) // releases the flock
		}
		if err != nil {
			q.closeErr = fmt.Errorf("close queue %s: %w", q.dir, err)
		}
	})
	return q.closeErr
}

// Stats are counters since Open.
type Stats struct {
	Commits   uint64 // write transactions committed by the writer
	Enqueued  uint64 // messages committed by Enqueue
	Delivered uint64 // recipients delivered
	Failed    uint64 // recipients failed (permanently or by expiry)
}

// Stats returns the counters since Open.
func (q *Queue) Stats() Stats {
	return Stats{
		Commits:   q.commits.Load(),
		Enqueued:  q.enqueued.Load(),
		Delivered: q.delivered.Load(),
		Failed:    q.failed.Load(),
	}
}

// openDB opens path with internal/db's settings (see the package doc);
// db.Open is fixed to certrelay.db, so the DSN logic is repeated here.
func openDB(path string, maxConns int) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous(FULL)")
	v.Set("_txlock", "immediate")
	d, err := sql.Open("sqlite", "file:"+abs+"?"+v.Encode())
	if err != nil {
		return nil, fmt.Errorf("open queue %s: %w", abs, err)
	}
	d.SetMaxOpenConns(maxConns)
	d.SetMaxIdleConns(maxConns)
	d.SetConnMaxIdleTime(0)
	if err := d.Ping(); err != nil {
		d.Close()
		return nil, fmt.Errorf("open queue %s: %w", abs, err)
	}
	_ = os.Chmod(abs, 0o600)
	return d, nil
}

// schemaVersion 2 added recipients_hop, the index of the deferred
// recipients of one destination (hop.go), and messages_received, so
// Count finds the oldest message without reading every message, and
// added attempts to recipients_due, so Count reads only that index (with
// 100,000 messages waiting, Count took 740 ms — the metrics endpoint
// calls it at each scrape — and now takes tens of milliseconds).
const schemaVersion = 2

var schema = []string{
	`CREATE TABLE IF NOT EXISTS messages (
		id          TEXT PRIMARY KEY,
		received_at INTEGER NOT NULL,
		sender      TEXT NOT NULL,
		size        INTEGER NOT NULL,
		meta        TEXT NOT NULL,
		body        BLOB NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS recipients (
		msg_id       TEXT NOT NULL,
		idx          INTEGER NOT NULL,
		address      TEXT NOT NULL,
		destination  TEXT NOT NULL,
		notify       TEXT NOT NULL DEFAULT '',
		orcpt        TEXT NOT NULL DEFAULT '',
		status       TEXT NOT NULL DEFAULT 'pending',
		attempts     INTEGER NOT NULL DEFAULT 0,
		next_attempt INTEGER NOT NULL,
		last_error   TEXT NOT NULL DEFAULT '',
		updated_at   INTEGER NOT NULL,
		PRIMARY KEY (msg_id, idx)
	) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS recipients_due ON recipients (status, next_attempt, attempts)`,
	`CREATE INDEX IF NOT EXISTS recipients_hop ON recipients (destination, next_attempt) WHERE status = 'pending'`,
	`CREATE INDEX IF NOT EXISTS messages_received ON messages (received_at)`,
	`CREATE TABLE IF NOT EXISTS state (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID`,
	`INSERT OR IGNORE INTO state (k, v) VALUES ('generation', 0)`,
}

func migrate(ctx context.Context, d *sql.DB) error {
	var v int
	if err := d.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if v == schemaVersion {
		return nil
	}
	if v > schemaVersion {
		return fmt.Errorf("schema: version %d is newer than this program's %d", v, schemaVersion)
	}
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	defer tx.Rollback()
	// Another process may have migrated while this one waited for the
	// write lock.
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if v == schemaVersion {
		return nil
	}
	if v == 1 {
		// Version 2 widened recipients_due: the old one goes first.
		if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS recipients_due`); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	for _, s := range schema {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(schemaVersion)); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	return nil
}

// lockDir takes the exclusive flock on dir/lock and writes our PID in it.
// The kernel drops the lock when the process dies, so a crash never leaves
// a stale lock.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open queue: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "unknown"
		if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = strings.TrimSpace(string(b))
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open queue: lock file %s is held by another certrelay server (pid %s) using this data directory: %w", path, holder, ErrLocked)
		}
		return nil, fmt.Errorf("open queue: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// newID returns a message ID: 16 hex digits of Unix nanoseconds (strictly
// increasing within the process) then 8 random hex digits, so IDs sort by
// arrival and do not collide between processes.
// NewID returns a fresh message ID, unique and sortable by arrival, for a
// message about to be enqueued.
func (q *Queue) NewID() string { return q.newID(q.opts.Now()) }

// validID reports whether id has NewID's form: 24 lower-case hex digits.
func validID(id string) bool {
	if len(id) != 24 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (q *Queue) newID(now time.Time) string {
	n := now.UnixNano()
	for {
		last := q.lastIDNano.Load()
		if n <= last {
			n = last + 1
		}
		if q.lastIDNano.CompareAndSwap(last, n) {
			break
		}
	}
	var b [24]byte
	const hexd = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b[i] = hexd[n&0xf]
		n >>= 4
	}
	r := rand.Uint32()
	for i := 23; i >= 16; i-- {
		b[i] = hexd[r&0xf]
		r >>= 4
	}
	return string(b[:])
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMs(v int64) time.Time { return time.UnixMilli(v).UTC() }
