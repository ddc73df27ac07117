# ctseg: `make run` starts the app, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
GO ?= go
export XDG_RUNTIME_DIR ?= /tmp
# Tests pin Mesa's lavapipe (a CPU Vulkan driver) unless CTSEG_VK_ICD names another driver's
# ICD file, so results do not depend on whichever GPU the machine has.
CTSEG_VK_ICD ?= /usr/share/vulkan/icd.d/lvp_icd.x86_64.json

.PHONY: all build wasm deps test test-go test-limits fuzz vet run bench clean

all: build

deps:
	@scripts/install-deps.sh

# The browser app embeds the wasm build of ctseg: build it first, then the native binary.
WASM_DIR := viewer/static/gen

build: wasm
	$(GO) build -o bin/ctseg ./native/cmd/ctseg

wasm:
	GOOS=js GOARCH=wasm $(GO) build -o $(WASM_DIR)/ctseg.wasm ./wasm
	cp "$$($(GO) env GOROOT)/lib/wasm/wasm_exec.js" $(WASM_DIR)/wasm_exec.js

vet:
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) vet ./wasm
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

test: deps build vet test-go test-limits fuzz

test-go:
	VK_ICD_FILENAMES=$(CTSEG_VK_ICD) $(GO) test -count=1 -timeout 30m ./...

# The golden GPU tests again on a device with only WebGPU's default limits (what a browser
# grants without asking).
test-limits:
	VK_ICD_FILENAMES=$(CTSEG_VK_ICD) CTSEG_TEST_DEFAULT_LIMITS=1 $(GO) test -count=1 -run 'TestGPUGolden' ./model/

# Each parser's fuzz target for a few seconds (crashers land in testdata/fuzz and fail later runs).
FUZZTIME ?= 8s
fuzz:
	@set -e; for t in FuzzParseNIfTI FuzzParseNIfTIGzip FuzzParseLabels FuzzPlanPreprocess; do \
		$(GO) test -run '^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) -parallel=1 ./volume/ ; done
	@set -e; for t in FuzzReadTorch FuzzReadSafetensors; do \
		$(GO) test -run '^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) -parallel=1 ./weights/ ; done

bench: build
	VK_ICD_FILENAMES=$(CTSEG_VK_ICD) $(GO) test -run '^$$' -bench . -benchtime 1x ./shaders/ ./model/

# ADDR and WEIGHTS (a directory of model.pt / model_lowres.pt) are optional.
ADDR ?= 127.0.0.1:8080
run: deps build
	@./bin/ctseg weights fetch --variant all || echo "make run: the weights could not be fetched (see above); the app starts anyway. Offline: ./bin/ctseg weights import FILE (README)" >&2
	./bin/ctseg serve --addr $(ADDR) $(if $(WEIGHTS),--weights-dir $(WEIGHTS))

clean:
	rm -rf bin dist $(WASM_DIR)/ctseg.wasm $(WASM_DIR)/wasm_exec.js
