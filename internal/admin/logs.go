package admin

import (
	"context"
	"strings"

	"certrelay/internal/events"
	"certrelay/internal/tracking"
)

// ListEvents returns the events of the event log that f selects, oldest
// first.
func (a *Admin) ListEvents(ctx context.Context, f events.Filter) ([]events.Event, error) {
	return a.Events.List(ctx, f)
}

// EventLevelSetting is a category's logging level (SPEC D1), as
// Get-EventLogLevel shows it.
type EventLevelSetting struct {
	Identity   string // "Source\Category"
	EventLevel string // Lowest, Low, Medium, High, Expert
}

// EventLevels returns the logging level of every category matching
// pattern ("" for all; "MSExchangeTransport\*" or one category).
func (a *Admin) EventLevels(ctx context.Context, pattern string) ([]EventLevelSetting, error) {
	var out []EventLevelSetting
	for _, c := range events.Categories() {
		if pattern != "" && !events.MatchCategory(pattern, c) {
			continue
		}
		l, err := a.Events.CategoryLevel(ctx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, EventLevelSetting{c, l.String()})
	}
	return out, nil
}

// SetEventLevel sets the logging level of every category matching
// pattern, in one transaction, and returns them.
func (a *Admin) SetEventLevel(ctx context.Context, pattern string, level events.Level) ([]EventLevelSetting, error) {
	if levels, _ := a.EventLevels(ctx, pattern); len(levels) == 0 || pattern == "" {
		return nil, failed(NotFound, "no event category matches %q", pattern).field("Identity", pattern).
			fix("the categories are %s", strings.Join(events.Categories(), ", "))
	}
	var out []EventLevelSetting
	err := a.atomically(ctx, func(ctx context.Context) error {
		changed, err := a.Events.SetCategoryLevel(ctx, pattern, level)
		if err != nil {
			return err
		}
		for _, c := range changed {
			out = append(out, EventLevelSetting{c, level.String()})
		}
		return nil
	})
	return out, err
}

// MessageTrace returns the message trace of outbound deliveries for
// message id (every message when id is ""), oldest first.
func (a *Admin) MessageTrace(_ context.Context, id string) ([]tracking.Record, error) {
	return tracking.Read(a.dataDir, id)
}
