# hastor build and test entry points. `make test` is what CI runs.
GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Whole-suite bound: the conformance suite and the kernel-initiator (UML)
# test dominate.
TEST_TIMEOUT ?= 60m

.PHONY: all build test deps lint fuzz bench

all: build

build:
	$(GO) build ./...

# Installs test dependencies (apt-get, only when missing), checks style and
# runs every test, under the race detector.
test: deps lint
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

deps:
	bash scripts/install-test-deps.sh

lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Short fuzzing run of every fuzz target (FUZZTIME each).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./target/login -run '^$$' -fuzz FuzzParseText -fuzztime $(FUZZTIME)
	$(GO) test ./target -run '^$$' -fuzz FuzzConnection -fuzztime $(FUZZTIME)
	$(GO) test ./target/scsi -run '^$$' -fuzz FuzzDecodeExecute -fuzztime $(FUZZTIME)
	$(GO) test ./target/scsi -run '^$$' -fuzz FuzzDecodePRState -fuzztime $(FUZZTIME)
	$(GO) test ./config -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./replication -run '^$$' -fuzz FuzzMsg -fuzztime $(FUZZTIME)
	$(GO) test ./replication/transport -run '^$$' -fuzz FuzzFrame -fuzztime $(FUZZTIME)
	$(GO) test ./replication/transport -run '^$$' -fuzz FuzzHello -fuzztime $(FUZZTIME)

# The side-by-side benchmark against other targets (see docs/benchmarks.md).
bench:
	$(GO) run ./bench
