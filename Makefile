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
	GO=$(GO) scripts/k8s-tools.sh
	$(GO) vet $(PKGS)
	TEAL_REQUIRE_K8S=1 $(GO) test $(TESTFLAGS) $(PKGS)

lint:
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

# fuzz runs every fuzz target for FUZZTIME (the seed corpora also run in `make test`).
FUZZTIME ?= 20s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

bench:
	@scripts/deps.sh bench
	$(GO) test -run=NONE -bench=. -benchmem ./proxy/
	bench/router.sh
	bench/db.sh

clean:
	rm -rf bin
