# ctseg: `make run` starts the app, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
GO ?= go
export XDG_RUNTIME_DIR ?= /tmp
# Tests pin Mesa's lavapipe (a CPU Vulkan driver) unless CTSEG_VK_ICD names another driver's
# ICD file, so results do not depend on whichever GPU the machine has.
CTSEG_VK_ICD ?= /usr/share/vulkan/icd.d/lvp_icd.x86_64.json

.PHONY: all build wasm site deps test test-go test-limits test-arm64 asm-check fuzz vet run bench clean device-kit release test-release

all: build

deps:
	@scripts/install-deps.sh

# The browser app embeds the wasm build of ctseg: build it first, then the native binary.
WASM_DIR := viewer/static/gen

build: wasm
	$(GO) build -o bin/ctseg ./native/cmd/ctseg

# -s -w drops the wasm's name section (symbols for browser devtools; Go's own stack traces use
# pclntab): 10.38 -> 10.14 MB, 2.64 -> 2.58 MB gzipped (BENCHMARKS.md).
wasm:
	GOOS=js GOARCH=wasm $(GO) build -trimpath -ldflags="-s -w" -o $(WASM_DIR)/ctseg.wasm ./wasm
	cp "$$($(GO) env GOROOT)/lib/wasm/wasm_exec.js" $(WASM_DIR)/wasm_exec.js

vet: asm-check
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) vet ./wasm
	$(GO) vet -tags release ./scripts/releasetest
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# The CPU kernels' assembly is generated (model/_asm, with avo): the committed files must be
# what the generator writes (their first line names the output path, so it is left out).
asm-check:
	@d=$$(mktemp -d) && (cd model/_asm && $(GO) run . -out $$d/k.s -stubs $$d/k.go -pkg model -arm64 $$d/a.s) && \
	for p in "k.s cpu_kernels_amd64.s" "k.go cpu_kernels_amd64.go" "a.s cpu_kernels_arm64.s"; do set -- $$p; \
		cmp -s <(tail -n +2 $$d/$$1) <(tail -n +2 model/$$2) || { echo "model/$$2 is not what model/_asm writes: run go generate ./model/"; exit 1; }; \
	done; rm -rf $$d

test: deps build vet test-go test-limits test-arm64 fuzz test-release

test-go:
	VK_ICD_FILENAMES=$(CTSEG_VK_ICD) $(GO) test -count=1 -timeout 30m ./...

# The golden GPU tests again on a device with only WebGPU's default limits (what a browser
# grants without asking).
test-limits:
	VK_ICD_FILENAMES=$(CTSEG_VK_ICD) CTSEG_TEST_DEFAULT_LIMITS=1 $(GO) test -count=1 -run 'TestGPUGolden' ./model/

# The arm64 NEON kernels, cross-built with cgo (as the release is) and run under qemu-user:
# each kernel against the reference, and the small golden model through them; a run in which
# no NEON test passed (a filter matching nothing) fails.
test-arm64:
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc $(GO) test -c -o bin/model-arm64.test ./model/
	cd model && for run in 'TestNEONPresent|TestFast|TestCPUKernel' 'TestForwardGolden/neon/segresnet_small'; do \
		QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64 ../bin/model-arm64.test -test.run "$$run" -test.v > ../bin/arm64-run.log 2>&1; rc=$$?; \
		grep -E '^ *(--- |ok|PASS|FAIL)' ../bin/arm64-run.log; test $$rc = 0 || exit 1; \
		grep -q -- '--- PASS: .*neon' ../bin/arm64-run.log || { echo "test-arm64: no NEON test ran for $$run"; exit 1; }; done

# Each parser's fuzz target for a few seconds (crashers land in testdata/fuzz and fail later
# runs). Budgets are execution counts, not durations: Go 1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" when a -fuzztime duration ends (golang/go#75804).
FUZZ_TARGETS := volume:FuzzParseNIfTI:200000 volume:FuzzParseNIfTIGzip:100000 volume:FuzzParseLabels:100000 \
	volume:FuzzPlanPreprocess:100000 weights:FuzzReadTorch:200000 weights:FuzzReadSafetensors:60000 \
	volume/dicom:FuzzParse:200000 volume/dicom:FuzzLosslessJPEG:200000 volume/dicom:FuzzJPEGLS:200000 \
	cohort:FuzzParse:100000
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do IFS=: read -r pkg name n <<< "$$t"; \
		$(GO) test -run '^$$' -fuzz="^$$name\$$" -fuzztime=$${n}x -parallel=1 ./$$pkg/ ; done

# make release VERSION=X: the release archives in $(RELEASE_DIR) (README, "Release binaries").
# VERSION names files, so it is checked here, before anything runs, to fail in one line.
RELEASE_DIR ?= dist/release
version_chars := a b c d e f g h i j k l m n o p q r s t u v w x y z A B C D E F G H I J K L M N O P Q R S T U V W X Y Z 0 1 2 3 4 5 6 7 8 9 . + -
version_rest = $(if $(2),$(call version_rest,$(subst $(firstword $(2)),,$(1)),$(wordlist 2,99,$(2))),$(1))
version_spaced = $(if $(2),$(call version_spaced,$(subst $(firstword $(2)),$(firstword $(2)) ,$(1)),$(wordlist 2,99,$(2))),$(1))
version_bad = $(or $(filter-out 1,$(words $(VERSION))),$(filter .% +% -%,$(VERSION)),$(call version_rest,$(VERSION),$(version_chars)),$(word 65,$(call version_spaced,$(VERSION),$(version_chars))))
release:
	$(if $(VERSION),,$(error make release: VERSION is required, e.g. make release VERSION=1.0.0))
	$(if $(version_bad),$(error make release: VERSION "$(VERSION)" names files: use up to 64 letters, digits and . + - only, starting with a letter or digit))
	@scripts/release.sh '$(VERSION)' '$(RELEASE_DIR)'

# The release archives built as `make release` builds them, then checked: contents, checksums,
# and each binary's golden forward pass on the CPU where no GPU exists: linux/arm64 under
# qemu-user, windows/amd64 under wine (README, "Release binaries").
RELEASE_TEST_VERSION := 0.0.0-test
test-release:
	mkdir -p dist
	set -o pipefail; $(MAKE) --no-print-directory release VERSION=$(RELEASE_TEST_VERSION) RELEASE_DIR=dist/release-test | tee dist/release-test.log
	VK_ICD_FILENAMES=$(CTSEG_VK_ICD) CTSEG_RELEASE_DIR=$(CURDIR)/dist/release-test CTSEG_RELEASE_VERSION=$(RELEASE_TEST_VERSION) \
		CTSEG_RELEASE_LOG=$(CURDIR)/dist/release-test.log $(GO) test -tags release -count=1 -timeout 10m ./scripts/releasetest/

# The page as a static site in dist/site for any web host; WEIGHTS (a directory of model.pt /
# model_lowres.pt) optionally puts the weights, converted to f16, on the site (README: Use it).
site: build
	./bin/ctseg site --out dist/site --force $(if $(WEIGHTS),--weights-dir $(WEIGHTS))

# ADDR and WEIGHTS (a directory of model.pt / model_lowres.pt) are optional.
ADDR ?= 127.0.0.1:8080
run: deps build
	@./bin/ctseg weights fetch --variant all || echo "make run: the weights could not be fetched (see above); the app starts anyway. Offline: ./bin/ctseg weights import FILE (README)" >&2
	./bin/ctseg serve --addr $(ADDR) $(if $(WEIGHTS),--weights-dir $(WEIGHTS))

# What a GPU machine without Go needs for scripts/device_bench.sh: the binary, the small golden
# checkpoint (PyTorch's self-check and timing on the same GPU) in bin/, and the Vulkan loader
# packages in .gl/ (unpacked there first: see the script's header). Carry bin and .gl.
SHARED ?= $(or $(CTSEG_SHARED),../shared)
device-kit: build
	mkdir -p bin/golden_small .gl /tmp/ctseg-apt-amd64/partial
	cp $(SHARED)/golden/segresnet_small/model.pt $(SHARED)/golden/segresnet_small/input.f32 \
		$(SHARED)/golden/segresnet_small/output.f32 bin/golden_small/
	o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/ctseg-apt-amd64'; \
		apt-get $$o update -qq && cd .gl && apt-get $$o download libvulkan1

clean:
	rm -rf bin dist $(WASM_DIR)/ctseg.wasm $(WASM_DIR)/wasm_exec.js
