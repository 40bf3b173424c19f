package admin

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"certrelay/internal/certinfo"
	"certrelay/internal/db"
	"certrelay/internal/events"
	"certrelay/internal/store"
	"certrelay/internal/testpki"
)

// failWrites makes every insert or update of table fail, through a
// trigger in the data directory's database, as a full disk or a killed
// process would at that step; it returns the function that lifts it.
func failWrites(t *testing.T, a *Admin, table string) func() {
	t.Helper()
	d, err := db.Open(a.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, op := range []string{"INSERT", "UPDATE"} {
		if _, err := d.Exec(`CREATE TRIGGER fail_` + strings.ToLower(op) + `_` + table + ` BEFORE ` + op + ` ON ` + table + ` BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		d, err := db.Open(a.DataDir())
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for _, op := range []string{"insert", "update"} {
			if _, err := d.Exec(`DROP TRIGGER fail_` + op + `_` + table); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// snapshot is what an operation that fails must leave as it was.
func snapshot(t *testing.T, a *Admin) string {
	t.Helper()
	var b strings.Builder
	list, err := a.ListCertificates(ctx, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		b.WriteString(c.Thumbprint + " " + strings.Join(c.Services, ",") + "\n")
	}
	srv, err := a.LocalServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("internal " + srv.InternalTransportCertificateThumbprint + "\n")
	ents, _ := os.ReadDir(filepath.Join(a.DataDir(), "keys"))
	for _, e := range ents {
		fi, _ := e.Info()
		b.WriteString(e.Name() + " " + fi.Mode().String() + "\n")
	}
	_, inters, err := a.TrustList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("intermediates " + string(rune('0'+len(inters))) + "\n")
	for _, k := range []string{"pop3.X509CertificateName", "imap4.X509CertificateName", "https.certificate"} {
		v, _ := a.Settings.Get(ctx, k)
		b.WriteString(k + "=" + v + "\n")
	}
	return b.String()
}

// TestOperationsAreOneTransaction protects issue 9 item 3: cert new, cert
// import and cert enable each change the store and something beside it
// (the directory, the intermediate store, the settings); a failure at the
// second step must leave the first undone too.
func TestOperationsAreOneTransaction(t *testing.T) {
	t.Run("fail/new-internal-directory-write", func(t *testing.T) {
		a := newAdmin(t)
		before := snapshot(t, a)
		lift := failWrites(t, a, "dir_objects")
		_, err := a.NewCertificate(ctx, NewOptions{Key: certinfo.KeySpec{Type: "ecdsa"}}, Yes{})
		lift()
		if err == nil {
			t.Fatal("cert new succeeded although the directory could not be written")
		}
		if after := snapshot(t, a); after != before {
			t.Errorf("a failed cert new changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
	t.Run("fail/import-intermediate-write", func(t *testing.T) {
		a := newAdmin(t)
		ca := testpki.NewRoot(t, testpki.Options{CommonName: "Root CA"})
		inter := ca.NewIntermediate(t, testpki.Options{CommonName: "Issuing CA"})
		leaf := inter.Issue(t, testpki.Options{CommonName: "mail.contoso.com"})
		pfx, err := certinfo.EncodePKCS12(leaf.Key, leaf.Cert, []*x509.Certificate{inter.Cert}, "pw", rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, a)
		lift := failWrites(t, a, "intermediates")
		pw := "pw"
		_, err = a.ImportCertificate(ctx, ImportOptions{Data: pfx, Password: &pw})
		lift()
		if err == nil {
			t.Fatal("import succeeded although its intermediate could not be stored")
		}
		if after := snapshot(t, a); after != before {
			t.Errorf("a failed import changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
	t.Run("fail/enable-settings-write", func(t *testing.T) {
		a := newAdmin(t)
		res, err := a.NewCertificate(ctx, NewOptions{Domains: []string{"pop.contoso.com"}, Services: servicesPtr(store.None), Key: certinfo.KeySpec{Type: "ecdsa"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, a)
		lift := failWrites(t, a, "settings")
		_, err = a.EnableCertificate(ctx, res.Certificate.Thumbprint, store.POP|store.SMTP, Yes{})
		lift()
		if err == nil {
			t.Fatal("enable succeeded although the POP3 setting could not be written")
		}
		if after := snapshot(t, a); after != before {
			t.Errorf("a failed enable changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

func servicesPtr(s store.Services) *store.Services { return &s }

// TestParallelInternalReplacementsTellTheTruth protects issue 9 item 4:
// several cert new --force at once may each replace the internal
// transport certificate, but each 16008 event must name the certificate
// it really replaced: the events form one chain from the original to the
// final internal certificate, with no certificate replaced twice.
func TestParallelInternalReplacementsTellTheTruth(t *testing.T) {
	dir := t.TempDir()
	open := func() *Admin {
		a, err := Open(ctx, Options{DataDir: dir, Hostname: func() (string, error) { return "hub1", nil }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	first := open()
	if _, err := first.Setup(ctx, SetupOptions{Fqdn: "hub1.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	srv, _ := first.LocalServer(ctx)
	original := srv.InternalTransportCertificateThumbprint
	since := time.Now().Add(-time.Hour)

	const n = 12
	admins := make([]*Admin, n)
	for i := range admins {
		admins[i] = open() // one database handle each, as separate processes have
	}
	errs := make(chan error, n)
	for _, a := range admins {
		go func(a *Admin) {
			_, err := a.NewCertificate(ctx, NewOptions{Key: certinfo.KeySpec{Type: "ecdsa"}}, Yes{})
			errs <- err
		}(a)
	}
	for range admins {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	evs, err := first.Events.List(ctx, events.Filter{ID: 16008, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]string{} // old → new
	for _, e := range evs {
		if e.Params[1] == "none" {
			continue // setup's own
		}
		if prev, dup := next[e.Params[1]]; dup {
			t.Errorf("two events claim to replace %s (by %s and by %s)", e.Params[1], prev, e.Params[2])
		}
		next[e.Params[1]] = e.Params[2]
	}
	if len(next) != n {
		t.Errorf("%d replacement events for %d replacements", len(next), n)
	}
	cur, steps := original, 0
	for ; steps <= n; steps++ {
		nx, ok := next[cur]
		if !ok {
			break
		}
		cur = nx
	}
	srv, _ = first.LocalServer(ctx)
	if cur != srv.InternalTransportCertificateThumbprint || steps != n {
		keys := make([]string, 0, len(next))
		for k := range next {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Errorf("the events do not chain from %s to the internal certificate %s (walked %d steps to %s); replaced: %v", original, srv.InternalTransportCertificateThumbprint, steps, cur, keys)
	}
}

// TestConcurrentConnectorChangesAreNotLost protects SPEC P2's "no update
// is lost": processes changing different settings of one connector at
// once each read it and write it back; each change must survive.
func TestConcurrentConnectorChangesAreNotLost(t *testing.T) {
	dir := t.TempDir()
	open := func() *Admin {
		a, err := Open(ctx, Options{DataDir: dir, Hostname: func() (string, error) { return "hub1", nil }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	first := open()
	if _, err := first.Setup(ctx, SetupOptions{Fqdn: "hub1.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	name := "Default hub1"
	for round := 0; round < 20; round++ {
		fqdn := fmt.Sprintf("mail%d.contoso.com", round)
		size := fmt.Sprintf("%dMB", 10+round)
		tls := round%2 == 0
		changes := []ReceiveConnectorOptions{{Fqdn: &fqdn}, {MaxMessageSize: &size}, {TlsWildcardOneLabel: &tls}}
		errs := make(chan error, len(changes))
		for _, o := range changes {
			go func(a *Admin, o ReceiveConnectorOptions) {
				_, err := a.SetReceiveConnector(ctx, name, o)
				errs <- err
			}(open(), o)
		}
		for range changes {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		c, err := first.GetReceiveConnector(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if c.Fqdn != fqdn || c.MaxMessageSize != int64(10+round)<<20 || c.TlsWildcardOneLabel != tls {
			t.Fatalf("round %d: a change was lost: Fqdn %q (want %q), MaxMessageSize %d (want %d), TlsWildcardOneLabel %v (want %v)",
				round, c.Fqdn, fqdn, c.MaxMessageSize, int64(10+round)<<20, c.TlsWildcardOneLabel, tls)
		}
	}
}
