package imapd

import (
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"certrelay/internal/maildir"
)

// Search finds the messages matching criteria (RFC 3501 section 6.4.4;
// ESEARCH's MIN, MAX, COUNT and SAVE). A message's content is read only
// when a criterion needs it.
func (s *Session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, o *imap.SearchOptions) (*imap.SearchData, error) {
	var data imap.SearchData
	var seqs imap.SeqSet
	var uids imap.UIDSet
	m := s.sel.m
	m.mu.Lock()
	msgs := m.st.Messages
	max := uint32(len(msgs))
	maxUID := imap.UID(0)
	if len(msgs) > 0 {
		maxUID = imap.UID(msgs[len(msgs)-1].UID)
	}
	for i, msg := range msgs {
		seq := s.sel.t.EncodeSeqNum(uint32(i + 1))
		if !s.match(seq, msg, criteria, max, maxUID) {
			continue
		}
		uids.AddNum(imap.UID(msg.UID))
		num := uint32(msg.UID)
		if kind == imapserver.NumKindSeq {
			if seq == 0 {
				continue
			}
			seqs.AddNum(seq)
			num = seq
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	m.mu.Unlock()
	if kind == imapserver.NumKindSeq {
		data.All = seqs
	} else {
		data.All = uids
	}
	if o != nil && o.ReturnSave {
		s.sel.searchRes = uids
	}
	return &data, nil
}

// lazy reads a message's content at most once.
type lazy struct {
	s   *Session
	msg maildir.Message
	buf []byte
	err error
	got bool
}

func (l *lazy) entity() *gomessage.Entity {
	if !l.got {
		l.got = true
		l.buf, l.err = l.s.read(l.msg)
	}
	e, _ := gomessage.Read(bytes.NewReader(l.buf))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e
}

func (s *Session) match(seq uint32, msg maildir.Message, c *imap.SearchCriteria, max uint32, maxUID imap.UID) bool {
	return s.matchLazy(seq, &lazy{s: s, msg: msg}, c, max, maxUID)
}

func (s *Session) matchLazy(seq uint32, l *lazy, c *imap.SearchCriteria, max uint32, maxUID imap.UID) bool {
	msg := l.msg
	for _, set := range c.SeqNum {
		if imap.IsSearchRes(set) {
			if !s.sel.searchRes.Contains(imap.UID(msg.UID)) {
				return false
			}
			continue
		}
		if seq == 0 || !seqContains(set, seq, max) {
			return false
		}
	}
	for _, set := range c.UID {
		if !uidContains(set, imap.UID(msg.UID), maxUID) {
			return false
		}
	}
	if !matchDate(msg.Date, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if b, ok := letterOf(f); !ok || !msg.HasFlag(b) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if b, ok := letterOf(f); ok && msg.HasFlag(b) {
			return false
		}
	}
	if c.Larger != 0 && msg.Size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && msg.Size >= c.Smaller {
		return false
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		h := mail.Header{Header: l.entity().Header}
		for _, fc := range c.Header {
			if !matchFields(h.FieldsByKey(fc.Key), fc.Value) {
				return false
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
				return false
			}
		}
	}
	for _, text := range c.Text {
		if !matchEntity(l.entity(), text, true) {
			return false
		}
	}
	for _, body := range c.Body {
		if !matchEntity(l.entity(), body, false) {
			return false
		}
	}
	for i := range c.Not {
		if s.matchLazy(seq, l, &c.Not[i], max, maxUID) {
			return false
		}
	}
	for _, or := range c.Or {
		if !s.matchLazy(seq, l, &or[0], max, maxUID) && !s.matchLazy(seq, l, &or[1], max, maxUID) {
			return false
		}
	}
	return true
}

// matchDate compares dates without time of day or zone (RFC 3501).
func matchDate(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	return before.IsZero() || t.Before(before)
}

func matchFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		if v, _ := fields.Text(); strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func matchEntity(e *gomessage.Entity, pattern string, header bool) bool {
	if pattern == "" {
		return true
	}
	if header && matchFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, header) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	buf, err := io.ReadAll(io.LimitReader(e.Body, 64<<20))
	if err != nil {
		return false
	}
	return bytes.Contains(bytes.ToLower(buf), bytes.ToLower([]byte(pattern)))
}
