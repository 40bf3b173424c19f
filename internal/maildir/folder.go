package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"certrelay/internal/safeio"
)

// Reading mailboxes (POP3 and IMAP4, issue 14).
//
// A Folder is one Maildir directory — a mailbox's INBOX, or one of its
// Maildir++ folders (".Sent", ".Archive.2026") — as readers see it: its
// messages with stable UIDs, their flags, sizes and dates. Flags are kept
// in the file names, as the specification says (":2,FLAGS": D draft, F
// flagged, P passed, R replied, S seen, T trashed), so they survive a
// restart and other Maildir software reads them. UIDs are kept in the
// folder's UIDListFile: a header with the UIDVALIDITY and the next UID,
// then one line per message ("UID KEY", KEY being the file name without
// its ":2,…" part). The file is rewritten atomically and durably
// (internal/safeio) before a new UID is given to anyone, so a UID once
// seen by a client is never given to another message, across restarts
// and crashes. A message's key never changes: a flag change renames the
// file within cur/, and moving it from new/ to cur/ adds ":2,".
//
// Folders are shared in the process: OpenFolder returns the same *Folder
// for a directory, so every session sees one index, and every change
// (a delivery, a flag set by another session) is announced to the
// functions registered with Watch.

// UIDListFile is the name of a folder's UID list.
const UIDListFile = "certrelay-uidlist"

const uidListMagic = "certrelay-uidlist 1"

// Message is one message of a folder.
type Message struct {
	UID   uint32
	Key   string    // the file name without ":2,FLAGS"; never changes
	Name  string    // the current file name in cur/
	Flags string    // Maildir flag letters, sorted (D F P R S T; lower-case keywords too)
	Size  int64     // bytes in the file
	Date  time.Time // the file's modification time: when it was delivered or appended
}

// Path returns the message's file in folder dir.
func (m Message) Path(dir string) string { return filepath.Join(dir, "cur", m.Name) }

// HasFlag reports whether the message has flag letter c.
func (m Message) HasFlag(c byte) bool { return strings.IndexByte(m.Flags, c) >= 0 }

// Folder is one Maildir folder, shared by everyone in the process who
// opens it. Safe for concurrent use.
type Folder struct {
	Dir string

	mu       sync.Mutex
	loaded   bool
	validity uint32
	next     uint32
	uids     map[string]uint32 // key → UID
	msgs     []Message         // by UID
	stats    map[string]statInfo
	listMod  time.Time // the UID list's mtime when read
}

type statInfo struct {
	size int64
	date time.Time
}

var folders sync.Map // dir → *Folder

// OpenFolder returns the folder at dir (a Maildir with tmp/, new/ and
// cur/, created when missing), shared in the process.
func OpenFolder(dir string) (*Folder, error) {
	dir = filepath.Clean(dir)
	if f, ok := folders.Load(dir); ok {
		return f.(*Folder), nil
	}
	if err := makeMaildir(dir); err != nil {
		return nil, fmt.Errorf("open mailbox %s: %w", dir, err)
	}
	f, _ := folders.LoadOrStore(dir, &Folder{Dir: dir})
	return f.(*Folder), nil
}

// IsMaildir reports whether dir holds a Maildir (its cur/ exists).
func IsMaildir(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "cur"))
	return err == nil && fi.IsDir()
}

// State is a folder's messages at one moment.
type State struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    []Message // by UID
}

// Sync reads the folder: messages delivered to new/ move to cur/ (gaining
// ":2,"), each message without a UID gets the next one — written to the
// UID list before Sync returns — and the state is returned (a copy the
// caller owns). Changes are announced to the watchers.
func (f *Folder) Sync() (State, error) {
	f.mu.Lock()
	st, changed, err := f.syncLocked()
	f.mu.Unlock()
	if changed {
		announce(f.Dir)
	}
	return st, err
}

func (f *Folder) syncLocked() (State, bool, error) {
	if err := f.loadLocked(); err != nil {
		return State{}, false, err
	}
	changed := false
	// new/ → cur/.
	names, err := readNames(filepath.Join(f.Dir, "new"))
	if err != nil {
		return State{}, false, fmt.Errorf("read mailbox %s: %w", f.Dir, err)
	}
	for _, n := range names {
		to := n
		if !strings.Contains(n, ":") {
			to = n + ":2,"
		}
		if err := os.Rename(filepath.Join(f.Dir, "new", n), filepath.Join(f.Dir, "cur", to)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return State{}, false, fmt.Errorf("read mailbox %s: %w", f.Dir, err)
		}
		changed = true
	}
	names, err = readNames(filepath.Join(f.Dir, "cur"))
	if err != nil {
		return State{}, false, fmt.Errorf("read mailbox %s: %w", f.Dir, err)
	}
	sort.Strings(names) // delivery names start with the time received
	seen := make(map[string]bool, len(names))
	var msgs []Message
	var fresh []string
	for _, n := range names {
		key, flags := SplitName(n)
		if seen[key] {
			continue // two files for one key (a crash between link and unlink): the first
		}
		seen[key] = true
		si, ok := f.stats[key]
		if !ok {
			fi, err := os.Stat(filepath.Join(f.Dir, "cur", n))
			if err != nil {
				continue // gone meanwhile
			}
			si = statInfo{fi.Size(), fi.ModTime()}
			f.stats[key] = si
		}
		uid, ok := f.uids[key]
		if !ok {
			fresh = append(fresh, key)
		}
		msgs = append(msgs, Message{UID: uid, Key: key, Name: n, Flags: flags, Size: si.size, Date: si.date})
	}
	if len(fresh) > 0 {
		for _, k := range fresh {
			f.uids[k] = f.next
			f.next++
		}
		for i := range msgs {
			if msgs[i].UID == 0 {
				msgs[i].UID = f.uids[msgs[i].Key]
			}
		}
	}
	// Forget what is gone.
	gone := false
	for k := range f.uids {
		if !seen[k] {
			delete(f.uids, k)
			delete(f.stats, k)
			gone = true
		}
	}
	if len(fresh) > 0 || gone {
		if err := f.saveLocked(); err != nil {
			return State{}, false, err
		}
		changed = true
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].UID < msgs[j].UID })
	if !changed && !sameMessages(f.msgs, msgs) {
		changed = true
	}
	f.msgs = msgs
	return f.stateLocked(), changed, nil
}

func sameMessages(a, b []Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].UID != b[i].UID || a[i].Name != b[i].Name {
			return false
		}
	}
	return true
}

func (f *Folder) stateLocked() State {
	return State{UIDValidity: f.validity, UIDNext: f.next, Messages: append([]Message(nil), f.msgs...)}
}

// loadLocked reads the UID list once, or again when another process
// rewrote it.
func (f *Folder) loadLocked() error {
	path := filepath.Join(f.Dir, UIDListFile)
	fi, err := os.Stat(path)
	if f.loaded && (err != nil || fi.ModTime().Equal(f.listMod)) {
		return nil
	}
	f.uids, f.stats = map[string]uint32{}, map[string]statInfo{}
	f.loaded = true
	if errors.Is(err, fs.ErrNotExist) {
		f.validity, f.next = uint32(time.Now().Unix()), 1
		return f.saveLocked()
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	v, n, uids, err := ParseUIDList(data)
	if err != nil {
		// A damaged list cannot be trusted: start a new UIDVALIDITY, so
		// clients drop what they cached instead of mixing messages up.
		f.validity, f.next = uint32(time.Now().Unix()), 1
		return f.saveLocked()
	}
	f.validity, f.next, f.uids, f.listMod = v, n, uids, fi.ModTime()
	return nil
}

// ParseUIDList reads a UID list: UIDVALIDITY, the next UID and the UID of
// each key. It refuses a list whose UIDs are not below the next UID or
// repeat.
func ParseUIDList(data []byte) (validity, next uint32, uids map[string]uint32, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	if !sc.Scan() {
		return 0, 0, nil, errors.New("empty UID list")
	}
	head := strings.Fields(sc.Text())
	if len(head) != 4 || head[0]+" "+head[1] != uidListMagic {
		return 0, 0, nil, errors.New("not a certrelay UID list")
	}
	v, err1 := strconv.ParseUint(head[2], 10, 32)
	n, err2 := strconv.ParseUint(head[3], 10, 32)
	if err1 != nil || err2 != nil || v == 0 || n == 0 {
		return 0, 0, nil, errors.New("bad UID list header")
	}
	uids = map[string]uint32{}
	used := map[uint32]bool{}
	for sc.Scan() {
		uidText, key, ok := strings.Cut(sc.Text(), " ")
		u, err := strconv.ParseUint(uidText, 10, 32)
		if !ok || err != nil || u == 0 || u >= n || key == "" || used[uint32(u)] || strings.ContainsAny(key, "/ ") {
			return 0, 0, nil, fmt.Errorf("bad UID list line %q", sc.Text())
		}
		used[uint32(u)] = true
		uids[key] = uint32(u)
	}
	if err := sc.Err(); err != nil {
		return 0, 0, nil, err
	}
	return uint32(v), uint32(n), uids, nil
}

func (f *Folder) saveLocked() error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d %d\n", uidListMagic, f.validity, f.next)
	type kv struct {
		k string
		u uint32
	}
	list := make([]kv, 0, len(f.uids))
	for k, u := range f.uids {
		list = append(list, kv{k, u})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].u < list[j].u })
	for _, e := range list {
		fmt.Fprintf(&b, "%d %s\n", e.u, e.k)
	}
	path := filepath.Join(f.Dir, UIDListFile)
	if err := safeio.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil {
		f.listMod = fi.ModTime()
	}
	return nil
}

// UIDValidity returns the folder's UIDVALIDITY.
func (f *Folder) UIDValidity() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.loadLocked()
	return f.validity
}

// SplitName splits a file name of cur/ into its key and its flags.
func SplitName(name string) (key, flags string) {
	key, info, ok := strings.Cut(name, ":")
	if !ok {
		return name, ""
	}
	if rest, ok := strings.CutPrefix(info, "2,"); ok {
		return key, sortFlags(rest)
	}
	return key, ""
}

func sortFlags(s string) string {
	b := []byte(s)
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	out := b[:0]
	for i, c := range b {
		if i > 0 && c == b[i-1] {
			continue
		}
		out = append(out, c)
	}
	return string(out)
}

// find returns the index of uid in f.msgs, or -1.
func (f *Folder) find(uid uint32) int {
	i := sort.Search(len(f.msgs), func(i int) bool { return f.msgs[i].UID >= uid })
	if i < len(f.msgs) && f.msgs[i].UID == uid {
		return i
	}
	return -1
}

// ErrGone is returned for a message that is no longer in the folder.
var ErrGone = errors.New("the message is no longer in the mailbox")

// SetFlags gives message uid exactly the flag letters flags (renaming
// its file) and returns it as it is now.
func (f *Folder) SetFlags(uid uint32, flags string) (Message, error) {
	f.mu.Lock()
	m, changed, err := f.setFlagsLocked(uid, sortFlags(flags))
	f.mu.Unlock()
	if changed {
		announce(f.Dir)
	}
	return m, err
}

func (f *Folder) setFlagsLocked(uid uint32, flags string) (Message, bool, error) {
	i := f.find(uid)
	if i < 0 {
		return Message{}, false, ErrGone
	}
	m := &f.msgs[i]
	if m.Flags == flags {
		return *m, false, nil
	}
	name := m.Key + ":2," + flags
	err := os.Rename(filepath.Join(f.Dir, "cur", m.Name), filepath.Join(f.Dir, "cur", name))
	if errors.Is(err, fs.ErrNotExist) {
		// Renamed by someone else: read the folder again and retry once.
		if _, _, err := f.syncLocked(); err != nil {
			return Message{}, false, err
		}
		if i = f.find(uid); i < 0 {
			return Message{}, false, ErrGone
		}
		m = &f.msgs[i]
		err = os.Rename(filepath.Join(f.Dir, "cur", m.Name), filepath.Join(f.Dir, "cur", name))
	}
	if err != nil {
		return Message{}, false, fmt.Errorf("set flags in %s: %w", f.Dir, err)
	}
	m.Name, m.Flags = name, flags
	return *m, true, nil
}

// Remove deletes the messages uids (those already gone are ignored);
// the removals are durable when it returns.
func (f *Folder) Remove(uids []uint32) error {
	f.mu.Lock()
	n := 0
	var err error
	for _, uid := range uids {
		i := f.find(uid)
		if i < 0 {
			continue
		}
		if rerr := os.Remove(f.msgs[i].Path(f.Dir)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("remove a message from %s: %w", f.Dir, rerr)
			break
		}
		delete(f.uids, f.msgs[i].Key)
		delete(f.stats, f.msgs[i].Key)
		f.msgs = append(f.msgs[:i], f.msgs[i+1:]...)
		n++
	}
	if n > 0 {
		if serr := safeio.SyncDir(filepath.Join(f.Dir, "cur")); serr != nil && err == nil {
			err = serr
		}
		if serr := f.saveLocked(); serr != nil && err == nil {
			err = serr
		}
	}
	f.mu.Unlock()
	if n > 0 {
		announce(f.Dir)
	}
	return err
}

var appendSeq struct {
	sync.Mutex
	n uint64
}

// Add stores a message (APPEND, COPY): written to tmp/, fsynced, moved to
// cur/ with flags, and given a UID at once. date, when not zero, becomes
// its internal date. It returns the message as stored.
func (f *Folder) Add(r io.Reader, flags string, date time.Time) (Message, error) {
	appendSeq.Lock()
	appendSeq.n++
	seq := appendSeq.n
	appendSeq.Unlock()
	now := time.Now()
	key := fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), seq, host())
	tmp := filepath.Join(f.Dir, "tmp", key)
	w, err := create(tmp)
	if err != nil {
		return Message{}, fmt.Errorf("store a message in %s: %w", f.Dir, err)
	}
	n, err := io.Copy(w, r)
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil && !date.IsZero() {
		err = os.Chtimes(tmp, date, date)
	}
	flags = sortFlags(flags)
	name := key + ":2," + flags
	if date.IsZero() {
		date = now
	}
	// The rename and the UID are given under the lock, so a Sync never
	// finds the file without its UID.
	f.mu.Lock()
	if err == nil {
		err = f.loadLocked()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(f.Dir, "cur", name))
	}
	if err == nil {
		err = safeio.SyncDir(filepath.Join(f.Dir, "cur"))
	}
	if err != nil {
		f.mu.Unlock()
		os.Remove(tmp)
		return Message{}, fmt.Errorf("store a message in %s: %w", f.Dir, err)
	}
	var m Message
	{
		m = Message{UID: f.next, Key: key, Name: name, Flags: flags, Size: n, Date: date}
		f.uids[key] = f.next
		f.stats[key] = statInfo{n, date}
		f.next++
		f.msgs = append(f.msgs, m)
		err = f.saveLocked()
	}
	f.mu.Unlock()
	if err != nil {
		return Message{}, err
	}
	announce(f.Dir)
	return m, nil
}

// Open opens message uid for reading; a file renamed meanwhile by another
// session is found again.
func (f *Folder) Open(uid uint32) (*os.File, Message, error) {
	for attempt := 0; ; attempt++ {
		f.mu.Lock()
		i := f.find(uid)
		var m Message
		if i >= 0 {
			m = f.msgs[i]
		}
		f.mu.Unlock()
		if i < 0 {
			return nil, Message{}, ErrGone
		}
		r, err := os.Open(m.Path(f.Dir))
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt > 0 {
			return r, m, err
		}
		if _, err := f.Sync(); err != nil {
			return nil, Message{}, err
		}
	}
}

// Watching for changes: delivery (Deliver), and every change a Folder
// makes, is announced with the folder's directory, so an IMAP client in
// IDLE hears of a message the moment SMTP delivers it.
var watch struct {
	sync.RWMutex
	fns map[int]func(dir string)
	n   int
}

// Watch registers fn to be told of changes to any folder (its directory,
// cleaned); it must not block. It returns the function that unregisters
// it.
func Watch(fn func(dir string)) (cancel func()) {
	watch.Lock()
	defer watch.Unlock()
	if watch.fns == nil {
		watch.fns = map[int]func(string){}
	}
	watch.n++
	id := watch.n
	watch.fns[id] = fn
	return func() {
		watch.Lock()
		delete(watch.fns, id)
		watch.Unlock()
	}
}

func announce(dir string) {
	watch.RLock()
	defer watch.RUnlock()
	for _, fn := range watch.fns {
		fn(dir)
	}
}

func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	return out, nil
}

// Folders of a mailbox (Maildir++): INBOX is the mailbox's own directory,
// and folder "A.B" is its subdirectory ".A.B"; "." separates levels.

// FolderDelimiter separates the levels of folder names.
const FolderDelimiter = '.'

// FolderDir returns the directory of folder name in the mailbox at root
// ("INBOX", in any case, is root itself), or an error naming what is
// wrong with the name.
func FolderDir(root, name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		return root, nil
	}
	if name == "" || strings.ContainsAny(name, "/\\\x00\r\n") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") || len(name) > 200 {
		return "", fmt.Errorf("%q is not a folder name this server accepts (no '/', no empty level, at most 200 bytes)", name)
	}
	if strings.HasPrefix(strings.ToUpper(name), "INBOX.") {
		return "", fmt.Errorf("folders cannot be made below INBOX here; use %q", name[6:])
	}
	return filepath.Join(root, "."+name), nil
}

// FolderNames lists the folders of the mailbox at root: INBOX first, then
// the others sorted.
func FolderNames(root string) ([]string, error) {
	es, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	out := []string{"INBOX"}
	var rest []string
	for _, e := range es {
		n := e.Name()
		if e.IsDir() && len(n) > 1 && n[0] == '.' && n != ".." && IsMaildir(filepath.Join(root, n)) {
			rest = append(rest, n[1:])
		}
	}
	sort.Strings(rest)
	return append(out, rest...), nil
}

// CreateFolder makes folder name in the mailbox at root.
func CreateFolder(root, name string) error {
	dir, err := FolderDir(root, name)
	if err != nil {
		return err
	}
	if IsMaildir(dir) {
		return fs.ErrExist
	}
	return makeMaildir(dir)
}

// DeleteFolder removes folder name and its messages (not INBOX).
func DeleteFolder(root, name string) error {
	dir, err := FolderDir(root, name)
	if err != nil {
		return err
	}
	if dir == root {
		return errors.New("INBOX cannot be deleted")
	}
	if !IsMaildir(dir) {
		return fs.ErrNotExist
	}
	folders.Delete(filepath.Clean(dir))
	// Rename first, so the folder disappears at once and whole.
	tmp := filepath.Join(root, ".deleted-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Rename(dir, tmp); err != nil {
		return err
	}
	if err := safeio.SyncDir(root); err != nil {
		return err
	}
	return os.RemoveAll(tmp)
}

// RenameFolder renames folder from to to (not INBOX).
func RenameFolder(root, from, to string) error {
	src, err := FolderDir(root, from)
	if err != nil {
		return err
	}
	dst, err := FolderDir(root, to)
	if err != nil {
		return err
	}
	if src == root || dst == root {
		return errors.New("INBOX cannot be renamed here")
	}
	if !IsMaildir(src) {
		return fs.ErrNotExist
	}
	if _, err := os.Stat(dst); err == nil {
		return fs.ErrExist
	}
	folders.Delete(filepath.Clean(src))
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	return safeio.SyncDir(root)
}
