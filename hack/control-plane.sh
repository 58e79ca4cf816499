#!/usr/bin/env bash
# control-plane.sh builds the control-plane binaries that the integration
# tests (pkg/localcluster/controlplane) start: bin/etcd, bin/kube-apiserver and bin/kubectl.
#
#   hack/control-plane.sh build    build them, unless bin/ is already current
#   hack/control-plane.sh clean    remove them and the cache stamp
#
# The versions come from go.mod (the `tool` directives: etcd server v3 and
# k8s.io/kubernetes), so the binaries are cached under the ignored bin/,
# keyed by the sha256 of go.sum: bin/.control-plane.stamp holds it, and the
# build is skipped when it matches and all three binaries exist.
#
# A cold build takes about 6 minutes on 2 cores and ~3 GB of memory; the
# binaries are built one after another, with `go build -p` limited (GO_BUILD_P,
# default 2) to stay within memory. They are static (CGO_ENABLED=0).
#
# Environment:
#   GO          go command (default: go)
#   GO_BUILD_P  value for `go build -p` (default: 2)
#   FORCE=1     rebuild even when the stamp matches
set -euo pipefail

LOG_TAG=control-plane
# shellcheck source=lib/tools-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools-build.sh"
STAMP="${BIN}/.control-plane.stamp"

# Kubernetes version stamped into kube-apiserver and kubectl. It must match
# the k8s.io/kubernetes requirement in go.mod; build checks that it does.
KUBE_VERSION="v1.37.1"
KUBE_MAJOR="1"
KUBE_MINOR="37"

BINARIES=(etcd kube-apiserver kubectl)

sum_go_sum() {
	sha256sum "${ROOT}/go.sum" | cut -d' ' -f1
}

is_current() {
	local want="$1" b
	[[ -f "${STAMP}" ]] || return 1
	[[ "$(cat "${STAMP}")" == "${want}" ]] || return 1
	for b in "${BINARIES[@]}"; do
		[[ -x "${BIN}/${b}" ]] || return 1
	done
	return 0
}

check_kube_version() {
	local have
	have="$(cd "${ROOT}" && "${GO}" list -m -f '{{.Version}}' k8s.io/kubernetes)" ||
		die "cannot resolve k8s.io/kubernetes from go.mod"
	[[ "${have}" == "${KUBE_VERSION}" ]] ||
		die "go.mod requires k8s.io/kubernetes ${have}, but this script stamps ${KUBE_VERSION}: update KUBE_VERSION/KUBE_MAJOR/KUBE_MINOR in hack/control-plane.sh"
}

kube_ldflags() {
	local flags="-s -w" pkg
	for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
		flags+=" -X ${pkg}.gitVersion=${KUBE_VERSION}"
		flags+=" -X ${pkg}.gitMajor=${KUBE_MAJOR}"
		flags+=" -X ${pkg}.gitMinor=${KUBE_MINOR}"
		flags+=" -X ${pkg}.gitTreeState=clean"
	done
	printf '%s' "${flags}"
}

# build_one NAME PACKAGE LDFLAGS builds PACKAGE of the product's module (its
# go.mod pins the control plane) into bin/NAME.
build_one() { build_tool "${ROOT}" "$@"; }

cmd_build() {
	local want
	want="$(sum_go_sum)"
	if [[ "${FORCE:-}" != 1 ]] && is_current "${want}"; then
		log "bin/ is current (go.sum ${want:0:12}): $(printf '%s ' "${BINARIES[@]}")"
		return 0
	fi
	check_kube_version
	mkdir -p "${BIN}"
	# Invalidate the stamp first: a build interrupted half-way must not look
	# current next time.
	rm -f "${STAMP}"
	local total=${SECONDS} ldflags
	ldflags="$(kube_ldflags)"
	# etcd is not a Kubernetes binary: it carries its own version.
	build_one etcd go.etcd.io/etcd/server/v3 "-s -w"
	build_one kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "${ldflags}"
	build_one kubectl k8s.io/kubernetes/cmd/kubectl "${ldflags}"
	if [[ "$(sum_go_sum)" != "${want}" ]]; then
		# Someone changed go.sum while we compiled: these binaries may be of
		# either state. Leave them unstamped, so that the next run rebuilds.
		log "warning: go.sum changed during the build; bin/ is left unstamped and the next build redoes it"
	else
		printf '%s\n' "${want}" >"${STAMP}"
	fi
	log "control plane built in $((SECONDS - total))s"
	"${BIN}/kubectl" version --client 2>/dev/null | sed 's/^/[control-plane]   /' >&2 || true
}

cmd_clean() {
	local b
	for b in "${BINARIES[@]}"; do
		rm -f "${BIN}/${b}"
	done
	rm -f "${STAMP}" "${BIN}"/.*.tmp.* 2>/dev/null || true
	log "removed control-plane binaries from bin/"
}

dispatch "$@"
