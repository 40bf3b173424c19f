package smtp

import (
	"bufio"
	"io"
	"sync"
)

// Idle connections (issue 19). A session spends most of its life waiting
// for the next command, and a server may hold tens of thousands of them
// (peers that keep a connection cached, clients that never say QUIT). The
// input and output buffers (readBufferSize and writeBufferSize, two
// thirds of what a plain-text session holds) are only needed while a
// command is being read or answered: while it waits, a session gives them
// back to its Server's pool and blocks on a read into conn.first, a few
// bytes inside the conn; the first bytes of the next command are handed
// to a buffer taken from the pool, through connReader, before anything
// else is read. Pooled buffers that stay unused are freed by the
// garbage collector (sync.Pool), so a burst of activity does not pin its
// memory.

// firstReadSize is how much input an idle session reads without its
// buffers. A command group pipelined after a wait (RFC 2920: MAIL, a few
// RCPT and DATA take a few hundred bytes; STARTTLS with anything sent
// after it, CVE-2011-0411) arrives whole in one read, so its replies
// still leave in one write; a larger group is read on through the buffer,
// its replies so far sent first, as happens after each full buffer.
const firstReadSize = 1024

// bufferPool holds the buffers of sessions that wait for a command.
// It is safe for concurrent use.
type bufferPool struct {
	readers, writers sync.Pool
}

// reader returns a reader of size bytes over r, from the pool if one is there.
func (p *bufferPool) reader(r io.Reader, size int) *bufio.Reader {
	if br, ok := p.readers.Get().(*bufio.Reader); ok && br.Size() == size {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, size)
}

// writer returns a writer of size bytes over w, from the pool if one is there.
func (p *bufferPool) writer(w io.Writer, size int) *bufio.Writer {
	if bw, ok := p.writers.Get().(*bufio.Writer); ok && bw.Size() == size {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, size)
}

// put gives a reader and a writer back; they must hold nothing (the
// reader nothing buffered, the writer flushed).
func (p *bufferPool) put(br *bufio.Reader, bw *bufio.Writer) {
	br.Reset(nil)
	bw.Reset(nil)
	p.readers.Put(br)
	p.writers.Put(bw)
}

// takeBuffers gives the connection input and output buffers.
func (c *conn) takeBuffers() {
	c.br = c.srv.bufs.reader(&c.rd, c.readSize)
	c.bw = c.srv.bufs.writer(&c.wr, writeBufferSize)
}

// releaseBuffers gives the connection's buffers back to the pool; they
// must hold nothing.
func (c *conn) releaseBuffers() {
	c.srv.bufs.put(c.br, c.bw)
	c.br, c.bw = nil, nil
}

// waitInput waits for the next command, its input buffer empty, without
// holding the connection's buffers: the pending replies are sent, the
// buffers go back to the pool, and the first bytes that arrive are kept
// in c.pending, which connReader returns before reading the connection
// again. The read deadline in force bounds the wait; its error (a
// timeout, io.EOF) is returned as a buffered read would have returned it.
func (c *conn) waitInput() error {
	if c.bw.Buffered() > 0 {
		if err := c.bw.Flush(); err != nil {
			return err
		}
	}
	c.releaseBuffers()
	n, err := c.c.Read(c.first[:])
	c.takeBuffers()
	if n > 0 {
		c.pending = c.first[:n]
		return nil // an error comes back at the next read
	}
	return err
}
