package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"certrelay/internal/transport"
)

// Open files (SPEC P1, issue 9 item 14). Every SMTP session holds a file
// descriptor; so do the databases, the queue, Maildir deliveries and
// outbound connections. When accept runs out of descriptors, clients wait
// unanswered in the backlog, so the server caps its sessions below the
// open-file limit and answers the rest 421 4.7.0.

// raiseOpenFileLimit raises the soft RLIMIT_NOFILE to the hard limit, as
// far as the system allows (Go's runtime does the same at start since Go
// 1.19; doing it here says so and does not depend on it), and returns the
// soft limit in force.
func raiseOpenFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	return lim.Cur, nil
}

// sessionsFor returns how many SMTP sessions fit in an open-file limit:
// a quarter of it (at least 48, at most 1024 files) is kept for the rest
// of the process.
func sessionsFor(fileLimit uint64) int {
	const ceiling = 1 << 20
	if fileLimit > ceiling {
		fileLimit = ceiling // RLIM_INFINITY, or as good as
	}
	reserve := min(max(fileLimit/4, 48), 1024)
	if fileLimit <= reserve+8 {
		return 8
	}
	return int(fileLimit - reserve)
}

// checkOpenFiles raises 16029 when the connectors' MaxInboundConnection
// add up to more sessions than the open-file limit allows.
func (s *srv) checkOpenFiles(ctx context.Context, st *transport.State) {
	if s.fileLimit == 0 {
		return
	}
	sum := 0
	for _, c := range st.Connectors {
		if c.Enabled {
			sum += c.MaxInboundConnection
		}
	}
	if sessions := sessionsFor(s.fileLimit); sum > sessions {
		_, _ = s.events.Raise(ctx, 16029, "open-files", strconv.FormatUint(s.fileLimit, 10), strconv.Itoa(sessions), strconv.Itoa(sum))
	}
}

// noListenerError is why serve stops at start when no binding of any
// connector can be opened: a server that can receive nothing must not
// look as if it runs.
func noListenerError(errs []error) error {
	var b strings.Builder
	b.WriteString("no receive connector can listen, so this server would receive no mail:")
	for _, err := range errs {
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	b.WriteString("\nStop the program that holds the address (ss -ltnp shows which), or move the connector: certrelay connector receive set NAME --bindings IP:PORT")
	return fmt.Errorf("%s", b.String())
}
