package transport

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"certrelay/internal/queue"
)

// The kill -9 between a Maildir delivery and the queue's commit of its
// result (issue 19: a first attempt that delivered every recipient is
// committed by removing the message, op.removeAll). The queue delivers
// again after the restart; each recipient must still have exactly one
// copy, in new/ or — moved there by a reader meanwhile — in cur/.

const crashLocalEnv = "CERTRELAY_TEST_LOCAL_CRASH_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashLocalEnv); dir != "" {
		crashLocalChild(dir)
	}
	os.Exit(m.Run())
}

// crashRcpts are the message's recipients: two mailboxes, one of them
// twice (two recipients, two copies), and a third mailbox.
var crashRcpts = []string{"ann@local.test", "bob@local.test", "ann@local.test", "cy@local.test"}

func crashLookup(addr string) (string, bool) {
	user, _, _ := strings.Cut(addr, "@")
	return user, true
}

// killAfter delivers with the real deliverer, then kills its process
// before the queue sees the outcomes.
type killAfter struct{ inner queue.Deliverer }

func (k killAfter) Deliver(ctx context.Context, d queue.Delivery) []queue.Outcome {
	outs := k.inner.Deliver(ctx, d)
	for _, o := range outs {
		if o.Err != nil {
			fmt.Fprintln(os.Stderr, "delivery failed:", o.Err)
			os.Exit(3)
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// crashLocalChild enqueues one message and delivers it into Maildirs
// under dir/mail, and is killed after the delivery, before its commit.
func crashLocalChild(dir string) {
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	q.Handle(queue.Local, killAfter{&LocalDeliverer{Root: filepath.Join(dir, "mail"), Lookup: crashLookup}})
	m := &queue.Message{Sender: "s@example.com", Body: []byte("Subject: crash\r\n\r\nbody\r\n")}
	for _, r := range crashRcpts {
		m.Recipients = append(m.Recipients, queue.Recipient{Address: r, Destination: queue.Local})
	}
	if _, err := q.Enqueue(context.Background(), m); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	q.Run(context.Background())
	os.Exit(4) // not reached: the deliverer kills the process
}

func TestKillBetweenMaildirDeliveryAndCommit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reader bool // a reader moves one copy to cur/ before the restart
	}{
		{"ok/copies-in-new", false},
		{"ok/a-copy-read-into-cur", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashLocalEnv+"="+dir)
			out, err := cmd.CombinedOutput()
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v, %s; want it killed in its deliverer", err, out)
			}
			mail := filepath.Join(dir, "mail")
			if tc.reader {
				news, err := filepath.Glob(filepath.Join(mail, "bob", "new", "*"))
				if err != nil || len(news) != 1 {
					t.Fatalf("bob's new/: %v, %v", news, err)
				}
				read := filepath.Join(mail, "bob", "cur", filepath.Base(news[0])+":2,S")
				if err := os.Rename(news[0], read); err != nil {
					t.Fatal(err)
				}
			}
			q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			q.Handle(queue.Local, &LocalDeliverer{Root: mail, Lookup: crashLookup})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- q.Run(ctx) }()
			defer func() { cancel(); <-done }()
			deadline := time.Now().Add(20 * time.Second)
			for {
				n, err := q.Count(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if n.Messages == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the message is still queued: %+v", n)
				}
				time.Sleep(20 * time.Millisecond)
			}
			want := map[string]int{"ann": 2, "bob": 1, "cy": 1}
			for box, n := range want {
				var files []string
				for _, sub := range []string{"new", "cur"} {
					got, err := filepath.Glob(filepath.Join(mail, box, sub, "*"))
					if err != nil {
						t.Fatal(err)
					}
					files = append(files, got...)
				}
				if len(files) != n {
					t.Errorf("%s holds %d messages, want %d: %v", box, len(files), n, files)
				}
				if left, _ := filepath.Glob(filepath.Join(mail, box, "tmp", "*")); len(left) != 0 {
					t.Errorf("%s/tmp holds %v", box, left)
				}
			}
		})
	}
}
