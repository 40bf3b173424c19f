// Package imapd is certrelay's IMAP4 backend for
// github.com/emersion/go-imap/v2's imapserver (IMAP4rev1, RFC 3501, and
// the IMAP4rev2 essentials of RFC 9051: UIDPLUS, MOVE, NAMESPACE, ESEARCH,
// IDLE) over the Maildir mailboxes of internal/maildir: INBOX and
// Maildir++ folders ("." separates levels), flags in the file names, UIDs
// and UIDVALIDITY from the folder's UID list, so they are the same after
// a restart. A message delivered by SMTP is announced by internal/maildir
// and reaches every session that has its folder selected — at once for a
// client in IDLE.
//
// The package knows no certificates, passwords or listeners: Options.Login
// checks a password and names the mailbox's directory; internal/access
// runs the listeners, TLS and the limits.
package imapd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"certrelay/internal/maildir"
)

// mbox is one folder as every session of the process sees it: the
// messages in the servers' view (by UID) and the tracker that hands each
// session its updates.
type mbox struct {
	dir     string
	folder  *maildir.Folder
	mu      sync.Mutex
	tracker *imapserver.MailboxTracker
	st      maildir.State
	users   int                     // sessions with the folder selected
	idlers  map[*idleState]struct{} // sessions in IDLE on a Conn (conn.go)
	// The folder's directories as of a read that SELECT may trust
	// (refreshIfChangedLocked), and how many times it was read.
	readAt  dirTimes
	trusted bool
	reads   int
}

// dirTimes are the modification times of a folder's directory, its cur/
// and its new/: a change of its messages changes one of them (a delivery
// renames into new/, a flag change renames within cur/, a removal unlinks
// in cur/, a UID list is replaced by a rename in the folder).
type dirTimes [3]time.Time

func statDirs(dir string) (dirTimes, bool) {
	var t dirTimes
	for i, d := range [3]string{dir, filepath.Join(dir, "cur"), filepath.Join(dir, "new")} {
		fi, err := os.Stat(d)
		if err != nil {
			return t, false
		}
		t[i] = fi.ModTime()
	}
	return t, true
}

// mtimeSlack: a directory changed less than this before it was looked at
// may change again within the same timestamp (the kernel's clock is
// coarse), so such times are not trusted.
const mtimeSlack = 2 * time.Second

// refreshIfChangedLocked reads the folder again unless its directories
// are unchanged since a read whose times could be trusted: a SELECT of a
// folder other sessions keep open costs a few stats, not a listing of
// the folder (13 KiB of garbage per SELECT with 20 messages, and its
// time). Changes made through this process are read at once anyway
// (maildir.Watch); the times catch those of other programs.
func (m *mbox) refreshIfChangedLocked() error {
	now := time.Now()
	t, ok := statDirs(m.dir)
	if ok && m.trusted && t == m.readAt {
		return nil
	}
	if err := m.refreshLocked(); err != nil {
		m.trusted = false
		return err
	}
	m.readAt, m.trusted = t, ok
	for _, x := range t {
		if now.Sub(x) < mtimeSlack {
			m.trusted = false
		}
	}
	return nil
}

// addIdler, removeIdler and kickIdlers keep and wake the sessions in
// IDLE; m.mu is held.
func (m *mbox) addIdler(st *idleState) {
	if m.idlers == nil {
		m.idlers = map[*idleState]struct{}{}
	}
	m.idlers[st] = struct{}{}
}

func (m *mbox) removeIdler(st *idleState) { delete(m.idlers, st) }

// kickIdlers has the updates just queued written to the sessions in IDLE.
func (m *mbox) kickIdlers() {
	for st := range m.idlers {
		st.kick()
	}
}

// refreshLocked reads the folder and queues what changed to every
// session: expunges (highest sequence number first), flags, new messages
// (one EXISTS each, as the tracker counts them one by one).
func (m *mbox) refreshLocked() error {
	m.reads++
	st, err := m.folder.Sync()
	if err != nil {
		return err
	}
	if m.tracker == nil {
		m.st = st
		m.tracker = imapserver.NewMailboxTracker(uint32(len(st.Messages)))
		return nil
	}
	now := make(map[uint32]int, len(st.Messages))
	for i, msg := range st.Messages {
		now[msg.UID] = i
	}
	old := m.st.Messages
	queued := false
	for i := len(old) - 1; i >= 0; i-- {
		if _, ok := now[old[i].UID]; !ok {
			queued = true
			m.tracker.QueueExpunge(uint32(i + 1))
			old = append(old[:i], old[i+1:]...)
		}
	}
	for i := range old {
		j := now[old[i].UID]
		if st.Messages[j].Flags != old[i].Flags {
			queued = true
			m.tracker.QueueMessageFlags(uint32(i+1), imap.UID(old[i].UID), imapFlags(st.Messages[j].Flags), nil)
		}
		old[i] = st.Messages[j]
	}
	last := uint32(0)
	if len(old) > 0 {
		last = old[len(old)-1].UID
	}
	for _, msg := range st.Messages {
		if msg.UID > last {
			old = append(old, msg)
			queued = true
			m.tracker.QueueNumMessages(uint32(len(old)))
		}
	}
	m.st = maildir.State{UIDValidity: st.UIDValidity, UIDNext: st.UIDNext, Messages: old}
	if queued {
		m.kickIdlers()
	}
	return nil
}

// registry keeps the folders sessions have selected, and refreshes them
// when internal/maildir announces a change (a delivery) or every
// RefreshInterval (changes by other programs).
type registry struct {
	mu    sync.Mutex
	boxes map[string]*mbox
	wake  chan string
}

// RefreshInterval is how often folders with a session are read again
// even without an announcement (changes by another program).
const RefreshInterval = 10 * time.Second

func newRegistry() *registry {
	r := &registry{boxes: map[string]*mbox{}, wake: make(chan string, 256)}
	maildir.Watch(func(dir string) {
		select {
		case r.wake <- dir:
		default: // the loop is behind; the periodic refresh catches up
		}
	})
	go r.loop()
	return r
}

func (r *registry) loop() {
	t := time.NewTicker(RefreshInterval)
	defer t.Stop()
	for {
		select {
		case dir := <-r.wake:
			r.mu.Lock()
			m := r.boxes[dir]
			r.mu.Unlock()
			if m != nil {
				m.mu.Lock()
				_ = m.refreshLocked()
				m.mu.Unlock()
			}
		case <-t.C:
			r.mu.Lock()
			all := make([]*mbox, 0, len(r.boxes))
			for _, m := range r.boxes {
				all = append(all, m)
			}
			r.mu.Unlock()
			for _, m := range all {
				m.mu.Lock()
				_ = m.refreshLocked()
				m.mu.Unlock()
			}
		}
	}
}

// open returns the shared folder at dir, counting a user.
func (r *registry) open(dir string) (*mbox, error) {
	dir = filepath.Clean(dir)
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.boxes[dir]
	if m == nil {
		f, err := maildir.OpenFolder(dir)
		if err != nil {
			return nil, err
		}
		m = &mbox{dir: dir, folder: f}
		m.mu.Lock()
		err = m.refreshLocked()
		m.mu.Unlock()
		if err != nil {
			return nil, err
		}
		r.boxes[dir] = m
	}
	m.users++
	return m, nil
}

// release drops a user; the last one forgets the folder.
func (r *registry) release(m *mbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.users--; m.users <= 0 {
		delete(r.boxes, m.dir)
	}
}

// lookup returns the shared folder at dir when a session has it.
func (r *registry) lookup(dir string) *mbox {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.boxes[filepath.Clean(dir)]
}

// Flags: Maildir letters and IMAP system flags.
var letterFlags = []struct {
	c byte
	f imap.Flag
}{
	{'D', imap.FlagDraft}, {'F', imap.FlagFlagged}, {'P', imap.FlagForwarded},
	{'R', imap.FlagAnswered}, {'S', imap.FlagSeen}, {'T', imap.FlagDeleted},
}

// systemFlags are the flags this server keeps (PERMANENTFLAGS): no
// keywords, which Maildir's letters cannot hold portably.
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, imap.FlagForwarded}

func imapFlags(letters string) []imap.Flag {
	out := []imap.Flag{}
	for _, lf := range letterFlags {
		if strings.IndexByte(letters, lf.c) >= 0 {
			out = append(out, lf.f)
		}
	}
	return out
}

func letterOf(f imap.Flag) (byte, bool) {
	for _, lf := range letterFlags {
		if strings.EqualFold(string(lf.f), string(f)) {
			return lf.c, true
		}
	}
	return 0, false
}

// letters returns the Maildir letters of flags (keywords are not kept).
func letters(flags []imap.Flag) string {
	var b []byte
	for _, f := range flags {
		if c, ok := letterOf(f); ok {
			b = append(b, c)
		}
	}
	return string(b)
}

// applyStore computes a message's letters after STORE.
func applyStore(cur string, s *imap.StoreFlags) string {
	l := letters(s.Flags)
	switch s.Op {
	case imap.StoreFlagsSet:
		return l
	case imap.StoreFlagsAdd:
		return cur + l
	default:
		out := []byte{}
		for i := 0; i < len(cur); i++ {
			if strings.IndexByte(l, cur[i]) < 0 {
				out = append(out, cur[i])
			}
		}
		return string(out)
	}
}

var (
	errNoMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "no such mailbox"}
	errTryCreate = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "no such mailbox"}
	errExists    = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "the mailbox exists already"}
	errReadOnly  = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "the mailbox is open read-only (EXAMINE)"}
)

func badName(err error) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: err.Error()}
}

func isNotExist(err error) bool { return errors.Is(err, maildir.ErrGone) }
