package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"testing"
	"time"

	moxtlsrpt "github.com/mjl-/mox/tlsrpt"

	"certrelay/internal/db"
)

// TestDailyReport (RFC 8460): a day of mixed outbound results — MTA-STS
// successes and failures of two kinds at one MX host, DANE at another,
// sessions without a policy, and results of the day before and of another
// domain that must stay out — is assembled into the day's report for one
// policy domain, gzipped as it is sent, and parsed back with mox's reader
// (the format's reference here): every count and failure detail is where
// RFC 8460 puts it.
func TestDailyReport(t *testing.T) {
	ctx := context.Background()
	d, err := db.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	sts := []string{"version: STSv1", "mode: enforce", "mx: mx1.partner.test", "max_age: 86400"}
	tlsa := []string{"3 1 1 aabb"}
	rec := func(at time.Time, domain, typ string, ps []string, mx string, ok bool, rt, reason string) {
		t.Helper()
		r := Result{Time: at, PolicyDomain: domain, PolicyType: typ, PolicyString: ps, MXHost: mx, OK: ok, ResultType: rt, ReceivingIP: "127.0.0.1", Reason: reason}
		if err := s.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		rec(day.Add(time.Duration(i)*time.Hour), "partner.test", "sts", sts, "mx1.partner.test", true, "", "")
	}
	rec(day.Add(10*time.Hour), "partner.test", "sts", sts, "mx1.partner.test", false, "certificate-not-trusted", "")
	rec(day.Add(11*time.Hour), "partner.test", "sts", sts, "mx1.partner.test", false, "certificate-not-trusted", "")
	rec(day.Add(12*time.Hour), "partner.test", "sts", sts, "mx1.partner.test", false, "starttls-not-supported", "")
	rec(day.Add(13*time.Hour), "partner.test", "tlsa", tlsa, "mx2.partner.test", true, "", "")
	rec(day.Add(14*time.Hour), "partner.test", "tlsa", tlsa, "mx2.partner.test", false, "validation-failure", "dane-no-match")
	rec(day.Add(15*time.Hour), "partner.test", "no-policy-found", nil, "mx3.partner.test", true, "", "")
	rec(day.Add(-time.Hour), "partner.test", "sts", sts, "mx1.partner.test", false, "certificate-expired", "") // the day before
	rec(day.Add(time.Hour), "other.test", "sts", sts, "mx.other.test", false, "certificate-expired", "")

	if got, _ := s.Domains(ctx, Day(day)); len(got) != 2 || got[0] != "other.test" || got[1] != "partner.test" {
		t.Errorf("domains of the day: %v", got)
	}
	r, err := s.Report(ctx, Day(day), "partner.test", "hub.contoso.test", "postmaster@contoso.test")
	if err != nil {
		t.Fatal(err)
	}
	gz, err := Gzip(r)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	back, err := moxtlsrpt.Parse(zr)
	if err != nil {
		t.Fatal(err)
	}
	if back.OrganizationName != "hub.contoso.test" || back.ContactInfo != "postmaster@contoso.test" || back.ReportID != "2026-11-29_partner.test@hub.contoso.test" ||
		!back.DateRange.Start.Equal(day) || !back.DateRange.End.Equal(day.Add(24*time.Hour-time.Second)) {
		t.Errorf("header: %+v", back)
	}
	if len(back.Policies) != 3 {
		t.Fatalf("policies: %+v", back.Policies)
	}
	byType := map[moxtlsrpt.PolicyType]moxtlsrpt.ResultJSON{}
	for _, p := range back.Policies {
		if p.Policy.Domain != "partner.test" {
			t.Errorf("policy domain %q", p.Policy.Domain)
		}
		byType[p.Policy.Type] = p
	}
	st := byType[moxtlsrpt.STS]
	if st.Summary.TotalSuccessfulSessionCount != 5 || st.Summary.TotalFailureSessionCount != 3 || len(st.Policy.String) != 4 || st.Policy.MXHost[0] != "mx1.partner.test" {
		t.Errorf("sts: %+v", st)
	}
	if len(st.FailureDetails) != 2 || st.FailureDetails[0].ResultType != "certificate-not-trusted" || st.FailureDetails[0].FailedSessionCount != 2 ||
		st.FailureDetails[1].ResultType != "starttls-not-supported" || st.FailureDetails[1].FailedSessionCount != 1 || st.FailureDetails[0].ReceivingMXHostname != "mx1.partner.test" {
		t.Errorf("sts failures: %+v", st.FailureDetails)
	}
	dn := byType[moxtlsrpt.TLSA]
	if dn.Summary.TotalSuccessfulSessionCount != 1 || dn.Summary.TotalFailureSessionCount != 1 || dn.Policy.String[0] != "3 1 1 aabb" ||
		len(dn.FailureDetails) != 1 || dn.FailureDetails[0].FailureReasonCode != "dane-no-match" {
		t.Errorf("tlsa: %+v", dn)
	}
	if np := byType[moxtlsrpt.NoPolicyFound]; np.Summary.TotalSuccessfulSessionCount != 1 || np.Summary.TotalFailureSessionCount != 0 || len(np.FailureDetails) != 0 {
		t.Errorf("no-policy-found: %+v", np)
	}

	// Sending: the day is unsent until marked; today's results wait.
	rec(time.Now(), "partner.test", "sts", sts, "mx1.partner.test", true, "", "")
	un, err := s.Unsent(ctx, time.Now())
	if err != nil || len(un[Day(day)]) != 2 || len(un[Day(time.Now())]) != 0 {
		t.Fatalf("unsent: %v %v", un, err)
	}
	if err := s.MarkSent(ctx, Day(day), "partner.test", []string{"mailto:tlsrpt@partner.test"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if un, _ := s.Unsent(ctx, time.Now()); len(un[Day(day)]) != 1 || un[Day(day)][0] != "other.test" {
		t.Errorf("unsent after sending partner.test: %v", un)
	}

	// Receiving: a report is kept once, and listed.
	for i := 0; i < 2; i++ {
		if err := s.StoreReceived(ctx, back, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.ListReceived(ctx)
	if err != nil || len(list) != 1 || list[0].Organization != "hub.contoso.test" || len(list[0].Policies) != 3 {
		t.Fatalf("received: %+v %v", list, err)
	}
}
