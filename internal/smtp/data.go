package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// dataReader yields the content of one DATA phase: dot-stuffing undone
// (RFC 5321 4.5.2), ending at the first CRLF "." CRLF, which it consumes.
//
// It works on runs of the bufio.Reader's buffer rather than on bytes or
// lines: a run is as much buffered text as can be handed out unchanged
// (it stops before a line that starts with a dot), so a 4 KiB message costs
// a handful of bytes.IndexByte calls and one or two copies, and no
// allocation. WriteTo hands the runs straight to the destination, so
// io.Copy(dst, r) does not even copy into an intermediate buffer.
//
// Line ends (the SMTP smuggling rules, CVE-2023-51764/51765/51766):
//   - a line is at "beginning of line" (where a dot is special) only after
//     a real CRLF; after a bare LF the next bytes are a continuation, so
//     "\n.\r\n", "\n.\n", "\r.\r\n" and friends never end the data;
//   - the end marker is exactly ".\r\n" at the beginning of a line;
//   - a bare CR or LF anywhere makes the message fail with ErrBareNewline,
//     but the reader keeps the same strict end-marker rule while the server
//     drains the rest, so the bytes after a fake marker are never taken as
//     commands.
//
// Errors are sticky: once Read or WriteTo returns an error other than
// io.EOF, every later call returns it again. The server then calls drain to
// find the real end of the data (or the I/O error that prevents it).
type dataReader struct {
	br      *bufio.Reader
	pending []byte // unread part of the last run; aliases br's buffer

	max     int64 // message size limit, 0 = none
	maxLine int   // text line limit including CRLF, 0 = none

	n       int64 // content bytes produced so far
	lineLen int   // length of the current (unfinished) line
	bol     bool  // next byte starts a line (previous line ended in CRLF)
	lastCR  bool  // previous run ended with CR; its LF may start the next
	done    bool  // end marker consumed
	drain   bool  // content checks off: only looking for the end marker
	err     error // sticky content or I/O error
	ioErr   bool  // err came from the connection, not from the content
}

// reset prepares r for a new DATA phase.
func (r *dataReader) reset(br *bufio.Reader, max int64, maxLine int) {
	*r = dataReader{br: br, max: max, maxLine: maxLine, bol: true}
}

// Read implements io.Reader. It returns io.EOF after the end marker. It
// does not block when it already has bytes to return.
func (r *dataReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n := 0
	for n < len(p) {
		if len(r.pending) == 0 {
			if n > 0 && (r.done || r.br.Buffered() == 0) {
				return n, nil
			}
			run, err := r.next()
			if err != nil {
				if err == io.EOF && n > 0 {
					return n, nil
				}
				return n, err
			}
			r.pending = run
		}
		c := copy(p[n:], r.pending)
		r.pending = r.pending[c:]
		n += c
	}
	return n, nil
}

// WriteTo implements io.WriterTo, used by io.Copy: runs go to w without an
// intermediate buffer. A write error is returned as is and leaves the
// reader where it was, for the server to drain.
func (r *dataReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if len(r.pending) > 0 {
		m, err := w.Write(r.pending)
		total += int64(m)
		r.pending = r.pending[m:]
		if err != nil {
			return total, err
		}
	}
	if r.err != nil {
		return total, r.err
	}
	for {
		run, err := r.next()
		if len(run) > 0 {
			m, werr := w.Write(run)
			total += int64(m)
			if werr != nil {
				r.pending = run[m:]
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// finish reads to the end marker, discarding content, with content checks
// off. It returns the first content error seen during the message (nil if
// none) and any I/O error that stopped it.
func (r *dataReader) finish() (contentErr, ioErr error) {
	if r.err != nil && r.ioErr {
		return nil, r.err
	}
	contentErr = r.err
	r.pending = nil
	r.drain = true
	r.err = nil
	for !r.done {
		if _, err := r.next(); err != nil && err != io.EOF {
			r.err = err
			return contentErr, err
		}
	}
	if contentErr != nil {
		r.err = contentErr
	}
	return contentErr, nil
}

// fail records a sticky error and returns it.
func (r *dataReader) fail(err error, fromConn bool) ([]byte, error) {
	r.err = err
	r.ioErr = fromConn
	return nil, err
}

// next returns the next run of content, valid until the next call, or
// io.EOF once the end marker has been consumed. The run has been consumed
// from br.
func (r *dataReader) next() ([]byte, error) {
	for {
		if r.done {
			return nil, io.EOF
		}
		if r.err != nil {
			return nil, r.err
		}
		buf, err := r.peek(1)
		if err != nil {
			return r.fail(err, true)
		}
		if r.lastCR {
			// The previous run ended in CR: it was a line end only if
			// this byte is its LF.
			r.lastCR = false
			if buf[0] != '\n' && !r.drain {
				return r.fail(ErrBareNewline, false)
			}
			if buf[0] == '\n' {
				r.br.Discard(1)
				r.bol = true
				r.n++
				if err := r.endLine(1); err != nil {
					return r.fail(err, false)
				}
				if r.max > 0 && r.n > r.max && !r.drain {
					return r.fail(ErrMessageTooLarge, false)
				}
				return lf, nil
			}
		}
		if r.bol && buf[0] == '.' {
			// Need ".\r\n" to decide between the end marker and a
			// stuffed dot. Peek only as far as necessary, so a client
			// sending ".x" is not kept waiting.
			if buf, err = r.peek(2); err != nil {
				return r.fail(err, true)
			}
			if buf[1] == '\r' {
				if buf, err = r.peek(3); err != nil {
					return r.fail(err, true)
				}
				if buf[2] == '\n' {
					r.br.Discard(3)
					r.done = true
					r.pending = nil
					return nil, io.EOF
				}
			}
			r.br.Discard(1) // undo dot-stuffing
			r.bol = false
			continue
		}
		r.bol = false
		run, err := r.scan(buf)
		if err != nil {
			return r.fail(err, false)
		}
		r.br.Discard(len(run))
		r.n += int64(len(run))
		if r.max > 0 && r.n > r.max && !r.drain {
			return r.fail(ErrMessageTooLarge, false)
		}
		return run, nil
	}
}

// lf is the run returned when a CRLF straddles two reads.
var lf = []byte{'\n'}

// peek returns at least n buffered bytes (or all of them, if more are
// buffered), reading from the connection only when fewer than n are.
func (r *dataReader) peek(n int) ([]byte, error) {
	if b := r.br.Buffered(); b >= n {
		buf, _ := r.br.Peek(b)
		return buf, nil
	}
	buf, err := r.br.Peek(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if b := r.br.Buffered(); b > n {
		buf, _ = r.br.Peek(b)
	}
	return buf, nil
}

// scan returns the longest prefix of buf, which does not start at the
// beginning of a dot line, that can be handed out unchanged: it ends after
// a CRLF followed by a dot (the dot is handled by next), or at the end of
// buf. It updates bol, lastCR and lineLen.
func (r *dataReader) scan(buf []byte) ([]byte, error) {
	i := 0
	for {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			// Unfinished line: the rest of the buffer.
			seg := buf[i:]
			end := len(seg)
			cr := seg[end-1] == '\r'
			if cr {
				end--
			}
			if !r.drain && bytes.IndexByte(seg[:end], '\r') >= 0 {
				return nil, ErrBareNewline
			}
			if err := r.addLine(len(seg)); err != nil {
				return nil, err
			}
			r.lastCR = cr
			return buf, nil
		}
		j += i
		crlf := j > 0 && buf[j-1] == '\r'
		if !r.drain {
			body := buf[i:j]
			if crlf {
				body = buf[i : j-1]
			} else {
				return nil, ErrBareNewline
			}
			if bytes.IndexByte(body, '\r') >= 0 {
				return nil, ErrBareNewline
			}
		}
		if err := r.endLine(j + 1 - i); err != nil {
			return nil, err
		}
		i = j + 1
		if !crlf {
			// After a bare LF (only possible while draining) the next
			// bytes continue the line: a dot there is not special.
			if i == len(buf) {
				return buf, nil
			}
			continue
		}
		if i == len(buf) {
			r.bol = true
			return buf, nil
		}
		if buf[i] == '.' {
			r.bol = true
			return buf[:i], nil
		}
	}
}

// addLine accounts for n bytes of an unfinished line.
func (r *dataReader) addLine(n int) error {
	r.lineLen += n
	if r.maxLine > 0 && r.lineLen > r.maxLine && !r.drain {
		return ErrDataLineTooLong
	}
	return nil
}

// endLine accounts for the last n bytes (LF included) of a line.
func (r *dataReader) endLine(n int) error {
	err := r.addLine(n)
	r.lineLen = 0
	return err
}

// isTimeout reports whether err is a deadline expiry.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
