package admin

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"certrelay/internal/directory"
)

// ReceiveLimitOptions change a receive connector's limits (SPEC P1); nil
// fields keep the current value (on add: the defaults of
// internal/directory/limits.go). Values are text, as typed: counts in
// digits, durations as 10m, 90s or 00:10:00.
type ReceiveLimitOptions struct {
	MaxInboundConnection          *string // 1 to 1000000; default 5000
	MaxInboundConnectionPerSource *string // 1 to MaxInboundConnection; default 20
	ConnectionTimeout             *string // 1 s to 1 day; default 10 min
	ConnectionInactivityTimeout   *string // 1 s to less than ConnectionTimeout; default 5 min
	MessageTimeout                *string // 1 s to 1 day; default 10 min
	MaxRecipientsPerMessage       *string // 100 to 100000; default 200
}

// Bounds of the limits. A connector cannot be unlimited: every listener
// has limits (SPEC P1).
const (
	maxInboundConnectionCeiling = 1000000
	minLimitDuration            = time.Second
	maxLimitDuration            = 24 * time.Hour
	// MinRecipientsPerMessage is RFC 5321 4.5.3.1.8's floor: a server
	// must accept at least 100 recipients per message.
	MinRecipientsPerMessage     = 100
	maxRecipientsPerMessageCeil = 100000
)

// applyLimits validates o and applies it to c (the caller keeps c
// unchanged on error).
func applyLimits(c *directory.ReceiveConnector, o ReceiveLimitOptions) error {
	if o.MaxInboundConnection != nil {
		n, err := parseCount(*o.MaxInboundConnection, "MaxInboundConnection", 1, maxInboundConnectionCeiling,
			fmt.Sprintf("connections at once (default %d); a connector cannot be unlimited", directory.DefaultMaxInboundConnection))
		if err != nil {
			return err
		}
		c.MaxInboundConnection = n
	}
	if o.MaxInboundConnectionPerSource != nil {
		n, err := parseCount(*o.MaxInboundConnectionPerSource, "MaxInboundConnectionPerSource", 1, maxInboundConnectionCeiling,
			fmt.Sprintf("connections at once from one client address (default %d)", directory.DefaultMaxInboundConnectionPerSource))
		if err != nil {
			return err
		}
		c.MaxInboundConnectionPerSource = n
	}
	for _, d := range []struct {
		v     *string
		param string
		dst   *directory.Duration
	}{
		{o.ConnectionTimeout, "ConnectionTimeout", &c.ConnectionTimeout},
		{o.ConnectionInactivityTimeout, "ConnectionInactivityTimeout", &c.ConnectionInactivityTimeout},
		{o.MessageTimeout, "MessageTimeout", &c.MessageTimeout},
	} {
		if d.v == nil {
			continue
		}
		v, err := directory.ParseDuration(*d.v)
		if err != nil {
			return invalidValue(d.param, *d.v, err)
		}
		if v < minLimitDuration || v > maxLimitDuration {
			return invalid(d.param, *d.v, "{-%s} %s: give 1 second to 24 hours (such as 10m or 00:10:00)", markup(d.param), strings.TrimSpace(*d.v))
		}
		*d.dst = directory.Duration(v.Round(time.Second))
	}
	if o.MaxRecipientsPerMessage != nil {
		n, err := parseCount(*o.MaxRecipientsPerMessage, "MaxRecipientsPerMessage", MinRecipientsPerMessage, maxRecipientsPerMessageCeil,
			fmt.Sprintf("recipients (default %d); RFC 5321 4.5.3.1.8 requires accepting at least %d", directory.DefaultMaxRecipientsPerMessage, MinRecipientsPerMessage))
		if err != nil {
			return err
		}
		c.MaxRecipientsPerMessage = n
	}
	// Rules between the limits, checked on the result so that the order
	// of the flags does not matter.
	if c.MaxInboundConnectionPerSource > c.MaxInboundConnection {
		return invalid("MaxInboundConnectionPerSource", fmt.Sprint(c.MaxInboundConnectionPerSource), "{-MaxInboundConnectionPerSource} %d is more than {-MaxInboundConnection} %d",
			c.MaxInboundConnectionPerSource, c.MaxInboundConnection).fix("lower the first or raise the second")
	}
	if c.ConnectionInactivityTimeout >= c.ConnectionTimeout {
		return invalid("ConnectionInactivityTimeout", c.ConnectionInactivityTimeout.String(), "{-ConnectionInactivityTimeout} %s must be shorter than {-ConnectionTimeout} %s (the session's whole budget)",
			c.ConnectionInactivityTimeout, c.ConnectionTimeout).fix("lower the first or raise the second")
	}
	return nil
}

// parseCount reads a whole number from lo to hi for parameter param;
// what says what it counts, for the error.
func parseCount(s, param string, lo, hi int, what string) (int, error) {
	t := strings.TrimSpace(s)
	n, err := strconv.Atoi(t)
	if err != nil || n < lo || n > hi {
		return 0, invalid(param, t, "{-%s} %q: give a whole number from %d to %d, of %s", markup(param), t, lo, hi, what)
	}
	return n, nil
}
