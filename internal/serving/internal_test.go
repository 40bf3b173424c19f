package serving

import (
	"strings"
	"testing"
	"time"

	"certrelay/internal/certprop"
	"certrelay/internal/selection"
)

// TestInternal: the internal transport certificate is the one the
// directory names; if it cannot be used, one for the physical FQDN
// (12023); if none, between hubs, an ephemeral one made once for the
// process (RSA 2048, twelve months, the server's names) (12024); else
// none. Each says why the configured one is not used.
func TestInternal(t *testing.T) {
	k := &keyring{}
	internal := k.candidateFor(t, "hub1.org.test", 10)
	fqdn := k.candidateFor(t, "m1.org.test", 5)
	l := New(Options{LoadKey: k.load})
	req := InternalRequest{Thumbprint: internal.Thumbprint, PhysicalFQDN: "m1.org.test", HostName: "hub1", FQDN: "hub1.org.test", Ephemeral: true}

	l.Publish([]selection.Candidate{internal, fqdn}, time.Now())
	if in := l.Internal(req); in.Source != InternalConfigured || in.Thumbprint != internal.Thumbprint || in.Why != "" || in.Server == nil || in.Client == nil {
		t.Fatalf("configured: %+v", in)
	}
	if a, b := l.Internal(req), l.Internal(req); a.Server != b.Server {
		t.Errorf("the configuration is built again for each session")
	}

	notSMTP := internal
	notSMTP.Services = certprop.POP
	l.Publish([]selection.Candidate{notSMTP, fqdn}, time.Now())
	in := l.Internal(req)
	if in.Source != InternalFQDN || in.Thumbprint != fqdn.Thumbprint || !strings.Contains(in.Why, "not enabled for SMTP") {
		t.Fatalf("FQDN fallback: %+v", in)
	}

	noKey := internal
	noKey.HasKey = false
	l.Publish([]selection.Candidate{noKey}, time.Now())
	in = l.Internal(req)
	if in.Source != InternalEphemeral || !strings.Contains(in.Why, "no private key") {
		t.Fatalf("ephemeral: %+v", in)
	}
	c := in.Leaf
	if c.Subject.CommonName != "hub1" || strings.Join(c.DNSNames, ",") != "hub1,hub1.org.test" || c.NotAfter.Sub(c.NotBefore) < 364*24*time.Hour {
		t.Errorf("the ephemeral certificate: %v %v %v–%v", c.Subject, c.DNSNames, c.NotBefore, c.NotAfter)
	}
	if again := l.Internal(req); again.Thumbprint != in.Thumbprint {
		t.Errorf("a second ephemeral certificate: %s, then %s", in.Thumbprint, again.Thumbprint)
	}

	req.Ephemeral = false // hub ↔ edge
	if in := l.Internal(req); in.Source != InternalNone || in.Server != nil {
		t.Fatalf("without fallback: %+v", in)
	}
	l.Publish(nil, time.Now())
	req.Thumbprint = ""
	if in := l.Internal(req); in.Source != InternalNone || !strings.Contains(in.Why, "names no internal transport certificate") {
		t.Fatalf("none named: %+v", in)
	}
}
