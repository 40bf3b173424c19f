package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"

	"certrelay/internal/events"
)

func (a *app) eventsCommand() *cobra.Command {
	var id int
	var since, level string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List the event log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := events.Filter{ID: id, Limit: limit}
			if since != "" {
				t, err := parseSince(since)
				if err != nil {
					return err
				}
				f.Since = t
			}
			if level != "" {
				switch strings.ToLower(level) {
				case "error":
					f.Severity = events.Error
				case "warning":
					f.Severity = events.Warning
				case "information", "info":
					f.Severity = events.Information
				default:
					return usagef("unknown --level %q: use Error, Warning or Information", level)
				}
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				list, err := ad.Events.List(cmd.Context(), f)
				if err != nil {
					return err
				}
				if asJSON {
					if list == nil {
						list = []events.Event{}
					}
					return printJSON(a.stdout, list)
				}
				for _, e := range list {
					fmt.Fprintf(a.stdout, "%s  %-11s %5d %s\\%s %s\n    %s\n", formatTime(e.Time), e.Severity, e.ID, e.Source, e.Category, e.Name, e.Message)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&id, "id", 0, "only this event ID")
	f.StringVar(&since, "since", "", "only events since this time (RFC 3339, or a duration such as 2h)")
	f.StringVar(&level, "level", "", "only Error, Warning or Information")
	f.IntVar(&limit, "limit", 0, "only the last N events")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func parseSince(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usagef("--since %q: give an RFC 3339 time (2026-11-22T08:00:00Z), a date, or a duration (2h)", s)
}

func (a *app) loglevelCommand() *cobra.Command {
	c := &cobra.Command{Use: "loglevel", Short: "Get or set event logging levels per category (SPEC D1)"}
	var asJSON bool
	get := &cobra.Command{
		Use:   "get [SOURCE\\CATEGORY]",
		Short: "Show the logging level of each category",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				type row struct{ Identity, EventLevel string }
				var rows []row
				for _, cat := range events.Categories() {
					if len(args) == 1 && !events.MatchCategory(args[0], cat) {
						continue
					}
					l, err := ad.Events.CategoryLevel(cmd.Context(), cat)
					if err != nil {
						return err
					}
					rows = append(rows, row{cat, l.String()})
				}
				if asJSON {
					return printJSON(a.stdout, rows)
				}
				var t [][]string
				for _, r := range rows {
					t = append(t, []string{r.Identity, r.EventLevel})
				}
				table(a.stdout, []string{"Identity", "EventLevel"}, t)
				return nil
			})
		},
	}
	get.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	set := &cobra.Command{
		Use:   "set SOURCE\\CATEGORY LEVEL",
		Short: `Set a category's level (Lowest, Low, Medium, High, Expert); "MSExchangeTransport\*" sets all`,
		Args:  exactArgs(2, "a category and a level"),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := events.ParseLevel(args[1])
			if err != nil {
				return usageError{err}
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				changed, err := ad.Events.SetCategoryLevel(cmd.Context(), args[0], l)
				if err != nil {
					return err
				}
				for _, c := range changed {
					fmt.Fprintf(a.stdout, "%s = %s\n", c, l)
				}
				return nil
			})
		},
	}
	c.AddCommand(get, set)
	return c
}
