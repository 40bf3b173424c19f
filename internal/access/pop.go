package access

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"time"

	"certrelay/internal/maildir"
	"certrelay/internal/pop3"
)

// servePOP runs a POP3 session: STLS is offered when a certificate serves
// the settings' name now (16062 otherwise, raised by CheckCertificates).
func (s *Service) servePOP(pr *proto, cfg *protoConfig, c net.Conn, implicit bool) {
	st := cfg.s
	pc := pop3.Config{
		Hostname:       cfg.host,
		PlainTextLogin: st.LoginType == PlainTextLogin,
		MaxLine:        st.MaxCommandSize,
		PreAuthTimeout: time.Duration(st.PreAuthenticatedConnectionTimeout),
		AuthTimeout:    time.Duration(st.AuthenticatedConnectionTimeout),
		SessionTimeout: time.Duration(st.ConnectionTimeout),
		Now:            s.o.Now,
		Login: func(_ context.Context, user, password string, remote net.Addr, _ bool) (pop3.Maildrop, error) {
			root, err := s.login(POP3, st, user, password, remote)
			switch {
			case errors.Is(err, errRateLimited):
				return nil, pop3.ErrRateLimited
			case err != nil:
				return nil, pop3.ErrAuthFailed
			}
			return openDrop(root)
		},
		LimitReached: func(l pop3.Limit, remote net.Addr) {
			value := ""
			switch l {
			case pop3.LimitLine:
				value = fmt.Sprint(st.MaxCommandSize)
			case pop3.LimitPreAuth:
				value = st.PreAuthenticatedConnectionTimeout.String()
			case pop3.LimitAuth:
				value = st.AuthenticatedConnectionTimeout.String()
			case pop3.LimitSession:
				value = st.ConnectionTimeout.String()
			case pop3.LimitPlainText:
				value = st.LoginType
			}
			s.limitReached(POP3, hostOf(remote), string(l), value)
		},
	}
	if !implicit {
		if tc, _ := s.o.Layer.Config(cfg.req); tc != nil {
			req := cfg.req
			pc.StartTLS = func(ctx context.Context, c net.Conn) (net.Conn, error) {
				ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				t, _, err := s.o.Layer.StartTLS(ctx, c, req)
				if err != nil {
					return nil, err
				}
				return t, nil
			}
		}
	}
	pop3.Serve(s.ctx, c, pc, implicit)
}

// The POP3 maildrop lock (RFC 1939 section 8: a maildrop is opened by one
// POP3 session at a time), within this process.
var dropLocks sync.Map // mailbox directory → struct{}

// drop is a mailbox's INBOX as a POP3 session sees it.
type drop struct {
	f    *maildir.Folder
	st   maildir.State
	dir  string
	once sync.Once
}

func openDrop(root string) (pop3.Maildrop, error) {
	dir := filepath.Clean(root)
	if _, busy := dropLocks.LoadOrStore(dir, struct{}{}); busy {
		return nil, pop3.ErrInUse
	}
	f, err := maildir.OpenFolder(dir)
	if err != nil {
		dropLocks.Delete(dir)
		return nil, err
	}
	st, err := f.Sync()
	if err != nil {
		dropLocks.Delete(dir)
		return nil, err
	}
	return &drop{f: f, st: st, dir: dir}, nil
}

func (d *drop) Messages() []pop3.Msg {
	out := make([]pop3.Msg, len(d.st.Messages))
	for i, m := range d.st.Messages {
		out[i] = pop3.Msg{Size: m.Size, UID: fmt.Sprintf("%d.%d", d.st.UIDValidity, m.UID)}
	}
	return out
}

func (d *drop) Open(i int) (io.ReadCloser, error) {
	r, _, err := d.f.Open(d.st.Messages[i].UID)
	return r, err
}

func (d *drop) Commit(del []int) error {
	uids := make([]uint32, len(del))
	for i, n := range del {
		uids[i] = d.st.Messages[n].UID
	}
	return d.f.Remove(uids)
}

func (d *drop) Close() { d.once.Do(func() { dropLocks.Delete(d.dir) }) }
