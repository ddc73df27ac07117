# ctseg: `make run` starts the app, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
GO ?= go
export XDG_RUNTIME_DIR ?= /tmp
# Tests pin Mesa's lavapipe (a CPU Vulkan driver) unless CTSEG_VK_ICD names another driver's
# ICD file, so results do not depend on whichever GPU the machine has.
CTSEG_VK_ICD ?= /usr/share/vulkan/icd.d/lvp_icd.x86_64.json

.PHONY: all build deps test test-go vet run bench clean

all: build

deps:
	@scripts/install-deps.sh

build:
	$(GO) build -o bin/ctseg ./native/cmd/ctseg

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

test: deps build vet test-go

test-go:
	VK_ICD_FILENAMES=$(CTSEG_VK_ICD) $(GO) test -count=1 -timeout 30m ./...

bench: build
	VK_ICD_FILENAMES=$(CTSEG_VK_ICD) $(GO) test -run '^$$' -bench . -benchtime 1x ./shaders/ ./model/

run: deps build
	./bin/ctseg serve

clean:
	rm -rf bin dist
