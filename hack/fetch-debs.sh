#!/usr/bin/env bash
# fetch-debs.sh DIR PACKAGE... downloads the Debian packages (.deb) of the
# exporter image's C library into DIR with apt-get download, once: packages
# already in DIR are kept. No base image is pulled from a registry; the
# image's libc is the distribution's package, unpacked by hack/tools/images.
set -euo pipefail
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
missing=()
for p in "$@"; do
	compgen -G "${p}_*.deb" >/dev/null || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
# As root, apt's download sandbox user cannot write here; download as root.
apt_get() { apt-get -q -o APT::Sandbox::User=root "$@"; }
if ! apt_get download "${missing[@]}"; then
	echo "fetch-debs: refreshing the package lists and retrying" >&2
	apt_get update
	apt_get download "${missing[@]}"
fi
