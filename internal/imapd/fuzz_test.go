package imapd

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"

	"certrelay/internal/maildir"
)

// pipeLn hands net.Pipe connections to an imapserver.
type pipeLn struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *pipeLn) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeLn) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeLn) Addr() net.Addr { return &net.TCPAddr{} }

// FuzzSession feeds arbitrary commands, after a login and a SELECT, to the
// IMAP server (go-imap's command parser) with this backend: nothing may
// panic or hang, and the folder must stay consistent — every message file
// has exactly one UID, UIDs ascend and stay below UIDNEXT.
func FuzzSession(f *testing.F) {
	f.Add("c FETCH 1:* (FLAGS BODY[] BODYSTRUCTURE ENVELOPE)\r\nd STORE 1 +FLAGS (\\Deleted)\r\ne EXPUNGE\r\n")
	f.Add("c UID MOVE 1:* Archive\r\nd CREATE Archive\r\ne UID COPY 1 Archive\r\nf SEARCH OR SUBJECT x NOT SEEN\r\n")
	f.Add("c APPEND INBOX (\\Seen) {5+}\r\nhello\r\nd STATUS INBOX (MESSAGES UIDNEXT)\r\ne LIST \"\" \"*\"\r\nf RENAME Archive Old\r\n")
	f.Add("c IDLE\r\nDONE\r\nd UID SEARCH UID 2:* LARGER 3\r\ne UID FETCH $ FLAGS\r\n")
	root := f.TempDir()
	box := filepath.Join(root, "box")
	b := New(Options{AppendLimit: 4096, Login: func(user, pass string, _ net.Addr, _ bool) (string, error) { return box, nil }})
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return b.NewSession(c), nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       quietLogger{},
	})
	ln := &pipeLn{ch: make(chan net.Conn), done: make(chan struct{})}
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, script string) {
		if _, err := maildir.Deliver(root, "box", maildir.Key{MsgID: "seed", Received: time.Unix(1700000000, 0)}, []byte("Subject: seed\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		cli, sv := net.Pipe()
		ln.ch <- sv
		cli.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			io.WriteString(cli, "a LOGIN u p\r\nb SELECT INBOX\r\n"+script+"\r\nz LOGOUT\r\n")
		}()
		r := bufio.NewReader(cli)
		for {
			line, err := r.ReadString('\n')
			if err != nil || strings.HasPrefix(line, "z OK") {
				break
			}
		}
		cli.Close()
		for _, name := range mustFolders(t, box) {
			dir, _ := maildir.FolderDir(box, name)
			fl, err := maildir.OpenFolder(dir)
			if err != nil {
				t.Fatal(err)
			}
			st, err := fl.Sync()
			if err != nil {
				t.Fatal(err)
			}
			files, _ := os.ReadDir(filepath.Join(dir, "cur"))
			if len(files) != len(st.Messages) {
				t.Fatalf("%s: %d files, %d messages indexed", name, len(files), len(st.Messages))
			}
			for i, m := range st.Messages {
				if m.UID == 0 || m.UID >= st.UIDNext || i > 0 && m.UID <= st.Messages[i-1].UID {
					t.Fatalf("%s: UIDs %+v, UIDNEXT %d", name, st.Messages, st.UIDNext)
				}
			}
		}
	})
}

func mustFolders(t *testing.T, root string) []string {
	names, err := maildir.FolderNames(root)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
