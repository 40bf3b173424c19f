package e2e

import (
	"strings"
	"testing"
)

// TestConnectorBadInput: bad connector, domain and mailbox settings get a
// clear error and change nothing.
func TestConnectorBadInput(t *testing.T) {
	e := newEnv(t)
	e.ok("setup", "--fqdn", "hub.contoso.test")
	def := "Default " + e.server().Name
	e.ok("domain", "add", "contoso.test")
	e.write("pw", []byte("long-enough-password\n"))
	e.write("short", []byte("short\n"))
	state := func() string {
		return e.ok("connector", "receive", "list", "--json") + e.ok("connector", "send", "list", "--json") +
			e.ok("domain", "list", "--json") + e.ok("mailbox", "list", "--json")
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"binding-without-port", []string{"connector", "receive", "add", "X", "--bindings", "127.0.0.1"}, "IP:PORT"},
		{"binding-with-a-name", []string{"connector", "receive", "add", "X", "--bindings", "mail.contoso.test:25"}, "not an IP address"},
		{"binding-port-out-of-range", []string{"connector", "receive", "add", "X", "--bindings", "127.0.0.1:70000"}, "1 to 65535"},
		{"binding-taken", []string{"connector", "receive", "add", "X", "--bindings", "127.0.0.1:2525"}, "taken by receive connector"},
		{"no-bindings", []string{"connector", "receive", "add", "X"}, "--bindings"},
		{"duplicate-name", []string{"connector", "receive", "add", def, "--bindings", "127.0.0.1:2600"}, "exists already"},
		{"wildcard-fqdn", []string{"connector", "receive", "set", def, "--fqdn", "*.contoso.test"}, "not a wildcard"},
		{"unknown-permission-group", []string{"connector", "receive", "set", def, "--permission-groups", "Everyone"}, "unknown permission group"},
		{"unknown-auth-mechanism", []string{"connector", "receive", "set", def, "--auth-mechanism", "Kerberos"}, "unknown auth mechanism"},
		{"require-tls-without-tls", []string{"connector", "receive", "set", def, "--auth-mechanism", "None", "--require-tls"}, "needs the Tls auth mechanism"},
		{"bad-size", []string{"connector", "receive", "set", def, "--max-message-size", "lots"}, "message size"},
		{"bad-tls-certificate-name", []string{"connector", "receive", "set", def, "--tls-certificate-name", "CN=x"}, "<I>issuer<S>subject"},
		{"unknown-receive-connector", []string{"connector", "receive", "set", "Nope", "--fqdn", "a.contoso.test"}, "not in the directory"},
		{"max-inbound-connection-zero", []string{"connector", "receive", "set", def, "--max-inbound-connection", "0"}, "cannot be unlimited"},
		{"max-inbound-connection-not-a-number", []string{"connector", "receive", "set", def, "--max-inbound-connection", "lots"}, "whole number from 1 to 1000000"},
		{"per-source-above-total", []string{"connector", "receive", "set", def, "--max-inbound-connection", "10", "--max-inbound-connection-per-source", "20"}, "is more than --max-inbound-connection 10"},
		{"per-source-above-total-default", []string{"connector", "receive", "set", def, "--max-inbound-connection-per-source", "6000"}, "is more than --max-inbound-connection 5000"},
		{"connection-timeout-not-a-duration", []string{"connector", "receive", "set", def, "--connection-timeout", "ten minutes"}, "10m, 90s or 00:10:00"},
		{"connection-timeout-zero", []string{"connector", "receive", "set", def, "--connection-timeout", "0s"}, "1 second to 24 hours"},
		{"message-timeout-two-days", []string{"connector", "receive", "set", def, "--message-timeout", "48h"}, "1 second to 24 hours"},
		{"inactivity-not-below-session", []string{"connector", "receive", "set", def, "--connection-timeout", "5m"}, "must be shorter than --connection-timeout"},
		{"recipients-below-rfc-minimum", []string{"connector", "receive", "set", def, "--max-recipients-per-message", "50"}, "RFC 5321"},
		{"recipients-above-ceiling", []string{"connector", "receive", "add", "X", "--bindings", "127.0.0.1:2601", "--max-recipients-per-message", "100001"}, "100 to 100000"},
		{"send-without-address-space", []string{"connector", "send", "add", "S"}, "--address-space"},
		{"send-bad-address-space", []string{"connector", "send", "add", "S", "--address-space", "x400:c=us;1"}, "only smtp"},
		{"send-bad-cost", []string{"connector", "send", "add", "S", "--address-space", "smtp:partner.test;0"}, "cost must be 1 to 100"},
		{"send-bad-smart-host", []string{"connector", "send", "add", "S", "--address-space", "*", "--smart-host", "bad host:25"}, "smart host"},
		{"domain-invalid", []string{"domain", "add", "bad_domain!"}, "invalid domain name"},
		{"domain-twice", []string{"domain", "add", "contoso.test"}, "already"},
		{"mailbox-outside-accepted-domains", []string{"mailbox", "add", "bob@elsewhere.test", "--password-file", "pw"}, "not an accepted domain"},
		{"mailbox-bad-address", []string{"mailbox", "add", "bob", "--password-file", "pw"}, "user@domain"},
		{"mailbox-short-password", []string{"mailbox", "add", "bob@contoso.test", "--password-file", "short"}, "shorter than 8"},
		{"mailbox-password-on-command-line", []string{"mailbox", "add", "bob@contoso.test"}, "--password-file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := state()
			r := e.run("", c.args...)
			if r.code == 0 || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, stderr %q, want %q", r.code, r.stderr, c.want)
			}
			if after := state(); after != before {
				t.Errorf("the directory changed:\n%s\n---\n%s", before, after)
			}
		})
	}
}
