// Package arch checks the shape of the code: the arrows of
// ARCHITECTURE.md point down, so nothing imports a package above it.
package arch

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// layers lists certrelay's packages from the bottom up. A package may
// import only packages of a lower layer: never one of its own layer, never
// one above. A new package must be placed here (the test fails until it
// is), which is the moment to decide where it belongs.
var layers = [][]string{
	{"internal/dnsname", "internal/safeio", "internal/testpki", "internal/certprop", "internal/memo", "internal/fswatch", "internal/parallel", "internal/metrics", "internal/servercred", "internal/trace", "internal/probe"},
	{"internal/certinfo", "internal/db", "internal/smtp", "internal/revocation", "internal/tracking", "internal/maildir", "internal/pop3", "internal/sip"},
	{"internal/settings", "internal/events", "internal/directory", "internal/store", "internal/acme", "internal/trust", "internal/queue", "internal/accounts", "internal/imapd", "internal/tlsrpt", "internal/policycache"},
	{"internal/selection"},
	{"internal/certview", "internal/serving"},
	{"internal/transport", "internal/access", "internal/diagnose", "internal/edgesync"},
	{"internal/server", "internal/admin"},
	// Faces over admin's registry. The HTTPS face (web): the serve command
	// builds it and hands it to the server as an http.Handler, so server
	// never imports admin (docs/DEVELOPMENT.md, "The web face").
	{"internal/shell", "internal/web"},
	{"cmd/certrelay", "cmd/smtpload"},
}

// TestArrowsPointDown protects the package structure of
// docs/DEVELOPMENT.md: e.g. tracking never imports transport, maildir never
// imports queue, server never imports admin.
func TestArrowsPointDown(t *testing.T) {
	layer := map[string]int{}
	for i, l := range layers {
		for _, p := range l {
			layer["certrelay/"+p] = i
		}
	}
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p.ImportPath, "certrelay/test/") {
			continue // tests may use anything
		}
		from, ok := layer[p.ImportPath]
		if !ok {
			t.Errorf("%s is in no layer: add it to layers in test/arch", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, "certrelay/") {
				continue
			}
			to, ok := layer[imp]
			if ok && to >= from {
				t.Errorf("%s imports %s, which is not below it", p.ImportPath, imp)
			}
		}
	}
}
