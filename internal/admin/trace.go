package admin

import (
	"errors"
	"strings"

	"certrelay/internal/trace"
)

// traceOperations: live tracing (SPEC D2).
func traceOperations() []*Operation {
	return []*Operation{
		{
			Name: "Watch-CertrelayTrace", Cmdlet: "Watch-CertrelayTrace", CLI: "trace",
			Summary: "Stream a running server's certificate decisions as they happen, until interrupted (D2)",
			Description: `Follow the server that runs on this data directory: each certificate
selection (the FQDN searched, every candidate with why it was taken or not,
the winner), each TLS negotiation, each judgement of a certificate, and each
direct-trust check with the server's DNS names (D3). {-Component} keeps the
components named (repeat): Transport\Certificate, NetworkingLayer\Certificate,
Common\Certificate. The server's socket (trace.sock in the data directory,
mode 0600) is its account's alone: run this as that account or root.`,
			Role: ViewOnly, Returns: trace.Record{}, Streams: true, NoWhatIf: true,
			Params: []Param{
				{Name: "Component", CLI: "component", Type: TypeList, Help: `a component to trace, such as 'Transport\Certificate' (repeat; default all)`},
			},
			Run: func(in *In) (*Result, error) {
				if in.streamFn == nil {
					return nil, failed(Invalid, "tracing streams records until it is interrupted, which this face cannot show").
						fix("run {Watch-CertrelayTrace} in a terminal on the server's machine, from the CLI or the cmdlet shell")
				}
				comps := in.Strings("Component")
				for _, c := range comps {
					if !trace.Known(c) {
						return nil, invalid("Component", c, "unknown component %q: the components are %s", c, strings.Join(trace.Components(), ", "))
					}
				}
				err := trace.Follow(in.ctx, trace.SocketPath(in.a.dataDir), comps, func(r trace.Record) error { return in.streamFn(r) })
				if errors.Is(err, trace.ErrNoServer) {
					return nil, failed(Unavailable, "%v", err)
				}
				if err != nil {
					return nil, failed(Unavailable, "%v", err)
				}
				return &Result{}, nil
			},
		},
	}
}
