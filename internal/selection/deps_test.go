package selection

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPure protects what makes selection a pure function (STYLE 4, issue
// 10): building it pulls in neither the database (modernc.org/sqlite) nor
// the directory and revocation network code (LDAP), nor any certrelay
// package that does I/O — only certinfo and certprop.
func TestPure(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list selection's dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !contains(deps, "crypto/x509") {
		t.Fatalf("go list -deps gave an implausible list: %v", deps)
	}
	allowed := map[string]bool{"certrelay/internal/selection": true, "certrelay/internal/certinfo": true, "certrelay/internal/certprop": true, "certrelay/internal/dnsname": true}
	for _, d := range deps {
		switch {
		case strings.Contains(d, "modernc.org/"), strings.Contains(d, "sqlite"), strings.Contains(d, "ldap"), strings.Contains(d, "database/sql"):
			t.Errorf("selection depends on %s", d)
		case strings.HasPrefix(d, "certrelay/") && !allowed[d]:
			t.Errorf("selection depends on %s, which it must not: it takes facts, not stores", d)
		}
	}
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
