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

test: deps vet
	$(GO) test $(TESTFLAGS) $(PKGS)

# Short fuzzing runs of every parser (the seed corpora also run in `make test`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzParseBundle -fuzztime=$(FUZZTIME) ./internal/certinfo/
	$(GO) test -run=NONE -fuzz=FuzzParsePKCS12 -fuzztime=$(FUZZTIME) ./internal/certinfo/
	$(GO) test -run=NONE -fuzz=FuzzParseSubject -fuzztime=$(FUZZTIME) ./internal/certinfo/
	$(GO) test -run=NONE -fuzz=FuzzCRL -fuzztime=$(FUZZTIME) ./internal/revocation/
	$(GO) test -run=NONE -fuzz=FuzzOCSP -fuzztime=$(FUZZTIME) ./internal/revocation/

clean:
	rm -rf bin
