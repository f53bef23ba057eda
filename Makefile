# Hackarena — `make run` runs the platform, `make test` runs every check.
# Both install what they need: Debian packages through apt-get when running
# as root, Go modules through the module proxy.

GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
# Packages whose tests run under the race detector (they run goroutines).
RACE_PKGS   := ./platform/... ./judge/... ./sdk/...
OTHER_PKGS  := ./challenges/... ./internal/... ./plugins/...

# The IMDB and houses data mirror, unless HACKARENA_DATASETS says where:
# shared/datasets beside this checkout, or beside the local checkout this
# one was cloned from (a clean clone in /tmp still finds the machine's data).
ORIGIN_DIR    := $(dir $(shell git config --get remote.origin.url 2>/dev/null))
DATASETS_SEEN := $(firstword $(wildcard $(CURDIR)/../shared/datasets $(ORIGIN_DIR)shared/datasets))
ifneq ($(DATASETS_SEEN),)
export HACKARENA_DATASETS ?= $(abspath $(DATASETS_SEEN))
endif

.PHONY: run test build deps check vet staticcheck fmt-check mod-check plugins proto clean bench bench-sandbox

run: deps build
	./$(BIN)/hackarena serve

build:
	$(GO) build -o $(BIN)/hackarena ./platform/cmd/hackarena
	$(GO) build -o $(BIN)/hackctl ./sdk/cmd/hackctl

test: deps check
	$(GO) test -race -count=1 -timeout 25m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 10m $(OTHER_PKGS)

check: fmt-check mod-check vet staticcheck

# bench-sandbox: cold start and MNIST judging in each sandbox, as ratios to
# the same plugin unsandboxed in the same run.
bench-sandbox: deps
	$(GO) test -run '^$$' -bench BenchmarkSandbox -benchtime 5x ./judge

bench: bench-sandbox

mod-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run $(STATICCHECK) ./...

# deps installs the system programs the platform and its tests run for real.
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v prlimit >/dev/null || missing="$$missing util-linux"; \
	command -v pgrep >/dev/null || missing="$$missing procps"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing:$$missing — install them (Debian: sudo apt-get install$$missing) and run make again"; exit 1; \
		fi; \
	fi

# plugins regenerates the reference plugin's embedded centroids from MNIST.
plugins:
	cd plugins/mnist-centroid && $(GO) generate
	cd plugins/houses-linear && $(GO) generate

# proto regenerates the plugin contract's Go code.
proto:
	@command -v protoc >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null; \
		else echo "protoc missing: apt-get install protobuf-compiler"; exit 1; fi; }
	GOBIN=$(CURDIR)/$(BIN) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/$(BIN) $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(CURDIR)/$(BIN):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative sdk/proto/pluginv1/plugin.proto sdk/proto/enginev1/engine.proto

clean:
	rm -rf $(BIN)
