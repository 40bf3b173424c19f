package smtp

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// pythonClient drives the server with a client nobody here wrote
// (ARCHITECTURE.md, tests layer 3): Python's smtplib, over STARTTLS with
// AUTH PLAIN and LOGIN, a refused recipient, dot-stuffing and SMTPUTF8.
const pythonClient = `
import json, smtplib, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
out = {}
s = smtplib.SMTP(host, port, local_hostname="python.example.test", timeout=10)
s.ehlo()
out["plain_features"] = sorted(s.esmtp_features)
s.starttls(context=ssl._create_unverified_context())
s.ehlo()
out["tls_features"] = sorted(s.esmtp_features)
out["size"] = s.esmtp_features.get("size")
s.login("alice", "s3cret")
msg = "Subject: from python\r\n\r\n.leading dot\nline two\r\n"
refused = s.sendmail("alice@example.test", ["bob@example.test", "gone@example.test"], msg)
out["refused"] = {k: [v[0], v[1].decode()] for k, v in refused.items()}
refused = s.sendmail("élodie@exemple.test", ["用户@例子.测试"], "Subject: utf8\r\n\r\ncafé\r\n".encode(),
                     mail_options=["SMTPUTF8", "BODY=8BITMIME"])
out["refused_utf8"] = len(refused)
s.quit()

s = smtplib.SMTP(host, port, local_hostname="python.example.test", timeout=10)
s.starttls(context=ssl._create_unverified_context())
s.ehlo()
try:
    s.user, s.password = "alice", "wrong"
    s.auth("PLAIN", s.auth_plain)
except smtplib.SMTPAuthenticationError as e:
    out["bad_auth"] = e.smtp_code
s.user, s.password = "alice", "s3cret"
code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
out["login"] = code
s.quit()
print(json.dumps(out))
`

func TestInteropPythonSmtplib(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		// python3 is part of the test environment: its absence is a
		// broken environment, not a reason to skip.
		t.Fatalf("python3 not found: %v", err)
	}
	h := &fakeHandler{
		caps:      allCaps,
		tlsConfig: getPKI(t).serverConfig(),
		users:     map[string]string{"alice": "s3cret"},
		rcptErr:   map[string]error{"gone@example.test": ErrMailboxUnavailable},
	}
	srv := newTestServer(h)
	addr, _ := startServer(t, srv)
	host, port, _ := net.SplitHostPort(addr)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", pythonClient, host, port)
	outb, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("python smtplib client failed: %v\n%s", err, stderr)
	}
	var out struct {
		PlainFeatures []string         `json:"plain_features"`
		TLSFeatures   []string         `json:"tls_features"`
		Size          string           `json:"size"`
		Refused       map[string][]any `json:"refused"`
		RefusedUTF8   int              `json:"refused_utf8"`
		Login         int              `json:"login"`
		BadAuth       int              `json:"bad_auth"`
	}
	if err := json.Unmarshal(outb, &out); err != nil {
		t.Fatalf("python output %q: %v", outb, err)
	}
	has := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	if !has(out.PlainFeatures, "starttls") || has(out.PlainFeatures, "auth") {
		t.Errorf("features before TLS: %v", out.PlainFeatures)
	}
	if has(out.TLSFeatures, "starttls") || !has(out.TLSFeatures, "auth") || !has(out.TLSFeatures, "pipelining") {
		t.Errorf("features after TLS: %v", out.TLSFeatures)
	}
	if out.Size != strconv.Itoa(DefaultMaxMessageBytes) {
		t.Errorf("SIZE = %q", out.Size)
	}
	if r := out.Refused["gone@example.test"]; len(r) != 2 || r[0] != float64(550) {
		t.Errorf("refused = %v, want gone@example.test with 550", out.Refused)
	}
	if out.RefusedUTF8 != 0 || out.Login != 235 || out.BadAuth != 535 {
		t.Errorf("utf8 refused %d, LOGIN %d, bad AUTH %d", out.RefusedUTF8, out.Login, out.BadAuth)
	}
	_, d, _ := h.snapshot()
	if len(d) != 2 {
		t.Fatalf("delivered %d messages, want 2", len(d))
	}
	if want := "Subject: from python\r\n\r\n.leading dot\r\nline two\r\n"; d[0].body != want {
		t.Errorf("body %q, want %q", d[0].body, want)
	}
	if len(d[0].rcpts) != 1 || d[0].rcpts[0] != "bob@example.test" || d[0].st.TLS == nil || d[0].st.AuthUsername != "alice" {
		t.Errorf("first delivery %+v", d[0])
	}
	if d[1].from != "élodie@exemple.test" || d[1].rcpts[0] != "用户@例子.测试" || !d[1].st.Mail.SMTPUTF8 {
		t.Errorf("UTF-8 delivery %+v", d[1])
	}
}
