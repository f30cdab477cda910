# agentscaler. `make run` shows the whole loop on this machine; `make test` runs every test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/agentscaler
STATICCHECK_VERSION := v0.8.2

.PHONY: build run test bench lint package deps clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/agentscaler

# The whole loop on this machine: the built-in Azure DevOps emulator, serve, and a provider.
run: build
	$(BIN) demo

# Installs what the tests need (see deps) when missing, then runs every test with the race detector.
test: deps
	CI=$${CI:-} $(GO) test -race -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

package:
	rm -rf dist/functionapp && mkdir -p dist/functionapp
	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/functionapp/agentscaler ./cmd/agentscaler
	cp host.json dist/functionapp/
	for f in webhook reconcile metrics; do mkdir -p dist/functionapp/$$f && cp functions/$$f/function.json dist/functionapp/$$f/; done
	cd dist/functionapp && rm -f ../functionapp.zip && python3 -m zipfile -c ../functionapp.zip host.json agentscaler webhook reconcile metrics

# Debian packages the tests run for real: Prometheus and promtool, the Pushgateway, a Docker engine, etcd.
DEPS := promtool:prometheus prometheus-pushgateway:prometheus-pushgateway dockerd:docker.io etcd:etcd-server
deps:
	@need=""; for d in $(DEPS); do command -v $${d%%:*} >/dev/null 2>&1 || need="$$need $${d#*:}"; done; \
	if [ -n "$$need" ]; then \
	  echo "installing$$need (Debian)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	fi

clean:
	rm -rf bin dist
