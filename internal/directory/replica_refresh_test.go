package directory

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// cutProxy forwards TCP connections to a directory until cut, which
// closes them and refuses new ones until restore: a network outage
// between one server and a directory that other servers still write.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestReplicaRefreshKeepsRecreatedObjects: objects deleted and made
// again under the same name while a server could not reach the
// directory — a mailbox removed and added back, a server set up again
// after its object was deleted, a domain or root re-added — are new
// entries (new entryUUIDs). The refresh after the outage brings the new
// ones and then sweeps the old ones away; sweeping an old one must not
// take the new object of the same name with it.
func TestReplicaRefreshKeepsRecreatedObjects(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writer, s := newLDAP(t)
	proxy := newCutProxy(t, s.Addr)
	cfg := writer.c.cfg
	cfg.URL = "ldap://" + proxy.ln.Addr().String() + "/" + writer.base
	rc := newRecorder()
	o := ReplicaOptions{RetryMax: 100 * time.Millisecond}
	rc.options(&o)
	r, err := StartReplica(ctx, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	bob := Mailbox{Address: "bob@contoso.test", Server: "hub1", Maildir: "mail/contoso.test/bob"}
	h2 := sampleServer(t, "hub2")
	for _, err := range []error{writer.PutMailbox(ctx, bob), writer.PutServer(ctx, h2), writer.PutAcceptedDomain(ctx, AcceptedDomain{DomainName: "contoso.test", DomainType: "Authoritative"})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	rc.waitFor(t, 2*time.Second, "the objects", func() bool {
		return contains(rc.keys, "mailbox/bob@contoso.test") && contains(rc.keys, "server/hub2") && contains(rc.keys, "accepteddomain/contoso.test")
	})

	proxy.cut()
	rc.waitFor(t, 5*time.Second, "the loss reported", func() bool { return len(rc.states) == 1 && !rc.states[0] })
	// Meanwhile, elsewhere: bob moves to hub2 by removal and addition,
	// hub2 is set up again, the domain is removed and added back.
	bob.Server = "hub2"
	for _, err := range []error{
		writer.DeleteMailbox(ctx, bob.Address), writer.PutMailbox(ctx, bob),
		writer.DeleteServer(ctx, "hub2"), writer.PutServer(ctx, h2),
		writer.DeleteAcceptedDomain(ctx, "contoso.test"), writer.PutAcceptedDomain(ctx, AcceptedDomain{DomainName: "contoso.test", DomainType: "Authoritative"}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	proxy.restore()
	rc.waitFor(t, 5*time.Second, "the return reported", func() bool { return len(rc.states) == 2 && rc.states[1] })

	if m, err := r.Mailbox(ctx, bob.Address); err != nil || m.Server != "hub2" {
		t.Errorf("after the refresh, bob is %+v, %v; want homed on hub2", m, err)
	}
	if _, err := r.Server(ctx, "hub2"); err != nil {
		t.Errorf("after the refresh, hub2: %v", err)
	}
	if list, _ := r.AcceptedDomains(ctx); len(list) != 1 {
		t.Errorf("after the refresh, the accepted domains are %v", list)
	}
	// And the copy stays right when the new objects go in turn.
	if err := writer.DeleteMailbox(ctx, bob.Address); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, 2*time.Second, "bob's removal", func() bool {
		_, err := r.Mailbox(ctx, bob.Address)
		return errors.Is(err, ErrNotFound)
	})
}

// TestReplicaRefusesEmptyPassword: a bind DN with an empty password is
// an unauthenticated bind (RFC 4513 5.1.2), which a directory that allows
// it answers with success, as anonymous. The replica's own connection
// refuses it as commands' go-ldap does (an emptied directory.secret), so
// a server never follows the directory unauthenticated, with less than
// its account may read.
func TestReplicaRefusesEmptyPassword(t *testing.T) {
	writer, _ := newLDAP(t)
	cfg := writer.c.cfg
	cfg.Password = ""
	l, err := OpenLDAP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Check(context.Background()); !errors.Is(err, ErrBind) {
		t.Errorf("commands: %v, want ErrBind", err)
	}
	conn, err := l.c.dialSync()
	if err == nil {
		conn.Close()
	}
	if !errors.Is(err, ErrBind) {
		t.Errorf("the replica's connection: %v, want ErrBind", err)
	}
}
