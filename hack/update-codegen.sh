#!/usr/bin/env bash
# update-codegen.sh regenerates everything derived from the API types in
# pkg/apis (the packages listed in API_PKGS below):
#
#   pkg/apis/gpuslice/v1alpha1/zz_generated.deepcopy.go   deepcopy-gen
#   pkg/generated/applyconfiguration/...                  applyconfiguration-gen
#   pkg/generated/clientset/versioned/...                 client-gen
#   pkg/generated/listers/...                             lister-gen
#   pkg/generated/informers/...                           informer-gen
#   manifests/crds/*.yaml                                 controller-gen (CRDs)
#
# The generators are pinned by the `tool` directives in go.mod (k8s.io/
# code-generator through the staging replace block, sigs.k8s.io/controller-
# tools) and run with `go tool`, which builds them from the module cache the
# first time and reuses the cached binaries afterwards.
#
# The previous output is removed first, so a type or package that disappears
# takes its generated files with it (deepcopy: only in the packages listed in
# API_PKGS). The script is idempotent: running it twice gives the same tree.
# hack/verify-codegen.sh checks that the committed output is current.
#
# Environment:
#   GO                go command (default: go)
#   CODEGEN_V         klog verbosity of the code-generator tools (default: 0)
#   CODEGEN_PARALLEL  0 runs the generators one at a time (default: 1)
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${ROOT}"

GO="${GO:-go}"
V="${CODEGEN_V:-0}"
MODULE="github.com/gpuslice/gpuslice"
BOILERPLATE="${ROOT}/hack/boilerplate.go.txt"

# API packages, relative to pkg/apis, in <group>/<version> form (the layout
# client-gen expects). The group name comes from +groupName in doc.go.
API_PKGS=(gpuslice/v1alpha1)
# The scheduler plugin args API (kubescheduler.config.k8s.io): internal and
# v1 types get deepcopy; v1 also gets conversion and defaulting functions.
CONFIG_PKGS=(config config/v1)
CONVERSION_PKGS=(config/v1)

GEN_DIR="pkg/generated"
GEN_PKG="${MODULE}/${GEN_DIR}"
CRD_DIR="manifests/crds"

log() { printf '[codegen] %s\n' "$*" >&2; }

# --print-api-dirs: print the API package directories, one a line, and stop
# (hack/verify-codegen.sh uses it to know which zz_generated files are ours).
if [ "${1:-}" = "--print-api-dirs" ]; then
	printf 'pkg/apis/%s\n' "${API_PKGS[@]}" "${CONFIG_PKGS[@]}"
	exit 0
fi

[ "$(${GO} list -m)" = "${MODULE}" ] || { log "error: not in module ${MODULE}"; exit 1; }

inputs=()      # import paths
client_in=()   # --input <group>/<version>
for gv in "${API_PKGS[@]}"; do
	inputs+=("${MODULE}/pkg/apis/${gv}")
	client_in+=(--input "${gv}")
done

deepcopy_in=("${inputs[@]}")
for p in "${CONFIG_PKGS[@]}"; do
	deepcopy_in+=("${MODULE}/pkg/apis/${p}")
done
conversion_in=()
for p in "${CONVERSION_PKGS[@]}"; do
	conversion_in+=("${MODULE}/pkg/apis/${p}")
done

# Clean previous output, so that stale files do not survive. Only the listed
# packages are touched.
for p in "${API_PKGS[@]}" "${CONFIG_PKGS[@]}"; do
	rm -f "pkg/apis/${p}"/zz_generated.*.go
done
rm -rf "${GEN_DIR}"
mkdir -p "${CRD_DIR}"
find "${CRD_DIR}" -maxdepth 1 -name '*.yaml' -delete

# deepcopy first: until it exists the API packages do not type-check, which
# controller-gen needs. The other generators only read the types and name the
# packages they refer to, so they run side by side (CODEGEN_PARALLEL=0 runs
# them one after another).
log "deepcopy-gen"
${GO} tool deepcopy-gen -v "${V}" \
	--go-header-file "${BOILERPLATE}" \
	--output-file zz_generated.deepcopy.go \
	"${deepcopy_in[@]}"

crd_paths=()
for gv in "${API_PKGS[@]}"; do
	crd_paths+=("paths=./pkg/apis/${gv}")
done

LOGS="$(mktemp -d)"
trap 'rm -rf "${LOGS}"' EXIT
names=()
pids=()
# gen NAME ARGS...: runs `go tool NAME ARGS...`, in the background unless
# CODEGEN_PARALLEL=0; its output goes to a log printed if it fails.
gen() {
	local name="$1"
	shift
	log "${name}"
	if [ "${CODEGEN_PARALLEL:-1}" = 0 ]; then
		${GO} tool "${name}" "$@"
		return
	fi
	${GO} tool "${name}" "$@" >"${LOGS}/${name}.log" 2>&1 &
	names+=("${name}")
	pids+=("$!")
}

# Server-side apply configurations. No --openapi-schema is given, so the
# Extract<Kind> helpers are not generated; Apply works without them.
gen applyconfiguration-gen -v "${V}" \
	--go-header-file "${BOILERPLATE}" \
	--output-dir "${GEN_DIR}/applyconfiguration" \
	--output-pkg "${GEN_PKG}/applyconfiguration" \
	"${inputs[@]}"

gen client-gen -v "${V}" \
	--go-header-file "${BOILERPLATE}" \
	--output-dir "${GEN_DIR}/clientset" \
	--output-pkg "${GEN_PKG}/clientset" \
	--clientset-name versioned \
	--input-base "${MODULE}/pkg/apis" \
	"${client_in[@]}" \
	--apply-configuration-package "${GEN_PKG}/applyconfiguration"

gen lister-gen -v "${V}" \
	--go-header-file "${BOILERPLATE}" \
	--output-dir "${GEN_DIR}/listers" \
	--output-pkg "${GEN_PKG}/listers" \
	"${inputs[@]}"

gen informer-gen -v "${V}" \
	--go-header-file "${BOILERPLATE}" \
	--output-dir "${GEN_DIR}/informers" \
	--output-pkg "${GEN_PKG}/informers" \
	--versioned-clientset-package "${GEN_PKG}/clientset/versioned" \
	--listers-package "${GEN_PKG}/listers" \
	"${inputs[@]}"

gen conversion-gen -v "${V}" \
	--go-header-file "${BOILERPLATE}" \
	--output-file zz_generated.conversion.go \
	"${conversion_in[@]}"

gen defaulter-gen -v "${V}" \
	--go-header-file "${BOILERPLATE}" \
	--output-file zz_generated.defaults.go \
	"${conversion_in[@]}"

gen controller-gen crd:crdVersions=v1 "${crd_paths[@]}" \
	output:crd:artifacts:config="${CRD_DIR}"

failed=0
for i in "${!pids[@]}"; do
	if ! wait "${pids[$i]}"; then
		log "error: ${names[$i]} failed:"
		failed=1
	fi
	cat "${LOGS}/${names[$i]}.log" >&2
done
[ "${failed}" = 0 ] || exit 1

log "done"
