# certrelay — build, test, benchmark.
GO      ?= go
BIN     ?= bin/certrelay
PKGS    ?= ./...
# Tests start real servers and tools; give them time on a 2-core machine.
TESTFLAGS ?= -timeout 25m

.PHONY: all build test deps vet fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/certrelay

# Installs the outside programs the tests drive, when missing.
deps:
	./scripts/install-deps.sh

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

test: deps vet
	$(GO) test $(TESTFLAGS) $(PKGS)

# Short fuzzing runs of every fuzz target (their seed corpora also run in
# `make test`). The targets are found by listing each package's tests, so a
# new one cannot be left out.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run=NONE -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin

# Benchmarks side by side with Postfix (loads by cmd/smtpload, medians of
# ROUNDS alternating rounds), the Go benchmarks, hot swap under load, and
# IMAP4/POP3 sessions against Dovecot with the memory of idle IMAP4
# connections (TestAccessBench; ACCESS_SECONDS, ACCESS_CLIENTS, IDLE_CONNS),
# and an edge's ingest beside Postfix with recipient checks (TestEdgeIngest,
# EDGE_ROUNDS, default ROUNDS), selection at scale (TestSelectScale:
# 10,000 certificates, 1,000 receive connectors; SWAPS, default 20; into
# docs/performance/scale-selection.md), IDLE_N idle SMTP and IMAP4
# connections held at once beside Postfix and Dovecot (TestIdleConns,
# ~2 min, into docs/performance/scale-connections.md), and the queue at
# scale (TestQueueScale: QUEUE_N messages waiting for a smart host that is
# down, default 100,000: `queue list`, restart, memory, the drain when it
# returns; ~2 min, into docs/performance/scale-queue.md); prints the results
# and writes them into docs/PERFORMANCE.md and docs/performance/. Never run by `make
# test`. PLAIN_N, TLS_N, SWAPS and CLIENTS adjust the loads (test/bench).
.PHONY: bench bench-swap crashtest
ROUNDS ?= 5
IDLE_N ?= 10000
QUEUE_N ?= 100000
bench:
	./scripts/install-deps.sh bench
	ROUNDS=$(ROUNDS) IDLE_N=$(IDLE_N) QUEUE_N=$(QUEUE_N) $(GO) test -tags bench -run '^(TestBench|TestSessionFloor|TestAccessBench|TestEdgeIngest|TestSelectScale|TestIdleConns|TestQueueScale)$$' -count=1 -v -timeout 180m ./test/bench/

# Hot swap (small store and 10,000 certificates), server start with
# 10,000 certificates, selection and serving-layer benchmarks: the numbers
# of issue 10, in the "swap" section of docs/performance/swap.md (~5 min).
SWAPS ?= 20
bench-swap: deps
	SWAPS=$(SWAPS) $(GO) test -tags bench -run '^TestHotSwap$$' -count=1 -v -timeout 60m ./test/bench/

# The organisation (issue 11): a new internal certificate on one hub to
# its use by the other (two certrelay serve on one slapd), serve start and
# memory with 1,000 servers and 100,000 mailboxes in the directory, the
# direct-trust check; the "org" section of docs/performance/org.md (~5 min).
ORG_SWAPS ?= 50
ORG_MAILBOXES ?= 100000
.PHONY: bench-org slapd
bench-org: deps
	ORG_SWAPS=$(ORG_SWAPS) ORG_MAILBOXES=$(ORG_MAILBOXES) $(GO) test -tags bench -run '^TestOrg$$' -count=1 -v -timeout 60m ./test/bench/

# The STARTTLS session against its own floor (issue 19): server CPU per
# bare handshake, per session of a minimal SMTP server and per certrelay
# session, measured in turn within each round, on shared cores and pinned
# (server on CPU 0, clients on CPU 1); the "sessionfloor" section of
# docs/performance/session-floor.md (~3 min).
.PHONY: bench-sessionfloor
bench-sessionfloor: deps
	ROUNDS=$(ROUNDS) $(GO) test -tags bench -run '^TestSessionFloor$$' -count=1 -v -timeout 30m ./test/bench/

# Renewal and self-probe (issue 18): `cert renew` of the connector's
# self-signed certificate to the first handshake with the renewed one under
# STARTTLS sessions, and the self-probe's cost per listener; the "renew"
# section of docs/performance/renew.md (~1 min).
RENEWS ?= 20
PROBES ?= 200
.PHONY: bench-renew
bench-renew: deps
	RENEWS=$(RENEWS) PROBES=$(PROBES) $(GO) test -tags bench -run '^TestRenew$$' -count=1 -v -timeout 30m ./test/bench/

# The edge (issue 12): 100,000 recipients replicated to a new edge (time,
# the edge's memory) and an incremental change to the edge, and the edge's
# ingest beside Postfix; the "edge" and "edge-ingest" sections of
# docs/performance/edge.md (~5 min).
EDGE_MAILBOXES ?= 100000
EDGE_CHANGES ?= 10
.PHONY: bench-edge
bench-edge: deps
	EDGE_MAILBOXES=$(EDGE_MAILBOXES) EDGE_CHANGES=$(EDGE_CHANGES) $(GO) test -tags bench -run '^(TestEdgeBench|TestEdgeIngest)$$' -count=1 -v -timeout 60m ./test/bench/

# A slapd with certrelay's schema and LDAP Sync, for trying an
# organisation on one machine (docs/DIRECTORY.md): scripts/slapd.sh.
SLAPD_DIR ?= ./slapd
SLAPD_PORT ?= 3890
slapd: deps
	./scripts/slapd.sh $(SLAPD_DIR) $(SLAPD_PORT)

# SIGKILL certrelay serve under load TRIALS times, restart, and compare the
# messages acknowledged with 250 with those delivered; fails if one is lost.
# Prints (and writes into docs/performance/crash.md) the drain after the last
# restart: messages recovered, time until all delivered and the queue empty;
# fails if the recovered mail is deferred, stops draining for 30 s, or is
# not gone 30 s + 1 s per 100 messages after the restart. SEED=N repeats a
# run's kill times.
TRIALS ?= 20
crashtest: deps
	TRIALS=$(TRIALS) $(GO) test -tags bench -run '^TestCrash$$' -count=1 -v -timeout 60m ./test/bench/
