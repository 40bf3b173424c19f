package directory

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		text string
	}{
		{"10m", 10 * time.Minute, "00:10:00"},
		{"00:10:00", 10 * time.Minute, "00:10:00"},
		{"90s", 90 * time.Second, "00:01:30"},
		{"1.00:00:00", 24 * time.Hour, "1.00:00:00"},
		{"1h30m5s", time.Hour + 30*time.Minute + 5*time.Second, "01:30:05"},
	} {
		got, err := ParseDuration(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if s := Duration(got).String(); s != c.text {
			t.Errorf("Duration(%v) = %q, want %q", got, s, c.text)
		}
	}
	for _, bad := range []string{"", "ten", "00:61:00", "1:2", "x.00:00:00", "-00:01:00"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

// TestConnectorStoredBeforeLimits: a connector stored without limits
// reads with the defaults; one with limits keeps them.
func TestConnectorStoredBeforeLimits(t *testing.T) {
	var c ReceiveConnector
	if err := json.Unmarshal([]byte(`{"Name":"Old","Bindings":["127.0.0.1:2525"],"MaxMessageSize":1024}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "Old" || c.MaxMessageSize != 1024 || c.MaxInboundConnection != DefaultMaxInboundConnection ||
		c.MaxInboundConnectionPerSource != DefaultMaxInboundConnectionPerSource || c.ConnectionTimeout != DefaultConnectionTimeout ||
		c.ConnectionInactivityTimeout != DefaultConnectionInactivityTimeout || c.MessageTimeout != DefaultMessageTimeout ||
		c.MaxRecipientsPerMessage != DefaultMaxRecipientsPerMessage {
		t.Errorf("old connector read as %+v", c)
	}
	c.ConnectionTimeout = Duration(3 * time.Minute)
	c.MaxRecipientsPerMessage = 150
	b, _ := json.Marshal(c)
	var back ReceiveConnector
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ConnectionTimeout != c.ConnectionTimeout || back.MaxRecipientsPerMessage != 150 {
		t.Errorf("round trip through %s gave %+v", b, back)
	}
}
