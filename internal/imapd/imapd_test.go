package imapd

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"

	"certrelay/internal/maildir"
)

var caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {}, imap.CapESearch: {}}

// serve starts an IMAP server (plain text allowed: the listener's TLS is
// internal/access's business) over a mailbox at root/box.
func serve(t *testing.T, root string) string {
	t.Helper()
	b := New(Options{Login: func(user, pass string, _ net.Addr, _ bool) (string, error) {
		if user == "alice@example.test" && pass == "correct horse" {
			return filepath.Join(root, "box"), nil
		}
		return "", imapserver.ErrAuthFailed
	}})
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return b.NewSession(c), nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       testLogger{t},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type testLogger struct{ t *testing.T }

func (l testLogger) Printf(f string, a ...any) { l.t.Logf(f, a...) }

func deliver(t *testing.T, root, id, body string) {
	t.Helper()
	if _, err := maildir.Deliver(root, "box", maildir.Key{MsgID: id, Received: time.Now()}, []byte(body)); err != nil {
		t.Fatal(err)
	}
}

func dial(t *testing.T, addr string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice@example.test", "correct horse").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFetchStoreExpungeAndUIDsStay(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m1", "Subject: first\r\nFrom: a@example.test\r\n\r\nhello\r\n")
	deliver(t, root, "m2", "Subject: second\r\n\r\nworld\r\n")
	addr := serve(t, root)
	c := dial(t, addr, nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 || sel.UIDNext != 3 {
		t.Fatalf("SELECT: %d messages, UIDNEXT %d", sel.NumMessages, sel.UIDNext)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Flags: true, Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{},
		BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Envelope.Subject != "first" || !strings.Contains(string(msgs[1].FindBodySection(&imap.FetchItemBodySection{})), "world") {
		t.Fatalf("FETCH: %+v", msgs)
	}
	// FETCH BODY[] set \Seen, in the file name.
	st, _ := mustFolder(t, root).Sync()
	if !st.Messages[0].HasFlag('S') {
		t.Errorf("FETCH BODY[] did not set \\Seen: %+v", st.Messages[0])
	}
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	res, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "second"}}}, nil).Wait()
	if err != nil || len(res.AllUIDs()) != 1 || res.AllUIDs()[0] != 2 {
		t.Fatalf("UID SEARCH after EXPUNGE: %v %v", res, err)
	}
	if err := c.Create("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(imap.UIDSetNum(2), "Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()

	// Another connection (as after a restart: the UIDs are in the file).
	c2 := dial(t, addr, nil)
	sel, err = c2.Select("Archive", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT Archive: %+v %v", sel, err)
	}
	archived := sel.UIDValidity
	sel, _ = c2.Select("INBOX", nil).Wait()
	if sel.NumMessages != 0 || sel.UIDNext != 3 {
		t.Errorf("INBOX after MOVE: %d messages, UIDNEXT %d (UIDs are never reused)", sel.NumMessages, sel.UIDNext)
	}
	sel2, _ := c2.Select("Archive", nil).Wait()
	if sel2.UIDValidity != archived {
		t.Error("UIDVALIDITY changed between two SELECTs")
	}
}

func mustFolder(t *testing.T, root string) *maildir.Folder {
	t.Helper()
	f, err := maildir.OpenFolder(filepath.Join(root, "box"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestIdleSeesDelivery(t *testing.T) {
	root := t.TempDir()
	deliver(t, root, "m1", "Subject: first\r\n\r\nhello\r\n")
	addr := serve(t, root)
	exists := make(chan uint32, 4)
	c := dial(t, addr, &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
		if d.NumMessages != nil {
			exists <- *d.NumMessages
		}
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	deliver(t, root, "m2", "Subject: second\r\n\r\nworld\r\n")
	select {
	case n := <-exists:
		if n != 2 {
			t.Errorf("EXISTS %d, want 2", n)
		}
	case <-time.After(3 * time.Second): // well before RefreshInterval
		t.Fatal("a delivery did not reach the idling client")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestAppendAndFlagsSurvive(t *testing.T) {
	root := t.TempDir()
	addr := serve(t, root)
	c := dial(t, addr, nil)
	body := "Subject: appended\r\n\r\nbody\r\n"
	a := c.Append("INBOX", int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}})
	io.WriteString(a, body)
	a.Close()
	data, err := a.Wait()
	if err != nil || data.UID != 1 {
		t.Fatalf("APPEND: %+v %v", data, err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{Flags: true, RFC822Size: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].RFC822Size != int64(len(body)) || len(msgs[0].Flags) != 2 {
		t.Fatalf("FETCH: %+v %v", msgs, err)
	}
	if _, err := c.Select("Nowhere", nil).Wait(); err == nil {
		t.Error("SELECT of a missing folder succeeded")
	}
	if err := c.Create("../escape", nil).Wait(); err == nil {
		t.Error("CREATE ../escape succeeded")
	}
}
