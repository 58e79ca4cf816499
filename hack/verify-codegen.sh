#!/usr/bin/env bash
# verify-codegen.sh fails when the generated code and CRDs in the working tree
# are not exactly what hack/update-codegen.sh produces from the API types.
#
# It copies the sources (git's tracked and untracked, non-ignored files, less
# the generated output) into a temporary directory, runs update-codegen.sh
# there and compares the result with the working tree, file by file, over the
# generated paths:
#
#   pkg/generated/**                      every file
#   manifests/crds/*.yaml
#   <API package>/zz_generated.deepcopy.go  for the API packages listed in
#                                         update-codegen.sh (API_PKGS)
#
# A file that differs, one that is missing, and one that exists but should
# not (e.g. left over from a removed type) are all reported. The working tree
# is never modified.
#
# Environment:
#   GO                go command (default: go)
#   KEEP_TMP=1        keep the temporary copy and print where it is
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${ROOT}"

log() { printf '[verify-codegen] %s\n' "$*" >&2; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/gpuslice-codegen.XXXXXX")"
if [ "${KEEP_TMP:-0}" = 1 ]; then
	log "temporary copy: ${TMP}"
else
	trap 'rm -rf "${TMP}"' EXIT
fi

# The API packages update-codegen.sh generates deepcopy for (other packages
# under pkg/apis are not its business, nor this script's).
mapfile -t API_DIRS < <("${ROOT}/hack/update-codegen.sh" --print-api-dirs)

# is_generated PATH: whether PATH (relative to the root) is generated output.
is_generated() {
	case "$1" in
	pkg/generated/*) return 0 ;;
	manifests/crds/*.yaml) return 0 ;;
	esac
	local d
	for d in "${API_DIRS[@]}"; do
		case "$1" in "${d}"/zz_generated.*.go) return 0 ;; esac
	done
	return 1
}

# list_generated DIR: the generated files under DIR, relative to it, sorted.
list_generated() {
	(
		cd "$1"
		{
			[ -d pkg/generated ] && find pkg/generated -type f
			[ -d manifests/crds ] && find manifests/crds -maxdepth 1 -type f -name '*.yaml'
			for d in "${API_DIRS[@]}"; do
				[ -d "${d}" ] && find "${d}" -maxdepth 1 -type f -name "zz_generated.*.go"
			done
		} | LC_ALL=C sort
	)
}

# Copy the sources, without the generated output.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard
else
	find . -path ./bin -prune -o -path ./.git -prune -o -type f -print0 | sed -z 's|^\./||'
fi | while IFS= read -r -d '' f; do
	[ -f "${f}" ] || continue # deleted but still tracked
	is_generated "${f}" && continue
	printf '%s\0' "${f}"
done | tar --null -T - -cf - | tar -xf - -C "${TMP}"

log "regenerating into ${TMP}"
if ! "${TMP}/hack/update-codegen.sh" >"${TMP}/.update.log" 2>&1; then
	cat "${TMP}/.update.log" >&2
	log "error: hack/update-codegen.sh failed in the temporary copy"
	exit 1
fi

drifted=()
missing=()
extra=()
while IFS= read -r f; do
	if [ ! -e "${ROOT}/${f}" ]; then
		missing+=("${f}")
	elif ! cmp -s "${ROOT}/${f}" "${TMP}/${f}"; then
		drifted+=("${f}")
	fi
done < <(list_generated "${TMP}")
while IFS= read -r f; do
	[ -e "${TMP}/${f}" ] || extra+=("${f}")
done < <(list_generated "${ROOT}")

if [ "${#drifted[@]}" -eq 0 ] && [ "${#missing[@]}" -eq 0 ] && [ "${#extra[@]}" -eq 0 ]; then
	log "OK: generated code and CRDs are up to date"
	exit 0
fi

log "error: generated code is out of date"
for f in "${drifted[@]:+${drifted[@]}}"; do
	log "  differs:          ${f}"
done
for f in "${missing[@]:+${missing[@]}}"; do
	log "  missing:          ${f}"
done
for f in "${extra[@]:+${extra[@]}}"; do
	log "  should not exist: ${f}"
done
for f in "${drifted[@]:+${drifted[@]}}"; do
	diff -u --label "a/${f} (working tree)" --label "b/${f} (generated)" "${ROOT}/${f}" "${TMP}/${f}" | head -n 40 >&2 || true
done
log "run hack/update-codegen.sh (make codegen) and include the result"
exit 1
