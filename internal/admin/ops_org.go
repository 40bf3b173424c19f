package admin

import (
	"strconv"
	"strings"

	"certrelay/internal/directory"
	"certrelay/internal/queue"
)

func organisationOperations() []*Operation {
	return []*Operation{
		{
			Name: "New-AcceptedDomain", Cmdlet: "New-AcceptedDomain", CLI: "domain add",
			Summary: "Accept mail for DOMAIN",
			Role:    OrgAdmin, Returns: directory.AcceptedDomain{},
			Params: []Param{{Name: "DomainName", CLI: "DOMAIN", Type: TypeString, Position: 1, Required: true, Help: "a domain"}},
			Run: func(in *In) (*Result, error) {
				d, err := in.a.AddAcceptedDomain(in.ctx, in.String("DomainName"))
				return dataOr(d, err)
			},
		},
		{
			Name: "Get-AcceptedDomain", Cmdlet: "Get-AcceptedDomain", CLI: "domain list",
			Summary: "List accepted domains",
			Role:    ViewOnly, Returns: []directory.AcceptedDomain{},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.ListAcceptedDomains(in.ctx)
				return dataOr(orEmpty(list), err)
			},
		},
		{
			Name: "Remove-AcceptedDomain", Cmdlet: "Remove-AcceptedDomain", CLI: "domain remove",
			Summary: "Stop accepting mail for DOMAIN",
			Role:    OrgAdmin,
			Params:  []Param{{Name: "Identity", CLI: "DOMAIN", Type: TypeString, Position: 1, Required: true, Help: "a domain"}},
			Run: func(in *In) (*Result, error) {
				return nil, in.a.RemoveAcceptedDomain(in.ctx, in.String("Identity"))
			},
		},
		{
			Name: "New-Mailbox", Cmdlet: "New-Mailbox", CLI: "mailbox add",
			Summary: "Create a mailbox in an accepted domain",
			Role:    OrgAdmin, Returns: directory.Mailbox{},
			Params: []Param{
				{Name: "Address", CLI: "USER@DOMAIN", Type: TypeString, Position: 1, Required: true, Help: "an address"},
				{Name: "Password", CLI: "password-file", Type: TypeSecret, Required: true, Help: "the password for AUTH"},
			},
			Run: func(in *In) (*Result, error) {
				m, err := in.a.AddMailbox(in.ctx, in.String("Address"), in.String("Password"))
				return dataOr(m, err)
			},
		},
		{
			Name: "Get-Mailbox", Cmdlet: "Get-Mailbox", CLI: "mailbox list",
			Summary: "List mailboxes",
			Role:    ViewOnly, Returns: []directory.Mailbox{},
			Run: func(in *In) (*Result, error) {
				list, err := in.a.ListMailboxes(in.ctx)
				return dataOr(orEmpty(list), err)
			},
		},
		{
			Name: "Remove-Mailbox", Cmdlet: "Remove-Mailbox", CLI: "mailbox remove",
			Summary: "Remove a mailbox (its Maildir stays on disk)",
			Role:    OrgAdmin,
			Params:  []Param{{Name: "Identity", CLI: "USER@DOMAIN", Type: TypeString, Position: 1, Required: true, Help: "an address"}},
			Run: func(in *In) (*Result, error) {
				return nil, in.a.RemoveMailbox(in.ctx, in.String("Identity"))
			},
		},
		{
			Name: "Get-Message", Cmdlet: "Get-Message", CLI: "queue list",
			Summary: "List queued messages with each recipient's destination, attempts, next try and last error",
			Role:    ViewOnly, Returns: []queue.Item{},
			Description: `Messages come oldest first, a page of {-ResultSize} messages at a time
(default 1000, as Exchange's Get-Message); when more are queued, a note
names the {-After} value that lists the next page. A page costs the
same in a queue of 100,000 messages as in one of a thousand: nothing
counts or reads the rest.`,
			Params: []Param{
				{Name: "Status", CLI: "status", Type: TypeString, Help: "only recipients in this state: pending, delivered or failed"},
				{Name: "Destination", CLI: "destination", Type: TypeString, Help: "only this destination (local, or a domain)"},
				{Name: "ResultSize", CLI: "result-size", Type: TypeResultSize, Default: "1000", Help: "at most this many messages (Unlimited or 0: all of them)"},
				{Name: "After", CLI: "after", Type: TypeString, Help: "the messages after this message ID: the next page"},
			},
			Run: func(in *In) (*Result, error) {
				size := in.Int("ResultSize")
				if size < 0 {
					return nil, invalid("ResultSize", strconv.Itoa(size), "{-ResultSize} %d: give the number of messages a page holds, or 0 for all of them", size)
				}
				f := queue.Filter{Status: queue.Status(strings.ToLower(in.String("Status"))), Destination: in.String("Destination"), After: in.String("After")}
				if size > 0 {
					f.Limit = size + 1 // one more says whether there is a next page
				}
				items, err := in.a.QueueList(in.ctx, f)
				if err != nil {
					return nil, err
				}
				r := &Result{Data: orEmpty(items)}
				if size > 0 && len(items) > size {
					items = items[:size]
					r.Data = items
					r.Messages = append(r.Messages, Message{Note, msgf("More messages are queued after these %d: the next page is %s",
						size, cmd("Get-Message", "-ResultSize", strconv.Itoa(size), "-After", items[size-1].ID))})
				}
				return r, nil
			},
		},
		{
			Name: "Retry-Queue", Cmdlet: "Retry-Queue", CLI: "queue retry",
			Summary: "Try pending recipients now (all messages without ID)",
			Role:    ServerAdmin, Returns: Retried{}, NoWhatIf: true,
			Params: []Param{{Name: "Identity", CLI: "ID", Type: TypeString, Position: 1, Help: "a message ID"}},
			Run: func(in *In) (*Result, error) {
				n, err := in.a.QueueRetry(in.ctx, in.String("Identity"))
				return dataOr(Retried{Recipients: n}, err)
			},
		},
		{
			Name: "Remove-Message", Cmdlet: "Remove-Message", CLI: "queue remove",
			Summary: "Delete a message from the queue, without a bounce",
			Role:    ServerAdmin, NoWhatIf: true,
			Params: []Param{{Name: "Identity", CLI: "ID", Type: TypeString, Position: 1, Required: true, Help: "a message ID"}},
			Run: func(in *In) (*Result, error) {
				return nil, in.a.QueueRemove(in.ctx, in.String("Identity"))
			},
		},
	}
}

// Retried says how many recipients Retry-Queue made due.
type Retried struct {
	Recipients int
}
