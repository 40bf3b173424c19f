// Package tracking is the message trace: one JSON line per delivery
// attempt to a remote host — which connector, which host, what TLS was
// negotiated, which certificate each side presented, and the result (SPEC
// DS2) — in the data directory's log/tracking.log, read by
// `certrelay track`. It is a log for people, not a source of truth: a
// line lost in a crash loses no mail.
package tracking

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Record is one delivery attempt to one host, for the message trace:
// where it went and what TLS was negotiated (DS2).
type Record struct {
	Time       time.Time
	MessageID  string
	Recipients []string
	Connector  string
	Host       string
	TLS        string `json:",omitempty"` // "TLS 1.3 TLS_AES_128_GCM_SHA256"
	PeerCert   string `json:",omitempty"` // subject of the server's certificate
	PeerThumb  string `json:",omitempty"`
	ClientCert string `json:",omitempty"` // thumbprint of the certificate certrelay presented
	// PeerServer is the organisation server the session went to, and
	// Auth how it was authenticated ("direct trust", "server
	// credential"); empty for other hosts.
	PeerServer string `json:",omitempty"`
	Auth       string `json:",omitempty"`
	// Policy is the TLS policy applied ("domain security",
	// "opportunistic", …) and PolicyWhy why it applied and how the
	// peer's certificate fared.
	Policy    string `json:",omitempty"`
	PolicyWhy string `json:",omitempty"`
	Result    string // "delivered", "deferred: …", "failed: …"
}

// Log appends records to a file. Safe for concurrent use.
type Log struct {
	mu   sync.Mutex
	path string
}

// Path is the trace's file inside a data directory.
func Path(dataDir string) string { return filepath.Join(dataDir, "log", "tracking.log") }

// Open returns a log writing to the data directory's trace.
func Open(dataDir string) (*Log, error) {
	p := Path(dataDir)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("open the message trace: %w", err)
	}
	return &Log{path: p}, nil
}

// Append writes one record; errors are returned for the caller to log.
func (l *Log) Append(r Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	return err
}

// Read returns the records of the data directory's trace, oldest first,
// for message id (every message when id is "").
func Read(dataDir, id string) ([]Record, error) {
	f, err := os.Open(Path(dataDir))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		if id == "" || r.MessageID == id {
			out = append(out, r)
		}
	}
	return out, sc.Err()
}
