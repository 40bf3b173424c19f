package directory

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Defaults of a receive connector's limits (SPEC P1): a new connector gets
// them, and so does one stored before the limits existed.
const (
	// DefaultMaxInboundConnection: Exchange's default.
	DefaultMaxInboundConnection = 5000
	// DefaultMaxInboundConnectionPerSource: Exchange's default.
	DefaultMaxInboundConnectionPerSource = 20
	// DefaultConnectionTimeout: Exchange's default on a hub.
	DefaultConnectionTimeout = Duration(10 * time.Minute)
	// DefaultConnectionInactivityTimeout: Exchange's default, and the
	// server's wait for a command in RFC 5321 4.5.3.2.7.
	DefaultConnectionInactivityTimeout = Duration(5 * time.Minute)
	// DefaultMessageTimeout: certrelay's own; a message also ends with its
	// session, whichever budget is spent first.
	DefaultMessageTimeout = Duration(10 * time.Minute)
	// DefaultMaxRecipientsPerMessage: Exchange's receive connector
	// default; RFC 5321 4.5.3.1.8 requires at least 100.
	DefaultMaxRecipientsPerMessage = 200
)

// ApplyLimitDefaults sets every limit that is zero to its default.
func (c *ReceiveConnector) ApplyLimitDefaults() {
	if c.MaxInboundConnection <= 0 {
		c.MaxInboundConnection = DefaultMaxInboundConnection
	}
	if c.MaxInboundConnectionPerSource <= 0 {
		c.MaxInboundConnectionPerSource = min(DefaultMaxInboundConnectionPerSource, c.MaxInboundConnection)
	}
	if c.ConnectionTimeout <= 0 {
		c.ConnectionTimeout = DefaultConnectionTimeout
	}
	if c.ConnectionInactivityTimeout <= 0 {
		c.ConnectionInactivityTimeout = min(DefaultConnectionInactivityTimeout, c.ConnectionTimeout)
	}
	if c.MessageTimeout <= 0 {
		c.MessageTimeout = DefaultMessageTimeout
	}
	if c.MaxRecipientsPerMessage <= 0 {
		c.MaxRecipientsPerMessage = DefaultMaxRecipientsPerMessage
	}
}

// UnmarshalJSON decodes a connector and gives the limits it lacks their
// defaults, whichever backend stored it.
func (c *ReceiveConnector) UnmarshalJSON(b []byte) error {
	type plain ReceiveConnector // without this method
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*c = ReceiveConnector(p)
	c.ApplyLimitDefaults()
	return nil
}

// Duration is a span of time printed, and stored, as Exchange prints one:
// "00:10:00", or "1.00:00:00" for a day ([d.]hh:mm:ss; whole seconds).
type Duration time.Duration

// String returns [d.]hh:mm:ss.
func (d Duration) String() string {
	t := time.Duration(d).Round(time.Second)
	neg := ""
	if t < 0 {
		neg, t = "-", -t
	}
	days := t / (24 * time.Hour)
	t -= days * 24 * time.Hour
	h, m, s := t/time.Hour, t%time.Hour/time.Minute, t%time.Minute/time.Second
	if days > 0 {
		return fmt.Sprintf("%s%d.%02d:%02d:%02d", neg, days, h, m, s)
	}
	return fmt.Sprintf("%s%02d:%02d:%02d", neg, h, m, s)
}

// MarshalJSON writes the String form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads what ParseDuration reads, or a number of
// nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("a duration is a string such as \"00:10:00\": %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration reads a span of time written the Go way ("10m", "90s",
// "1h30m") or Exchange's way ("00:10:00", "1.00:00:00").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, ":") {
		days := 0
		rest := s
		if i := strings.IndexByte(s, '.'); i >= 0 && i < strings.IndexByte(s, ':') {
			n, err := strconv.Atoi(s[:i])
			if err != nil || !digits(s[:i]) {
				return 0, fmt.Errorf("duration %q: write it as 10m, 90s or 00:10:00", s)
			}
			days, rest = n, s[i+1:]
		}
		parts := strings.Split(rest, ":")
		if len(parts) != 3 {
			return 0, fmt.Errorf("duration %q: write it as 10m, 90s or 00:10:00", s)
		}
		var v [3]int
		for i, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil || !digits(p) || (i > 0 && n > 59) {
				return 0, fmt.Errorf("duration %q: write it as 10m, 90s or 00:10:00", s)
			}
			v[i] = n
		}
		return time.Duration(days)*24*time.Hour + time.Duration(v[0])*time.Hour +
			time.Duration(v[1])*time.Minute + time.Duration(v[2])*time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: write it as 10m, 90s or 00:10:00", s)
	}
	return d, nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
