// Package sip is the little of SIP (RFC 3261) that certrelay's Unified
// Messaging listener needs: it reads requests from a stream transport
// (TCP, or TLS for the secure mode of SPEC S10) and answers OPTIONS with
// 200 OK, and every other method with 405 Method Not Allowed, copying the
// headers a response must echo (RFC 3261 section 8.2.6.2: Via, From, To
// with a tag, Call-ID, CSeq).
//
// It is our own rather than a library: the only Go SIP stacks are large
// (sipgo pulls in a transaction layer, dialogs and UDP) for an answer to
// OPTIONS, and none is vendored here; the few hundred lines below are
// easier to fuzz and to bound. Limits: a request's start line and headers
// together at most Config.MaxHeader bytes, its body at most
// Config.MaxBody; a connection idle for Config.IdleTimeout is closed; a
// request that cannot be parsed is answered 400 and ends the connection
// (a stream cannot be resynchronised).
package sip

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Request is a SIP request.
type Request struct {
	Method  string
	URI     string
	Version string
	Headers []Header // in order, names as received
	Body    []byte
}

// Header is one header field.
type Header struct{ Name, Value string }

// Get returns the first value of header name (compact forms included),
// or "".
func (r *Request) Get(name string) string {
	for _, h := range r.Headers {
		if canonical(h.Name) == canonical(name) {
			return h.Value
		}
	}
	return ""
}

// all returns every value of header name, in order.
func (r *Request) all(name string) []string {
	var out []string
	for _, h := range r.Headers {
		if canonical(h.Name) == canonical(name) {
			out = append(out, h.Value)
		}
	}
	return out
}

// compact forms of RFC 3261 section 7.3.3.
var compact = map[string]string{"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length", "m": "contact", "k": "supported", "c": "content-type", "s": "subject", "e": "content-encoding"}

func canonical(name string) string {
	n := strings.ToLower(strings.TrimSpace(name))
	if long, ok := compact[n]; ok {
		return long
	}
	return n
}

// Errors of Read.
var (
	ErrTooLarge = errors.New("sip: request too large")
	ErrSyntax   = errors.New("sip: malformed request")
)

// Read reads one request from br: at most maxHeader bytes of start line
// and headers, and a body of Content-Length bytes, at most maxBody.
func Read(br *bufio.Reader, maxHeader, maxBody int) (*Request, error) {
	total := 0
	readLine := func() (string, error) {
		var line []byte
		for {
			chunk, err := br.ReadSlice('\n')
			total += len(chunk)
			if total > maxHeader {
				return "", ErrTooLarge
			}
			line = append(line, chunk...)
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil {
				if len(line) > 0 && errors.Is(err, io.EOF) {
					return "", io.ErrUnexpectedEOF
				}
				return "", err
			}
			return strings.TrimRight(string(line), "\r\n"), nil
		}
	}
	var start string
	for { // RFC 3261 section 7.5: ignore empty lines before a request (keep-alives)
		l, err := readLine()
		if err != nil {
			return nil, err
		}
		if l != "" {
			start = l
			break
		}
	}
	parts := strings.Split(start, " ")
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "SIP/") || !token(parts[0]) || parts[1] == "" {
		return nil, fmt.Errorf("%w: start line %q", ErrSyntax, clip(start))
	}
	r := &Request{Method: parts[0], URI: parts[1], Version: parts[2]}
	for {
		l, err := readLine()
		if err != nil {
			return nil, err
		}
		if l == "" {
			break
		}
		if (l[0] == ' ' || l[0] == '\t') && len(r.Headers) > 0 { // folded
			r.Headers[len(r.Headers)-1].Value += " " + strings.TrimSpace(l)
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || !token(strings.TrimSpace(name)) {
			return nil, fmt.Errorf("%w: header line %q", ErrSyntax, clip(l))
		}
		r.Headers = append(r.Headers, Header{strings.TrimSpace(name), strings.TrimSpace(value)})
	}
	for _, need := range []string{"via", "from", "to", "call-id", "cseq"} {
		if r.Get(need) == "" {
			return nil, fmt.Errorf("%w: no %s header", ErrSyntax, need)
		}
	}
	n := 0
	if cl := r.Get("content-length"); cl != "" {
		v, err := strconv.Atoi(cl)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%w: Content-Length %q", ErrSyntax, clip(cl))
		}
		n = v
	} else {
		// RFC 3261 section 18.3: required on stream transports.
		return nil, fmt.Errorf("%w: no Content-Length on a stream transport", ErrSyntax)
	}
	if n > maxBody {
		return nil, ErrTooLarge
	}
	r.Body = make([]byte, n)
	if _, err := io.ReadFull(br, r.Body); err != nil {
		return nil, err
	}
	return r, nil
}

func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Config configures Serve. Zero values take the defaults stated.
type Config struct {
	// Server names the server in responses ("Server:"); default
	// "certrelay UM".
	Server string
	// MaxHeader bounds a request's start line and headers; default 8 KiB.
	// MaxBody bounds its body; default 64 KiB.
	MaxHeader, MaxBody int
	// IdleTimeout closes a connection with no request; default 2 minutes.
	// SessionTimeout closes any connection; default 1 hour.
	IdleTimeout, SessionTimeout time.Duration
	// Answered is told of each request answered (method, status), for
	// logs; may be nil.
	Answered func(method string, status int, remote net.Addr)
	// TooLarge is told when a request is over a limit; may be nil.
	TooLarge func(remote net.Addr)
}

// Serve answers requests on c until the client closes it, a limit ends
// it or ctx ends; it closes c.
func Serve(ctx context.Context, c net.Conn, cfg Config) {
	if cfg.Server == "" {
		cfg.Server = "certrelay UM"
	}
	if cfg.MaxHeader <= 0 {
		cfg.MaxHeader = 8 << 10
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = time.Hour
	}
	defer c.Close()
	end := time.Now().Add(cfg.SessionTimeout)
	br := bufio.NewReaderSize(c, 2048)
	for ctx.Err() == nil {
		dl := time.Now().Add(cfg.IdleTimeout)
		if end.Before(dl) {
			dl = end
		}
		c.SetReadDeadline(dl)
		r, err := Read(br, cfg.MaxHeader, cfg.MaxBody)
		if err != nil {
			switch {
			case errors.Is(err, ErrTooLarge):
				if cfg.TooLarge != nil {
					cfg.TooLarge(c.RemoteAddr())
				}
				writeBare(c, 513, "Message Too Large")
			case errors.Is(err, ErrSyntax):
				writeBare(c, 400, "Bad Request")
			}
			return
		}
		status, reason := 405, "Method Not Allowed"
		if r.Method == "OPTIONS" {
			status, reason = 200, "OK"
		}
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, Response(r, status, reason, cfg.Server)); err != nil {
			return
		}
		if cfg.Answered != nil {
			cfg.Answered(r.Method, status, c.RemoteAddr())
		}
	}
}

// Response builds the response to r (RFC 3261 section 8.2.6): status line,
// the Via headers, From, To (with a tag when it had none), Call-ID and
// CSeq echoed, what this server allows, and no body.
func Response(r *Request, status int, reason, server string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", status, reason)
	for _, v := range r.all("via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	b.WriteString("From: " + r.Get("from") + "\r\n")
	to := r.Get("to")
	if !strings.Contains(strings.ToLower(to), ";tag=") {
		to += ";tag=" + randomTag()
	}
	b.WriteString("To: " + to + "\r\n")
	b.WriteString("Call-ID: " + r.Get("call-id") + "\r\n")
	b.WriteString("CSeq: " + r.Get("cseq") + "\r\n")
	b.WriteString("Allow: OPTIONS\r\n")
	if status == 200 {
		b.WriteString("Accept: application/sdp\r\nSupported: \r\n")
	}
	b.WriteString("Server: " + server + "\r\nContent-Length: 0\r\n\r\n")
	return b.String()
}

func writeBare(c net.Conn, status int, reason string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "SIP/2.0 %d %s\r\nContent-Length: 0\r\n\r\n", status, reason)
}

func randomTag() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
