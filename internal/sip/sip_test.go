package sip

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
)

const options = "OPTIONS sip:um@mail.contoso.test SIP/2.0\r\n" +
	"Via: SIP/2.0/TLS 127.0.0.1:5070;branch=z9hG4bK776asdhds\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: <sip:um@mail.contoso.test>\r\n" +
	"From: <sip:probe@client.test>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710\r\n" +
	"CSeq: 63104 OPTIONS\r\n" +
	"Content-Length: 0\r\n\r\n"

func exchange(t *testing.T, input string) string {
	t.Helper()
	srv, cli := net.Pipe()
	done := make(chan struct{})
	go func() { Serve(context.Background(), srv, Config{}); close(done) }()
	go func() { cli.Write([]byte(input)) }()
	var out strings.Builder
	br := bufio.NewReader(cli)
	for {
		line, err := br.ReadString('\n')
		out.WriteString(line)
		if err != nil || (line == "\r\n" && strings.Count(out.String(), "\r\n\r\n") >= strings.Count(input, "\r\n\r\n")) {
			break
		}
	}
	cli.Close()
	<-done
	return out.String()
}

func TestOptionsAnswered(t *testing.T) {
	out := exchange(t, options)
	for _, want := range []string{"SIP/2.0 200 OK\r\n", "Via: SIP/2.0/TLS 127.0.0.1:5070;branch=z9hG4bK776asdhds\r\n", "CSeq: 63104 OPTIONS\r\n",
		"Call-ID: a84b4c76e66710\r\n", "From: <sip:probe@client.test>;tag=1928301774\r\n", "To: <sip:um@mail.contoso.test>;tag=", "Allow: OPTIONS\r\n", "Content-Length: 0\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("response lacks %q:\n%s", want, out)
		}
	}
}

func TestOtherMethodsRefused(t *testing.T) {
	inv := strings.Replace(strings.Replace(options, "OPTIONS sip", "INVITE sip", 1), "63104 OPTIONS", "1 INVITE", 1)
	if out := exchange(t, inv); !strings.HasPrefix(out, "SIP/2.0 405 Method Not Allowed\r\n") {
		t.Errorf("INVITE answered:\n%s", out)
	}
}

func TestBadInput(t *testing.T) {
	cases := map[string]string{
		"bad/start-line":        "HELLO\r\n\r\n",
		"bad/no-call-id":        strings.Replace(options, "Call-ID: a84b4c76e66710\r\n", "", 1),
		"bad/no-content-length": strings.Replace(options, "Content-Length: 0\r\n", "", 1),
		"bad/negative-length":   strings.Replace(options, "Content-Length: 0", "Content-Length: -5", 1),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if out := exchange(t, in); !strings.HasPrefix(out, "SIP/2.0 400 Bad Request\r\n") {
				t.Errorf("answered:\n%s", out)
			}
		})
	}
	huge := "OPTIONS sip:x SIP/2.0\r\nX-Pad: " + strings.Repeat("a", 20000) + "\r\n\r\n"
	if out := exchange(t, huge); !strings.HasPrefix(out, "SIP/2.0 513 Message Too Large\r\n") {
		t.Errorf("oversized request answered:\n%s", out)
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(options))
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\nv: a\r\nf: b\r\nt: c\r\ni: d\r\nCSeq: 1 OPTIONS\r\nl: 3\r\n\r\nabc"))
	f.Add([]byte("\r\n\r\nINVITE sip:x SIP/2.0\r\n folded\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Read(bufio.NewReaderSize(strings.NewReader(string(data)), 64), 1024, 256)
		if err != nil {
			return
		}
		if len(r.Body) > 256 || r.Get("call-id") == "" {
			t.Fatalf("accepted %+v", r)
		}
		resp := Response(r, 200, "OK", "x")
		if !strings.HasPrefix(resp, "SIP/2.0 200 OK\r\n") || !strings.HasSuffix(resp, "\r\n\r\n") {
			t.Fatalf("response %q", resp)
		}
	})
}
