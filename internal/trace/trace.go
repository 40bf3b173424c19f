// Package trace is certrelay's live tracing (SPEC D2): a running server
// publishes its decisions — each certificate selection with the FQDN
// searched, the candidates and why each was taken or not, each TLS
// negotiation, each direct-trust check with the D3 names — as Records to
// a Hub, and `certrelay trace` streams them over a local socket in the
// data directory until interrupted.
//
// The socket is the first channel between the CLI and a running server.
// It is a Unix socket (trace.sock, mode 0600, owned by the server's
// account), so only that account (and root) may read what the server
// decides; a client sends one line of JSON (Request) and then reads one
// Record per line. The protocol is certrelay's own: newline-delimited
// JSON over a Unix socket needs no library.
//
// Publishing costs one atomic load when nobody traces. A slow reader
// never slows the server: its records are dropped, and it is told how
// many (a Record of component "trace").
package trace

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Components of SPEC D2.
const (
	TransportCertificate  = `Transport\Certificate`       // selection and direct-trust decisions
	NetworkingCertificate = `NetworkingLayer\Certificate` // TLS negotiated on a connection
	CommonCertificate     = `Common\Certificate`          // validation of certificates (Status, chain)
	Self                  = "trace"                       // the tracing itself: records dropped
)

// Components lists the components a server traces.
func Components() []string {
	return []string{TransportCertificate, NetworkingCertificate, CommonCertificate}
}

// Record is one decision.
type Record struct {
	Time      time.Time
	Server    string
	Component string
	Tag       string // "selection", "tls", "direct-trust", "validation", "dropped"
	Summary   string // one line for people
	// Fields are the decision's inputs and outcome (FQDN, Connector,
	// Candidates, Winner, Names, …), for --json.
	Fields map[string]any `json:",omitempty"`
}

// MaxSubscribers bounds the clients tracing one server at once.
const MaxSubscribers = 8

// buffer is how many records a subscriber may have waiting.
const buffer = 1024

// Hub fans records out to the subscribers. Safe for concurrent use; the
// zero value is ready and has no subscriber.
type Hub struct {
	server string
	n      atomic.Int32
	mu     sync.Mutex
	subs   map[*sub]struct{}
}

type sub struct {
	ch         chan Record
	components []string // lower-case; empty: all
	dropped    atomic.Int64
}

// NewHub returns a hub whose records name server.
func NewHub(server string) *Hub { return &Hub{server: server} }

// Active reports whether anybody traces: callers skip building a record
// when nobody does.
func (h *Hub) Active() bool { return h != nil && h.n.Load() > 0 }

// Wants reports whether anybody traces component.
func (h *Hub) Wants(component string) bool {
	if !h.Active() {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.wants(component) {
			return true
		}
	}
	return false
}

// Publish hands r to every subscriber of its component, without waiting:
// a subscriber whose buffer is full misses it (and is told later).
func (h *Hub) Publish(r Record) {
	if !h.Active() {
		return
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	if r.Server == "" {
		r.Server = h.server
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if !s.wants(r.Component) {
			continue
		}
		select {
		case s.ch <- r:
		default:
			s.dropped.Add(1)
		}
	}
}

// Subscribe returns a channel of the records of components (all when
// none), and a function that ends the subscription. ok is false when
// MaxSubscribers already trace.
func (h *Hub) Subscribe(components []string) (records <-chan Record, dropped func() int64, cancel func(), ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= MaxSubscribers {
		return nil, nil, nil, false
	}
	s := &sub{ch: make(chan Record, buffer)}
	for _, c := range components {
		s.components = append(s.components, strings.ToLower(c))
	}
	if h.subs == nil {
		h.subs = map[*sub]struct{}{}
	}
	h.subs[s] = struct{}{}
	h.n.Add(1)
	var once sync.Once
	return s.ch, func() int64 { return s.dropped.Swap(0) }, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
			h.n.Add(-1)
		})
	}, true
}

func (s *sub) wants(component string) bool {
	if len(s.components) == 0 {
		return true
	}
	c := strings.ToLower(component)
	for _, w := range s.components {
		if w == c || (strings.HasSuffix(w, `\*`) && strings.HasPrefix(c, strings.TrimSuffix(w, "*"))) {
			return true
		}
	}
	return false
}

// Known reports whether component names a traced component (or
// "Transport\*"-style prefix of one).
func Known(component string) bool {
	probe := sub{components: []string{strings.ToLower(component)}}
	for _, c := range Components() {
		if probe.wants(c) {
			return true
		}
	}
	return false
}
