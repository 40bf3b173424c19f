package diagnose

import (
	"fmt"
	"strings"
	"time"

	"certrelay/internal/directory"
)

// EdgeRound is an EdgeSync round as this server recorded it (on a hub,
// one it ran; on an edge, one it received): what Q9 looks at.
type EdgeRound struct {
	Edge, Kind, Hub string
	Time            time.Time
	Error           string
}

// edgeQuiet is how long a subscribed edge may go without a round before
// Q9 reports it: recipients come every 5 minutes.
const edgeQuiet = 15 * time.Minute

// checkEdgeStale is Q9: an edge subscription that has gone stale. On a
// hub, the last round with a subscribed edge failed direct trust both
// ways — the edge presents a certificate the organisation does not hold
// and cannot prove its server credential: it was rebuilt, or both sides'
// certificates changed while EdgeSync could not run. On an edge, no round
// has come for a while. X4 makes this rare; the fix is a new
// subscription.
func checkEdgeStale(f *Facts) []Finding {
	var out []Finding
	resubscribe := func(edge string) []Step {
		return []Step{
			cmd("Remove-EdgeSubscription", edge, "-Force"),
			cmd("New-EdgeSubscription", "-FileName", "EdgeSubscription.xml"),
			cmd("New-EdgeSubscription/FileData", "EdgeSubscription.xml"),
		}
	}
	note := "run the first command on a hub, the second on the edge (it writes the subscription file), and the third on a hub with that file, within 24 hours"
	switch f.Server.Role {
	case directory.RoleHub:
		for _, s := range f.Servers {
			if !s.Subscribed() {
				continue
			}
			var last *EdgeRound
			for i, r := range f.EdgeRounds {
				if strings.EqualFold(r.Edge, s.Name) && r.Kind != "lease" && (last == nil || r.Time.After(last.Time)) {
					last = &f.EdgeRounds[i]
				}
			}
			if last == nil || !strings.Contains(last.Error, "direct trust") {
				continue
			}
			out = append(out, Finding{
				Severity: Error, Events: []int{16091, 1036, 2018}, Subject: s.Name,
				Problem: fmt.Sprintf("the subscription of edge %s is stale: EdgeSync's last round with it failed direct trust — the edge presents another certificate than the %s the organisation holds for it and cannot prove its server credential (an edge rebuilt from scratch); it gets no configuration or recipients, and mail between it and the hubs fails", s.Name, s.InternalTransportCertificateThumbprint),
				Evidence: []Evidence{
					{"Edge", s.Name},
					{"InternalTransportCertificateThumbprint", s.InternalTransportCertificateThumbprint},
					{"LastRound", last.Time.UTC().Format(time.RFC3339)},
					{"Error", last.Error},
				},
				Fix: resubscribe(s.Name), Note: note,
			})
		}
	case directory.RoleEdge:
		if f.EdgeSubscribed.IsZero() {
			return nil
		}
		var last time.Time
		for _, r := range f.EdgeRounds {
			if r.Time.After(last) {
				last = r.Time
			}
		}
		if last.IsZero() || f.Now.Sub(last) < edgeQuiet {
			return nil
		}
		out = append(out, Finding{
			Severity: Warning, Events: []int{16091}, Subject: f.Server.Name,
			Problem: fmt.Sprintf("edge %s has received no EdgeSync round for %s (recipients come every 5 minutes): the hubs cannot reach its EdgeSync endpoint, or its subscription is stale (the hubs' event 16091 says which); it keeps working on what it holds", f.Server.Name, f.Now.Sub(last).Round(time.Minute)),
			Evidence: []Evidence{
				{"Edge", f.Server.Name},
				{"LastRound", last.UTC().Format(time.RFC3339)},
				{"Subscribed", f.EdgeSubscribed.UTC().Format(time.RFC3339)},
			},
			Fix:  resubscribe(f.Server.Name),
			Note: "first check on a hub that the edge's EdgeSync endpoint can be reached (Get-EdgeSubscription names it, Test-EdgeSynchronization shows the rounds); if the subscription is stale: " + note,
		})
	}
	return out
}
