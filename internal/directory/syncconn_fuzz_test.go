package directory

import (
	"bufio"
	"bytes"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// syncSeeds are well-formed messages of the sync stream, as slapd sends
// them: an entry with its Sync State control, a syncIdSet, the end of the
// refresh, a SearchResultDone.
func syncSeeds() [][]byte {
	msg := func(id int64, op *ber.Packet, controls ...*ber.Packet) []byte {
		m := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Message")
		m.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
		m.AppendChild(op)
		if len(controls) > 0 {
			cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
			for _, c := range controls {
				cs.AppendChild(c)
			}
			m.AppendChild(cs)
		}
		return m.Bytes()
	}
	uuid := string(bytes.Repeat([]byte{0xab}, 16))
	state := func(st int64) *ber.Packet {
		c := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
		c.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, ldap.ControlTypeSyncState, "OID"))
		v := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Sync State")
		v.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, st, "state"))
		v.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, uuid, "entryUUID"))
		v.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cookie", "cookie"))
		o := ber.Encode(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, nil, "value")
		o.AppendChild(v)
		c.AppendChild(o)
		return c
	}
	entry := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "Entry")
	entry.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, `cn=a\+b@contoso.test,ou=Mailboxes,dc=contoso,dc=test`, "DN"))
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range [][]string{{"certrelayAddress", "a+b@contoso.test"}, {"certrelayNLBName", "x", "y"}} {
		p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attribute")
		p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a[0], "type"))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		for _, v := range a[1:] {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "val"))
		}
		p.AppendChild(set)
		attrs.AppendChild(p)
	}
	entry.AppendChild(attrs)
	info := func(choice ber.Tag, fields ...*ber.Packet) []byte {
		ir := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationIntermediateResponse, nil, "Intermediate")
		ir.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.4203.1.9.1.4", "name"))
		c := ber.Encode(ber.ClassContext, ber.TypeConstructed, choice, nil, "choice")
		for _, f := range fields {
			c.AppendChild(f)
		}
		val := ber.Encode(ber.ClassContext, ber.TypePrimitive, 1, nil, "value")
		val.AppendChild(c)
		ir.AppendChild(val)
		return msg(2, ir)
	}
	set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "uuids")
	set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, uuid, "uuid"))
	done := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultDone, nil, "Done")
	done.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 12, "code"))
	done.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matched"))
	done.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "critical extension", "diag"))
	return [][]byte{
		msg(2, entry, state(1)),
		msg(2, entry, state(3)),
		info(3, ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, "deletes"), set),
		info(2, ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cookie", "cookie"), ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "done")),
		info(1),
		msg(2, done),
	}
}

// FuzzSyncMessage: whatever arrives on the sync connection — a hostile
// or broken directory, or someone on the path of ldap:// — the decoder
// returns a message or an error, never panics, and what it returns does not share the reused buffer. When
// asn1-ber (go-ldap's reader) reads the same bytes, the entry's DN and
// values agree.
func FuzzSyncMessage(f *testing.F) {
	for _, s := range syncSeeds() {
		f.Add(s)
	}
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00})
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x64, 0x84, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var rd berReader
		br := bufio.NewReader(bytes.NewReader(data))
		b, err := rd.message(br)
		if err != nil {
			return
		}
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		uuid := string(m.entryUUID)
		ids := make([]string, len(m.syncIDs))
		for i, u := range m.syncIDs {
			ids[i] = string(u)
		}
		for i := range rd.buf { // the next message overwrites the buffer
			rd.buf[i] ^= 0xff
		}
		if string(m.entryUUID) != uuid {
			t.Fatalf("the entryUUID shares the reused buffer")
		}
		for i, u := range m.syncIDs {
			if string(u) != ids[i] {
				t.Fatalf("a syncIdSet UUID shares the reused buffer")
			}
		}
		if m.entry == nil {
			return
		}
		p, err := ber.ReadPacket(bytes.NewReader(data))
		if err != nil || len(p.Children) < 2 || len(p.Children[1].Children) < 2 {
			return
		}
		if dn := p.Children[1].Children[0].Data.String(); dn != m.entry.DN {
			t.Fatalf("DN %q, asn1-ber reads %q", m.entry.DN, dn)
		}
		for i, a := range p.Children[1].Children[1].Children {
			if i >= len(m.entry.Attributes) || len(a.Children) < 2 {
				return
			}
			got := m.entry.Attributes[i]
			if name := a.Children[0].Data.String(); name != got.Name {
				t.Fatalf("attribute %d is %q, asn1-ber reads %q", i, got.Name, name)
			}
			for j, v := range a.Children[1].Children {
				if j < len(got.Values) && v.Data.String() != got.Values[j] {
					t.Fatalf("value %d of %s is %q, asn1-ber reads %q", j, got.Name, got.Values[j], v.Data.String())
				}
			}
		}
	})
}

// TestSyncSeedsDecode: the fuzz seeds decode as slapd means them.
func TestSyncSeedsDecode(t *testing.T) {
	var got []*syncMessage
	for _, s := range syncSeeds() {
		var rd berReader
		b, err := rd.message(bufio.NewReader(bytes.NewReader(s)))
		if err != nil {
			t.Fatal(err)
		}
		m, err := decodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if e := got[0].entry; e == nil || e.DN != `cn=a\+b@contoso.test,ou=Mailboxes,dc=contoso,dc=test` || e.GetAttributeValue("certrelayAddress") != "a+b@contoso.test" ||
		len(e.GetAttributeValues("certrelayNLBName")) != 2 || got[0].state == nil || *got[0].state != ldap.SyncStateAdd || len(got[0].entryUUID) != 16 {
		t.Errorf("entry: %+v", got[0])
	}
	if got[1].state == nil || *got[1].state != ldap.SyncStateDelete {
		t.Errorf("delete: %+v", got[1])
	}
	if !got[2].deletes || len(got[2].syncIDs) != 1 || got[2].refreshDone {
		t.Errorf("syncIdSet: %+v", got[2])
	}
	if got[3].refreshDone || !got[4].refreshDone {
		t.Errorf("refreshPresent with refreshDone FALSE, then refreshDelete: %+v %+v", got[3], got[4])
	}
	if got[5].op != ldap.ApplicationSearchResultDone || got[5].code != 12 || got[5].diag != "critical extension" {
		t.Errorf("done: %+v", got[5])
	}
}
