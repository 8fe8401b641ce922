# Racker's build, tests and tools. `make help` lists the targets.
SHELL := bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/racker/racker/provisioner/cli.Version=$(VERSION)
FUZZTIME ?= 10s

.PHONY: help deps build test unit fuzz e2e bench lint demo clean

help:
	@echo "make deps   install the Debian packages Racker needs (root, idempotent)"
	@echo "make build  build bin/racker and bin/racker-sim"
	@echo "make mgmtos the simulated management node's OS image, bin/mgmtos"
	@echo "make test   unit + integration tests (integration needs root), short fuzz run"
	@echo "make licenses        regenerate docs/licenses.md (every dependency's licence, checked)"
	@echo "make lint   gofmt check, go vet, make licenses-check, generated files current (make generate), make docs-check"
	@echo "make docs-check      the user manual's commands exist as shown; its 'sh run' blocks run against examples/rack"
	@echo "make demo   the main job: a simulated rack provisioned by racker bootstrap (LAPTOP=1: laptop mode, no BMCs)"
	@echo "make e2e    end-to-end suite on the simulator (LABELS=bootstrap,… for a subset)"
	@echo "make bench  benchmarks against real peers (BENCH=short: smoke run); make bench-readme: README table from bench/results"
	@echo "make image  installer image bin/racker-VERSION.oci.tar, signed with SIGN_KEY (REGISTRY=host/repo, WITH=lokoctl,terraform)"
	@echo "make image-push REGISTRY=HOST[:PORT]/REPO  build and push the installer image"

deps:
	./scripts/deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/racker ./cmd/racker
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/racker-sim ./cmd/racker-sim

test: build testos mgmtos image
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) test-lokomotive
	$(MAKE) fuzz

# make test-lokomotive: the Lokomotive configuration bootstrap writes, loaded
# and validated by Lokomotive v0.9.0's own code (a module of its own, so
# Racker never builds with Lokomotive's Kubernetes dependencies).
.PHONY: test-lokomotive
test-lokomotive:
	cd provisioner/cluster/lokomotive/conformance && GO=$(GO) $(GO) test -count=1 ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./provisioner/inventory
	$(GO) test -run='^$$' -fuzz=FuzzCallbackAPI -fuzztime=$(FUZZTIME) ./provisioner/bootsvc/internal/web

lint: licenses-check check-generated docs-check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd provisioner/cluster/lokomotive/conformance && $(GO) vet ./...

# make docs-check: every racker command in docs/manual exists with the flags
# it shows, and the blocks fenced "sh run" run against examples/rack (no
# root, no VMs); every command users see is shown somewhere. Part of make
# lint, so CI keeps the manual from rotting.
.PHONY: docs-check
docs-check:
	$(GO) test -count=1 -run '^TestManualCommands$$' ./provisioner/cli

# docs/licenses.md lists the licence of every module the binaries, tests and
# tools are built from, and of the image's third-party files
# (internal/licenses). make licenses rewrites it; licenses-check (in make lint,
# so in CI) fails when it is stale or a licence is unknown or not accepted.
.PHONY: licenses licenses-check
licenses:
	$(GO) run ./scripts/licenses

licenses-check:
	$(GO) run ./scripts/licenses -check

# make generate: rewrite the checked-in generated files (docs/phases.md, the
# orchestrator's transition table); make check-generated (part of make lint)
# fails when one is not current.
.PHONY: generate check-generated
generate:
	$(GO) generate ./provisioner/orchestrator

check-generated:
	cd provisioner/orchestrator && $(GO) run gen_phases.go -check -o ../../docs/phases.md

# The simulator needs the installer image (make image: Racker reaches the
# management node only through it), the node's OS image and the test OS.
SIM_INPUTS = build testos mgmtos image

# make demo LAPTOP=1: laptop mode (2 VMs without BMCs, driven through libvirt).
demo: deps $(SIM_INPUTS)
	LAPTOP=$(LAPTOP) ./scripts/demo.sh

# make e2e: the Ginkgo suite on a simulated rack (root, libvirtd, QEMU);
# LABELS=factory|bootstrap|reprovision|faults|operator|update|redfish|lifecycle|laptop|ui picks a subset.
LABELS ?=
e2e: deps $(SIM_INPUTS)
	$(GO) test -tags e2e -count=1 -timeout 60m -v ./e2e -ginkgo.v -ginkgo.no-color $(if $(LABELS),-ginkgo.label-filter='$(LABELS)')

# make bench: the full run (about 15 minutes), results in bench/results/full.json,
# which README.md's table and docs/benchmarks.md are made from (make
# bench-readme); make bench BENCH=short: the CI smoke run (about 2 minutes).
# The servers' state folders go under BENCH_WORK, on a disk filesystem as
# /opt/racker-state is (tmpfs is refused); BENCH_PROFILE=DIR keeps perf
# profiles of the servers; BENCH_NOTE says what a reader should know of the run.
BENCH ?= full
BENCH_OUT ?= $(if $(filter short,$(BENCH)),bench-results.json,bench/results/full.json)
BENCH_WORK ?= /var/tmp
bench: build testos
	$(GO) run ./bench $(if $(filter short,$(BENCH)),-short) -out $(BENCH_OUT) -work $(BENCH_WORK) \
		$(if $(BENCH_PROFILE),-profile $(BENCH_PROFILE)) $(if $(BENCH_NOTE),-note "$(BENCH_NOTE)") $(BENCH_FLAGS)

.PHONY: bench-readme
bench-readme:
	$(GO) run ./bench -readme bench/results/full.json

# The installer image (provisioner/release, payload in release/conf.yaml): no
# Docker engine; VERSION from git describe (made semver) or VERSION=.
.PHONY: image image-push
# Every image is signed (cosign format) with SIGN_KEY, made on first use;
# its public half ships in the release and pins the key of later releases.
SIGN_KEY ?= bin/release-signing.pem
IMAGE_FLAGS = --manifest release/conf.yaml --version $(VERSION) --sign-key $(SIGN_KEY) $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(WITH),--with $(WITH))
.PHONY: sign-key
sign-key:
	@test -f $(SIGN_KEY) || $(GO) run ./cmd/racker release keygen --out $(SIGN_KEY)

image: sign-key
	$(GO) run ./cmd/racker release image $(IMAGE_FLAGS)

image-push: sign-key
	@test -n "$(REGISTRY)" || { echo "make image-push: set REGISTRY=HOST[:PORT]/REPO" >&2; exit 1; }
	$(GO) run ./cmd/racker release image $(IMAGE_FLAGS) --push

# make test-bmc: the BMC library (go-ipmi server in-process, ipmi_sim, ipmitool,
# a TCG domain under libvirtd) and the power/bootdev/bmc diag/console commands.
.PHONY: test-bmc
test-bmc:
	$(GO) test -count=1 ./provisioner/bmc
	$(GO) test -count=1 -run 'BMC|Power|Bootdev|Console|Escape' ./provisioner/cli

# make test-orch: the orchestrator (every transition and timeout on a simulated
# clock, kill -9 and resume against the real HTTP boot services), the cluster
# profiles and the bootstrap/status/reprovision commands (fake BMCs, loopback).
.PHONY: test-orch
test-orch:
	$(GO) test -count=1 ./provisioner/orchestrator ./provisioner/cluster
	$(GO) test -count=1 -run 'Bootstrap|Status|Reprovision' ./provisioner/cli

# make test-sim: netenv, the VMs and racker-sim (root, libvirtd, QEMU; the
# hand-driven provisioning test also needs make testos).
.PHONY: test-sim
test-sim: $(SIM_INPUTS)
	$(GO) test -count=1 ./netenv ./simulator/vm ./simulator/unitd ./simulator/mgmtnode ./simulator/rack ./simulator/simcli

# make testos: the test OS as a release folder, bin/testos/current (Debian's
# cloud kernel + the Go init; quick when nothing changed). make test-testos:
# its tests, with the QEMU netboot-install-then-disk-boot test (~1 min, TCG).
# make mgmtos: the simulated management node's OS image, bin/mgmtos (a
# Flatcar-shaped /usr from Debian's programs + the unitd service manager;
# quick when nothing changed).
.PHONY: mgmtos
mgmtos:
	GO=$(GO) ./scripts/build-mgmtos.sh bin/mgmtos

.PHONY: testos test-testos
testos:
	GO=$(GO) ./scripts/build-testos.sh bin/testos

test-testos: testos
	RACKER_TESTOS_DIR=$(CURDIR)/bin/testos $(GO) test -count=1 -timeout 20m ./simulator/testos/...

# make test-bootsvc: DHCP, TFTP, leases, racker serve and factory discover in
# network namespaces (busybox udhcpc/tftp/wget), plus the QEMU netboot tests
# (SeaBIOS + iPXE ROM, OVMF's own PXE) into the test OS (~1.5 min, TCG).
.PHONY: test-bootsvc
test-bootsvc: testos
	RACKER_TESTOS_DIR=$(CURDIR)/bin/testos $(GO) test -count=1 -timeout 20m ./provisioner/bootsvc/...

clean:
	rm -rf bin
