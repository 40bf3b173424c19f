package edgesync

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"certrelay/internal/directory"
)

// The wire: over one TLS connection (the edge's internal transport
// certificate on the server side, the hub's on the client side, each
// checked by direct trust), the hub sends Requests and the edge answers
// each with a Response. A message is its length (4 bytes, big-endian)
// and that many bytes of JSON.

// MaxMessage bounds one message: 100,000 recipients take about 8 MB.
// MaxHello bounds what the edge reads before the hub is authenticated.
const (
	MaxMessage = 256 << 20
	MaxHello   = 64 << 10
)

// Kinds of rounds.
const (
	KindConfiguration = "configuration"
	KindRecipients    = "recipients"
	// KindLease is a Round that records why a hub asked for a round ran
	// none: another hub holds the edge's lease.
	KindLease = "lease"
)

// Operations.
const (
	OpHello = "hello" // authenticate both ways; the edge answers with its own objects
	OpPush  = "push"  // replace the edge's replicated objects of Kind
	OpWait  = "wait"  // answer when the edge's own objects change (or after a while)
)

// Request is one message from a hub.
type Request struct {
	Op   string
	Kind string `json:",omitempty"`
	Hub  string // the hub's server name
	// Bootstrap is the subscription's account and password, sent until
	// the edge has been synchronised once.
	Bootstrap *Bootstrap `json:",omitempty"`
	// EdgeThumbprint is the internal transport certificate the
	// organisation holds for the edge.
	EdgeThumbprint string      `json:",omitempty"`
	Config         *Config     `json:",omitempty"`
	Recipients     []Recipient `json:",omitempty"`
	// A recipients round is whole (every recipient: the edge's become
	// exactly these) or, when Base is set, a delta from the round Base
	// named: Recipients added or changed, Removed addresses. The edge
	// applies a delta only if its last recipients round is Base, else
	// answers NeedWhole. Round names this round.
	Base    string   `json:",omitempty"`
	Removed []string `json:",omitempty"`
	Round   string   `json:",omitempty"`
	// Generation (OpWait) is the edge's own objects' fingerprint the hub
	// last saw.
	Generation string `json:",omitempty"`
	// Proof (OpHello) is the hub's server credential's signature over the
	// TLS session's exporter value (internal/servercred): it
	// authenticates a hub whose internal certificate is newer than the
	// edge's copy (X4).
	Proof []byte `json:",omitempty"`
}

// Bootstrap is the subscription's bootstrap account.
type Bootstrap struct{ Account, Password string }

// Config is what a configuration round replaces on the edge.
type Config struct {
	Servers           []directory.Server // the organisation's other servers (never the edge itself)
	ReceiveConnectors []directory.ReceiveConnector
	SendConnectors    []directory.SendConnector
	AcceptedDomains   []directory.AcceptedDomain
	TrustedRoots      []directory.TrustedRoot
}

// Recipient is one replicated recipient: an address and the server its
// mailbox lives on — never a password.
type Recipient struct {
	Address string
	Server  string
}

// Response is the edge's answer.
type Response struct {
	// Error is why the edge refused the request ("" when it did not).
	Error string `json:",omitempty"`
	// Server and ReceiveConnectors are the edge's own objects, which
	// the hub publishes in the organisation (X4: a new internal
	// certificate of the edge reaches the organisation this way).
	Server            directory.Server
	ReceiveConnectors []directory.ReceiveConnector
	Generation        string // fingerprint of the two above
	Changed           int    // objects the push added, changed or removed
	Held              int    // objects of the round's kind the edge holds after it
	// NeedWhole: a delta's Base is not the edge's last recipients round;
	// send every recipient.
	NeedWhole bool `json:",omitempty"`
	// Proof (OpHello) is the edge's server credential's signature over
	// the session's exporter value: it authenticates an edge whose
	// certificate is newer than the organisation's copy (X4).
	Proof []byte `json:",omitempty"`
}

var errTooLarge = errors.New("message too large")

func writeMsg(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("message of %d bytes is larger than EdgeSync allows (%d)", len(b), MaxMessage)
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func readMsg(r io.Reader, v any) error { return readLimited(r, v, MaxMessage) }

// readLimited reads a message of at most limit bytes.
func readLimited(r io.Reader, v any, limit uint32) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > limit {
		return fmt.Errorf("%w: a message of %d bytes, more than EdgeSync allows here (%d)", errTooLarge, size, limit)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
