package admin

import (
	"time"

	"certrelay/internal/edgesync"
)

func edgeOperations() []*Operation {
	return []*Operation{
		{
			Name: "New-EdgeSubscription", Cmdlet: "New-EdgeSubscription", CLI: "edge subscribe",
			Summary: "On the edge: write the subscription file a hub imports (X3)",
			Description: `Write this edge's subscription file: its name and FQDN, its internal transport
certificate (public part), a bootstrap account with a random password valid 24
hours, the file's creation time, and where its EdgeSync endpoint listens, signed
with the internal transport certificate's key. Copy the file to a hub and import
it there ({New-EdgeSubscription/FileData}); the hubs then synchronise this edge.
A new file replaces the previous one's bootstrap account.`,
			Role: ServerAdmin, Returns: EdgeSubscription{}, File: true,
			Params: []Param{
				{Name: "SyncBinding", CLI: "sync-binding", Type: TypeString, Help: "IP:PORT where the EdgeSync endpoint listens (default: as before, first 0.0.0.0:50636)"},
			},
			Run: func(in *In) (*Result, error) {
				s, err := in.a.SubscribeEdge(in.ctx, in.String("SyncBinding"), in.deliver)
				return dataOr(s, err)
			},
		},
		{
			Name: "New-EdgeSubscription/FileData", Cmdlet: "New-EdgeSubscription", Set: "FileData", CLI: "edge import",
			Summary: "On a hub: import an edge's subscription file (X3)",
			Description: `Check an edge's subscription file — refused when it has expired, is
incomplete or not XML, is larger than a subscription file can be, declares
entities, was changed after the edge signed it, or carries a certificate of this
hub or another server — and make the edge a server of the organisation, with two
send connectors: the edge to the organisation, and the organisation to the
internet through the edge. A refused file changes nothing.`,
			Role: OrgAdmin, Returns: EdgeSubscription{},
			Params: []Param{
				{Name: "FileData", CLI: "FILE", Type: TypeData, Position: 1, Required: true, Help: "the subscription file the edge wrote"},
			},
			Run: func(in *In) (*Result, error) {
				s, err := in.a.ImportEdgeSubscription(in.ctx, in.Data("FileData"))
				return dataOr(s, err)
			},
		},
		{
			Name: "Get-EdgeSubscription", Cmdlet: "Get-EdgeSubscription", CLI: "edge list",
			Summary: "List the edge subscriptions (on an edge: its own)",
			Role:    ViewOnly, Returns: []EdgeSubscription{},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.ListEdgeSubscriptions(in.ctx)
				return dataOr(orEmpty(list), err)
			},
		},
		{
			Name: "Remove-EdgeSubscription", Cmdlet: "Remove-EdgeSubscription", CLI: "edge remove",
			Summary: "Remove an edge's subscription (on the edge: what EdgeSync replicated)",
			Role:    OrgAdmin, Confirm: ConfirmAlways,
			Params: []Param{
				{Name: "Identity", CLI: "EDGE", Type: TypeString, Position: 1, Help: "the edge's name (on the edge itself, optional)", Pipe: "Name"},
				{Name: "Force", CLI: "force", Type: TypeBool, Help: "do not ask for confirmation"},
			},
			Run: func(in *In) (*Result, error) {
				yes, err := in.ask(Question{Text: msgf("Remove the subscription of edge %s? Mail between it and the organisation stops until it subscribes again.", in.String("Identity")), about: "remove-edge " + in.String("Identity")})
				if err != nil {
					return nil, err
				}
				if !yes {
					return nil, cancelled()
				}
				return nil, in.a.RemoveEdgeSubscription(in.ctx, in.String("Identity"))
			},
		},
		{
			Name: "Start-EdgeSynchronization", Cmdlet: "Start-EdgeSynchronization", CLI: "edge sync",
			Summary: "On a hub: synchronise every edge now, and show the rounds",
			Role:    ServerAdmin, Returns: []edgesync.Round{},
			Params: []Param{
				{Name: "Wait", CLI: "wait", Type: TypeInt, Default: "20", Help: "seconds to wait for the rounds to finish"},
			},
			Run: func(in *In) (*Result, error) {
				r, err := in.a.RequestEdgeSync(in.ctx, time.Duration(in.Int("Wait"))*time.Second)
				return dataOr(r, err)
			},
		},
		{
			Name: "Test-EdgeSynchronization", Cmdlet: "Test-EdgeSynchronization", CLI: "edge status",
			Summary: "Show the last EdgeSync round of each kind: when, by which hub, objects, changes, duration, error",
			Role:    ViewOnly, Returns: []edgesync.Round{},
			Run: func(in *In) (*Result, error) {
				r, err := in.a.EdgeSyncStatus(in.ctx)
				return dataOr(r, err)
			},
		},
	}
}
