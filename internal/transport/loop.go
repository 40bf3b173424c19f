package transport

import "bytes"

// MaxReceived is how many Received fields a message may arrive with: one
// that has passed through as many hops is in a routing loop (RFC 5321
// 6.3, which names 100 as the simple limit) and is refused with 554
// 5.4.6, so its sender gets a DSN. Between the servers of an
// organisation a loop comes from copies of the directory that disagree on
// a mailbox's home server (one server on its copy during an outage).
const MaxReceived = 100

// receivedFields counts the Received fields in msg's header (up to
// MaxReceived: past it the count no longer matters).
func receivedFields(msg []byte) int {
	n := 0
	for len(msg) > 0 && n < MaxReceived {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break // the end of the header
		}
		if len(line) >= 9 && bytes.EqualFold(line[:9], []byte("received:")) {
			n++
		}
	}
	return n
}
