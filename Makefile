# agentscaler. `make run` shows the whole loop on this machine; `make test` runs every test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/agentscaler
STATICCHECK_VERSION := v0.8.2

.PHONY: build run test fuzz bench lint package deps clean kubebins
.PHONY: check-images

# lambda.norpc drops the Lambda go1.x RPC mode, whose reflection keeps every exported method in the binary
# (52 MB without the tag, 33 MB with it); noaci and nokubernetes leave those providers out.
TAGS ?= lambda.norpc
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/agentscaler

# The whole loop on this machine: the built-in Azure DevOps emulator, serve, and agents in Docker
# containers. Installs Debian's docker.io when dockerd is missing, and starts a private engine when
# none answers (scripts/with-dockerd).
run: build
	@$(MAKE) --no-print-directory deps DEPS=dockerd:docker.io
	scripts/with-dockerd $(BIN) demo

# Installs what the tests need (see deps) when missing, then runs every test with the race detector, and
# every fuzz target for a few seconds beyond its seed corpus.
test: deps kubebins
	CI=$${CI:-} $(GO) test -race -count=1 ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

# Runs every fuzz target of the repository for FUZZTIME each (`go test` runs only their seed corpora): in each
# package whose tests define a func Fuzz..., the targets go test -list names, one at a time (-fuzz takes one).
FUZZTIME ?= 30s
TEST_FUZZTIME ?= 3s
# Go 1.26's fuzz coordinator can report its own -fuzztime deadline as a failure ("context deadline exceeded", no
# input written; go.dev/issue/75804, fixed in Go 1.27). Fuzzing alone runs on 1.27.3 (or the newer Go that go.mod
# may name one day), which the go command fetches from the module proxy once per machine; the module and everything
# else stay on go.mod's Go.
FUZZ_GO ?= GOTOOLCHAIN=go1.27.3+auto $(GO)
fuzz:
	@for dir in $$(grep -l '^func Fuzz' $$(git ls-files --cached --others --exclude-standard '*_test.go') | xargs -n1 dirname | sort -u); do \
	  for target in $$($(GO) test -list '^Fuzz' ./$$dir | grep '^Fuzz'); do \
	    out=$$($(FUZZ_GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) ./$$dir 2>&1) || { echo "$$out"; echo "FAIL fuzzing $$target in ./$$dir"; exit 1; }; \
	    echo "fuzzed $$target in ./$$dir for $(FUZZTIME): $$(echo "$$out" | grep -o 'execs: [0-9]*' | tail -1)"; \
	  done; \
	done

# The figures of the README's Performance section, one `name value unit` per line, then the ratios
# (tools/benchfmt); go test's own output goes to stderr. Under 5 minutes; needs dockerd (see deps).
bench: build
	@$(MAKE) --no-print-directory deps DEPS=dockerd:docker.io
	$(GO) run ./tools/benchfmt/cmd/benchfmt -binary $(BIN)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Deployable packages, for linux: $(DIST)/functionapp/ and $(DIST)/functionapp.zip (Azure Functions zip deploy:
# host.json, one folder per function, the amd64 binary) and $(DIST)/lambda-<arch>.zip (AWS Lambda provided.al2023:
# the binary as bootstrap). lambda.norpc drops the go1.x runtime's RPC mode and nodemo the demo world (0.47 MB);
# add tags to leave providers out, e.g.
# `make package PACKAGE_TAGS="lambda.norpc nodemo noaci nokubernetes"`. tools/zipdir keeps the executable bits.
DIST          ?= dist
PACKAGE_TAGS  ?= lambda.norpc nodemo
LAMBDA_ARCHES ?= amd64 arm64
PACKAGE_BUILD  = CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -tags '$(PACKAGE_TAGS)' -ldflags "$(LDFLAGS)"

.PHONY: package-functionapp package-lambda

package: package-functionapp package-lambda

package-functionapp:
	rm -rf $(DIST)/functionapp $(DIST)/functionapp.zip && mkdir -p $(DIST)/functionapp
	GOARCH=amd64 $(PACKAGE_BUILD) -o $(DIST)/functionapp/agentscaler ./cmd/agentscaler
	cp host.json functions/local.settings.json.example $(DIST)/functionapp/
	for f in functions/*/function.json; do d=$$(basename $$(dirname $$f)); mkdir -p $(DIST)/functionapp/$$d && cp $$f $(DIST)/functionapp/$$d/ || exit 1; done
	$(GO) run ./tools/zipdir -o $(DIST)/functionapp.zip $(DIST)/functionapp

package-lambda:
	for arch in $(LAMBDA_ARCHES); do \
	  rm -rf $(DIST)/lambda-$$arch $(DIST)/lambda-$$arch.zip && mkdir -p $(DIST)/lambda-$$arch && \
	  GOARCH=$$arch $(PACKAGE_BUILD) -o $(DIST)/lambda-$$arch/bootstrap ./cmd/agentscaler && \
	  $(GO) run ./tools/zipdir -o $(DIST)/lambda-$$arch.zip $(DIST)/lambda-$$arch || exit 1; \
	done

# Builds the Kubernetes control plane the Kubernetes tests run against (about 8 minutes cold), the kubelet and
# containerd of their node, and the helm binary the chart tests run (2 to 4), once per machine, then instant; so
# that go test's timeout is never spent on them.
kubebins:
	$(GO) run ./tools/kubebins >/dev/null

# The agent images' checks alone (`go test ./...` runs them too): shellcheck on every shell script, the start
# script under bats, hadolint when installed, every YAML/JSON file of infra/images and infra/pipelines parsed.
check-images:
	@$(MAKE) --no-print-directory deps DEPS="shellcheck:shellcheck bats:bats"
	CI=$${CI:-} $(GO) test -count=1 ./infra/images/

# Debian packages the tests run for real: Prometheus and promtool, the Pushgateway, a Docker engine, etcd, runc
# (under the Kubernetes tests' node),
# shellcheck and bats for the shell scripts, curl and jq for the service hook script, debootstrap for the
# Debian image the image checks are tested on. With debootstrap in DEPS, deps also builds that Debian root
# file system (tools/debianroot: a minute or more, once per machine, cached under ~/.cache/agentscaler/debian).
DEPS := promtool:prometheus prometheus-pushgateway:prometheus-pushgateway dockerd:docker.io etcd:etcd-server runc:runc \
        shellcheck:shellcheck bats:bats curl:curl jq:jq debootstrap:debootstrap
deps:
	@need=""; for d in $(DEPS); do command -v $${d%%:*} >/dev/null 2>&1 || need="$$need $${d#*:}"; done; \
	if [ -n "$$need" ]; then \
	  echo "installing$$need (Debian)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	fi
	@case " $(DEPS) " in *" debootstrap:"*) $(GO) run ./tools/debianroot >/dev/null ;; esac

clean:
	rm -rf bin dist
