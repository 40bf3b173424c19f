package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"certrelay/internal/directory"
	"certrelay/internal/smtp"
)

// countingSpool is a Spool that counts what it is given.
type countingSpool struct{ n int }

func (s *countingSpool) Enqueue(context.Context, Envelope, []byte) (string, error) {
	s.n++
	return fmt.Sprint(s.n), nil
}

// TestRoutingLoopRefused: two hubs whose copies of the directory
// disagree on a mailbox's home server (one of them on its copy during an
// outage, or a move it has not seen yet) send its mail to each other; the
// Received fields each hop adds end the loop (RFC 5321 6.3) with a
// permanent 5.4.6, so the sender gets a DSN instead of the mail circling
// at full speed for as long as the disagreement lasts.
func TestRoutingLoopRefused(t *testing.T) {
	conns := []directory.ReceiveConnector{{Name: "Default", Bindings: []string{"127.0.0.1:2525"}, Enabled: true, PermissionGroups: []string{"AnonymousUsers", "ExchangeServers"}}}
	st := NewState(directory.Server{Name: "hub1", Role: directory.RoleHub}, conns, nil, []directory.AcceptedDomain{{DomainName: "contoso.test"}},
		[]directory.Mailbox{{Address: "bob@contoso.test", Server: "hub2"}}, time.Now())
	spool := &countingSpool{}
	r := &Receiver{Spool: spool, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r.state.Store(st)
	ss := smtp.State{Hello: "hub2.contoso.test", Extended: true}
	ss.RemoteAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	message := func(hops int) string {
		var b strings.Builder
		for i := 0; i < hops; i++ {
			fmt.Fprintf(&b, "Received: from hub%d.contoso.test ([127.0.0.1])\r\n\tby hub%d.contoso.test (certrelay) with ESMTPS; Mon, 30 Nov 2026 08:00:00 +0000\r\n", i%2+1, 2-i%2)
		}
		b.WriteString("From: alice@fabrikam.test\r\nTo: bob@contoso.test\r\nSubject: hello\r\n\r\nReceived: in the body does not count\r\n")
		return b.String()
	}
	for _, c := range []struct {
		name string
		hops int
		ok   bool
	}{{"ok/few-hops", 3, true}, {"ok/99-hops", MaxReceived - 1, true}, {"fail/loop", MaxReceived, false}, {"fail/long-loop", 3 * MaxReceived, false}} {
		t.Run(c.name, func(t *testing.T) {
			s := &session{r: r, ctx: context.Background(), st: st, c: &st.Connectors[0]}
			before := spool.n
			_, err := s.Data(ss, strings.NewReader(message(c.hops)))
			var re *smtp.ReplyError
			switch {
			case c.ok && (err != nil || spool.n != before+1):
				t.Fatalf("%d Received fields: %v, queued %d", c.hops, err, spool.n-before)
			case !c.ok && (!errors.As(err, &re) || re.Code != 554 || re.Enhanced != "5.4.6" || spool.n != before):
				t.Fatalf("%d Received fields: %v (queued %d), want 554 5.4.6 and nothing queued", c.hops, err, spool.n-before)
			}
		})
	}
}
