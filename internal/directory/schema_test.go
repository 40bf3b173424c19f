package directory

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"certrelay/internal/testpki"
)

// TestSchemaFiles: the two forms of certrelay's schema define the same
// types and classes, under the documented OID arc, and the cn=config form
// loads into a slapd configured by cn=config (the slapd.conf form is what
// every LDAP test runs on).
func TestSchemaFiles(t *testing.T) {
	conf, err := os.ReadFile(testpki.SchemaFile())
	if err != nil {
		t.Fatal(err)
	}
	ldifPath := strings.TrimSuffix(testpki.SchemaFile(), ".schema") + ".ldif"
	ldif, err := os.ReadFile(ldifPath)
	if err != nil {
		t.Fatal(err)
	}
	defs := regexp.MustCompile(`(?m)^(?:attributetype|objectclass|olcAttributeTypes:|olcObjectClasses:) (\( .* \))$`)
	var a, b []string
	for _, m := range defs.FindAllStringSubmatch(string(conf), -1) {
		a = append(a, m[1])
	}
	for _, m := range defs.FindAllStringSubmatch(string(ldif), -1) {
		b = append(b, m[1])
	}
	if len(a) == 0 || strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("certrelay.schema (%d definitions) and certrelay.ldif (%d) differ", len(a), len(b))
	}
	const arc = "2.25.235409098864023584145715094713083063043."
	for _, d := range a {
		if !strings.HasPrefix(d, "( "+arc+"1.") && !strings.HasPrefix(d, "( "+arc+"2.") {
			t.Errorf("a definition outside the arc: %.80s", d)
		}
	}
	for _, c := range schemaClasses {
		if !strings.Contains(string(conf), "NAME '"+c+"'") {
			t.Errorf("object class %s is not defined", c)
		}
	}

	// Load the LDIF into a cn=config directory made from a minimal slapd.conf.
	dir := t.TempDir()
	minimal := filepath.Join(dir, "slapd.conf")
	os.WriteFile(minimal, []byte("include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n"), 0o600)
	cfg := filepath.Join(dir, "slapd.d")
	os.Mkdir(cfg, 0o700)
	if out, err := exec.Command(testpki.Tool(t, "slaptest"), "-f", minimal, "-F", cfg).CombinedOutput(); err != nil {
		t.Fatalf("slaptest: %v\n%s", err, out)
	}
	if out, err := exec.Command(testpki.Tool(t, "slapadd"), "-n", "0", "-F", cfg, "-l", ldifPath).CombinedOutput(); err != nil {
		t.Fatalf("slapadd of certrelay.ldif into cn=config: %v\n%s", err, out)
	}
	if out, err := exec.Command(testpki.Tool(t, "slaptest"), "-F", cfg, "-u").CombinedOutput(); err != nil {
		t.Fatalf("slaptest after loading: %v\n%s", err, out)
	}
	loaded, _ := filepath.Glob(filepath.Join(cfg, "cn=config", "cn=schema", "*certrelay.ldif"))
	if len(loaded) != 1 {
		t.Fatalf("the schema is not in cn=config: %v", loaded)
	}
}
