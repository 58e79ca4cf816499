#!/usr/bin/env bash
# controller-manager.sh builds bin/kube-controller-manager, which the
# autoscaling tests run next to the local control plane so that Deployments,
# ReplicaSets and Jobs recreate the pods Karpenter's consolidation evicts.
#
#   hack/controller-manager.sh build    build it, unless bin/ is already current
#   hack/controller-manager.sh clean    remove it and the cache stamp
#
# It comes from k8s.io/kubernetes as pinned in hack/tools/kube-controller-manager
# (a tools module: the controller manager links kubelet packages whose
# dependencies the product's go.mod does not carry); the build checks that
# this is the version the product's go.mod pins. Cached under the ignored
# bin/, keyed by the sha256 of that module's go.sum
# (bin/.kube-controller-manager.stamp). A cold build takes about 5 minutes
# on 2 cores, less when the control plane's build cache is warm.
#
# Environment:
#   GO          go command (default: go)
#   GO_BUILD_P  value for `go build -p` (default: 2)
#   FORCE=1     rebuild even when the stamp matches
set -euo pipefail

LOG_TAG=controller-manager
# shellcheck source=lib/tools-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools-build.sh"

MODDIR="${ROOT}/hack/tools/kube-controller-manager"
STAMP="${BIN}/.kube-controller-manager.stamp"

kube_ldflags() {
	local version="$1" major minor flags="-s -w" pkg
	major="${version#v}"
	major="${major%%.*}"
	minor="${version#v*.}"
	minor="${minor%%.*}"
	for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
		flags+=" -X ${pkg}.gitVersion=${version}"
		flags+=" -X ${pkg}.gitMajor=${major}"
		flags+=" -X ${pkg}.gitMinor=${minor}"
		flags+=" -X ${pkg}.gitTreeState=clean"
	done
	printf '%s' "${flags}"
}

cmd_build() {
	local want
	want="$(sum_of "${MODDIR}/go.sum")"
	if [[ "${FORCE:-}" != 1 ]] && stamp_current "${STAMP}" "${want}" "${BIN}/kube-controller-manager"; then
		log "bin/ is current (hack/tools/kube-controller-manager/go.sum ${want:0:12}): kube-controller-manager"
		return 0
	fi
	local product tools
	product="$(cd "${ROOT}" && "${GO}" list -m -f '{{.Version}}' k8s.io/kubernetes)" ||
		die "cannot resolve k8s.io/kubernetes from go.mod"
	tools="$(module_version "${MODDIR}" k8s.io/kubernetes)" ||
		die "cannot resolve k8s.io/kubernetes in ${MODDIR}"
	[[ "${product}" == "${tools}" ]] ||
		die "go.mod pins k8s.io/kubernetes ${product} but hack/tools/kube-controller-manager pins ${tools}: update that module (go get k8s.io/kubernetes@${product} and its staging replace block)"
	mkdir -p "${BIN}"
	rm -f "${STAMP}"
	local total=${SECONDS}
	build_tool "${MODDIR}" kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$(kube_ldflags "${tools}")"
	if [[ "$(sum_of "${MODDIR}/go.sum")" != "${want}" ]]; then
		log "warning: go.sum changed during the build; bin/ is left unstamped and the next build redoes it"
	else
		printf '%s\n' "${want}" >"${STAMP}"
	fi
	log "kube-controller-manager ${tools} built in $((SECONDS - total))s"
}

cmd_clean() {
	rm -f "${BIN}/kube-controller-manager" "${STAMP}" "${BIN}"/.kube-controller-manager.tmp.* 2>/dev/null || true
	log "removed kube-controller-manager from bin/"
}

dispatch "$@"
