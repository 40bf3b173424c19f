package transport

import (
	"testing"
	"time"

	"certrelay/internal/directory"
)

func TestStateLookups(t *testing.T) {
	conns := []directory.ReceiveConnector{
		{Name: "Loopback", Bindings: []string{"127.0.0.1:2525"}, Enabled: true},
		{Name: "Any", Bindings: []string{"0.0.0.0:25"}, Enabled: true, Fqdn: "mx.contoso.com"},
		{Name: "Off", Bindings: []string{"127.0.0.1:2600"}, Enabled: false},
	}
	boxes := []directory.Mailbox{{Address: "postmaster@b.example"}, {Address: "postmaster@a.example"}, {Address: "alice@a.example"}}
	domains := []directory.AcceptedDomain{{DomainName: "a.example"}, {DomainName: "b.example"}, {DomainName: "c.example"}}
	st := NewState(directory.Server{Name: "hub1", Fqdn: "hub1.contoso.com"}, conns, nil, domains, boxes, time.Now())
	cases := []struct{ local, want string }{
		{"127.0.0.1:2525", "Loopback"},
		{"192.0.2.7:25", "Any"},
		{"127.0.0.1:2600", ""},
		{"127.0.0.1:9999", ""},
	}
	for _, c := range cases {
		got := ""
		if conn := st.connectorFor(c.local); conn != nil {
			got = conn.Name
		}
		if got != c.want {
			t.Errorf("connectorFor(%s) = %q, want %q", c.local, got, c.want)
		}
	}
	if f := st.fqdn(&conns[0]); f != "hub1.contoso.com" {
		t.Errorf("a connector without FQDN uses %q, want the server's (S1)", f)
	}
	if f := st.fqdn(&conns[1]); f != "mx.contoso.com" {
		t.Errorf("connector FQDN %q", f)
	}
	if pm := st.postmaster(); pm != "postmaster@a.example" {
		t.Errorf("postmaster() = %q, want the first domain's", pm)
	}
}
