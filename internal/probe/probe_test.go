package probe

import (
	"context"
	"strings"
	"testing"
)

// TestOnlyLocalAddresses: the probe never connects outside this machine;
// an unspecified address is probed on loopback.
func TestOnlyLocalAddresses(t *testing.T) {
	for _, c := range []struct {
		addr  string
		local bool
	}{
		{"127.0.0.1:25", true}, {"0.0.0.0:25", true}, {"[::]:25", true}, {":25", true},
		{"192.0.2.1:25", false}, {"mail.example.com:25", false},
	} {
		if got := local(Dialable(c.addr)); got != c.local {
			t.Errorf("%s: local = %v", c.addr, got)
		}
	}
	r := Run(context.Background(), Target{Addr: "192.0.2.1:25", Mode: SMTP})
	if r.Err == nil || !strings.Contains(r.Err.Error(), "not an address of this machine") {
		t.Fatalf("a remote address was probed: %v", r.Err)
	}
}
