package admin

import (
	"certrelay/internal/events"
	"certrelay/internal/tracking"
)

func logOperations() []*Operation {
	return []*Operation{
		{
			Name: "Get-CertrelayEvent", Cmdlet: "Get-CertrelayEvent", CLI: "events",
			Summary: "List the event log",
			Role:    ViewOnly, Returns: []events.Event{},
			Params: []Param{
				{Name: "Id", CLI: "id", Type: TypeInt, Help: "only this event ID"},
				{Name: "Since", CLI: "since", Type: TypeTime, Help: "only events since this time (RFC 3339, or a duration such as 2h)"},
				{Name: "Level", CLI: "level", Type: TypeSeverity, Help: "only Error, Warning or Information"},
				{Name: "Limit", CLI: "limit", Type: TypeInt, Help: "only the last N events"},
			},
			Run: func(in *In) (*Result, error) {
				sev, _ := in.Value("Level").(events.Severity)
				list, err := in.a.ListEvents(in.ctx, events.Filter{ID: in.Int("Id"), Since: in.Time("Since"), Severity: sev, Limit: in.Int("Limit")})
				return dataOr(orEmpty(list), err)
			},
		},
		{
			Name: "Get-EventLogLevel", Cmdlet: "Get-EventLogLevel", CLI: "loglevel get",
			Summary: "Show the logging level of each category",
			Role:    ViewOnly, Returns: []EventLevelSetting{},
			Params: []Param{{Name: "Identity", CLI: `SOURCE\CATEGORY`, Type: TypeString, Position: 1, Help: `a category, or "MSExchangeTransport\*" for all`}},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.EventLevels(in.ctx, in.String("Identity"))
				return dataOr(orEmpty(list), err)
			},
		},
		{
			Name: "Set-EventLogLevel", Cmdlet: "Set-EventLogLevel", CLI: "loglevel set",
			Summary: `Set a category's level (Lowest, Low, Medium, High, Expert); "MSExchangeTransport\*" sets all`,
			Role:    ServerAdmin, Returns: []EventLevelSetting{},
			Params: []Param{
				{Name: "Identity", CLI: `SOURCE\CATEGORY`, Type: TypeString, Position: 1, Required: true, Help: "a category"},
				{Name: "Level", CLI: "LEVEL", Type: TypeEventLevel, Position: 2, Required: true, Help: "a level"},
			},
			Run: func(in *In) (*Result, error) {
				l, _ := in.Value("Level").(events.Level)
				list, err := in.a.SetEventLevel(in.ctx, in.String("Identity"), l)
				return dataOr(list, err)
			},
		},
		{
			Name: "Get-MessageTrackingLog", Cmdlet: "Get-MessageTrackingLog", CLI: "track",
			Summary: "Show the message trace: each delivery attempt to a remote host, with the TLS negotiated (DS2)",
			Role:    ViewOnly, Returns: []tracking.Record{},
			Params: []Param{{Name: "MessageId", CLI: "MESSAGE-ID", Type: TypeString, Position: 1, Help: "a message ID"}},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.MessageTrace(in.ctx, in.String("MessageId"))
				return dataOr(orEmpty(list), err)
			},
		},
	}
}
