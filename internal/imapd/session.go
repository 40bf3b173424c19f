package imapd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"certrelay/internal/maildir"
)

// Options configure a Backend.
type Options struct {
	// Login checks a password and returns the directory of the user's
	// mailbox (its INBOX); it returns imapserver.ErrAuthFailed for a wrong
	// user or password, or an *imap.Error to answer (rate limiting).
	Login func(user, password string, remote net.Addr, tls bool) (root string, err error)
	// AppendLimit bounds an APPEND; default 35 MB.
	AppendLimit uint32
}

// Backend makes sessions. Safe for concurrent use; one per process is
// enough (its folders are shared by every session).
type Backend struct {
	o   Options
	reg *registry
}

// New returns a backend.
func New(o Options) *Backend {
	if o.AppendLimit == 0 {
		o.AppendLimit = 35 << 20
	}
	return &Backend{o: o, reg: newRegistry()}
}

// NewSession returns the session of one connection.
func (b *Backend) NewSession(c *imapserver.Conn) imapserver.Session {
	s := &Session{b: b, conn: c}
	w, ok := c.NetConn().(*Conn)
	if tc, isTLS := c.NetConn().(*tls.Conn); isTLS { // implicit TLS over a Conn
		if w, ok = tc.NetConn().(*Conn); ok {
			w.tlsStarted = true
		}
	}
	if ok {
		w.ic = c
		s.idle = &idleState{}
		w.idle = s.idle
	}
	return s
}

// Session is one IMAP connection's state.
type Session struct {
	b    *Backend
	conn *imapserver.Conn
	root string // the mailbox's directory, after login
	sel  *view
	idle *idleState // IDLE without a waiting goroutine, on a Conn (conn.go)
}

// view is a selected folder, as this session sees it.
type view struct {
	m         *mbox
	t         *imapserver.SessionTracker
	readOnly  bool
	searchRes imap.UIDSet
}

var _ imapserver.SessionIMAP4rev2 = (*Session)(nil)
var _ imapserver.SessionAppendLimit = (*Session)(nil)

// Close ends the session.
func (s *Session) Close() error {
	s.unselect()
	return nil
}

// Login checks the password (Options.Login).
func (s *Session) Login(user, password string) error {
	_, isTLS := s.conn.NetConn().(*tls.Conn)
	root, err := s.b.o.Login(user, password, s.conn.NetConn().RemoteAddr(), isTLS)
	if err != nil {
		return err
	}
	s.root = root
	return nil
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (s *Session) AppendLimit() uint32 { return s.b.o.AppendLimit }

func (s *Session) dir(name string) (string, error) {
	d, err := maildir.FolderDir(s.root, name)
	if err != nil {
		return "", badName(err)
	}
	return d, nil
}

// Select opens a folder (SELECT, EXAMINE).
func (s *Session) Select(name string, o *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	dir, err := s.dir(name)
	if err != nil {
		return nil, err
	}
	if !maildir.IsMaildir(dir) {
		if dir != s.root {
			return nil, errNoMailbox
		}
		if _, err := maildir.OpenFolder(dir); err != nil { // a mailbox no mail reached yet
			return nil, err
		}
	}
	m, err := s.b.reg.open(dir)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refreshIfChangedLocked(); err != nil {
		s.b.reg.release(m)
		return nil, err
	}
	s.sel = &view{m: m, t: m.tracker.NewSession(), readOnly: o != nil && o.ReadOnly}
	data := &imap.SelectData{
		Flags:          systemFlags,
		PermanentFlags: systemFlags,
		NumMessages:    uint32(len(m.st.Messages)),
		UIDNext:        imap.UID(m.st.UIDNext),
		UIDValidity:    m.st.UIDValidity,
	}
	if s.sel.readOnly {
		data.PermanentFlags = nil
	}
	for i, msg := range m.st.Messages {
		if !msg.HasFlag('S') {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

func (s *Session) unselect() {
	if s.idle != nil {
		s.idle.end()
	}
	if s.sel != nil {
		s.sel.t.Close()
		s.b.reg.release(s.sel.m)
		s.sel = nil
	}
}

// Unselect implements UNSELECT and CLOSE.
func (s *Session) Unselect() error {
	s.unselect()
	return nil
}

// Create makes a folder.
func (s *Session) Create(name string, _ *imap.CreateOptions) error {
	err := maildir.CreateFolder(s.root, name)
	switch {
	case errors.Is(err, fs.ErrExist):
		return errExists
	case err != nil:
		return badName(err)
	}
	return nil
}

// Delete removes a folder and its messages.
func (s *Session) Delete(name string) error {
	err := maildir.DeleteFolder(s.root, name)
	if errors.Is(err, fs.ErrNotExist) {
		return errNoMailbox
	}
	if err != nil {
		return badName(err)
	}
	return nil
}

// Rename renames a folder.
func (s *Session) Rename(from, to string, _ *imap.RenameOptions) error {
	err := maildir.RenameFolder(s.root, from, to)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errNoMailbox
	case errors.Is(err, fs.ErrExist):
		return errExists
	case err != nil:
		return badName(err)
	}
	return nil
}

// Subscribe and Unsubscribe are accepted; every folder is listed as
// subscribed.
func (s *Session) Subscribe(string) error   { return nil }
func (s *Session) Unsubscribe(string) error { return nil }

// Namespace: one personal namespace, "." as the delimiter.
func (s *Session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: maildir.FolderDelimiter}}}, nil
}

// List lists the folders matching the patterns.
func (s *Session) List(w *imapserver.ListWriter, ref string, patterns []string, o *imap.ListOptions) error {
	if len(patterns) == 0 || (len(patterns) == 1 && patterns[0] == "") {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: maildir.FolderDelimiter})
	}
	names, err := maildir.FolderNames(s.root)
	if err != nil {
		return err
	}
	for _, name := range names {
		match := false
		for _, p := range patterns {
			match = match || imapserver.MatchList(name, maildir.FolderDelimiter, ref, p)
		}
		if !match {
			continue
		}
		data := &imap.ListData{Mailbox: name, Delim: maildir.FolderDelimiter, Attrs: []imap.MailboxAttr{imap.MailboxAttrSubscribed}}
		if o != nil && o.ReturnStatus != nil {
			if st, err := s.Status(name, o.ReturnStatus); err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// statusCounts are what STATUS reports of a folder.
type statusCounts struct {
	st                 maildir.State // UIDNext and UIDValidity only
	n, unseen, deleted uint32
	size               int64
}

func countStatus(st maildir.State) statusCounts {
	c := statusCounts{st: maildir.State{UIDNext: st.UIDNext, UIDValidity: st.UIDValidity}, n: uint32(len(st.Messages))}
	for _, m := range st.Messages {
		if !m.HasFlag('S') {
			c.unseen++
		}
		if m.HasFlag('T') {
			c.deleted++
		}
		c.size += m.Size
	}
	return c
}

// Status reports a folder's counts.
func (s *Session) Status(name string, o *imap.StatusOptions) (*imap.StatusData, error) {
	dir, err := s.dir(name)
	if err != nil {
		return nil, err
	}
	if !maildir.IsMaildir(dir) && dir != s.root {
		return nil, errNoMailbox
	}
	var c statusCounts
	if m := s.b.reg.lookup(dir); m != nil {
		// Counted under the lock: a refresh rewrites m.st's messages in
		// place.
		m.mu.Lock()
		if err = m.refreshLocked(); err == nil {
			c = countStatus(m.st)
		}
		m.mu.Unlock()
	} else {
		var f *maildir.Folder
		if f, err = maildir.OpenFolder(dir); err == nil {
			var st maildir.State
			if st, err = f.Sync(); err == nil {
				c = countStatus(st)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	data := &imap.StatusData{Mailbox: name}
	st, n, unseen, deleted, size := c.st, c.n, c.unseen, c.deleted, c.size
	zero := uint32(0)
	if o.NumMessages {
		data.NumMessages = &n
	}
	if o.UIDNext {
		data.UIDNext = imap.UID(st.UIDNext)
	}
	if o.UIDValidity {
		data.UIDValidity = st.UIDValidity
	}
	if o.NumUnseen {
		data.NumUnseen = &unseen
	}
	if o.NumDeleted {
		data.NumDeleted = &deleted
	}
	if o.Size {
		data.Size = &size
	}
	if o.NumRecent {
		data.NumRecent = &zero
	}
	return data, nil
}

// Append stores a message in a folder.
func (s *Session) Append(name string, r imap.LiteralReader, o *imap.AppendOptions) (*imap.AppendData, error) {
	dir, err := s.dir(name)
	if err != nil {
		return nil, err
	}
	if !maildir.IsMaildir(dir) && dir != s.root {
		return nil, errTryCreate
	}
	f, err := maildir.OpenFolder(dir)
	if err != nil {
		return nil, err
	}
	msg, err := f.Add(r, letters(o.Flags), o.Time)
	if err != nil {
		return nil, err
	}
	s.refreshSelected(dir)
	return &imap.AppendData{UID: imap.UID(msg.UID), UIDValidity: f.UIDValidity()}, nil
}

// refreshSelected reads the selected folder again when dir is it, so the
// session's own change is reported with its command.
func (s *Session) refreshSelected(dir string) {
	if m := s.b.reg.lookup(dir); m != nil {
		m.mu.Lock()
		_ = m.refreshLocked()
		m.mu.Unlock()
	}
}

// Poll reads the selected folder and writes what changed.
func (s *Session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	s.refreshSelected(s.sel.m.dir)
	return s.sel.t.Poll(w, allowExpunge)
}

// Idle writes changes as they come until stop. On a Conn it returns at
// once and the changes are written while the connection waits for DONE
// (conn.go).
func (s *Session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.idle != nil {
		if s.sel != nil {
			s.idle.begin(w, stop, s.sel.t, s.sel.m)
		}
		return nil
	}
	if s.sel == nil {
		<-stop
		return nil
	}
	return s.sel.t.Idle(w, stop)
}

// forEach calls fn for each message of numSet in the selected folder,
// with its sequence number in the server's view, under the folder's lock.
func (s *Session) forEach(numSet imap.NumSet, fn func(seq uint32, i int, msg maildir.Message) error) error {
	v := s.sel
	m := v.m
	m.mu.Lock()
	defer m.mu.Unlock()
	msgs := m.st.Messages
	switch set := numSet.(type) {
	case imap.SeqSet:
		if imap.IsSearchRes(numSet) {
			return s.forUIDs(v.searchRes, msgs, fn)
		}
		max := uint32(len(msgs))
		for i := range msgs {
			seq := uint32(i + 1)
			cseq := v.t.EncodeSeqNum(seq)
			if cseq != 0 && seqContains(set, cseq, max) {
				if err := fn(seq, i, msgs[i]); err != nil {
					return err
				}
			}
		}
	case imap.UIDSet:
		return s.forUIDs(set, msgs, fn)
	}
	return nil
}

func (s *Session) forUIDs(set imap.UIDSet, msgs []maildir.Message, fn func(uint32, int, maildir.Message) error) error {
	var max imap.UID
	if len(msgs) > 0 {
		max = imap.UID(msgs[len(msgs)-1].UID)
	}
	for i := range msgs {
		if uidContains(set, imap.UID(msgs[i].UID), max) {
			if err := fn(uint32(i+1), i, msgs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// seqContains is SeqSet.Contains with "*" as max.
func seqContains(set imap.SeqSet, n, max uint32) bool {
	for _, r := range set {
		a, b := r.Start, r.Stop
		if a == 0 {
			a = max
		}
		if b == 0 {
			b = max
		}
		if a > b {
			a, b = b, a
		}
		if n >= a && n <= b {
			return true
		}
	}
	return false
}

func uidContains(set imap.UIDSet, n, max imap.UID) bool {
	for _, r := range set {
		a, b := r.Start, r.Stop
		if a == 0 {
			a = max
		}
		if b == 0 {
			b = max
		}
		if a > b {
			a, b = b, a
		}
		if n >= a && n <= b {
			return true
		}
	}
	return false
}

// Expunge removes the messages flagged \Deleted (among uids, when given).
func (s *Session) Expunge(_ *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	var gone []uint32
	m := s.sel.m
	m.mu.Lock()
	for _, msg := range m.st.Messages {
		if msg.HasFlag('T') && (uids == nil || uids.Contains(imap.UID(msg.UID))) {
			gone = append(gone, msg.UID)
		}
	}
	m.mu.Unlock()
	if len(gone) == 0 {
		return nil
	}
	if err := m.folder.Remove(gone); err != nil {
		return err
	}
	s.refreshSelected(m.dir) // the expunges reach this session by Poll
	return nil
}

// Fetch writes the items asked for.
func (s *Session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, o *imap.FetchOptions) error {
	markSeen := false
	for _, bs := range o.BodySection {
		markSeen = markSeen || !bs.Peek
	}
	markSeen = markSeen && !s.sel.readOnly
	needBody := len(o.BodySection) > 0 || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 || o.BodyStructure != nil || o.Envelope
	return s.forEach(numSet, func(seq uint32, i int, msg maildir.Message) error {
		if markSeen && !msg.HasFlag('S') {
			if nm, err := s.sel.m.folder.SetFlags(msg.UID, msg.Flags+"S"); err == nil {
				msg = nm
				s.sel.m.st.Messages[i] = nm
				s.sel.m.tracker.QueueMessageFlags(seq, imap.UID(msg.UID), imapFlags(msg.Flags), s.sel.t)
				s.sel.m.kickIdlers()
				o.Flags = true
			}
		}
		var buf []byte
		if needBody {
			var err error
			if buf, err = s.read(msg); err != nil {
				return nil // gone meanwhile: nothing to send for it
			}
		}
		rw := w.CreateMessage(s.sel.t.EncodeSeqNum(seq))
		rw.WriteUID(imap.UID(msg.UID))
		if o.Flags {
			rw.WriteFlags(imapFlags(msg.Flags))
		}
		if o.InternalDate {
			rw.WriteInternalDate(msg.Date)
		}
		if o.RFC822Size {
			rw.WriteRFC822Size(msg.Size)
		}
		if o.Envelope {
			if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(buf))); err == nil {
				rw.WriteEnvelope(imapserver.ExtractEnvelope(h))
			}
		}
		if o.BodyStructure != nil {
			rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(buf)))
		}
		for _, bs := range o.BodySection {
			part := imapserver.ExtractBodySection(bytes.NewReader(buf), bs)
			wc := rw.WriteBodySection(bs, int64(len(part)))
			_, werr := wc.Write(part)
			if cerr := wc.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return werr
			}
		}
		for _, bs := range o.BinarySection {
			part := imapserver.ExtractBinarySection(bytes.NewReader(buf), bs)
			wc := rw.WriteBinarySection(bs, int64(len(part)))
			_, werr := wc.Write(part)
			if cerr := wc.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return werr
			}
		}
		for _, bss := range o.BinarySectionSize {
			rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(buf), bss))
		}
		return rw.Close()
	})
}

// read returns a message's content.
func (s *Session) read(msg maildir.Message) ([]byte, error) {
	f, err := os.Open(msg.Path(s.sel.m.dir))
	if errors.Is(err, fs.ErrNotExist) {
		var r *os.File
		r, _, err = s.sel.m.folder.Open(msg.UID)
		f = r
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Store changes flags.
func (s *Session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, o *imap.StoreOptions) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	err := s.forEach(numSet, func(seq uint32, i int, msg maildir.Message) error {
		nm, err := s.sel.m.folder.SetFlags(msg.UID, applyStore(msg.Flags, flags))
		if err != nil {
			if isNotExist(err) {
				return nil
			}
			return err
		}
		if nm.Flags != msg.Flags {
			s.sel.m.st.Messages[i] = nm
			s.sel.m.tracker.QueueMessageFlags(seq, imap.UID(nm.UID), imapFlags(nm.Flags), s.sel.t)
			s.sel.m.kickIdlers()
		}
		return nil
	})
	if err != nil || flags.Silent {
		return err
	}
	return s.Fetch(w, numSet, &imap.FetchOptions{Flags: true, UID: true})
}

// Copy copies messages to another folder (UIDPLUS: COPYUID).
func (s *Session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	dir, err := s.dir(dest)
	if err != nil {
		return nil, err
	}
	if !maildir.IsMaildir(dir) && dir != s.root {
		return nil, errTryCreate
	}
	to, err := maildir.OpenFolder(dir)
	if err != nil {
		return nil, err
	}
	var todo []maildir.Message
	if err := s.forEach(numSet, func(_ uint32, _ int, msg maildir.Message) error {
		todo = append(todo, msg)
		return nil
	}); err != nil {
		return nil, err
	}
	data := &imap.CopyData{UIDValidity: to.UIDValidity()}
	for _, msg := range todo {
		r, _, err := s.sel.m.folder.Open(msg.UID)
		if err != nil {
			continue
		}
		nm, err := to.Add(r, msg.Flags, msg.Date)
		r.Close()
		if err != nil {
			return nil, err
		}
		data.SourceUIDs.AddNum(imap.UID(msg.UID))
		data.DestUIDs.AddNum(imap.UID(nm.UID))
	}
	s.refreshSelected(dir)
	return data, nil
}

// Move moves messages (RFC 6851): copied, then removed here; the
// expunges reach the session with the command's end.
func (s *Session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	data, err := s.Copy(numSet, dest)
	if err != nil {
		return err
	}
	var uids []uint32
	for _, r := range data.SourceUIDs {
		for u := r.Start; u <= r.Stop && u != 0; u++ {
			uids = append(uids, uint32(u))
		}
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	if err := s.sel.m.folder.Remove(uids); err != nil {
		return err
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	s.refreshSelected(s.sel.m.dir)
	return nil
}
