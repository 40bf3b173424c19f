package admin

import (
	"reflect"
	"testing"

	"certrelay/internal/certinfo"
	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// TestExplainReadsOnlyHolders: cert explain for a name reads only the
// certificates the store's table of names says may hold it
// (store.ListHolding), yet decides exactly as selection over the whole
// store does — the winner, how and why of selection.Select over every
// candidate, and the candidates that hold the name (SelectHolding) —
// for exact names in any case, wildcards of one and several labels, a
// pending request, a certificate not enabled for the service, a removed
// certificate, and names nobody holds; also after the table of names was
// lost and rebuilt at Open (a store made before it existed).
func TestExplainReadsOnlyHolders(t *testing.T) {
	a := newAdmin(t)
	smtp, pop := store.SMTP, store.POP
	mk := func(services *store.Services, domains ...string) string {
		t.Helper()
		r, err := a.NewCertificate(ctx, NewOptions{Domains: domains, Services: services, Key: certinfo.KeySpec{Type: "ecdsa"}}, &answer{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Certificate.Thumbprint
	}
	mk(&smtp, "mail.contoso.com")
	mk(&smtp, "MAIL.Contoso.com", "other.contoso.com")
	mk(&smtp, "*.contoso.com")
	mk(&smtp, "*.b.contoso.com")
	mk(&pop, "mail.contoso.com")
	gone := mk(&smtp, "mail.contoso.com", "gone.contoso.com")
	if _, err := a.RemoveCertificate(ctx, gone, &answer{yes: true}); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := a.db.QueryRowContext(ctx, `SELECT count(*) FROM certificate_names WHERE thumbprint = ?`, gone).Scan(&left); err != nil || left != 0 {
		t.Fatalf("the removed certificate left %d names (%v)", left, err)
	}
	if _, err := a.RequestCertificate(ctx, RequestOptions{Domains: []string{"mail.contoso.com"}}); err != nil {
		t.Fatal(err)
	}
	names := []string{"mail.contoso.com", "Mail.Contoso.COM", "other.contoso.com", "x.contoso.com", "a.b.contoso.com", "gone.contoso.com", "contoso.com", "nobody.example", "hub1.contoso.com", "hub1"}
	check := func(when string) {
		t.Helper()
		all, now, err := a.NewCandidateBuilder().Build(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			for _, svc := range []store.Services{store.SMTP, store.POP} {
				ex, err := a.Explain(ctx, ExplainOptions{Fqdn: n, Service: svc})
				if err != nil {
					t.Fatalf("%s: explain %s: %v", when, n, err)
				}
				req := selection.ForConnector(ex.Fqdn, "", "", false, svc)
				full := selection.Select(all, req, now)
				held := selection.SelectHolding(all, req, now)
				winner := ""
				if full.Winner != nil {
					winner = full.Winner.Thumbprint
				}
				want := held.Considered
				if want == nil {
					want = []selection.Consideration{}
				}
				var issued int
				if err := a.db.QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE der IS NOT NULL`).Scan(&issued); err != nil {
					t.Fatal(err)
				}
				if ex.NotHolding+len(ex.Candidates) != issued || n == "nobody.example" && ex.NotHolding != issued {
					t.Errorf("%s: explain %s for %s: %d certificates not holding the name beside %d considered, %d in the store", when, n, svc, ex.NotHolding, len(ex.Candidates), issued)
				}
				if ex.Winner != winner || ex.How != full.How || ex.Why != full.Why || !reflect.DeepEqual(ex.Candidates, want) {
					t.Errorf("%s: explain %s for %s: winner %s %s %q, candidates %+v\nselection over the store: winner %s %s %q, holders %+v",
						when, n, svc, ex.Winner, ex.How, ex.Why, ex.Candidates, winner, full.How, full.Why, want)
				}
			}
		}
	}
	check("as written")
	if _, err := a.db.ExecContext(ctx, `DELETE FROM certificate_names`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.db.ExecContext(ctx, `DELETE FROM store_meta WHERE key = 'names_filled'`); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.Store.ListHolding(ctx, "mail.contoso.com"); ok || err != nil {
		t.Fatalf("ListHolding narrowed a search without its table of names (%v)", err)
	}
	check("table of names lost: the whole store read")
	b, err := Open(ctx, Options{DataDir: a.dataDir, Hostname: func() (string, error) { return "hub1", nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, ok, err := b.Store.ListHolding(ctx, "mail.contoso.com"); !ok || err != nil {
		t.Fatalf("Open did not fill the table of names again (%v)", err)
	}
	check("table of names rebuilt")
}
