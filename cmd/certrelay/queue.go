package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"

	"certrelay/internal/queue"
)

func (a *app) queueCommand() *cobra.Command {
	c := &cobra.Command{Use: "queue", Short: "Look at and manage the mail queue"}
	var status, dest string
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List queued messages with each recipient's destination, attempts, next try and last error", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				items, err := ad.QueueList(cmd.Context(), queue.Filter{Status: queue.Status(strings.ToLower(status)), Destination: dest})
				if err != nil {
					return err
				}
				if asJSON {
					if items == nil {
						items = []queue.Item{}
					}
					return printJSON(a.stdout, items)
				}
				var rows [][]string
				for _, it := range items {
					for _, r := range it.Recipients {
						next := ""
						if r.Status == queue.Pending && !r.NextAttempt.IsZero() {
							next = formatTime(r.NextAttempt)
						}
						sender := it.Sender
						if sender == "" {
							sender = "<>"
						}
						rows = append(rows, []string{it.ID, sender, r.Address, r.Destination, string(r.Status), fmt.Sprint(r.Attempts), next, r.LastError})
					}
				}
				table(a.stdout, []string{"Id", "From", "To", "Destination", "Status", "Attempts", "NextAttempt", "LastError"}, rows)
				return nil
			})
		},
	}
	list.Flags().StringVar(&status, "status", "", "only recipients in this state: pending, delivered or failed")
	list.Flags().StringVar(&dest, "destination", "", "only this destination (local, or a domain)")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	retry := &cobra.Command{
		Use: "retry [ID]", Short: "Try pending recipients now (all messages without ID)", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				n, err := ad.QueueRetry(cmd.Context(), id)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "%d recipient(s) due now\n", n)
				return nil
			})
		},
	}
	remove := &cobra.Command{
		Use: "remove ID", Short: "Delete a message from the queue, without a bounce", Args: exactArgs(1, "a message ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withAdmin(cmd, func(ad *admin.Admin) error {
				if err := ad.QueueRemove(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "Removed %s\n", args[0])
				return nil
			})
		},
	}
	c.AddCommand(list, retry, remove)
	return c
}
