package directory

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// syncConn is the connection a Replica follows the directory on. It
// speaks LDAP itself, for one reason: go-ldap reads every message with
// asn1-ber, which makes a packet per element and copies each element into
// its parent — about 25 µs an entry, 2.5 s of a server's start with
// 100,000 mailboxes; this reads the stream with a decoder over the
// message's bytes (berReader), an order of magnitude faster. Requests are
// still encoded with asn1-ber, and the rest of certrelay uses go-ldap.
type syncConn struct {
	c  net.Conn
	br *bufio.Reader
	id int64
	rd berReader
}

// dialSync connects, with TLS as the configuration says, and binds.
func (c *ldapConn) dialSync() (*syncConn, error) {
	if c.cfg.Password == "" {
		// An unauthenticated bind (RFC 4513 5.1.2): anonymous where the
		// directory allows it. go-ldap refuses it for commands; so does
		// this.
		return nil, fmt.Errorf("%w (%s): the password is empty", ErrBind, c.cfg.BindDN)
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: c.cfg.Timeout}
	var nc net.Conn
	if c.url.Scheme == "ldaps" {
		nc, err = tls.DialWithDialer(d, "tcp", c.url.Host, tc)
		if err != nil {
			if isTLSError(err) {
				return nil, fmt.Errorf("%w at %s: %v", ErrTLS, c.url.Host, err)
			}
			return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, c.url.Host, err)
		}
	} else if nc, err = d.Dial("tcp", c.url.Host); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, c.url.Host, err)
	}
	s := &syncConn{c: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	fail := func(err error) (*syncConn, error) { nc.Close(); return nil, err }
	nc.SetDeadline(deadline(c.cfg.Timeout))
	if c.url.Scheme == "ldap" && len(c.cfg.CA) > 0 {
		req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Extended Request")
		req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.1466.20037", "StartTLS"))
		if code, diag, err := s.call(req, ldap.ApplicationExtendedResponse); err != nil || code != 0 {
			return fail(fmt.Errorf("%w: StartTLS with %s: %s", ErrTLS, c.url.Host, orText(err, code, diag)))
		}
		tlsConn := tls.Client(nc, tc)
		if err := tlsConn.Handshake(); err != nil {
			return fail(fmt.Errorf("%w: StartTLS with %s: %v", ErrTLS, c.url.Host, err))
		}
		s.c, s.br = tlsConn, bufio.NewReaderSize(tlsConn, 64<<10)
	}
	bind := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "Bind Request")
	bind.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "Version"))
	bind.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, c.cfg.BindDN, "User Name"))
	bind.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, c.cfg.Password, "Password"))
	code, diag, err := s.call(bind, ldap.ApplicationBindResponse)
	switch {
	case err != nil:
		return fail(fmt.Errorf("%w: bind at %s: %v", ErrUnavailable, c.url.Host, err))
	case code == ldap.LDAPResultInvalidCredentials || code == ldap.LDAPResultInvalidDNSyntax || code == ldap.LDAPResultInappropriateAuthentication:
		return fail(fmt.Errorf("%w (%s)", ErrBind, c.cfg.BindDN))
	case code != 0:
		return fail(fmt.Errorf("bind at %s: %s", c.url.Host, orText(nil, code, diag)))
	}
	nc.SetDeadline(noDeadline)
	return s, nil
}

var noDeadline time.Time

func deadline(d time.Duration) time.Time { return time.Now().Add(d) }

func orText(err error, code uint16, diag string) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("LDAP result %d (%s) %s", code, ldap.LDAPResultCodeMap[code], diag)
}

func isTLSError(err error) bool {
	var terr *tls.CertificateVerificationError
	return errors.As(err, &terr) || strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:")
}

func (s *syncConn) Close() error { return s.c.Close() }

// send writes one request.
func (s *syncConn) send(op *ber.Packet, controls ...ldap.Control) error {
	s.id++
	msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, s.id, "MessageID"))
	msg.AppendChild(op)
	if len(controls) > 0 {
		cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, c := range controls {
			cs.AppendChild(c.Encode())
		}
		msg.AppendChild(cs)
	}
	_, err := s.c.Write(msg.Bytes())
	return err
}

// call sends a request and reads its response, an LDAPResult of
// application tag want.
func (s *syncConn) call(op *ber.Packet, want int) (uint16, string, error) {
	if err := s.send(op); err != nil {
		return 0, "", err
	}
	m, err := s.next()
	if err != nil {
		return 0, "", err
	}
	if m.op != want {
		return 0, "", fmt.Errorf("unexpected LDAP response %d", m.op)
	}
	return m.code, m.diag, nil
}

// search sends a sync search (the caller adds the Sync Request control).
func (s *syncConn) search(base, filter string, attrs []string, controls ...ldap.Control) error {
	f, err := ldap.CompileFilter(filter)
	if err != nil {
		return err
	}
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "Search Request")
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, "Base DN"))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(ldap.ScopeWholeSubtree), "Scope"))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(ldap.NeverDerefAliases), "Deref Aliases"))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Size Limit"))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Time Limit"))
	req.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "Types Only"))
	req.AppendChild(f)
	as := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range attrs {
		as.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, "Attribute"))
	}
	req.AppendChild(as)
	return s.send(req, controls...)
}

// syncMessage is one message of the sync search, decoded.
type syncMessage struct {
	op    int         // the protocol op's application tag
	entry *ldap.Entry // SearchResultEntry
	// state is the entry's Sync State control (nil: none): its state,
	// entryUUID (16 bytes) and cookie.
	state     *ldap.ControlSyncStateState
	entryUUID []byte
	// refreshDone: an Intermediate Response (Sync Info) that ends the
	// refresh phase; syncIDs: a syncIdSet's UUIDs, with deletes saying
	// whether they are deleted (else present).
	refreshDone bool
	syncIDs     [][]byte
	deletes     bool
	code        uint16 // LDAPResult (SearchResultDone, responses)
	diag        string
}

// next reads and decodes one message.
func (s *syncConn) next() (*syncMessage, error) {
	b, err := s.rd.message(s.br)
	if err != nil {
		return nil, err
	}
	return decodeMessage(b)
}

// berReader reads whole LDAP messages into a reused buffer.
type berReader struct{ buf []byte }

// message returns the next LDAPMessage's contents (valid until the next
// call).
func (r *berReader) message(br *bufio.Reader) ([]byte, error) {
	t, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	if t != 0x30 {
		return nil, fmt.Errorf("ldap: message starts with 0x%02x, not a SEQUENCE", t)
	}
	l, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	n := int(l)
	if l&0x80 != 0 {
		k := int(l & 0x7f)
		if k == 0 || k > 4 {
			return nil, fmt.Errorf("ldap: message length of %d bytes", k)
		}
		n = 0
		for i := 0; i < k; i++ {
			c, err := br.ReadByte()
			if err != nil {
				return nil, err
			}
			n = n<<8 | int(c)
		}
	}
	if n > 64<<20 {
		return nil, fmt.Errorf("ldap: a message of %d bytes", n)
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(br, r.buf); err != nil {
		return nil, err
	}
	return r.buf, nil
}

var errBER = errors.New("ldap: malformed BER")

// tlv splits the first element of b: its class and constructed bit (in
// id), tag number, contents and what follows. Only low tag numbers (as
// LDAP uses) are read.
func tlv(b []byte) (id byte, tag int, val, rest []byte, err error) {
	if len(b) < 2 {
		return 0, 0, nil, nil, errBER
	}
	id = b[0]
	tag = int(id & 0x1f)
	if tag == 0x1f {
		return 0, 0, nil, nil, errBER
	}
	l := int(b[1])
	p := 2
	if l&0x80 != 0 {
		k := l & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return 0, 0, nil, nil, errBER
		}
		l = 0
		for i := 0; i < k; i++ {
			l = l<<8 | int(b[2+i])
		}
		p += k
	}
	if l < 0 || len(b)-p < l {
		return 0, 0, nil, nil, errBER
	}
	return id, tag, b[p : p+l], b[p+l:], nil
}

func berInt(v []byte) int64 {
	var n int64
	for i, c := range v {
		if i == 0 && c&0x80 != 0 {
			n = -1
		}
		n = n<<8 | int64(c)
	}
	return n
}

// decodeMessage decodes an LDAPMessage's contents: messageID, protocolOp,
// controls.
func decodeMessage(b []byte) (*syncMessage, error) {
	_, _, _, rest, err := tlv(b) // messageID
	if err != nil {
		return nil, err
	}
	id, tag, op, rest, err := tlv(rest)
	if err != nil {
		return nil, err
	}
	if id&0xc0 != 0x40 {
		return nil, errBER
	}
	m := &syncMessage{op: tag}
	switch tag {
	case ldap.ApplicationSearchResultEntry:
		if m.entry, err = decodeEntry(op); err != nil {
			return nil, err
		}
	case ldap.ApplicationIntermediateResponse:
		if err := m.decodeSyncInfo(op); err != nil {
			return nil, err
		}
	case ldap.ApplicationSearchResultDone, ldap.ApplicationBindResponse, ldap.ApplicationExtendedResponse:
		_, _, code, r, err := tlv(op)
		if err != nil {
			return nil, err
		}
		m.code = uint16(berInt(code))
		if _, _, _, r, err = tlv(r); err == nil { // matchedDN
			if _, _, diag, _, err := tlv(r); err == nil {
				m.diag = string(diag)
			}
		}
	}
	if len(rest) > 0 { // controls [0]
		_, _, cs, _, err := tlv(rest)
		if err != nil {
			return nil, err
		}
		for len(cs) > 0 {
			var c []byte
			if _, _, c, cs, err = tlv(cs); err != nil {
				return nil, err
			}
			if err := m.decodeControl(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// decodeEntry reads a SearchResultEntry: objectName, attributes.
func decodeEntry(b []byte) (*ldap.Entry, error) {
	_, _, dn, rest, err := tlv(b)
	if err != nil {
		return nil, err
	}
	_, _, attrs, _, err := tlv(rest)
	if err != nil {
		return nil, err
	}
	e := &ldap.Entry{DN: string(dn)}
	for len(attrs) > 0 {
		var a []byte
		if _, _, a, attrs, err = tlv(attrs); err != nil {
			return nil, err
		}
		_, _, name, r, err := tlv(a)
		if err != nil {
			return nil, err
		}
		_, _, vals, _, err := tlv(r)
		if err != nil {
			return nil, err
		}
		ea := &ldap.EntryAttribute{Name: string(name)}
		for len(vals) > 0 {
			var v []byte
			if _, _, v, vals, err = tlv(vals); err != nil {
				return nil, err
			}
			ea.Values = append(ea.Values, string(v))
		}
		e.Attributes = append(e.Attributes, ea)
	}
	return e, nil
}

// decodeControl reads a Control and keeps the Sync State.
func (m *syncMessage) decodeControl(b []byte) error {
	_, _, oid, rest, err := tlv(b)
	if err != nil {
		return err
	}
	if string(oid) != ldap.ControlTypeSyncState {
		return nil
	}
	for len(rest) > 0 { // criticality (BOOLEAN), then the value (OCTET STRING)
		var id byte
		var v []byte
		if id, _, v, rest, err = tlv(rest); err != nil {
			return err
		}
		if id != byte(ber.TagOctetString) {
			continue
		}
		_, _, seq, _, err := tlv(v)
		if err != nil {
			return err
		}
		_, _, st, r, err := tlv(seq)
		if err != nil {
			return err
		}
		_, _, uuid, _, err := tlv(r)
		if err != nil {
			return err
		}
		state := ldap.ControlSyncStateState(berInt(st))
		m.state, m.entryUUID = &state, append([]byte(nil), uuid...) // the buffer is reused
	}
	return nil
}

// decodeSyncInfo reads an Intermediate Response carrying a Sync Info
// message (RFC 4533 2.5): whether it ends the refresh phase, and a
// syncIdSet's UUIDs.
func (m *syncMessage) decodeSyncInfo(b []byte) error {
	for len(b) > 0 {
		id, tag, v, rest, err := tlv(b)
		if err != nil {
			return err
		}
		b = rest
		if id&0xc0 != 0x80 || tag != 1 { // responseValue [1]
			continue
		}
		cid, choice, info, _, err := tlv(v)
		if err != nil {
			return err
		}
		if cid&0xc0 != 0x80 {
			return errBER
		}
		switch choice {
		case 1, 2: // refreshDelete, refreshPresent: cookie OPTIONAL, refreshDone DEFAULT TRUE
			done := true
			for len(info) > 0 {
				var fid byte
				var f []byte
				if fid, _, f, info, err = tlv(info); err != nil {
					return err
				}
				if fid == byte(ber.TagBoolean) && len(f) == 1 {
					done = f[0] != 0
				}
			}
			m.refreshDone = done
		case 3: // syncIdSet: cookie OPTIONAL, refreshDeletes DEFAULT FALSE, syncUUIDs SET OF
			for len(info) > 0 {
				var fid byte
				var f []byte
				if fid, _, f, info, err = tlv(info); err != nil {
					return err
				}
				switch {
				case fid == byte(ber.TagBoolean) && len(f) == 1:
					m.deletes = f[0] != 0
				case fid == 0x31: // SET
					for len(f) > 0 {
						var u []byte
						if _, _, u, f, err = tlv(f); err != nil {
							return err
						}
						m.syncIDs = append(m.syncIDs, append([]byte(nil), u...))
					}
				}
			}
		}
	}
	return nil
}
