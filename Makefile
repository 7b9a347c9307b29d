# s3gfs build, test and run targets. `make help` lists them.

GO        ?= go
# Pinned external tools (S3 servers) are installed here by scripts/install-tools.sh.
export S3GFS_TOOLS ?= $(HOME)/.cache/s3gfs-tools
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# go test timeout for `make test`; the suite itself takes a few minutes.
TEST_TIMEOUT ?= 20m

.PHONY: all build test unit run tools vet fuzz clean help

all: build

help:
	@echo "make run    build, start a local S3 server, format a volume and mount it at ./mnt (Ctrl-C stops)"
	@echo "make test   vet, then every test: unit, S3 conformance, FUSE integration (needs root and /dev/fuse)"
	@echo "make test-minio  the S3 conformance and FUSE integration tests against MinIO (installs it: slow the first time)"
	@echo "make unit   the fast tests only (no S3 server, no FUSE)"
	@echo "make build  binaries into bin/ (s3gfs, s3gfs-csi-controller, s3gfs-csi-node)"
	@echo "make tools  install the pinned S3 server used by tests and make run"
	@echo "make fuzz   run each fuzz target for FUZZTIME (default 30s)"
	@echo "make torture  the multi-host torture test for TORTURE_DURATION (default 10m; S3GFS_TORTURE_SEED replays a seed)"
	@echo "make load   8 mount processes on one volume for LOAD_DURATION (default 10m) of mixed load: the torture checker's verdict and the figures"
	@echo "make crash  kill a mount with SIGKILL S3GFS_CRASH_KILLS times (default 50) mid-workload and check what it left (S3GFS_CRASH_SEED replays)"
	@echo "make bench  s3gfs vs raw S3, s3fs and rclone on a local S3 server; results in bench/results/ (BENCH_SMOKE=1: small run)"
	@echo "make bench-go  the Go benchmarks of the hot paths (codec, extent lookup, directory merge), with -benchmem"
	@echo "make chart-test  render, decode strictly, lint and check the Helm chart (charts/s3gfs) and deploy/"
	@echo "make deploy-manifests  regenerate the plain manifests in deploy/ from the chart (kubectl apply -k deploy/)"
	@echo "make images  the controller, node and reaper OCI image tarballs in bin/images (offline: static binaries, no Docker; IMAGE_TAG=...)"
	@echo "make e2e-k8s  a real single-node Kubernetes built here (cached in ~/.cache/s3gfs-e2e): helm install, RWX PVC, snapshot, restore, reaper lease, plugin restart, uninstall (root; tests/e2e-k8s/README.md)"
	@echo "make images-smoke  run the images in a private containerd (needs root, apt-get install containerd runc): S3 format, reaper, FUSE mount"

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/s3gfs ./cmd/s3gfs
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/s3gfs-csi-controller ./cmd/controller
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/s3gfs-csi-node ./cmd/node

tools:
	scripts/install-tools.sh versitygw

vet:
	$(GO) vet ./...

# S3GFS_REQUIRE_* turn "skipped: no S3 server / no FUSE" into failures, so a
# broken environment cannot pass as green.
test: tools vet build
	S3GFS_REQUIRE_S3=1 S3GFS_REQUIRE_FUSE=1 S3GFS_BIN=$(CURDIR)/bin/s3gfs \
		$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# The S3 and FUSE suites against MinIO instead of versitygw. Not part of
# `make test`: building MinIO takes minutes the first time.
.PHONY: test-minio
test-minio:
	scripts/install-tools.sh minio
	S3GFS_S3_SERVER=minio S3GFS_REQUIRE_S3=1 S3GFS_REQUIRE_FUSE=1 \
		$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./pkg/s3gfs/objstore/... ./tests/...

unit:
	$(GO) test -short -count=1 ./...

run: build tools
	scripts/run.sh

FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecodeInode -fuzztime=$(FUZZTIME) ./pkg/s3gfs/format/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeVolume -fuzztime=$(FUZZTIME) ./pkg/s3gfs/format/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeExtent -fuzztime=$(FUZZTIME) ./pkg/s3gfs/format/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeDecision -fuzztime=$(FUZZTIME) ./pkg/s3gfs/format/
	$(GO) test -run='^$$' -fuzz=FuzzParseVolumeID -fuzztime=$(FUZZTIME) ./pkg/driver/
	$(GO) test -run='^$$' -fuzz=FuzzParseParams -fuzztime=$(FUZZTIME) ./pkg/driver/

# The randomized multi-host torture test (tests/torture) for a long run.
# `make test` runs it for 20s; this target runs it for TORTURE_DURATION.
TORTURE_DURATION ?= 10m
TORTURE_TIMEOUT  ?= 60m
.PHONY: torture
torture: tools build
	S3GFS_REQUIRE_S3=1 S3GFS_REQUIRE_FUSE=1 S3GFS_BIN=$(CURDIR)/bin/s3gfs S3GFS_TORTURE_DURATION=$(TORTURE_DURATION) \
		$(GO) test -count=1 -v -timeout $(TORTURE_TIMEOUT) ./tests/torture/

# The crash-consistency test (tests/crash) for many kills: `make test` kills
# the mount 3 times; this target S3GFS_CRASH_KILLS times.
S3GFS_CRASH_KILLS ?= 50
CRASH_TIMEOUT ?= 60m
.PHONY: crash
crash: tools build
	S3GFS_REQUIRE_S3=1 S3GFS_REQUIRE_FUSE=1 S3GFS_BIN=$(CURDIR)/bin/s3gfs S3GFS_CRASH_KILLS=$(S3GFS_CRASH_KILLS) \
		$(GO) test -count=1 -v -timeout $(CRASH_TIMEOUT) -run TestCrash ./tests/crash/

# The load test (tests/torture TestLoad): 8 hosts on one volume.
LOAD_DURATION ?= 10m
LOAD_TIMEOUT  ?= 60m
.PHONY: load
load: tools build
	S3GFS_REQUIRE_S3=1 S3GFS_REQUIRE_FUSE=1 S3GFS_BIN=$(CURDIR)/bin/s3gfs S3GFS_LOAD=1 S3GFS_LOAD_DURATION=$(LOAD_DURATION) \
		$(GO) test -count=1 -v -timeout $(LOAD_TIMEOUT) -run '^TestLoad$$' ./tests/torture/

clean:
	rm -rf bin

# The benchmark suite (bench/README.md): not part of `make test`. Needs root
# and /dev/fuse; installs versitygw, and s3fs, rclone and fio from Debian.
.PHONY: bench bench-go
bench:
	scripts/bench.sh

BENCHTIME ?= 1s
bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./pkg/s3gfs/format/ ./pkg/s3gfs/vfs/ ./pkg/s3gfs/objstore/s3store/

# Kubernetes packaging (docs: charts/s3gfs/values.yaml, build/images).
# chart-test is also part of `make test` (go test ./...).
.PHONY: chart-test deploy-manifests images images-smoke
chart-test:
	$(GO) test -count=1 ./tests/chart/ ./build/...

deploy-manifests:
	$(GO) run ./build/cmd/deploy-manifests -chart charts/s3gfs -deploy deploy

# Static binaries (CGO_ENABLED=0: the images have no libc) assembled into
# image tarballs by build/ociimage; `ctr images import bin/images/X.tar`.
IMAGE_TAG ?= $(VERSION)
images:
	@mkdir -p bin/static
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/static/s3gfs ./cmd/s3gfs
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/static/s3gfs-csi-controller ./cmd/controller
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/static/s3gfs-csi-node ./cmd/node
	$(GO) run ./build/cmd/ociimage -bin bin/static -out bin/images -version $(IMAGE_TAG)

# The images run through a real containerd (Debian's, started privately by
# the test) against the test S3 server; not in `make test`.
images-smoke: tools
	S3GFS_IMAGE_SMOKE=1 S3GFS_REQUIRE_S3=1 $(GO) test -count=1 -v -run 'TestContainerdSmoke' -timeout 15m ./build/ociimage/

# The end-to-end test on a real single-node Kubernetes built from the Go
# module proxy (tests/e2e-k8s/README.md). Not in `make test`: the first run
# builds the cluster's binaries (tens of minutes on 2 cores; cached after).
.PHONY: e2e-k8s
e2e-k8s: tools
	tests/e2e-k8s/run.sh
