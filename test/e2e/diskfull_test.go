package e2e

import (
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDiskFull: the spool lives on a 4 MiB tmpfs that fills up. certrelay
// answers 452 4.3.1 instead of accepting what it cannot store, delivers
// every message it acknowledged with 250, and accepts mail again as soon
// as space returns — here when the test deletes a ballast file it put
// beside the spool (SQLite may need free space even to delete, so a file
// we control is the reliable way to give space back).
//
// Mounting needs root, as make test and CI run it; a failed mount fails
// the test.
func TestDiskFull(t *testing.T) {
	e := newEnv(t)
	m := newMailServer(t, e, "hub.contoso.test")
	spool := filepath.Join(e.data, "queue")
	mountTmpfs(t, spool, "4m")
	m.start()

	client := smtpClient{addr: m.addr, body: strings.Repeat(strings.Repeat("x", 76)+"\r\n", 16<<10/78)}
	var acked []string
	if err := client.send("diskfull 0"); err != nil {
		t.Fatalf("before the disk fills: %v", err)
	}
	acked = append(acked, "diskfull 0")
	m.waitDelivered(1)

	// Leave the spool a little room, then send until it is full.
	ballast := filepath.Join(spool, "ballast")
	fill(t, ballast, freeBytes(t, spool)-96<<10)
	var refused []string
	for i := 1; i <= 200 && len(refused) < 3; i++ {
		subject := fmt.Sprintf("diskfull %d", i)
		err := client.send(subject)
		var te *textproto.Error
		switch {
		case err == nil:
			acked = append(acked, subject)
		case errors.As(err, &te) && te.Code == 452 && strings.HasPrefix(te.Msg, "4.3.1"):
			refused = append(refused, subject)
		default:
			t.Fatalf("message %d on a full spool: %v, want 250 or 452 4.3.1\nserver log:\n%s", i, err, m.p.Logs())
		}
	}
	if len(refused) == 0 {
		t.Fatalf("%d messages accepted on a full spool (%d bytes free), never 452 4.3.1", len(acked), freeBytes(t, spool))
	}
	t.Logf("spool full after %d accepted messages: %s refused with 452 4.3.1", len(acked), strings.Join(refused, ", "))

	// Space returns: new mail is accepted again.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := client.send("after space returned")
		if err == nil {
			acked = append(acked, "after space returned")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused %v after space returned: %v\nserver log:\n%s", time.Since(deadline.Add(-20*time.Second)), err, m.p.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Nothing acknowledged is lost, nothing is delivered twice.
	msgs := m.waitDelivered(len(acked))
	count := map[string]int{}
	for _, msg := range msgs {
		for _, line := range strings.Split(msg, "\n") {
			if s, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "Subject: "); ok {
				count[s]++
				break
			}
		}
	}
	for _, s := range acked {
		if count[s] != 1 {
			t.Errorf("%q acknowledged with 250, delivered %d times", s, count[s])
		}
	}
	for _, s := range refused {
		if count[s] != 0 {
			t.Errorf("%q refused with 452 but delivered", s)
		}
	}
	waitSpoolEmpty(t, e)
}

// waitSpoolEmpty waits until queue list shows no message.
func waitSpoolEmpty(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var items []struct{ ID string }
		e.jsonOf(&items, "queue", "list")
		if len(items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still queued: %+v", len(items), items)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// smtpClient sends one message per connection, in plain text, with Go's
// net/smtp.
type smtpClient struct {
	addr string
	body string
}

func (c smtpClient) send(subject string) error {
	s, err := smtp.Dial(c.addr)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Hello("client.example.org"); err != nil {
		return err
	}
	if err := s.Mail("bob@example.org"); err != nil {
		return err
	}
	if err := s.Rcpt("alice@contoso.test"); err != nil {
		return err
	}
	w, err := s.Data()
	if err != nil {
		return err
	}
	msg := "From: <bob@example.org>\r\nTo: <alice@contoso.test>\r\nSubject: " + subject + "\r\n\r\n" + c.body
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return s.Quit()
}

// mountTmpfs mounts a tmpfs of size on dir (created) for the test, and
// unmounts it at the end, after the server (started later) is stopped.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		// The test needs root, as make test and CI run it: failing beats
		// silently not testing what a full disk does.
		t.Fatalf("mount a tmpfs on %s (needs root): %v %s", dir, err, out)
	}
	t.Cleanup(func() {
		for i := 0; ; i++ {
			out, err := exec.Command("umount", dir).CombinedOutput()
			if err == nil {
				return
			}
			if i == 50 {
				t.Errorf("umount %s: %v %s", dir, err, out)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill writes a file of n bytes (written, not sparse, so the space is
// really taken).
func fill(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := f.Write(chunk[:k]); err != nil {
			t.Fatalf("write the ballast: %v", err)
		}
		n -= k
	}
}
