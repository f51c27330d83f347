# teal — build, test, lint, bench. `make test` is what CI runs (.ci/run).
GO      ?= go
PKGS    ?= ./...
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build test deps lint bench fuzz clean

all: build

build:
	$(GO) build -o bin/teal ./cmd/teal

# deps installs what the test suite needs on a fresh Debian machine (idempotent, quiet when
# everything is there).
deps:
	@scripts/deps.sh test

test: deps
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

lint:
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

# fuzz runs each fuzz target for a short while (the seed corpora also run in `make test`).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzParseConfig -fuzztime=$(FUZZTIME) .
	$(GO) test -run=NONE -fuzz=FuzzPushTar -fuzztime=$(FUZZTIME) ./artifact/

bench:
	@scripts/deps.sh bench
	$(GO) test -run=NONE -bench=. -benchmem ./proxy/
	bench/router.sh
	bench/db.sh

clean:
	rm -rf bin
