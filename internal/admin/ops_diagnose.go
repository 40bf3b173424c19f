package admin

func diagnoseOperations() []*Operation {
	return []*Operation{
		{
			Name: "Test-CertrelayConfiguration", Cmdlet: "Test-CertrelayConfiguration", CLI: "diagnose",
			Summary: "Find what the seeds' troubleshooting guides look for, and print the commands that fix it (SPEC §8)",
			Description: `Run every check of SPEC §8 on this server, whether it runs or not: the
internal transport certificate (enabled for SMTP, its key readable by the
service account, every DNS name and load-balancer name of the server, present
in the store), each TLS connector's FQDN, RootCAType, and the certificates in
use (expired or expiring within the warning window, not Valid, no private
key). Each problem comes with the events it causes, the evidence, and the
commands that repair it, as the CLI runs them and as the cmdlet shell does.
With {-Server}, another server of the organisation is checked as the
directory holds it (its names against its published internal transport
certificate). Exits 0 when nothing is found, 1 otherwise.`,
			Role: ViewOnly, Returns: Diagnosis{},
			Params: []Param{
				{Name: "Server", CLI: "server", Type: TypeString, Help: "a server of the organisation (default: this one)"},
			},
			Run: func(in *In) (*Result, error) {
				d, err := in.a.Diagnose(in.ctx, in.String("Server"))
				if err != nil {
					return nil, err
				}
				return &Result{Data: d}, nil
			},
		},
	}
}
