package diagnose

// Probe is one self-probe of a listener (SPEC L2), as the caller made it:
// the certificate selection intends for the name, and the one served.
type Probe struct {
	Listener, Name, Address, Fqdn string
	Intended                      string // thumbprint, "" when none
	Served                        string // thumbprint, "" when nothing answered with TLS
}

// checkProbes (L2): a listener that answered with another certificate
// than selection intends (16106). A listener that did not answer (the
// server is not running) is no finding of this check.
func checkProbes(f *Facts) []Finding {
	var out []Finding
	for _, p := range f.Probes {
		if p.Served == "" || p.Intended == "" || p.Served == p.Intended {
			continue
		}
		out = append(out, Finding{
			Severity: Error, Events: []int{16106}, Subject: p.Address + " " + p.Fqdn,
			Problem: p.Listener + " " + p.Name + " on " + p.Address + " serves " + p.Served + " for " + p.Fqdn + ", but selection intends " + p.Intended,
			Evidence: []Evidence{{"Listener", p.Listener + " " + p.Name}, {"Address", p.Address}, {"Fqdn", p.Fqdn},
				{"Served", p.Served}, {"Intended", p.Intended}},
			Fix:  []Step{{Command: "{Test-CertrelayCertificateServing}"}, {Command: "{Get-CertrelayCertificateSelection -Fqdn " + p.Fqdn + "}"}},
			Note: "Another program may hold the address (stop it: the server retries its binding), the running server may not have applied a change, or a key file was replaced behind certrelay's back.",
		})
	}
	return out
}
