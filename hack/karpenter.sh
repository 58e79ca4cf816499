#!/usr/bin/env bash
# karpenter.sh builds the real Karpenter that the autoscaling tests run next
# to the local control plane: its KWOK cloud provider
# (sigs.k8s.io/karpenter/kwok, pinned in hack/tools/karpenter/go.mod) into
# bin/karpenter, and copies its CRDs from that module into bin/karpenter-crds/.
#
#   hack/karpenter.sh build    build them, unless bin/ is already current
#   hack/karpenter.sh clean    remove them and the cache stamp
#
# Cached under the ignored bin/, keyed by the sha256 of
# hack/tools/karpenter/go.sum: bin/.karpenter.stamp holds it. A cold build
# takes about 9 minutes on 2 cores (~90 MB binary); a warm check, none.
#
# Environment:
#   GO          go command (default: go)
#   GO_BUILD_P  value for `go build -p` (default: 2)
#   FORCE=1     rebuild even when the stamp matches
set -euo pipefail

LOG_TAG=karpenter
# shellcheck source=lib/tools-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools-build.sh"

MODDIR="${ROOT}/hack/tools/karpenter"
STAMP="${BIN}/.karpenter.stamp"
CRDS="${BIN}/karpenter-crds"
# The CRDs the KWOK provider needs, relative to the karpenter module.
CRD_FILES=(
	pkg/apis/crds/karpenter.sh_nodepools.yaml
	pkg/apis/crds/karpenter.sh_nodeclaims.yaml
	pkg/apis/crds/karpenter.sh_nodeoverlays.yaml
	kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml
)

outputs() {
	local f
	printf '%s\n' "${BIN}/karpenter"
	for f in "${CRD_FILES[@]}"; do
		printf '%s\n' "${CRDS}/$(basename "${f}")"
	done
}

cmd_build() {
	local want
	want="$(sum_of "${MODDIR}/go.sum")"
	mapfile -t outs < <(outputs)
	if [[ "${FORCE:-}" != 1 ]] && stamp_current "${STAMP}" "${want}" "${outs[@]}"; then
		log "bin/ is current (hack/tools/karpenter/go.sum ${want:0:12}): karpenter, $(basename "${CRDS}")/"
		return 0
	fi
	mkdir -p "${BIN}"
	rm -f "${STAMP}"
	local total=${SECONDS} version dir f
	version="$(module_version "${MODDIR}" sigs.k8s.io/karpenter)" || die "cannot resolve sigs.k8s.io/karpenter in ${MODDIR}"
	dir="$(module_dir "${MODDIR}" sigs.k8s.io/karpenter)" || die "cannot download sigs.k8s.io/karpenter ${version}"
	log "Karpenter ${version} (KWOK provider) from ${dir}"
	build_tool "${MODDIR}" karpenter sigs.k8s.io/karpenter/kwok "-s -w"
	rm -rf "${CRDS}.tmp.$$"
	mkdir -p "${CRDS}.tmp.$$"
	for f in "${CRD_FILES[@]}"; do
		[[ -f "${dir}/${f}" ]] || die "Karpenter ${version} has no ${f}"
		install -m 0644 "${dir}/${f}" "${CRDS}.tmp.$$/"
	done
	rm -rf "${CRDS}"
	mv "${CRDS}.tmp.$$" "${CRDS}"
	log "copied ${#CRD_FILES[@]} CRDs into bin/$(basename "${CRDS}")/"
	if [[ "$(sum_of "${MODDIR}/go.sum")" != "${want}" ]]; then
		log "warning: go.sum changed during the build; bin/ is left unstamped and the next build redoes it"
	else
		printf '%s\n' "${want}" >"${STAMP}"
	fi
	log "Karpenter built in $((SECONDS - total))s"
}

cmd_clean() {
	rm -rf "${BIN}/karpenter" "${CRDS}" "${STAMP}" "${BIN}"/.karpenter.tmp.* "${CRDS}".tmp.* 2>/dev/null || true
	log "removed Karpenter from bin/"
}

dispatch "$@"
