// Command smtpload is certrelay's SMTP load generator: N concurrent
// clients send M messages of a given size to one server, in plain text or
// with STARTTLS (a full handshake on every connection, never resumed),
// with or without pipelining, one message per connection by default (as
// Postfix's smtp-source with -s), and it reports messages per second, the
// latency of each message from connect to its 250 (p50, p90, p99) and
// the failures by reply class.
//
//	smtpload -addr 127.0.0.1:2525 -c 32 -n 20000 -size 4096 [-tls] [-pipelining] [-json]
//
// Latency is measured per message: for the first message of a connection
// from the start of the TCP connect (so it includes the greeting, EHLO
// and, with -tls, the handshake) to the 250 after the final dot; for a
// later message on the same connection (-m > 1) from its MAIL command.
// With -session-only no message is sent: a session is EHLO, STARTTLS
// and EHLO again, measured from connect to the second EHLO's 250, then
// QUIT — the cost of a TLS session alone.
//
// Every message has a unique Message-ID, <PREFIX.K@smtpload.invalid>;
// -record FILE appends the Message-ID of each message answered 250 to
// FILE as soon as the answer arrives, so a crash test can compare what
// was acknowledged with what was delivered.
//
// SIGINT or SIGTERM stops the load; what was measured so far is reported.
// The exit status is 0 when every message got its 250, 1 when some did
// not, 2 for wrong arguments.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, asJSON, record, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "smtpload:", err)
		return 2
	}
	if record != "" {
		f, err := os.OpenFile(record, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "smtpload:", err)
			return 2
		}
		defer f.Close()
		cfg.Record = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := Run(ctx, cfg)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else {
		io.WriteString(stdout, r.text())
	}
	if r.Failed > 0 {
		return 1
	}
	return 0
}

// parseArgs reads the command line into a Config. It returns flag.ErrHelp
// for -h.
func parseArgs(args []string, stderr io.Writer) (cfg Config, asJSON bool, record string, err error) {
	fs := flag.NewFlagSet("smtpload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:25", "SMTP server host:port")
	fs.IntVar(&cfg.Clients, "c", 32, "concurrent clients (connections)")
	fs.IntVar(&cfg.Messages, "n", 1000, "messages (sessions with -session-only) in all; 0 with -duration: no limit")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (0: when -n are sent)")
	fs.IntVar(&cfg.Size, "size", 4096, "message size in octets, headers included")
	fs.IntVar(&cfg.PerConn, "m", 1, "messages per connection")
	fs.BoolVar(&cfg.TLS, "tls", false, "STARTTLS on every connection (a new TLS session each time, no resumption)")
	fs.BoolVar(&cfg.Pipelining, "pipelining", false, "pipeline MAIL, RCPT and DATA when the server offers PIPELINING")
	fs.BoolVar(&cfg.SessionOnly, "session-only", false, "no message: EHLO, [STARTTLS, EHLO,] QUIT")
	fs.StringVar(&cfg.From, "from", "load@smtpload.test", "MAIL FROM address")
	fs.StringVar(&cfg.To, "to", "user@bench.test", "RCPT TO address")
	fs.StringVar(&cfg.Helo, "helo", "smtpload.test", "EHLO name")
	fs.StringVar(&cfg.ServerName, "servername", "", "TLS server name (SNI); default none")
	curves := fs.String("curves", "", "key exchange groups, comma-separated: X25519MLKEM768, X25519, P256, P384 (default: Go's)")
	fs.DurationVar(&cfg.Timeout, "timeout", 60*time.Second, "bound on each step (connect, each reply)")
	fs.StringVar(&cfg.IDPrefix, "id-prefix", "", "Message-ID prefix (default: random)")
	fs.StringVar(&record, "record", "", "append the Message-ID of each message answered 250 to this file")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if err = fs.Parse(args); err != nil {
		return
	}
	if fs.NArg() > 0 {
		return cfg, false, "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err = cfg.check(); err != nil {
		return
	}
	if cfg.Curves, err = parseCurves(*curves); err != nil {
		return
	}
	if cfg.IDPrefix == "" {
		var b [6]byte
		rand.Read(b[:])
		cfg.IDPrefix = hex.EncodeToString(b[:])
	}
	return cfg, asJSON, record, nil
}

// check validates a Config's numbers and addresses.
func (c *Config) check() error {
	if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
		return fmt.Errorf("-addr %q: want host:port", c.Addr)
	}
	switch {
	case c.Clients < 1:
		return fmt.Errorf("-c %d: want at least 1 client", c.Clients)
	case c.Messages < 0:
		return fmt.Errorf("-n %d: want 0 or more", c.Messages)
	case c.Messages == 0 && c.Duration <= 0:
		return errors.New("-n 0 runs without limit: give -duration too")
	case c.Duration < 0:
		return fmt.Errorf("-duration %v: negative", c.Duration)
	case c.Size < 0:
		return fmt.Errorf("-size %d: negative", c.Size)
	case c.PerConn < 1:
		return fmt.Errorf("-m %d: want at least 1 message per connection", c.PerConn)
	case c.Timeout <= 0:
		return fmt.Errorf("-timeout %v: want a positive duration", c.Timeout)
	case strings.ContainsAny(c.IDPrefix, "<>@ \r\n"):
		return fmt.Errorf("-id-prefix %q: no <, >, @ or blanks", c.IDPrefix)
	case strings.ContainsAny(c.Helo, " \r\n") || c.Helo == "":
		return fmt.Errorf("-helo %q: want one word", c.Helo)
	}
	for _, a := range []struct{ flag, v string }{{"-from", c.From}, {"-to", c.To}} {
		if strings.ContainsAny(a.v, "<> \r\n") || (a.flag == "-to" && !strings.Contains(a.v, "@")) {
			return fmt.Errorf("%s %q: want an address such as user@bench.test", a.flag, a.v)
		}
	}
	if c.Messages > 0 && c.Clients > c.Messages {
		c.Clients = c.Messages // no idle clients
	}
	return nil
}

var curveNames = map[string]tls.CurveID{
	"X25519MLKEM768": tls.X25519MLKEM768,
	"X25519":         tls.X25519,
	"P256":           tls.CurveP256,
	"P384":           tls.CurveP384,
	"P521":           tls.CurveP521,
}

func parseCurves(s string) ([]tls.CurveID, error) {
	if s == "" {
		return nil, nil
	}
	var out []tls.CurveID
	for _, name := range strings.Split(s, ",") {
		id, ok := curveNames[strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(name), "-", ""))]
		if !ok {
			return nil, fmt.Errorf("-curves: unknown group %q (X25519MLKEM768, X25519, P256, P384, P521)", name)
		}
		out = append(out, id)
	}
	return out, nil
}
