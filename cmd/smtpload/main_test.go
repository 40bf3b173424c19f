package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, c Config, asJSON bool, record string)
		err   string // substring of the error; "" for success
	}{
		{name: "ok/defaults", args: nil, check: func(t *testing.T, c Config, asJSON bool, record string) {
			if c.Addr != "127.0.0.1:25" || c.Clients != 32 || c.Messages != 1000 || c.Size != 4096 || c.PerConn != 1 ||
				c.TLS || c.Pipelining || c.SessionOnly || asJSON || record != "" || c.Curves != nil {
				t.Errorf("defaults: %+v json=%v record=%q", c, asJSON, record)
			}
			if c.From != "load@smtpload.test" || c.To != "user@bench.test" || c.Timeout != 60*time.Second {
				t.Errorf("default addresses or timeout: %+v", c)
			}
			if len(c.IDPrefix) != 12 {
				t.Errorf("random Message-ID prefix %q", c.IDPrefix)
			}
		}},
		{name: "ok/everything", args: strings.Fields("-addr [::1]:2525 -c 8 -n 100 -size 10240 -m 5 -tls -pipelining -json -from a@b.test -to c@d.test -helo me.test -servername mail.d.test -curves x25519,P-256 -timeout 5s -id-prefix run1 -record out.txt -duration 3s"),
			check: func(t *testing.T, c Config, asJSON bool, record string) {
				want := Config{Addr: "[::1]:2525", Clients: 8, Messages: 100, Size: 10240, PerConn: 5, TLS: true, Pipelining: true,
					From: "a@b.test", To: "c@d.test", Helo: "me.test", ServerName: "mail.d.test", Timeout: 5 * time.Second,
					IDPrefix: "run1", Duration: 3 * time.Second}
				curves := c.Curves
				c.Curves = nil
				if !reflect.DeepEqual(c, want) || !asJSON || record != "out.txt" {
					t.Errorf("got %+v json=%v record=%q", c, asJSON, record)
				}
				if !slices.Equal(curves, []tls.CurveID{tls.X25519, tls.CurveP256}) {
					t.Errorf("curves %v", curves)
				}
			}},
		{name: "ok/session-only", args: []string{"-session-only", "-tls"}, check: func(t *testing.T, c Config, _ bool, _ string) {
			if !c.SessionOnly || !c.TLS {
				t.Errorf("%+v", c)
			}
		}},
		{name: "ok/unlimited-with-duration", args: []string{"-n", "0", "-duration", "2s"}, check: func(t *testing.T, c Config, _ bool, _ string) {
			if c.Messages != 0 || c.Duration != 2*time.Second {
				t.Errorf("%+v", c)
			}
		}},
		{name: "ok/fewer-messages-than-clients", args: []string{"-n", "3", "-c", "32"}, check: func(t *testing.T, c Config, _ bool, _ string) {
			if c.Clients != 3 {
				t.Errorf("clients %d, want 3", c.Clients)
			}
		}},
		{name: "fail/addr-without-port", args: []string{"-addr", "localhost"}, err: "-addr"},
		{name: "fail/zero-clients", args: []string{"-c", "0"}, err: "-c 0"},
		{name: "fail/negative-messages", args: []string{"-n", "-1"}, err: "-n -1"},
		{name: "fail/unlimited-without-duration", args: []string{"-n", "0"}, err: "-duration"},
		{name: "fail/negative-size", args: []string{"-size", "-5"}, err: "-size"},
		{name: "fail/zero-per-connection", args: []string{"-m", "0"}, err: "-m 0"},
		{name: "fail/zero-timeout", args: []string{"-timeout", "0s"}, err: "-timeout"},
		{name: "fail/unknown-curve", args: []string{"-curves", "x448"}, err: "unknown group"},
		{name: "fail/bad-to", args: []string{"-to", "nobody"}, err: "-to"},
		{name: "fail/to-with-brackets", args: []string{"-to", "<a@b.test>"}, err: "-to"},
		{name: "fail/bad-prefix", args: []string{"-id-prefix", "a@b"}, err: "-id-prefix"},
		{name: "fail/stray-argument", args: []string{"127.0.0.1:25"}, err: "unexpected argument"},
		{name: "fail/unknown-flag", args: []string{"-x"}, err: "flag provided but not defined"},
		{name: "fail/bad-number", args: []string{"-c", "many"}, err: "invalid value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, asJSON, record, err := parseArgs(c.args, io.Discard)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, cfg, asJSON, record)
		})
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	_, _, _, err := parseArgs([]string{"-h"}, io.Discard)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if code := run([]string{"-h"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("exit %d for -h", code)
	}
	if code := run([]string{"-c", "0"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("exit %d for bad arguments, want 2", code)
	}
}
