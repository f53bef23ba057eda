# Hackarena — `make run` runs the platform, `make test` runs every check.
# Both install what they need: Debian packages through apt-get when running
# as root, Go modules through the module proxy.

GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
# Packages whose tests run under the race detector (they run goroutines).
RACE_PKGS   := ./platform/... ./judge/... ./sdk/... ./gpu/...
OTHER_PKGS  := ./challenges/... ./internal/... ./plugins/...

# The IMDB and houses data mirror, unless HACKARENA_DATASETS says where:
# shared/datasets beside this checkout, or beside the local checkout this
# one was cloned from (a clean clone in /tmp still finds the machine's data).
ORIGIN_DIR    := $(dir $(shell git config --get remote.origin.url 2>/dev/null))
DATASETS_SEEN := $(firstword $(wildcard $(CURDIR)/../shared/datasets $(ORIGIN_DIR)shared/datasets))
ifneq ($(DATASETS_SEEN),)
export HACKARENA_DATASETS ?= $(abspath $(DATASETS_SEEN))
endif

# With Debian's OpenBLAS (libopenblas-dev) present and cgo working, the
# engine multiplies matrices with it (build tag openblas); else pure Go.
# make deps installs it; recipes test for it when they run, after deps.
TAGS_SH := echo 'int main(void){return 0;}' | cc -x c -include cblas.h - -lopenblas -o /dev/null 2>/dev/null && echo openblas

.PHONY: images up down chaos chaos-quick run test build deps check vet staticcheck fmt-check mod-check plugins models proto clean bench bench-sandbox bench-engine bench-events bench-logins bench-bootstrap

run: deps build
	./$(BIN)/hackarena serve

build:
	$(GO) build -tags "$$($(TAGS_SH))" -ldflags "-X github.com/hackarena/hackarena/judge.Version=$(VERSION)" -o $(BIN)/hackarena ./platform/cmd/hackarena
	@# Static: hackctl pack makes plugins of a copy of it, and the sandbox
	@# has no shared libraries.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/hackctl ./sdk/cmd/hackctl

test: deps check
	@# ONNX's own node tests of the ops the importer claims ("N of M passed").
	@mkdir -p $(BIN); if $(GO) test -count=1 -run '^TestConformanceOnONNXsNodeTests$$' -v ./sdk/onnx > $(BIN)/onnx-conformance.log 2>&1; \
	then grep '^ONNX conformance' $(BIN)/onnx-conformance.log; else cat $(BIN)/onnx-conformance.log; exit 1; fi
	$(GO) test -tags "$$($(TAGS_SH))" -race -count=1 -timeout 25m $(RACE_PKGS)
	$(GO) test -tags "$$($(TAGS_SH))" -count=1 -timeout 10m $(OTHER_PKGS)
	# The engine's pure-Go path, for machines without OpenBLAS.
	$(GO) test -count=1 ./gpu/...

check: fmt-check mod-check vet staticcheck

# The production shape (docker-compose.yml): images built here with no
# registry, tagged with the build's version and "local".
VERSION            ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMPOSE            ?= $(shell command -v docker-compose >/dev/null 2>&1 && echo docker-compose || echo docker compose)
HACKARENA_HOST_DIR ?= $(CURDIR)/var/compose
HACKARENA_PORT     ?= 8080
COMPOSE_ENV         = HACKARENA_HOST_DIR=$(HACKARENA_HOST_DIR) HACKARENA_PORT=$(HACKARENA_PORT) \
	HACKARENA_JWT_SECRET=$$(cat $(HACKARENA_HOST_DIR)/jwt-secret 2>/dev/null || echo unset-until-make-up-unset-until-make-up)

images: deps
	@command -v haproxy >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; } || { echo "missing: haproxy — sudo apt-get install haproxy"; exit 1; }
	$(GO) run ./internal/cmd/images --version $(VERSION)

# up: Redis, 2 API replicas behind HAProxy on :$(HACKARENA_PORT), 3 judges.
up: images
	@mkdir -p $(HACKARENA_HOST_DIR)/data $(HACKARENA_HOST_DIR)/tmp
	@# The judges' socket tmpfs mounts must reach the host's Docker Engine:
	@# the shared folder is a shared mount (bound onto itself if need be).
	@findmnt -no PROPAGATION --target $(HACKARENA_HOST_DIR) | grep -q shared || \
		{ mount --bind $(HACKARENA_HOST_DIR) $(HACKARENA_HOST_DIR) && mount --make-rshared $(HACKARENA_HOST_DIR); } || \
		{ echo "$(HACKARENA_HOST_DIR) must be a shared mount: as root, mount --bind it onto itself and mount --make-rshared it"; exit 1; }
	@[ -s $(HACKARENA_HOST_DIR)/jwt-secret ] || { umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $(HACKARENA_HOST_DIR)/jwt-secret; }
	$(COMPOSE_ENV) $(COMPOSE) up -d
	@# Ready when /readyz answers through the load balancer 3 times in a row.
	@ok=0; for i in $$(seq 180); do \
		if curl -fsS http://127.0.0.1:$(HACKARENA_PORT)/readyz >/dev/null 2>&1; then ok=$$((ok+1)); else ok=0; fi; \
		[ $$ok -ge 3 ] && { echo "serving on http://127.0.0.1:$(HACKARENA_PORT)/"; exit 0; }; sleep 1; done; \
	$(COMPOSE_ENV) $(COMPOSE) logs --tail 30; echo "not ready after 180 s"; exit 1

down:
	@# The sandbox containers a killed judge of this project could not
	@# remove: each judge labels its own with its name, <hostname>-judge-0
	@# (another project's, or a judge on the host, are not touched).
	@judges=$$($(COMPOSE_ENV) $(COMPOSE) ps -q judge 2>/dev/null); \
	$(COMPOSE_ENV) $(COMPOSE) down --remove-orphans && \
	for j in $$judges; do \
		ids=$$(docker ps -aq --filter label=io.hackarena.sandbox=$$(echo $$j | cut -c1-12)-judge-0); \
		[ -z "$$ids" ] || docker rm -f $$ids >/dev/null; \
	done
	@# The bind mount up made, and any socket tmpfs a killed judge left.
	@! mountpoint -q $(HACKARENA_HOST_DIR) || umount -R $(HACKARENA_HOST_DIR)

# chaos: 300 submissions from 10 teams through the load balancer to 3
# judges while the stack (`make up`, in a compose project of its own) is
# broken one fault at a time: a judge killed, frozen past its lease, cut
# off for 60 s; Redis killed; an API replica restarted in an upload burst;
# judges scaled 3 -> 1 -> 3. Prints what each fault cost (bin/chaos.md)
# and fails on any submission lost, scored twice or sandbox left behind.
CHAOS_FLAGS ?=
chaos: images
	$(GO) run ./internal/cmd/chaos --report $(BIN)/chaos.md $(CHAOS_FLAGS)

# chaos-quick: every fault once with 60 submissions and shorter holds
# (.ci/run runs it after make test).
chaos-quick: images
	$(GO) run ./internal/cmd/chaos --report $(BIN)/chaos-quick.md --submissions 60 --teams 4 \
		--cut 20s --lease 8s --before 8s --after 15s --window 10s --burst 8

# bench-sandbox: cold start and MNIST judging in each sandbox, as ratios to
# the same plugin unsandboxed in the same run.
bench-sandbox: deps
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench BenchmarkSandbox -benchtime 5x ./judge | tee $(BIN)/bench-sandbox.txt
	@grep -q '^ok' $(BIN)/bench-sandbox.txt || { echo "the benchmark failed (above)"; exit 1; }

# bench-engine: MNIST MLP training (s/epoch at batch 32 and 128) and
# inference (images/s on the 10k test set), and the seed's CNN (training on
# 6,000 images, inference), with sdk/nn + the Engine, pure Go and OpenBLAS,
# as ratios to PyTorch on Debian's python3 in the same run; then the
# judge's overhead on mnist-mlp against the same network in-process; then
# the MLP loaded as ONNX against our own format. It ends with a table of
# every ratio and its target.
bench-engine: deps
	@missing=""; \
	/usr/bin/python3 -c 'import torch' 2>/dev/null || missing="$$missing python3-torch"; \
	/usr/bin/python3 -c 'import cryptography' 2>/dev/null || missing="$$missing python3-cryptography"; \
	dpkg -s libopenblas0-openmp >/dev/null 2>&1 || missing="$$missing libopenblas0-openmp"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "missing:$$missing — sudo apt-get install$$missing"; exit 1; fi; \
	fi
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench 'BenchmarkEngine$$' -benchtime 3x -timeout 30m ./gpu | tee $(BIN)/bench-engine-gonum.txt
	$(GO) test -tags openblas -run '^$$' -bench 'BenchmarkEngine$$' -benchtime 3x -timeout 30m ./gpu | tee $(BIN)/bench-engine-openblas.txt
	$(GO) test -tags openblas -run '^$$' -bench BenchmarkJudgeOverhead -benchtime 10x ./judge | tee $(BIN)/bench-judge.txt
	@# An ONNX export of the MLP against the same network in our format.
	$(GO) test -tags openblas -run '^$$' -bench BenchmarkEngineONNX -benchtime 3x ./gpu | tee $(BIN)/bench-onnx.txt
	@grep -q '^ok' $(BIN)/bench-engine-gonum.txt && grep -q '^ok' $(BIN)/bench-engine-openblas.txt && grep -q '^ok' $(BIN)/bench-judge.txt && grep -q '^ok' $(BIN)/bench-onnx.txt || { echo "a benchmark failed (above)"; exit 1; }
	@awk -f internal/bench/table.awk label=pure-Go $(BIN)/bench-engine-gonum.txt label=OpenBLAS $(BIN)/bench-engine-openblas.txt $(BIN)/bench-judge.txt $(BIN)/bench-onnx.txt

# bench-events: 2,000 SSE clients on one `hackarena serve` over loopback;
# time from a board change written to Redis to the last client having it
# (p50/p99, against 1 client in the same run) and server RSS per client.
bench-events: deps
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench BenchmarkEventFanOut -benchtime 200x -timeout 15m ./platform/cmd/hackarena | tee $(BIN)/bench-events.txt
	@grep -q '^ok' $(BIN)/bench-events.txt || { echo "the benchmark failed (above)"; exit 1; }

# bench-logins: /healthz p99 while 200 concurrent wrong logins arrive,
# against idle, in one run.
bench-logins: deps
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench BenchmarkHealthzDuringLoginFlood -benchtime 5x ./platform/api | tee $(BIN)/bench-logins.txt
	@grep -q '^ok' $(BIN)/bench-logins.txt || { echo "the benchmark failed (above)"; exit 1; }

# bench-bootstrap: judging the reference MNIST plugin with its bootstrap
# intervals (1,000 resamples per half) as a ratio to judging without.
bench-bootstrap: deps
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench BenchmarkBootstrapCost -benchtime 5x ./judge | tee $(BIN)/bench-bootstrap.txt
	@grep -q '^ok' $(BIN)/bench-bootstrap.txt || { echo "the benchmark failed (above)"; exit 1; }

# bench runs every benchmark above, then prints one table of every ratio
# they measured, with the targets issues set.
bench: bench-sandbox bench-engine bench-events bench-logins bench-bootstrap
	@echo; echo "Summary of make bench:"
	@awk -f internal/bench/table.awk label=sandbox $(BIN)/bench-sandbox.txt label=pure-Go $(BIN)/bench-engine-gonum.txt \
		label=OpenBLAS $(BIN)/bench-engine-openblas.txt $(BIN)/bench-judge.txt $(BIN)/bench-onnx.txt \
		label=events $(BIN)/bench-events.txt label=logins $(BIN)/bench-logins.txt label=bootstrap $(BIN)/bench-bootstrap.txt

mod-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags "$$($(TAGS_SH))" ./gpu/...

staticcheck:
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags "$$($(TAGS_SH))" ./gpu/...

# deps installs the system programs the platform and its tests run for real.
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v prlimit >/dev/null || missing="$$missing util-linux"; \
	command -v pgrep >/dev/null || missing="$$missing procps"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	$(TAGS_SH) >/dev/null || missing="$$missing libopenblas-dev"; \
	[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null || missing="$$missing python3-numpy"; \
	/usr/bin/python3 -c 'import torch' 2>/dev/null || missing="$$missing python3-torch"; \
	dpkg -s libopenblas0-openmp >/dev/null 2>&1 || missing="$$missing libopenblas0-openmp"; \
	[ -f /usr/share/libonnx-testdata/data/node/test_relu/model.onnx ] || missing="$$missing libonnx-testdata"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing:$$missing — install them (Debian: sudo apt-get install$$missing) and run make again"; exit 1; \
		fi; \
	fi

# plugins regenerates the reference plugins' embedded centroids and
# coefficients.
plugins:
	cd plugins/mnist-centroid && $(GO) generate
	cd plugins/houses-linear && $(GO) generate

# models retrains the reference networks from the public training data
# with fixed seeds (pure-Go BLAS, so the bytes repeat): mnist-mlp 30 s,
# imdb-embed 30 s, houses-mlp 3 s, mnist-cnn about 11 min on 2 cores.
models:
	cd plugins/mnist-mlp && $(GO) generate
	cd plugins/houses-mlp && $(GO) generate
	cd plugins/imdb-embed && $(GO) generate
	cd plugins/mnist-cnn && $(GO) generate

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
