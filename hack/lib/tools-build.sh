# tools-build.sh: shared helpers of the scripts that build a binary from a
# tools module under hack/tools/<name> (or, for hack/control-plane.sh, the
# product's own module) into the ignored bin/, cached by the sha256 of that
# module's go.sum (hack/karpenter.sh, hack/controller-manager.sh,
# hack/control-plane.sh). Source it after setting LOG_TAG.
#
# A tools module keeps its dependencies out of the product's go.mod; its
# go.sum pins them, so its hash is the cache key: bin/.<name>.stamp holds it,
# and the build is skipped when it matches and the outputs exist.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GO="${GO:-go}"
GO_BUILD_P="${GO_BUILD_P:-2}"
BIN="${ROOT}/bin"

log() { printf '[%s] %s\n' "${LOG_TAG}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# sum_of FILE prints the sha256 of FILE.
sum_of() { sha256sum "$1" | cut -d' ' -f1; }

# stamp_current STAMP WANT OUTPUT...: true when STAMP holds WANT and every
# OUTPUT (a path under bin/) exists.
stamp_current() {
	local stamp="$1" want="$2" f
	shift 2
	[[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]] || return 1
	for f in "$@"; do
		[[ -e "${f}" ]] || return 1
	done
	return 0
}

# build_tool MODDIR NAME PACKAGE LDFLAGS: builds PACKAGE inside the tools
# module MODDIR into bin/NAME, through a temporary file renamed at the end so
# that an interrupted build never leaves a half-written binary. Prints a
# progress line every 30 s while the compiler runs.
build_tool() {
	local moddir="$1" name="$2" pkg="$3" ldflags="$4"
	local out="${BIN}/${name}" tmp="${BIN}/.${name}.tmp.$$"
	local start=${SECONDS}
	log "building ${name} (${pkg}) ..."
	(
		cd "${moddir}"
		CGO_ENABLED=0 exec "${GO}" build -p "${GO_BUILD_P}" -trimpath \
			-ldflags="${ldflags}" -o "${tmp}" "${pkg}"
	) &
	local pid=$! rc=0 next=$((start + 30))
	# Poll instead of a background ticker: no helper process may outlive the
	# build and keep a caller's pipe open.
	while kill -0 "${pid}" 2>/dev/null; do
		sleep 1
		if ((SECONDS >= next)); then
			log "  ... still building ${name} ($((SECONDS - start))s)"
			next=$((next + 30))
		fi
	done
	wait "${pid}" || rc=$?
	if [[ ${rc} -ne 0 ]]; then
		rm -f "${tmp}"
		die "building ${name} failed (exit ${rc}) after $((SECONDS - start))s"
	fi
	mv -f "${tmp}" "${out}"
	log "built ${name} in $((SECONDS - start))s ($(du -h "${out}" | cut -f1))"
}

# module_version MODDIR MODULE prints the version of MODULE that the tools
# module MODDIR resolves.
module_version() {
	(cd "$1" && "${GO}" list -m -f '{{.Version}}' "$2")
}

# module_dir MODDIR MODULE prints where MODULE's source lies in the module
# cache, downloading it if needed.
module_dir() {
	(cd "$1" && "${GO}" mod download "$2" && "${GO}" list -m -f '{{.Dir}}' "$2")
}

# dispatch ARG runs the sourcing script's cmd_build or cmd_clean, or prints
# the script's header comment as its usage.
dispatch() {
	case "${1:-}" in
	build) cmd_build ;;
	clean) cmd_clean ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}
