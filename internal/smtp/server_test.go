package smtp

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// transcriptCase is one named scripted session (STYLE.md 9), checked
// against its golden transcript and, where it matters, against what the
// Session saw.
type transcriptCase struct {
	name   string
	server func(*Server)
	h      *fakeHandler
	steps  []step
	check  func(t *testing.T, h *fakeHandler, tr string)
}

// Common checks.

func wantDelivered(n int) func(*testing.T, *fakeHandler, string) {
	return func(t *testing.T, h *fakeHandler, _ string) {
		t.Helper()
		_, d, _ := h.snapshot()
		if len(d) != n {
			t.Errorf("delivered %d messages, want %d", len(d), n)
		}
	}
}

func wantBody(body string) func(*testing.T, *fakeHandler, string) {
	return func(t *testing.T, h *fakeHandler, _ string) {
		t.Helper()
		_, d, _ := h.snapshot()
		if len(d) != 1 {
			t.Fatalf("delivered %d messages, want 1", len(d))
		}
		if d[0].body != body {
			t.Errorf("body = %q, want %q", d[0].body, body)
		}
	}
}

// wantNoEvent fails when an event starting with prefix was recorded.
func wantNoEvent(prefix string) func(*testing.T, *fakeHandler, string) {
	return func(t *testing.T, h *fakeHandler, _ string) {
		t.Helper()
		ev, _, _ := h.snapshot()
		for _, e := range ev {
			if strings.HasPrefix(e, prefix) {
				t.Errorf("unexpected event %q in %q", e, ev)
			}
		}
	}
}

func wantEvent(event string) func(*testing.T, *fakeHandler, string) {
	return func(t *testing.T, h *fakeHandler, _ string) {
		t.Helper()
		ev, _, _ := h.snapshot()
		for _, e := range ev {
			if e == event {
				return
			}
		}
		t.Errorf("event %q not recorded in %q", event, ev)
	}
}

func wantReadErr(target error) func(*testing.T, *fakeHandler, string) {
	return func(t *testing.T, h *fakeHandler, _ string) {
		t.Helper()
		_, _, errs := h.snapshot()
		if len(errs) != 1 || !errors.Is(errs[0], target) {
			t.Errorf("Data's reader errors = %v, want one %v", errs, target)
		}
	}
}

func all(checks ...func(*testing.T, *fakeHandler, string)) func(*testing.T, *fakeHandler, string) {
	return func(t *testing.T, h *fakeHandler, tr string) {
		t.Helper()
		for _, c := range checks {
			c(t, h, tr)
		}
	}
}

var (
	ehlo   = cmd("EHLO client.example.test")
	mailA  = cmd("MAIL FROM:<alice@example.test>")
	rcptB  = cmd("RCPT TO:<bob@example.test>")
	dataGo = cmd("DATA")
	quit   = cmd("QUIT")
)

// smuggled is the tail of a smuggling payload: a second message that a
// server honouring a non-standard end marker would accept.
const smuggled = "MAIL FROM:<ceo@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: spoofed\r\n\r\nwire the money\r\n"

func TestServerTranscripts(t *testing.T) {
	cases := []transcriptCase{
		// --- greeting and HELO/EHLO ---
		{name: "ok/greeting-ehlo-quit", h: &fakeHandler{}, steps: []step{ehlo, quit, expectClose}},
		{name: "ok/helo", h: &fakeHandler{}, steps: []step{cmd("HELO client.example.test"), mailA, quit}},
		{name: "ok/ehlo-all-capabilities", h: &fakeHandler{caps: allCaps}, steps: []step{ehlo},
			check: wantEvent("hello client.example.test ext=true")},
		{name: "ok/ehlo-no-starttls-without-certificate", h: &fakeHandler{caps: func(State) Capabilities {
			return Capabilities{StartTLS: false, MaxSize: 1 << 20}
		}}, steps: []step{ehlo, cmd("STARTTLS")}},
		{name: "fail/ehlo-without-name", h: &fakeHandler{}, steps: []step{cmd("EHLO"), cmd("HELO")}},
		{name: "fail/hello-refused-by-policy", h: &fakeHandler{helloErr: Reply(550, "5.7.1", "Go away")},
			steps: []step{ehlo, mailA}},
		{name: "ok/bare-lf-ends-command-line", h: &fakeHandler{}, steps: []step{send("EHLO lf.example.test\nNOOP\n", 2)}},
		{name: "fail/new-session-refused", h: &fakeHandler{newSessionErr: Reply(554, "5.7.1", "No service for you")},
			steps: []step{expectClose}, check: func(t *testing.T, h *fakeHandler, _ string) {
				if h.closedCount() != 0 {
					t.Errorf("Session.Close called %d times for a refused connection", h.closedCount())
				}
			}},
		{name: "fail/new-session-internal-error", h: &fakeHandler{newSessionErr: errors.New("directory down: secret detail")},
			steps: []step{expectClose}, check: func(t *testing.T, _ *fakeHandler, tr string) {
				if strings.Contains(tr, "secret") {
					t.Error("internal error text reached the client")
				}
			}},

		// --- sequence errors ---
		{name: "fail/mail-before-ehlo", h: &fakeHandler{}, steps: []step{mailA, ehlo, mailA}},
		{name: "fail/rcpt-before-mail", h: &fakeHandler{}, steps: []step{ehlo, rcptB}},
		{name: "fail/data-before-rcpt", h: &fakeHandler{}, steps: []step{ehlo, dataGo, mailA, dataGo}},
		{name: "fail/nested-mail", h: &fakeHandler{}, steps: []step{ehlo, mailA, mailA},
			check: all(func(t *testing.T, h *fakeHandler, _ string) {
				ev, _, _ := h.snapshot()
				n := 0
				for _, e := range ev {
					if strings.HasPrefix(e, "mail ") {
						n++
					}
				}
				if n != 1 {
					t.Errorf("Session.Mail called %d times, want 1", n)
				}
			})},

		// --- syntax ---
		{name: "fail/unknown-command", h: &fakeHandler{}, steps: []step{cmd("FOO bar"), cmd(""), cmd("EXPN staff"), cmd("BDAT 10 LAST")}},
		{name: "fail/syntax-errors", server: func(s *Server) { s.MaxErrors = 20 }, h: &fakeHandler{caps: allCaps}, steps: []step{ehlo,
			cmd("MAIL alice@example.test"),
			cmd("MAIL FROM:<alice@@example.test>"),
			cmd("MAIL FROM:<alice@example.test> SIZE=abc"),
			cmd("MAIL FROM:<alice@example.test> FOO=bar"),
			cmd("MAIL FROM:<alice@example.test> BODY=BINARYMIME"),
			cmd("MAIL FROM:<alice@example.test>"),
			cmd("RCPT TO:<>"),
			cmd("RCPT TO:<bob@example.test> NOTIFY=SOMETIMES"),
			cmd("DATA now"),
			cmd("RSET please"),
			cmd("VRFY"),
		}},
		{name: "ok/noop-vrfy-help-rset", h: &fakeHandler{}, steps: []step{cmd("NOOP"), cmd("NOOP hello"),
			cmd("VRFY bob"), cmd("HELP"), ehlo, mailA, cmd("RSET"), mailA},
			check: wantEvent("reset")},
		{name: "fail/too-many-errors", server: func(s *Server) { s.MaxErrors = 3 }, h: &fakeHandler{},
			steps: []step{cmd("FOO"), cmd("BAR"), cmd("BAZ"), expectClose}},
		{name: "fail/http-request", h: &fakeHandler{}, steps: []step{cmd("GET / HTTP/1.1"), expectClose}},

		// --- long lines ---
		{name: "fail/overlong-command-line", h: &fakeHandler{}, steps: []step{
			cmd("NOOP " + strings.Repeat("x", 3000)),
			cmd("NOOP " + strings.Repeat("y", 20000)),
			ehlo, mailA, rcptB,
		}},
		{name: "ok/long-data-line-accepted-by-default", h: &fakeHandler{}, steps: []step{ehlo, mailA, rcptB, dataGo,
			send(strings.Repeat("z", 5000)+"\r\n.\r\n", 1)}, check: wantDelivered(1)},
		{name: "fail/overlong-data-line", server: func(s *Server) { s.MaxDataLineLength = 1000 }, h: &fakeHandler{},
			steps: []step{ehlo, mailA, rcptB, dataGo,
				send("ok line\r\n"+strings.Repeat("z", 999)+"\r\n.\r\n", 1), cmd("NOOP")},
			check: all(wantDelivered(0), wantReadErr(ErrDataLineTooLong))},
		{name: "ok/data-line-at-limit", server: func(s *Server) { s.MaxDataLineLength = 1000 }, h: &fakeHandler{},
			steps: []step{ehlo, mailA, rcptB, dataGo, send(strings.Repeat("z", 998)+"\r\n."+strings.Repeat("d", 998)+"\r\n.\r\n", 1)},
			check: wantDelivered(1)},

		// --- messages ---
		{name: "ok/one-message", h: &fakeHandler{queueID: "Q123"}, steps: []step{ehlo, mailA, rcptB, dataGo,
			send("Subject: hi\r\n\r\nhello\r\n.\r\n", 1), quit},
			check: all(wantBody("Subject: hi\r\n\r\nhello\r\n"), func(t *testing.T, h *fakeHandler, _ string) {
				ev, d, _ := h.snapshot()
				if d[0].from != "alice@example.test" || len(d[0].rcpts) != 1 || d[0].rcpts[0] != "bob@example.test" {
					t.Errorf("envelope = %q %q", d[0].from, d[0].rcpts)
				}
				if ev[len(ev)-2] != "reset" || ev[len(ev)-1] != "close" {
					t.Errorf("events end with %q, want reset, close", ev[len(ev)-2:])
				}
			})},
		{name: "ok/empty-message", h: &fakeHandler{}, steps: []step{ehlo, mailA, rcptB, dataGo, send(".\r\n", 1)},
			check: wantBody("")},
		{name: "ok/dot-unstuffing", h: &fakeHandler{}, steps: []step{ehlo, mailA, rcptB, dataGo,
			send("..\r\n..leading\r\n.x\r\nmid.dle\r\n...\r\n.\r\n", 1)},
			check: wantBody(".\r\n.leading\r\nx\r\nmid.dle\r\n..\r\n")},
		{name: "ok/two-messages-one-session", h: &fakeHandler{}, steps: []step{ehlo,
			mailA, rcptB, dataGo, send("one\r\n.\r\n", 1),
			mailA, rcptB, dataGo, send("two\r\n.\r\n", 1)},
			check: wantDelivered(2)},
		{name: "ok/pipelined-transaction", h: &fakeHandler{}, steps: []step{ehlo,
			send("MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n", 4),
			send("body\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n", 4),
			send("bounce\r\n.\r\nQUIT\r\n", 2)},
			check: all(wantDelivered(2), func(t *testing.T, h *fakeHandler, _ string) {
				_, d, _ := h.snapshot()
				if len(d) == 2 && (len(d[0].rcpts) != 2 || d[1].from != "" || d[1].rcpts[0] != "postmaster") {
					t.Errorf("envelopes = %+v", d)
				}
			})},
		{name: "fail/pipelined-all-recipients-refused", h: &fakeHandler{rcptErr: map[string]error{
			"bob@example.test":   ErrMailboxUnavailable,
			"carol@example.test": Reply(450, "4.2.1", "Mailbox busy"),
		}}, steps: []step{ehlo,
			send("MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n", 4),
			cmd("RSET")},
			check: wantDelivered(0)},
		{name: "fail/policy-internal-error-hidden", h: &fakeHandler{mailErr: map[string]error{
			"alice@example.test": errors.New("queue: disk full at /var/secret"),
		}}, steps: []step{ehlo, mailA}, check: func(t *testing.T, _ *fakeHandler, tr string) {
			if strings.Contains(tr, "secret") || strings.Contains(tr, "disk") {
				t.Error("internal error text reached the client")
			}
		}},
		{name: "fail/policy-421-closes", h: &fakeHandler{rcptErr: map[string]error{
			"bob@example.test": Reply(421, "4.3.2", "Shutting down"),
		}}, steps: []step{ehlo, mailA, rcptB, expectClose}, check: wantEvent("reset")},
		{name: "fail/policy-multiline-reply", h: &fakeHandler{rcptErr: map[string]error{
			"bob@example.test": Reply(550, "5.7.1", "Recipient refused\r\nsee https://example.test/why\n"),
		}}, steps: []step{ehlo, mailA, rcptB}},
		{name: "fail/too-many-recipients", server: func(s *Server) { s.MaxRecipients = 2 }, h: &fakeHandler{},
			steps: []step{ehlo, mailA, rcptB, cmd("RCPT TO:<carol@example.test>"), cmd("RCPT TO:<dave@example.test>"),
				dataGo, send("x\r\n.\r\n", 1)},
			check: func(t *testing.T, h *fakeHandler, _ string) {
				_, d, _ := h.snapshot()
				if len(d) != 1 || len(d[0].rcpts) != 2 {
					t.Errorf("delivered %+v, want one message to two recipients", d)
				}
			}},
		{name: "fail/data-refused-by-session", h: &fakeHandler{dataErr: Reply(554, "5.7.1", "Spam")},
			steps: []step{ehlo, mailA, rcptB, dataGo, send("buy now\r\n.\r\n", 1), cmd("NOOP")},
			check: wantDelivered(0)},

		// --- addresses and parameters ---
		{name: "ok/address-forms", h: &fakeHandler{}, steps: []step{ehlo,
			cmd("MAIL FROM: <alice@example.test>"), // blank after colon, tolerated
			cmd("RCPT TO:<@relay1.example,@relay2.example:bob@example.test>"),
			cmd("RCPT TO:<\"quoted local\"@example.test>"),
			cmd("RCPT TO:<carol@[192.0.2.1]>"),
			cmd("RCPT TO:<dave@[IPv6:2001:db8::1]>"),
			cmd("RCPT TO:erin@example.test"), // no brackets, tolerated
			cmd("RCPT TO:<Postmaster>"),
			cmd("RCPT TO:<postmaster@example.test>"),
		}, check: wantEvent(`rcpt "bob@example.test" {Notify:0 ORcptType: ORcpt:}`)},
		{name: "fail/bad-addresses", h: &fakeHandler{}, steps: []step{ehlo,
			cmd("MAIL FROM:<alice>"),
			cmd("MAIL FROM:<alice@example.test"),
			cmd("MAIL FROM:<alice@exa mple.test>"),
			cmd("MAIL FROM:<ali ce@example.test>"),
			cmd("MAIL FROM:<alice@[300.1.1.1]>"),
			cmd("MAIL FROM:<>"),
			cmd("RCPT TO:<bob@>"),
			cmd("RCPT TO:<@example.test>"),
		}},
		{name: "ok/smtputf8", h: &fakeHandler{}, steps: []step{ehlo,
			cmd("MAIL FROM:<élodie@exemple.test> SMTPUTF8 BODY=8BITMIME SIZE=100"),
			cmd("RCPT TO:<用户@例子.测试>"),
			dataGo, send("Subject: café\r\n\r\n.\r\n", 1)},
			check: wantDelivered(1)},
		{name: "fail/non-ascii-without-smtputf8", h: &fakeHandler{}, steps: []step{ehlo,
			cmd("MAIL FROM:<élodie@exemple.test>"),
			mailA,
			cmd("RCPT TO:<用户@例子.测试>"),
			cmd("RCPT TO:<bad\xff@example.test>"),
		}},
		{name: "ok/dsn-parameters", h: &fakeHandler{caps: func(State) Capabilities { return Capabilities{DSN: true} }},
			steps: []step{ehlo,
				cmd("MAIL FROM:<alice@example.test> RET=HDRS ENVID=QQ+2B1 AUTH=<>"),
				cmd("RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@example.test"),
			},
			check: all(
				wantEvent(`mail "alice@example.test" {Size:0 Body: SMTPUTF8:false Ret:HDRS EnvID:QQ+1 Auth:<> RequireTLS:false}`),
				wantEvent(`rcpt "bob@example.test" {Notify:6 ORcptType:rfc822 ORcpt:bob+x@example.test}`))},
		{name: "fail/dsn-parameters-not-offered", h: &fakeHandler{}, steps: []step{ehlo,
			cmd("MAIL FROM:<alice@example.test> RET=HDRS"), mailA,
			cmd("RCPT TO:<bob@example.test> NOTIFY=NEVER")}},

		// --- SIZE ---
		{name: "fail/size-declared-too-large", h: &fakeHandler{caps: func(State) Capabilities { return Capabilities{MaxSize: 100} }},
			steps: []step{ehlo, cmd("MAIL FROM:<alice@example.test> SIZE=101"), cmd("MAIL FROM:<alice@example.test> SIZE=100")},
			check: wantNoEvent(`mail "alice@example.test" {Size:101`)},
		{name: "fail/size-actual-too-large", h: &fakeHandler{caps: func(State) Capabilities { return Capabilities{MaxSize: 100} }},
			steps: []step{ehlo, mailA, rcptB, dataGo,
				send(strings.Repeat("0123456789012345678\r\n", 20)+".\r\n", 1), // 420 octets
				cmd("NOOP"),
				mailA, rcptB, dataGo, send(strings.Repeat("x", 98)+"\r\n.\r\n", 1)}, // exactly 100
			check: all(wantDelivered(1), wantReadErr(ErrMessageTooLarge))},
		{name: "fail/data-ignores-reader-error", h: &fakeHandler{dataMode: "ignore-errors",
			caps: func(State) Capabilities { return Capabilities{MaxSize: 10} }},
			steps: []step{ehlo, mailA, rcptB, dataGo, send("this is more than ten octets\r\n.\r\n", 1)}},
		{name: "fail/data-returns-before-end", h: &fakeHandler{dataMode: "partial"},
			steps: []step{ehlo, mailA, rcptB, dataGo, send("a message Data did not read\r\n.\r\n", 1), cmd("NOOP")}},

		// --- bare CR/LF and SMTP smuggling ---
		{name: "fail/bare-lf-in-data", h: &fakeHandler{}, steps: []step{ehlo, mailA, rcptB, dataGo,
			send("line one\nline two\r\n.\r\n", 1), cmd("NOOP")},
			check: all(wantDelivered(0), wantReadErr(ErrBareNewline))},
		{name: "fail/bare-cr-in-data", h: &fakeHandler{}, steps: []step{ehlo, mailA, rcptB, dataGo,
			send("line one\rline two\r\n.\r\n", 1)},
			check: all(wantDelivered(0), wantReadErr(ErrBareNewline))},
		{name: "fail/bare-lf-end-marker-waits-for-crlf", server: func(s *Server) { s.DataTimeout = 200 * time.Millisecond },
			h: &fakeHandler{}, steps: []step{ehlo, mailA, rcptB, dataGo, send("unix client\n.\n", 1), expectClose},
			check: wantDelivered(0)},
	}
	for _, p := range []struct{ name, marker string }{
		{"lf-dot-lf", "\n.\n"},
		{"lf-dot-crlf", "\n.\r\n"},
		{"crlf-dot-lf", "\r\n.\n"},
		{"cr-dot-cr", "\r.\r"},
		{"cr-dot-crlf", "\r.\r\n"},
		{"crlf-dot-cr", "\r\n.\r"},
		{"crlf-dot-cr-lf-split", "\r\n.\r\r\n"},
	} {
		cases = append(cases, transcriptCase{
			name: "fail/smuggling-" + p.name,
			h:    &fakeHandler{},
			steps: []step{ehlo, mailA, rcptB, dataGo,
				send("Subject: innocent\r\n\r\nhello"+p.marker+smuggled+".\r\n", 1), cmd("NOOP")},
			check: all(wantDelivered(0), wantReadErr(ErrBareNewline), wantNoEvent(`mail "ceo@example.test"`)),
		})
	}
	cases = append(cases, tlsCases()...)
	cases = append(cases, authCases()...)
	cases = append(cases, timeoutCases()...)
	cases = append(cases, limitCases()...)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTestServer(tc.h)
			if tc.server != nil {
				tc.server(srv)
			}
			tr := runTranscript(t, srv, tc.steps)
			golden(t, tc.name, tr)
			if tc.check != nil {
				// ServeConn has returned: the session's records are complete.
				tc.check(t, tc.h, tr)
			}
		})
	}
}

func tlsCases() []transcriptCase {
	withTLS := func(caps func(State) Capabilities) *fakeHandler {
		return &fakeHandler{caps: caps, tlsConfig: getPKI(nil).serverConfig()}
	}
	return []transcriptCase{
		{name: "ok/starttls", h: withTLS(allCaps), steps: []step{ehlo, cmd("STARTTLS"), startTLSHandshake,
			mailA, ehlo, mailA, rcptB, dataGo, send("secret\r\n.\r\n", 1)},
			check: func(t *testing.T, h *fakeHandler, _ string) {
				_, d, _ := h.snapshot()
				if len(d) != 1 || d[0].st.TLS == nil || d[0].st.AnonymousTLS {
					t.Fatalf("delivery %+v: want one, over STARTTLS", d)
				}
				if d[0].st.Hello != "client.example.test" {
					t.Errorf("Hello = %q", d[0].st.Hello)
				}
			}},
		{name: "fail/starttls-twice", h: withTLS(allCaps), steps: []step{ehlo, cmd("STARTTLS"), startTLSHandshake,
			ehlo, cmd("STARTTLS"), cmd("X-ANONYMOUSTLS")}},
		{name: "fail/starttls-plaintext-injection", h: withTLS(allCaps), steps: []step{ehlo,
			send("STARTTLS\r\nMAIL FROM:<injected@example.test>\r\n", 1), startTLSHandshake,
			ehlo, rcptB},
			check: wantNoEvent(`mail "injected@example.test"`)},
		{name: "fail/starttls-in-transaction", h: withTLS(allCaps), steps: []step{ehlo, mailA, cmd("STARTTLS")}},
		{name: "fail/starttls-with-argument", h: withTLS(allCaps), steps: []step{ehlo, cmd("STARTTLS now")}},
		{name: "fail/starttls-not-offered", h: withTLS(func(State) Capabilities { return Capabilities{} }),
			steps: []step{ehlo, cmd("STARTTLS"), cmd("X-ANONYMOUSTLS"), cmd("NOOP")}},
		{name: "fail/starttls-no-config", h: &fakeHandler{caps: allCaps}, steps: []step{ehlo, cmd("STARTTLS"), cmd("NOOP")},
			check: wantEvent("tlsconfig anonymous=false")},
		{name: "fail/starttls-handshake-failure", h: withTLS(allCaps), steps: []step{ehlo, cmd("STARTTLS"),
			send("this is not a TLS client hello\r\n", 0), expectClose}},
		{name: "ok/anonymoustls-records-verb", h: withTLS(allCaps), steps: []step{ehlo, cmd("X-ANONYMOUSTLS"), startTLSHandshake,
			ehlo, mailA, rcptB, dataGo, send("internal\r\n.\r\n", 1)},
			check: all(wantEvent("tlsconfig anonymous=true"), func(t *testing.T, h *fakeHandler, _ string) {
				_, d, _ := h.snapshot()
				if len(d) != 1 || d[0].st.TLS == nil || !d[0].st.AnonymousTLS {
					t.Fatalf("delivery %+v: want one, over X-ANONYMOUSTLS", d)
				}
			})},
		{name: "ok/capabilities-change-after-tls", h: withTLS(func(st State) Capabilities {
			if st.TLS != nil {
				return Capabilities{MaxSize: 2000, AuthMechanisms: []string{"PLAIN"}}
			}
			return Capabilities{MaxSize: 1000, StartTLS: true, AuthMechanisms: []string{"PLAIN"}}
		}), steps: []step{ehlo, cmd("STARTTLS"), startTLSHandshake, ehlo}},
	}
}

func authCases() []transcriptCase {
	users := map[string]string{"alice": "s3cret"}
	withTLS := func(caps func(State) Capabilities) *fakeHandler {
		return &fakeHandler{caps: caps, tlsConfig: getPKI(nil).serverConfig(), users: users}
	}
	overTLS := []step{ehlo, cmd("STARTTLS"), startTLSHandshake, ehlo}
	steps := func(s ...step) []step { return append(append([]step(nil), overTLS...), s...) }
	return []transcriptCase{
		{name: "fail/auth-before-tls", h: withTLS(allCaps), steps: []step{ehlo, cmd("AUTH PLAIN " + b64("\x00alice\x00s3cret"))},
			check: wantNoEvent("auth")},
		{name: "ok/auth-without-tls-when-policy-allows", h: withTLS(func(State) Capabilities {
			return Capabilities{AuthMechanisms: []string{"PLAIN", "CRAM-MD5"}, AuthWithoutTLS: true}
		}), steps: []step{ehlo, cmd("AUTH PLAIN " + b64("\x00alice\x00s3cret"))}},
		{name: "ok/auth-plain-initial-response", h: withTLS(allCaps),
			steps: steps(cmd("AUTH PLAIN "+b64("\x00alice\x00s3cret")), mailA),
			check: wantEvent(`auth PLAIN identity="" user="alice"`)},
		{name: "ok/auth-plain-continuation", h: withTLS(allCaps),
			steps: steps(cmd("AUTH PLAIN"), cmd(b64("admin\x00alice\x00s3cret"))),
			check: wantEvent(`auth PLAIN identity="admin" user="alice"`)},
		{name: "ok/auth-login", h: withTLS(allCaps),
			steps: steps(cmd("AUTH LOGIN"), cmd(b64("alice")), cmd(b64("s3cret")))},
		{name: "ok/auth-login-initial-response", h: withTLS(allCaps),
			steps: steps(cmd("auth login "+b64("alice")), cmd(b64("s3cret")))},
		{name: "fail/auth-bad-credentials", h: withTLS(allCaps),
			steps: steps(cmd("AUTH PLAIN "+b64("\x00alice\x00wrong")), cmd("AUTH LOGIN"), cmd(b64("alice")), cmd(b64("nope")))},
		{name: "fail/auth-twice", h: withTLS(allCaps),
			steps: steps(cmd("AUTH PLAIN "+b64("\x00alice\x00s3cret")), cmd("AUTH PLAIN "+b64("\x00alice\x00s3cret")))},
		{name: "fail/auth-cancelled", h: withTLS(allCaps), steps: steps(cmd("AUTH PLAIN"), cmd("*"), cmd("AUTH LOGIN"), cmd(b64("alice")), cmd("*"))},
		{name: "fail/auth-bad-base64", h: withTLS(allCaps), steps: steps(cmd("AUTH PLAIN !!!"), cmd("AUTH PLAIN "+b64("no-nuls")))},
		{name: "fail/auth-unknown-mechanism", h: withTLS(allCaps), steps: steps(cmd("AUTH CRAM-MD5"), cmd("AUTH"))},
		{name: "fail/auth-not-offered", h: withTLS(func(State) Capabilities { return Capabilities{StartTLS: true} }),
			steps: steps(cmd("AUTH PLAIN " + b64("\x00alice\x00s3cret")))},
		{name: "fail/auth-in-transaction", h: withTLS(allCaps), steps: steps(mailA, cmd("AUTH PLAIN "+b64("\x00alice\x00s3cret")))},
		{name: "fail/auth-after-helo", h: withTLS(allCaps), steps: []step{ehlo, cmd("STARTTLS"), startTLSHandshake,
			cmd("HELO client.example.test"), cmd("AUTH PLAIN " + b64("\x00alice\x00s3cret"))}},
		{name: "fail/auth-internal-error", h: &fakeHandler{caps: allCaps, tlsConfig: getPKI(nil).serverConfig(),
			authErr: fmt.Errorf("ldap: bind failed: password for cn=alice is s3cret")},
			steps: steps(cmd("AUTH PLAIN " + b64("\x00alice\x00s3cret"))),
			check: func(t *testing.T, _ *fakeHandler, tr string) {
				if strings.Contains(tr, "ldap") {
					t.Error("internal error text reached the client")
				}
			}},
		{name: "fail/auth-brute-force-closes", server: func(s *Server) { s.MaxErrors = 3 }, h: withTLS(allCaps),
			steps: steps(cmd("AUTH PLAIN "+b64("\x00alice\x00a")), cmd("AUTH PLAIN "+b64("\x00alice\x00b")),
				cmd("AUTH PLAIN "+b64("\x00alice\x00c")), expectClose)},
	}
}

func timeoutCases() []transcriptCase {
	short := func(s *Server) {
		s.ReadTimeout = 300 * time.Millisecond
		s.DataTimeout = 300 * time.Millisecond
	}
	return []transcriptCase{
		{name: "fail/stall-mid-data", server: short, h: &fakeHandler{},
			steps: []step{ehlo, mailA, rcptB, dataGo, send("Subject: half a message\r\n\r\nand then nothing", 1), expectClose},
			check: all(wantDelivered(0), func(t *testing.T, h *fakeHandler, _ string) {
				_, _, errs := h.snapshot()
				if len(errs) != 1 || !isTimeout(errs[0]) {
					t.Errorf("Data's reader errors = %v, want a timeout", errs)
				}
			})},
		{name: "fail/stall-waiting-for-command", server: short, h: &fakeHandler{},
			steps: []step{ehlo, send("", 1), expectClose}},
		{name: "fail/stall-mid-command-line", server: short, h: &fakeHandler{},
			steps: []step{ehlo, send("MAIL FROM:<ali", 1), expectClose}},
	}
}
