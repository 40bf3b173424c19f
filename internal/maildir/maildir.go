// Package maildir delivers messages into Maildir mailboxes, as described
// in D. J. Bernstein's specification (https://cr.yp.to/proto/maildir.html):
// a message is written under tmp/, made durable, renamed into new/, and
// new/ is fsynced, so a reader sees a whole message or none and a
// delivered message survives a crash. Concurrent deliveries share those
// syncs: a batch of files under tmp/ is made durable by one syncfs(2) of
// the file system, renamed, and the renames made durable by the next
// syncfs(2), which makes the next batch durable too (batch.go) — the
// per-message fsyncs were most of a delivery's cost.
// Readers later move a message to cur/, adding ":2,FLAGS" to its name.
//
// Unlike the specification's time-and-process-based unique names, the
// name of a delivery is deterministic — "<seconds>.<msgID>_<idx>.<host>",
// where seconds is when the queue received the message, msgID the queue's
// message ID, idx the recipient's index and host this machine's name —
// so a delivery repeated after a crash (the queue is at-least-once) finds
// its earlier copy in new/ or cur/ and is skipped: each recipient gets the
// message exactly once. The copy check is a stat in new/ and, when an
// earlier attempt is possible, a scan of cur/ for the name followed by
// ":" (a stat cannot find it there because of the flags). A host renamed
// between a crash and the repeated delivery defeats the check.
//
// Deliverer adapts Deliver to internal/queue.
package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"certrelay/internal/safeio"
)

// Key names one delivery: one recipient of one queued message.
type Key struct {
	MsgID    string    // the queue's message ID; no '/', ':' or '.'
	Idx      int       // the recipient's index in the message
	Received time.Time // when the message was received: the name's leading seconds
	// Fresh, when set, promises that no earlier attempt can have written
	// this key (a first attempt in this process); Deliver then looks for
	// no earlier copy (no stat in new/, no scan of cur/: the stat was 4%
	// of the server's CPU under load). Even a wrong promise cannot leave
	// two copies in new/: the rename into new/ replaces a file of the same
	// name, which is the same delivery.
	Fresh bool
}

// Result says where a delivery went.
type Result struct {
	Path      string // the message's file (in new/, or in cur/ for a duplicate)
	Duplicate bool   // an earlier delivery of the key was found; nothing was written
}

var (
	hostOnce sync.Once
	hostName string
)

// host returns the host name with '/' and ':' encoded as the
// specification asks ("\057", "\072").
func host() string {
	hostOnce.Do(func() {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		hostName = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(h)
	})
	return hostName
}

// Name returns the file name of the delivery of k (without ":2,…").
func Name(k Key) string {
	return strconv.FormatInt(k.Received.Unix(), 10) + "." + k.MsgID + "_" + strconv.Itoa(k.Idx) + "." + host()
}

// Deliver writes body to the Maildir root/mailbox, creating the mailbox
// and its tmp/, new/ and cur/ directories (mode 0700) when missing. The
// file has mode 0600. When Deliver returns nil the message is durable in
// new/ — or was found already delivered (Result.Duplicate). mailbox must
// be a relative path that stays inside root.
//
// Deliver is safe for concurrent use, except with the same Key at the same
// time (the queue never does that: its leases forbid it).
func Deliver(root, mailbox string, k Key, body []byte) (Result, error) {
	return DeliverWithPrefix(root, mailbox, k, nil, body)
}

// DeliverWithPrefix is Deliver with lines written before the body (the
// final delivery's Return-Path, RFC 5321 4.4), in the same file.
func DeliverWithPrefix(root, mailbox string, k Key, prefix, body []byte) (Result, error) {
	if !filepath.IsLocal(mailbox) {
		return Result{}, fmt.Errorf("maildir deliver: mailbox %q is not a relative path inside %s", mailbox, root)
	}
	if k.MsgID == "" || strings.ContainsAny(k.MsgID, "/:.") {
		return Result{}, fmt.Errorf("maildir deliver: bad message ID %q", k.MsgID)
	}
	dir := filepath.Join(root, mailbox)
	name := Name(k)
	newPath := filepath.Join(dir, "new", name)
	if !k.Fresh {
		if _, err := os.Lstat(newPath); err == nil {
			return Result{Path: newPath, Duplicate: true}, nil
		}
		p, err := findInCur(filepath.Join(dir, "cur"), name)
		if err != nil {
			return Result{}, fmt.Errorf("maildir deliver to %s: %w", dir, err)
		}
		if p != "" {
			return Result{Path: p, Duplicate: true}, nil
		}
	}
	mb := mailboxOf(dir)
	mb.writers <- struct{}{}
	err := writeTmp(dir, name, prefix, body)
	<-mb.writers
	if err != nil {
		return Result{}, err
	}
	// Durable in new/ with the other deliveries of its batch (batch.go).
	if err := durable.commit(&pending{dir: dir, name: name}); err != nil {
		return Result{}, err
	}
	return Result{Path: newPath}, nil
}

// writeTmp writes the message to tmp/ and closes it, without an fsync:
// its batch makes it durable and renames it into new/ (batch.go). A file
// already there is a leftover of a crash in the middle of this same
// delivery: it is replaced.
func writeTmp(dir, name string, prefix, body []byte) error {
	tmpPath := filepath.Join(dir, "tmp", name)
	f, err := create(tmpPath)
	if errors.Is(err, fs.ErrNotExist) {
		if err = makeMaildir(dir); err == nil {
			f, err = create(tmpPath)
		}
	}
	if err != nil {
		return fmt.Errorf("maildir deliver to %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmpPath)
		}
	}()
	if err := writeAll(f, prefix, body); err != nil {
		return fmt.Errorf("maildir deliver to %s: write: %w", dir, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("maildir deliver to %s: %w", dir, err)
	}
	ok = true
	return nil
}

// writeAll writes prefix and body to f with one writev(2) (a second
// write(2) for the Return-Path line was one system call more per
// delivery), looping over short writes.
func writeAll(f *os.File, prefix, body []byte) error {
	if len(prefix) == 0 {
		_, err := f.Write(body)
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	bufs := [][]byte{prefix, body}
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for len(bufs) > 0 {
			n, err := unix.Writev(int(fd), bufs)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return true
			}
			if n == 0 {
				werr = io.ErrShortWrite
				return true
			}
			for n > 0 && len(bufs) > 0 {
				if n >= len(bufs[0]) {
					n -= len(bufs[0])
					bufs = bufs[1:]
				} else {
					bufs[0] = bufs[0][n:]
					n = 0
				}
			}
			for len(bufs) > 0 && len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
		}
		return true
	}); err != nil {
		return err
	}
	return werr
}

// mailbox is the per-Maildir state deliveries share: a bound on
// concurrent writers (many writers in one directory only contend for its
// lock).
type mailbox struct {
	writers chan struct{}
}

// MaxWritersPerMailbox bounds concurrent deliveries into one Maildir.
const MaxWritersPerMailbox = 2

var mailboxes sync.Map // directory → *mailbox

func mailboxOf(dir string) *mailbox {
	if m, ok := mailboxes.Load(dir); ok {
		return m.(*mailbox)
	}
	m := &mailbox{writers: make(chan struct{}, MaxWritersPerMailbox)}
	actual, _ := mailboxes.LoadOrStore(dir, m)
	return actual.(*mailbox)
}

func create(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		if err := os.Remove(path); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	return f, err
}

// findInCur returns the path of name in cur/ ("name" or "name:…"), or "".
func findInCur(cur, name string) (string, error) {
	d, err := os.Open(cur)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if strings.HasPrefix(n, name) && (len(n) == len(name) || n[len(name)] == ':') {
				return filepath.Join(cur, n), nil
			}
		}
		if err == io.EOF {
			return "", nil
		}
		if err != nil {
			return "", err
		}
	}
}

// makeMaildir creates dir (and missing parents) with tmp/, new/ and cur/,
// mode 0700, fsyncing each parent of a created directory so the mailbox
// itself survives a crash.
func makeMaildir(dir string) error {
	if err := mkdirDurable(dir); err != nil {
		return err
	}
	created := false
	for _, sub := range []string{"tmp", "new", "cur"} {
		err := os.Mkdir(filepath.Join(dir, sub), 0o700)
		if err == nil {
			created = true
		} else if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	if created {
		return safeio.SyncDir(dir)
	}
	return nil
}

func mkdirDurable(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return safeio.SyncDir(parent)
}
