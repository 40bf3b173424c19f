package smtp

import (
	"testing"
)

func TestParseAddress(t *testing.T) {
	cases := []struct {
		name            string
		path            string
		allowNull, post bool
		want            string
		ok              bool
	}{
		{"ok/plain", "user@example.test", false, false, "user@example.test", true},
		{"ok/null-path", "", true, false, "", true},
		{"fail/null-path-for-rcpt", "", false, true, "", false},
		{"ok/postmaster", "PostMaster", false, true, "PostMaster", true},
		{"fail/postmaster-for-mail", "postmaster", true, false, "", false},
		{"ok/source-route", "@a.test,@b.test:u@d.test", false, false, "u@d.test", true},
		{"fail/bad-source-route", "@a.test,b.test:u@d.test", false, false, "", false},
		{"ok/quoted-local", `"john doe"@example.test`, false, false, `"john doe"@example.test`, true},
		{"ok/quoted-with-at-and-escape", `"a@b\"c"@example.test`, false, false, `"a@b\"c"@example.test`, true},
		{"fail/empty-quoted", `""@example.test`, false, false, "", false},
		{"ok/consecutive-dots-tolerated", "a..b.@example.test", false, false, "a..b.@example.test", true},
		{"ok/atext-specials", "a+b=c/d!#$%&'*^_`{|}~-@example.test", false, false, "a+b=c/d!#$%&'*^_`{|}~-@example.test", true},
		{"ok/ipv4-literal", "u@[192.0.2.1]", false, false, "u@[192.0.2.1]", true},
		{"ok/ipv6-literal", "u@[IPv6:2001:db8::1]", false, false, "u@[IPv6:2001:db8::1]", true},
		{"fail/general-literal", "u@[x-tag:stuff]", false, false, "", false},
		{"fail/ipv6-without-tag", "u@[2001:db8::1]", false, false, "", false},
		{"fail/bad-ipv4", "u@[1.2.3]", false, false, "", false},
		{"ok/utf8", "用户@例子.测试", false, false, "用户@例子.测试", true},
		{"fail/invalid-utf8", "u\xff@example.test", false, false, "", false},
		{"fail/no-at", "user", false, false, "", false},
		{"fail/empty-domain", "user@", false, false, "", false},
		{"fail/empty-label", "user@a..b", false, false, "", false},
		{"fail/trailing-dot-domain", "user@example.test.", false, false, "", false},
		{"fail/space", "us er@example.test", false, false, "", false},
		{"fail/control", "us\x01er@example.test", false, false, "", false},
		{"fail/two-ats", "a@b@example.test", false, false, "", false},
		{"fail/label-too-long", "u@" + string(make([]byte, 64)), false, false, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAddress([]byte(tc.path), tc.allowNull, tc.post)
			if ok != tc.ok || got != tc.want {
				t.Errorf("parseAddress(%q) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSplitPath(t *testing.T) {
	cases := []struct {
		name, arg, path, params string
		ok                      bool
	}{
		{"ok/brackets", "<a@b>", "a@b", "", true},
		{"ok/params", "<a@b> SIZE=10 BODY=8BITMIME", "a@b", " SIZE=10 BODY=8BITMIME", true},
		{"ok/space-after-colon", "  <a@b>", "a@b", "", true},
		{"ok/bare", "a@b SIZE=1", "a@b", "SIZE=1", true},
		{"ok/quoted-gt", `<"x>y"@b>`, `"x>y"@b`, "", true},
		{"fail/unclosed", "<a@b", "", "", false},
		{"fail/junk-after", "<a@b>x", "", "", false},
		{"fail/nested", "<<a@b>>", "", "", false},
		{"fail/empty", "", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, params, ok := splitPath([]byte(tc.arg))
			if ok != tc.ok || (ok && (string(path) != tc.path || string(params) != tc.params)) {
				t.Errorf("splitPath(%q) = %q, %q, %v", tc.arg, path, params, ok)
			}
		})
	}
}

func TestXtext(t *testing.T) {
	for _, s := range []string{"", "plain", "a+b=c", "sp ace", "ünï"} {
		enc := encodeXtext(s)
		dec, ok := decodeXtext([]byte(enc))
		if !ok || dec != s {
			t.Errorf("xtext round trip of %q: %q -> %q, %v", s, enc, dec, ok)
		}
	}
	for _, bad := range []string{"+", "+4", "+ZZ", "a=b", "a b"} {
		if _, ok := decodeXtext([]byte(bad)); ok {
			t.Errorf("decodeXtext(%q) accepted", bad)
		}
	}
}

func TestReplyParsing(t *testing.T) {
	cases := []struct {
		name, line string
		code       int
		more       bool
		text       string
		ok         bool
	}{
		{"ok/last", "250 OK", 250, false, "OK", true},
		{"ok/more", "250-PIPELINING", 250, true, "PIPELINING", true},
		{"ok/bare-code", "250", 250, false, "", true},
		{"fail/letters", "2x0 OK", 0, false, "", false},
		{"fail/separator", "250_OK", 0, false, "", false},
		{"fail/out-of-range", "150 OK", 0, false, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, more, text, ok := parseReplyLine(tc.line)
			if code != tc.code || more != tc.more || text != tc.text || ok != tc.ok {
				t.Errorf("parseReplyLine(%q) = %d %v %q %v", tc.line, code, more, text, ok)
			}
		})
	}
	if enh, rest := splitEnhanced(550, "5.1.1 No such user"); enh != "5.1.1" || rest != "No such user" {
		t.Errorf("splitEnhanced: %q %q", enh, rest)
	}
	if enh, _ := splitEnhanced(550, "4.1.1 wrong class"); enh != "" {
		t.Errorf("splitEnhanced accepted a code of another class")
	}
	e := &ReplyError{Code: 451, Enhanced: "5.0.0"}
	if e.enhanced() != "4.0.0" {
		t.Errorf("mismatched enhanced code not replaced: %q", e.enhanced())
	}
	if !e.Temporary() || e.Permanent() {
		t.Errorf("451 classification wrong")
	}
}
