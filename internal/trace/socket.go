package trace

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketName is the socket's name in the data directory.
const SocketName = "trace.sock"

// SocketPath returns the trace socket of a data directory.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// Request is the line a client sends first.
type Request struct {
	Components []string // none: every component
}

// reply is the server's first line: OK, or why not.
type reply struct {
	OK    bool
	Error string `json:",omitempty"`
}

// Serve listens on path (mode 0600, owned by uid/gid when they are not
// -1) and streams the hub's records to each client until ctx ends. A
// socket file left by a server that died is replaced; one a running
// server answers on is not (the error says so).
func (h *Hub) Serve(ctx context.Context, path string, uid, gid int) error {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("trace socket %s: another server answers on it; is this data directory served twice?", path)
	}
	// The socket is made in a directory only this account may enter, set
	// to 0600, then moved into place: no other account can connect in
	// between.
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".trace-")
	if err != nil {
		return fmt.Errorf("trace socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	ln, err := net.Listen("unix", filepath.Join(tmp, SocketName))
	if err != nil {
		return fmt.Errorf("trace socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(filepath.Join(tmp, SocketName), 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("trace socket: %w", err)
	}
	if err := os.Rename(filepath.Join(tmp, SocketName), path); err != nil {
		ln.Close()
		return fmt.Errorf("trace socket: %w", err)
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		_ = os.Chown(path, uid, gid)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		defer os.Remove(path)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go h.serveConn(ctx, c)
		}
	}()
	return nil
}

// serveConn streams records to one client.
func (h *Hub) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReaderSize(c, 4096).ReadSlice('\n')
	var req Request
	if err != nil || json.Unmarshal(line, &req) != nil {
		writeLine(c, reply{Error: "the first line must be a JSON request such as {\"Components\":[]}"})
		return
	}
	for _, comp := range req.Components {
		if !Known(comp) {
			writeLine(c, reply{Error: fmt.Sprintf("unknown component %q: the components are %v", comp, Components())})
			return
		}
	}
	records, dropped, cancel, ok := h.Subscribe(req.Components)
	if !ok {
		writeLine(c, reply{Error: fmt.Sprintf("%d clients already trace this server, the most it allows; stop one of them", MaxSubscribers)})
		return
	}
	defer cancel()
	if writeLine(c, reply{OK: true}) != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	gone := make(chan struct{})
	go func() { // the client closing its side ends the stream
		io.Copy(io.Discard, c)
		close(gone)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gone:
			return
		case r := <-records:
			if writeLine(c, r) != nil {
				return
			}
		case <-tick.C:
			if n := dropped(); n > 0 {
				r := Record{Time: time.Now().UTC(), Server: h.server, Component: Self, Tag: "dropped",
					Summary: fmt.Sprintf("%d records were dropped: this client read too slowly", n), Fields: map[string]any{"Dropped": n}}
				if writeLine(c, r) != nil {
					return
				}
			}
		}
	}
}

func writeLine(w net.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = w.Write(append(b, '\n'))
	return err
}

// ErrNoServer: no server runs on the data directory.
var ErrNoServer = errors.New("no server runs on this data directory")

// Follow connects to the trace socket at path and calls fn with each
// record until ctx ends, the server stops or fn fails. Errors name the
// problem: no server running, or no permission (the socket is the server
// account's).
func Follow(ctx context.Context, path string, components []string, fn func(Record) error) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("%w: %s does not answer; start the server on this data directory and trace again", ErrNoServer, path)
		case errors.Is(err, os.ErrPermission):
			return fmt.Errorf("trace: %s belongs to the server's account (mode 0600): run this command as that account or root", path)
		}
		return fmt.Errorf("trace: %w", err)
	}
	defer c.Close()
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	if err := writeLine(c, Request{Components: components}); err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	c.SetWriteDeadline(time.Time{})
	br := bufio.NewReaderSize(c, 64<<10)
	first, err := br.ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("trace: the server closed the connection: %w", err)
	}
	var rep reply
	if err := json.Unmarshal(first, &rep); err != nil || !rep.OK {
		if rep.Error == "" {
			rep.Error = "it answered something else than certrelay's trace protocol"
		}
		return fmt.Errorf("trace: %s", rep.Error)
	}
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("trace: the server stopped: %w", err)
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("trace: a record that is not JSON: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
}
