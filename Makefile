# Mesh for Go — every tool this Makefile needs is fetched by the Makefile itself.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT   ?= golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
FUZZTIME    ?= 60s
SOAKTIME    ?= 10m
WATCHRUNS   ?= 1000
BENCHCOUNT  ?= 8

.PHONY: run compare test debugtest watchdog lint vet portcheck staticcheck fmtcheck tidycheck sizecheck bench fuzz soak

## run: a short cluster run: three node processes on 127.0.0.1, one table (no setup needed).
run:
	$(GO) run ./cmd/meshbench

## compare: Mesh beside a raw crypto/tls pipe and Erlang/OTP distribution (plain, TLS); as root on Debian it installs Erlang if missing.
compare:
	@command -v erl >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends erlang-base erlang-ssl erlang-public-key erlang-crypto || true
	$(GO) run ./cmd/meshbench compare

## test: the CI gate — vet, staticcheck, gofmt, the whole suite under the race detector, and the meshdebug checks.
test: lint
	$(GO) test -race -count=1 -timeout 14m ./...
	$(GO) test -count=1 -timeout 5m -run 'Allocat' ./...   # the allocation pins skip under -race (its pools drop items)
	$(GO) test -count=1 -timeout 5m ./internal/nbio/ ./loop/ ./mailbox/ ./node/   # the raw system calls (internal/nbio), x/sys's under -race
	$(MAKE) --no-print-directory debugtest   # the meshdebug checks (loop/doc.go)

## debugtest: the loop, node and tlsconn suites with the meshdebug build's stream checks (loop/debug_on.go): every conn's ciphertext followed from tls.Conn to the socket and into the peer's tls.Conn.
debugtest:
	$(GO) test -tags meshdebug -count=1 -timeout 10m ./loop/ ./node/ ./tlsconn/

## watchdog: the reply wait beside streams (node) WATCHRUNS times with the meshdebug checks; any link that goes down ends it with every stack (node/watchdog_test.go).
watchdog:
	MESH_WATCHDOG=45 GOTRACEBACK=all $(GO) test -tags meshdebug -count=$(WATCHRUNS) -timeout 0 -run '^TestWatchdogReplyWaitBesideStreams$$' ./node/

## lint: gofmt, go vet, staticcheck (pinned), a tidy go.mod and no large files.
lint: fmtcheck vet portcheck staticcheck tidycheck sizecheck

tidycheck:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }

# A tracked file over 1 MiB is almost always a built binary or a stray data dump.
sizecheck:
	@big=$$(git ls-files -z 2>/dev/null | xargs -0 -r stat -c '%s %n' 2>/dev/null | awk '$$1 > 1048576 {print $$2}'); \
	if [ -n "$$big" ]; then echo "tracked files over 1 MiB (build outputs belong in .gitignore):"; echo "$$big"; exit 1; fi

fmtcheck:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags meshdebug ./loop/ ./node/ ./tlsconn/

# The portable fallbacks (no eventfd, no timerfd) must keep compiling: macOS stands for every non-Linux Unix.
portcheck:
	GOOS=darwin $(GO) vet ./...

staticcheck:
	$(GO) run $(STATICCHECK) ./...

## bench: every benchmark suite, benchstat-readable (save with: make bench > new.txt).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./bench/...

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $$pkg; \
	  done; \
	done

## soak: long randomized runs (registry convergence, the mixed soak with its verdict line) behind MESH_SOAK.
soak:
	MESH_SOAK=$(SOAKTIME) $(GO) test -race -count=1 -timeout 0 -v -run 'Soak|Convergence' ./...
