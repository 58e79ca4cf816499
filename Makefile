# gpuslice — build, test and verify. `make test` is what CI runs (.ci/run).
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 30s

.PHONY: all build test test-unit verify fmt vet tidy-check bench fuzz clean demo bench-throughput bench-mig bench-mig-dynamic bench-openb bench-autoscale-trace

all: build

build:
	$(GO) build $(PKGS)

# VERSION is the release the binaries report (gpuslice-exporter --version)
# and the images' tag; manifests/ deploy gpuslice/gpuslice-*:$(VERSION)
# (hack/tools/images' test checks that they agree).
VERSION ?= v0.1.0
# KUBE_VERSION is the Kubernetes release the scheduler is built from (go.mod):
# kube-scheduler's --version, kubernetes_build_info and its metrics'
# deprecation follow it, as in an upstream build.
KUBE_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" && $$2 ~ /^v/ {print $$2; exit}' go.mod)
VERSION_LDFLAGS := -X github.com/gpuslice/gpuslice/pkg/version.Version=$(VERSION)
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(word 2,$(subst ., ,$(subst v,v ,$(KUBE_VERSION)))) \
	-X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION)))

# Binaries of the product, into bin/. The scheduler is static (no cgo), for
# an image with no C library.
.PHONY: scheduler exporter repartitioner kubectl-gpuslice
scheduler:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w $(VERSION_LDFLAGS) $(KUBE_LDFLAGS)" -o bin/gpuslice-scheduler ./cmd/gpuslice-scheduler

# The MIG repartition controller (manifests/repartitioner), static.
repartitioner:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w $(VERSION_LDFLAGS)" -o bin/gpuslice-repartitioner ./cmd/gpuslice-repartitioner

# The kubectl plugin: `kubectl gpuslice whatif` (README).
kubectl-gpuslice:
	$(GO) build -trimpath -ldflags="-s -w" -o bin/kubectl-gpuslice ./cmd/kubectl-gpuslice

# The exporter needs cgo (go-nvml loads libnvidia-ml at run time). Its
# binary is most of its resident memory (make bench-exporter), so it is
# kept small: nethttpomithttp2 leaves out net/http's bundled copy of the
# HTTP/2 implementation (client-go and the kubelet client use
# golang.org/x/net/http2; /metrics is served over HTTP/1.1), and nothing
# but the runtime is inlined: 0.9 MiB less binary for up to ~10% more CPU
# time, of a process that uses about 1 ms of CPU a second.
EXPORTER_GCFLAGS := -gcflags=all=-l -gcflags='runtime/...=' -gcflags='internal/runtime/...='
exporter:
	CGO_ENABLED=1 $(GO) build -trimpath -tags nethttpomithttp2 $(EXPORTER_GCFLAGS) -ldflags="-s -w $(VERSION_LDFLAGS)" -o bin/gpuslice-exporter ./cmd/gpuslice-exporter

# images builds the scheduler's, the exporter's and the repartitioner's images without a
# container engine (go-containerregistry, in its own module under
# hack/tools/images) into bin/images/gpuslice-{scheduler,exporter,repartitioner}.tar,
# tagged $(IMAGE_REPOSITORY)/gpuslice-*:$(VERSION): archives that docker
# load, kind load image-archive and crane push take. The exporter's C
# library comes from Debian's packages (apt-get download, cached in
# bin/images/debs), not from a base image.
IMAGE_REPOSITORY ?= gpuslice
IMAGE_DEBS := libc6 libgcc-s1
.PHONY: images image-debs test-images
image-debs:
	hack/fetch-debs.sh bin/images/debs $(IMAGE_DEBS)

images: scheduler exporter repartitioner image-debs
	$(GO) -C hack/tools/images build -o $(CURDIR)/bin/gpuslice-images .
	bin/gpuslice-images -out bin/images -version $(VERSION) -repository $(IMAGE_REPOSITORY) \
		-scheduler bin/gpuslice-scheduler -exporter bin/gpuslice-exporter -repartitioner bin/gpuslice-repartitioner \
		$(foreach p,$(IMAGE_DEBS),-deb $(firstword $(wildcard bin/images/debs/$(p)_*.deb)))

# test-images unpacks each image and runs its binary from the image's own
# filesystem (chroot, as the image's user) with --version.
test-images: images
	cd hack/tools/images && GPUSLICE_IMAGES=$(CURDIR)/bin/images $(GO) test -count=1 ./...

# helm-lint lints charts/gpuslice with Helm's Go SDK (pinned in
# hack/tools/chart); warnings fail. test/chart (under test-unit) runs it too,
# renders, installs and upgrades the chart against a real kube-apiserver.
.PHONY: helm-lint
helm-lint:
	$(GO) -C hack/tools/chart run . lint $(CURDIR)/charts/gpuslice

# test-tools runs the tools modules' tests (the images', the dashboards'
# PromQL reader; test/dashboards, under test-unit, runs the reader on
# manifests/dashboards).
.PHONY: test-tools
test-tools: test-images
	$(GO) -C hack/tools/dashboards test -count=1 ./...

# demo starts a local cluster (real etcd + kube-apiserver, simulated GPU
# nodes, gpuslice-scheduler), runs the sample workload under the default
# kube-scheduler and under gpuslice, and prints where every slice went.
# DEMO_FLAGS=--keep leaves it running with a kubeconfig for kubectl.
DEMO_FLAGS ?=
demo: control-plane
	@echo "[demo] building bin/gpuslice-demo (first build compiles the scheduler: a few minutes; packages listed as they compile)"
	$(GO) build -v -o bin/gpuslice-demo ./cmd/gpuslice-demo 2>&1 | sed -u 's/^/[demo] compiled /'
	bin/gpuslice-demo $(DEMO_FLAGS)

# test runs every test: unit and table tests, fuzz seed corpora (go test runs
# them as ordinary tests), then the static checks of verify.
test: test-unit test-race test-tools verify

# control-plane builds bin/etcd, bin/kube-apiserver and bin/kubectl for the
# integration tests (pkg/localcluster/controlplane); cached in bin/, keyed by go.sum.
.PHONY: control-plane
control-plane:
	GO=$(GO) hack/control-plane.sh build

# karpenter builds the real Karpenter (KWOK cloud provider, pinned in
# hack/tools/karpenter) into bin/karpenter and copies its CRDs into
# bin/karpenter-crds/; controller-manager builds bin/kube-controller-manager
# (hack/tools/kube-controller-manager). The autoscaling end-to-end test runs
# both next to the control plane. Each is cached in bin/, keyed by its tools
# module's go.sum; cold, about 9 and 5 minutes on 2 cores.
.PHONY: karpenter controller-manager autoscaler
karpenter:
	GO=$(GO) hack/karpenter.sh build
controller-manager:
	GO=$(GO) hack/controller-manager.sh build
autoscaler: karpenter controller-manager

test-unit: control-plane autoscaler
	$(GO) test -count=1 $(PKGS)

# test-race runs the packages with concurrent state (the node cache, the
# plugin's Reserve, the allocator's shared per-cycle tables) under the race
# detector.
.PHONY: test-race
test-race:
	$(GO) test -count=1 -race ./pkg/cache/ ./pkg/plugins/...
	$(GO) test -count=1 -race -run Concurrent ./pkg/allocator/

verify: fmt vet tidy-check verify-codegen

# codegen regenerates deepcopy, the typed clientset, listers, informers, apply
# configurations (pkg/generated) and the CRDs (manifests/crds) from pkg/apis.
.PHONY: codegen verify-codegen
codegen:
	GO=$(GO) hack/update-codegen.sh

# verify-codegen fails when the generated code or CRDs are out of date.
verify-codegen:
	GO=$(GO) hack/verify-codegen.sh

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	for m in $(TOOL_MODULES); do $(GO) -C $$m vet ./... || exit 1; done

# tidy-check fails when go.mod/go.sum (the product's and the tools
# modules') are not what `go mod tidy` makes them.
TOOL_MODULES := hack/tools/images hack/tools/dashboards hack/tools/chart
tidy-check:
	@for m in . $(TOOL_MODULES); do \
	cp $$m/go.mod /tmp/gpuslice-go.mod.bak; cp $$m/go.sum /tmp/gpuslice-go.sum.bak; \
	$(GO) -C $$m mod tidy; \
	if ! cmp -s $$m/go.mod /tmp/gpuslice-go.mod.bak || ! cmp -s $$m/go.sum /tmp/gpuslice-go.sum.bak; then \
		cp /tmp/gpuslice-go.mod.bak $$m/go.mod; cp /tmp/gpuslice-go.sum.bak $$m/go.sum; \
		echo "$$m/go.mod or go.sum is not tidy: run 'go mod tidy' there"; exit 1; fi; \
	done

# bench prints the allocator's per-node costs and the plugin's per-pod cost
# on a 1 000-node cluster (ns/op, allocs/op).
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=6 ./pkg/allocator/
	$(GO) test -run='^$$' -bench=. -benchmem -count=3 ./pkg/plugins/gpuslice/

# bench-exporter measures the exporter binary's steady-state RSS against a
# real control plane.
.PHONY: bench-exporter
bench-exporter: control-plane exporter
	$(GO) test -run='^$$' -bench=BenchmarkExporterSteadyStateRSS -benchtime=1x ./test/integration/exporter/

# bench-throughput measures scheduling throughput scheduler_perf-style
# against a real kube-apiserver: 5 000 nodes x 8 GPUs, 10 000 GPU pods, the
# stock default-scheduler profile vs gpuslice-binpack in one scheduler
# process. The last line is throughput_ratio=<gpuslice/stock>.
# THROUGHPUT_FLAGS are passed on (e.g. --rounds=3 --json --cpuprofile=cpu.pprof).
THROUGHPUT_FLAGS ?=
bench-throughput: control-plane
	$(GO) build -o bin/gpuslice-bench ./cmd/gpuslice-bench
	bin/gpuslice-bench throughput $(THROUGHPUT_FLAGS)

# bench-openb replays the openb trace (../shared/data/openb, FGD paper's
# protocol) with gpuslice's shipped profiles, the paper's baselines and
# kube-scheduler's, and draws docs/openb-default.png. OPENB_FLAGS are passed
# on (e.g. --pods FILE for another variant, --seeds 42-51, --json).
OPENB_FLAGS ?= --seeds 42-44 --policies all --plot docs/openb-default.png
bench-openb:
	$(GO) build -o bin/gpuslice-bench ./cmd/gpuslice-bench
	bin/gpuslice-bench openb $(OPENB_FLAGS)

# bench-autoscale-trace replays the openb trace (../shared/data/openb) with
# its creation and deletion times on a cluster that starts empty and that an
# in-process model of Karpenter (pkg/sim/autoscaler, WhenEmpty) grows and
# shrinks: gpuslice's profiles, kube-scheduler's LeastAllocated and
# MostAllocated, FGD and BestFit. It prints GPU node-hours (and a bar per
# policy), GPU-hours, dollars, peak nodes, pods placed and failed, pending
# times, and ends with node_hours_ratio=<gpuslice-fragmentation-aware /
# kube-LeastAllocated>. About 2 minutes on 2 cores; no control plane.
# AUTOSCALE_TRACE_FLAGS are passed on (e.g. --from-day 115, --json,
# --karpenter-check for the model against the real Karpenter's figures).
AUTOSCALE_TRACE_FLAGS ?=
bench-autoscale-trace:
	$(GO) build -o bin/gpuslice-bench ./cmd/gpuslice-bench
	bin/gpuslice-bench autoscale-trace $(AUTOSCALE_TRACE_FLAGS)

# demo-autoscale replays a seeded workload that comes and goes (inference
# Deployments over a compressed day, MIG and whole-GPU Jobs, time-sliced
# notebooks) on an empty cluster that the real Karpenter grows and shrinks,
# three times: kube-scheduler + WhenEmpty, gpuslice + WhenEmpty,
# kube-scheduler + WhenEmptyOrUnderutilized. It prints GPU node-hours,
# dollars, peak nodes, evictions and pending times per run, draws
# docs/autoscale-nodes.png, and ends with node_hours_ratio=<gpuslice/default,
# both WhenEmpty>. About 6 minutes a run. AUTOSCALE_FLAGS are passed on
# (e.g. --seed 7 --day 6m --policies gpuslice+WhenEmpty).
AUTOSCALE_FLAGS ?=
.PHONY: demo-autoscale
demo-autoscale: control-plane autoscaler
	$(GO) build -o bin/gpuslice-bench ./cmd/gpuslice-bench
	bin/gpuslice-bench autoscale $(AUTOSCALE_FLAGS)

# bench-mig places a documented MIG request mix on A100/H100 nodes
# partitioned with NVIDIA mig-parted's named layouts (read from
# ../shared/data/mig-parted-config-default.yaml) and prints non-empty GPU
# nodes and GPUs: gpuslice vs kube-scheduler's default and MostAllocated.
# MIG_FLAGS are passed on (e.g. --seeds=1-9 --pods=360 --json).
MIG_FLAGS ?=
bench-mig:
	$(GO) run ./cmd/gpuslice-bench mig $(MIG_FLAGS)

# bench-mig-dynamic runs demand that shifts (inference -> training -> mixed
# -> inference) with arrivals and departures on 16 eight-GPU A100/H100
# nodes: NVIDIA's named static layouts vs a first-fit repartition planner
# vs gpuslice's, both asking a modelled MIG manager for layouts. The last
# line is placed_ratio=<gpuslice-dynamic / best static layout, pods placed
# at the heaviest load>. MIG_DYNAMIC_FLAGS are passed on (e.g. --loads
# 0.5,0.8 --seed 2 --reconfig 6m --json).
MIG_DYNAMIC_FLAGS ?=
bench-mig-dynamic:
	$(GO) run ./cmd/gpuslice-bench mig --dynamic $(MIG_DYNAMIC_FLAGS)

# fuzz runs each fuzz target for FUZZTIME.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./pkg/podrequest/
	$(GO) test -run='^$$' -fuzz=FuzzValidateLayout -fuzztime=$(FUZZTIME) ./pkg/topology/
	$(GO) test -run='^$$' -fuzz=FuzzParseMIGParted -fuzztime=$(FUZZTIME) ./pkg/topology/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./pkg/exporter/dpconfig/

clean:
	rm -rf bin/
